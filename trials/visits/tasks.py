"""Celery tasks of the visit schedule. Each is safe to run twice (at-least-once delivery): the
work is decided from database rows, under unique keys, never from the message alone.

Beat (django-celery-beat, schedules in the database, editable in the admin) runs the scans; a
scan enqueues small per-participant or per-coordinator tasks. A lost message only delays work
until the next scan."""

from celery import shared_task

from edc.audit import system_user
from trials.participants.models import Participant
from trials.visits import reminders, schedule


@shared_task(acks_late=True)
def visit_states_refresh() -> int:
    """Move visits between upcoming, open and overdue by each site's local date."""
    return schedule.visit_states_refresh()


@shared_task(acks_late=True)
def schedule_participant(participant_id: int) -> int:
    """Create the participant's missing visits (idempotent)."""
    participant = Participant.objects.select_related("trial", "site").filter(pk=participant_id).first()
    if participant is None:
        return 0
    return schedule.schedule_generate(participant, user=system_user(), reason="Visit schedule (scan)")


@shared_task(acks_late=True)
def schedule_scan() -> int:
    """Enqueue a schedule task for every participant in follow-up who lacks a visit."""
    ids = list(schedule.participants_missing_visits())
    for participant_id in ids:
        schedule_participant.delay(participant_id)
    return len(ids)


@shared_task(acks_late=True)
def reminder_digest(user_id: int) -> int:
    return reminders.reminder_digest_send(user_id)


@shared_task(acks_late=True)
def reminders_scan() -> int:
    """Enqueue one digest per coordinator (each sends only what was not sent today)."""
    ids = reminders.coordinators_to_remind()
    for user_id in ids:
        reminder_digest.delay(user_id)
    return len(ids)


@shared_task(acks_late=True)
def schedule_batch(participant_ids: list[int]) -> int:
    """Schedules for a batch of participants, one transaction each: a batch killed half-way leaves
    whole schedules behind, and the next scan (or a redelivery) completes the rest."""
    created = 0
    for participant_id in participant_ids:
        created += schedule_participant(participant_id)
    return created
