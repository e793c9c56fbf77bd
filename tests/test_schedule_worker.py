"""The schedule against a real Celery worker and Redis: a worker killed (SIGKILL) in the middle of
a schedule batch, then restarted, leaves every participant with exactly her visits."""

import os
import signal
import subprocess
import socket
import sys
from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, QuerySet

from edc.audit import system_user
from tests.conftest import wait_for
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import Site, VisitDefinition
from trials.visits.models import Visit

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) and PostgreSQL: .ci/run sets both"),
]


def start_worker(queue: str) -> subprocess.Popen:
    """A worker of our own on a private queue, writing into this test database."""
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}",
        "DB_CONN_MAX_AGE": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "edc", "worker", "-Q", queue, "--pool=solo", "--loglevel=WARNING",
         "--hostname", f"{queue}@%h"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def drained(queue: str) -> bool:
    """Nothing waits in the private queue and its worker runs nothing."""
    from edc.celery import app

    with app.connection_for_read() as conn:
        try:
            if conn.default_channel.queue_declare(queue, passive=True).message_count:
                return False
        except conn.channel_errors:
            pass  # Redis keeps no empty queue: nothing waits
    name = f"{queue}@{socket.gethostname()}"
    replies = app.control.inspect(destination=[name], timeout=1).active() or {}
    return replies.get(name) == []


def kill(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def test_a_worker_killed_mid_batch_leaves_whole_schedules_and_the_scan_completes_them(seeds):
    from trials.visits import tasks

    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database server (PostgreSQL), not a per-process SQLite file")
    site = Site.objects.get(trial__code="ADSVF-SSC-HANDS", code="INCMNSZ")
    today = date.today()
    rows = [
        Participant(trial=site.trial, site=site, screening_number=f"K{n:04d}", subject_number=f"KS{n:04d}",
                    status=ParticipantStatus.ENROLLED, consent_date=today - timedelta(days=10),
                    screening_date=today - timedelta(days=10), enrolment_date=today - timedelta(days=n % 60))
        for n in range(300)
    ]
    QuerySet.bulk_create(Participant.objects.all(), rows)  # synthetic rows, schedules missing on purpose
    ids = list(Participant.objects.filter(trial=site.trial).values_list("pk", flat=True))
    expected = VisitDefinition.objects.filter(trial=site.trial, is_active=True).exclude(kind="screening").count()
    queue = f"faulttest-{os.getpid()}"
    worker = start_worker(queue)
    try:
        tasks.schedule_batch.apply_async(args=[ids], queue=queue)
        # Kill it once some schedules exist and before all do.
        wait_for(lambda: Visit.objects.filter(participant__in=ids).values("participant").distinct().count() >= 20, timeout=120)
        kill(worker)
        scheduled = Visit.objects.filter(participant__in=ids).values("participant").distinct().count()
        assert scheduled < len(ids), "the batch finished before the kill: make it longer"
        worker = start_worker(queue)
        # The unacknowledged message is not redelivered before the visibility timeout: the scan
        # (schedule_scan, beat's periodic task) finds what is missing and enqueues it, here on
        # the private queue.
        for participant_id in tasks.schedule.participants_missing_visits():
            tasks.schedule_participant.apply_async(args=[participant_id], queue=queue)
        wait_for(lambda: not list(tasks.schedule.participants_missing_visits()), timeout=180)
    finally:
        if worker.poll() is None:
            kill(worker)
    counts = Visit.objects.filter(participant__in=ids).values("participant", "definition").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in counts)  # no duplicates
    per_participant = Visit.objects.filter(participant__in=ids).values("participant").annotate(n=Count("id"))
    assert {row["n"] for row in per_participant} == {expected} and len(per_participant) == len(ids)  # no gaps


def test_reminders_lost_with_the_broker_are_sent_by_the_next_scan_and_never_twice(demo_users):
    """Queued digests vanish (as when Redis restarts without persistence); the next beat tick's
    scan enqueues them again; each reminder is logged, and so sent, once."""
    from edc.celery import app
    from trials.demo.participants import participant_register
    from trials.visits import reminders, tasks
    from trials.visits.models import ReminderLog
    from trials.visits.schedule import visit_states_refresh

    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database server (PostgreSQL)")
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    participant_register(site=site, user=system_user(), consent_date=date.today() - timedelta(days=70), anchor_date=date.today() - timedelta(days=60))
    visit_states_refresh()
    coordinators = reminders.coordinators_to_remind()
    queue = f"remindertest-{os.getpid()}"
    # Tick 1: the scan's messages wait in the broker, no worker yet ... and the broker loses them.
    for user_id in coordinators:
        tasks.reminder_digest.apply_async(args=[user_id], queue=queue)
    with app.connection_for_write() as conn:
        assert conn.default_channel.queue_purge(queue) == len(coordinators)  # all of tick 1 lost
    assert not ReminderLog.objects.exists()
    worker = start_worker(queue)
    try:
        # Tick 2 (and a duplicated tick 3): the scan enqueues the digests again.
        for _tick in range(2):
            for user_id in coordinators:
                tasks.reminder_digest.apply_async(args=[user_id], queue=queue)
        toulouse = get_user_model().objects.get(username="coordinator.toulouse")
        wait_for(lambda: ReminderLog.objects.filter(user=toulouse).exists(), timeout=120)
        expected = {(visit.pk, reason) for visit, reason in reminders.reminder_items(toulouse)}
        wait_for(lambda: set(ReminderLog.objects.filter(user=toulouse).values_list("visit_id", "reason")) == expected, timeout=60)
        wait_for(lambda: drained(queue), timeout=60)  # the duplicated tick is done too
    finally:
        kill(worker)
    logged = list(ReminderLog.objects.filter(user=toulouse).values_list("visit_id", "reason", "day"))
    assert len(logged) == len(set(logged)) == len(expected) > 0  # each reminder once
