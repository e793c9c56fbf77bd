"""Celery tasks of the safety summaries. Each is safe to run twice (at-least-once delivery): a run
computes the summaries from the database at its own cut-off and adds them; the SummaryState row,
not the message, decides whether another run follows.

Periodic: `safety_summaries_nightly` (django-celery-beat, database scheduler) refreshes every
trial once a night, which also releases a queue left marked by a lost message."""

from celery import shared_task

from trials.protocol.models import Trial
from trials.safety import summary


@shared_task(acks_late=True)
def safety_summary_refresh(trial_id: int) -> bool:
    """Recompute and store both versions (blinded and unblinded) of a trial's safety summary."""
    return summary.summary_refresh(trial_id)


@shared_task(acks_late=True)
def safety_summaries_nightly() -> int:
    """Enqueue a safety summary refresh for every trial (the nightly cut-off)."""
    ids = list(Trial.objects.order_by("pk").values_list("pk", flat=True))
    for trial_id in ids:
        safety_summary_refresh.delay(trial_id)
    return len(ids)
