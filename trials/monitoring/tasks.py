"""Celery tasks of monitoring. Each is safe to run twice (at-least-once delivery): a data-quality run
reconciles queries with the data (keyed on rule and entry), and QualityRunState, not the message,
decides whether another run follows.

Periodic: `quality_rules_nightly` (django-celery-beat, database scheduler) requests a run for every
trial with rules once a night, which also releases a queue left marked by a lost message."""

from celery import shared_task

from trials.monitoring.quality import services
from trials.protocol.models import Trial


@shared_task(acks_late=True)
def quality_rules_task(trial_id: int) -> bool:
    """One coalesced run of a trial's data-quality rules."""
    return services.quality_run_execute(trial_id)


@shared_task(acks_late=True)
def quality_rules_nightly() -> int:
    """Request a run for every trial that declares rules."""
    ids = [pk for pk, rules in Trial.objects.order_by("pk").values_list("pk", "quality_rules") if rules]
    for trial_id in ids:
        services.quality_run_request(trial_id)
    return len(ids)
