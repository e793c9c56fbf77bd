"""Celery task of the reporting clocks (beat runs it every 15 minutes)."""

from celery import shared_task

from trials.safety.alerts import clock_alerts_send


@shared_task(acks_late=True)
def reporting_clock_alerts() -> int:
    return clock_alerts_send()
