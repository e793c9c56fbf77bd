"""The schedule against a real Celery worker and Redis: a worker killed (SIGKILL) in the middle of
a schedule batch, then restarted, leaves every participant with exactly her visits."""

import os
import signal
import subprocess
import sys
from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.models import Count, QuerySet

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
