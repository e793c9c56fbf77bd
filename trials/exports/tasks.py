"""Celery tasks of the exports. Thin: they take ids and call the services, which make a second
delivery harmless (only a queued job starts; housekeeping re-reads each job under its lock).

Periodic: `exports_scan` (django-celery-beat, hourly) deletes expired files, re-queues jobs whose
worker was lost and re-enqueues jobs whose message was lost; `exports_dead_scan` (every minute)
queues again running jobs whose heartbeat stopped (a killed worker node), so another worker
finishes them (`services.exports_stale_requeue`)."""

from celery import shared_task

from trials.exports import services


@shared_task(acks_late=True)
def export_run_task(job_id: int) -> bool:
    """Write one requested export."""
    return services.export_run(job_id) is not None


@shared_task(acks_late=True)
def exports_scan() -> dict:
    """Export housekeeping: expiry, lost workers, lost messages."""
    return services.exports_scan()


@shared_task
def exports_dead_scan() -> dict:
    """Queue again running exports whose heartbeat stopped (a killed worker), within minutes."""
    return services.exports_stale_requeue()
