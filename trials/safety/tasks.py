"""Celery tasks of the safety summaries. Each is safe to run twice (at-least-once delivery): a run
computes the summaries from the database at its own cut-off and adds them; the SummaryState row,
not the message, decides whether another run follows.

Periodic: `safety_summaries_nightly` (django-celery-beat, database scheduler) requests a refresh
of every trial once a night (once per trial and night, however often the tick is delivered);
`safety_summaries_stale_scan` (every 5 minutes) enqueues again a refresh whose worker was killed
or whose message was lost (queued longer than SAFETY_SUMMARY_STALE_MINUTES)."""

from celery import shared_task
from django.utils import timezone

from trials.protocol.models import Trial
from trials.safety import summary


@shared_task(acks_late=True)
def safety_summary_refresh(trial_id: int) -> bool:
    """Recompute and store both versions (blinded and unblinded) of a trial's safety summary."""
    return summary.summary_refresh(trial_id)


@shared_task(acks_late=True)
def safety_summaries_nightly() -> int:
    """Request a safety summary refresh of every trial (the nightly cut-off), once per night."""
    night = timezone.localdate()
    ids = list(Trial.objects.order_by("pk").values_list("pk", flat=True))
    return sum(summary.summary_request_nightly(trial_id, night) for trial_id in ids)


@shared_task(acks_late=True)
def safety_summaries_stale_scan() -> int:
    """Enqueue again the refreshes whose worker or message was lost."""
    return summary.summaries_stale_requeue()
