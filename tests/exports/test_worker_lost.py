"""A worker node SIGKILLed mid-export, on PostgreSQL with real Redis and real Celery workers (issue 22):
the export's heartbeat stops, the stale scan queues it again, another worker finishes it, and the
killed worker's own message, delivered again later by Redis (its visibility timeout, short here),
does nothing: one file, one "Export finished", every attempt in the job's history."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from edc.audit import system_user
from edc.celery import app
from tests.conftest import SEEDS, wait_for
from tests.exports.conftest import user
from trials.exports import services
from trials.exports.models import ExportJob, ExportState
from trials.protocol.loader import protocol_load
from trials.protocol.models import Trial

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) and PostgreSQL: .ci/run sets both"),
]

TASK = "trials.exports.tasks.export_run_task"


def start_worker(queue: str, exports: Path, log: Path, *, also: str = "", **extra: str) -> subprocess.Popen:
    """A worker node of our own on a private queue, writing into this test database and storage."""
    settings = connection.settings_dict
    url = f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    env = {
        **os.environ, "DATABASE_URL": url, "REPLICA_DATABASE_URL": url, "DB_CONN_MAX_AGE": "0",
        "EXPORT_ROOT": str(exports), "EXPORT_HEARTBEAT_SECONDS": "1", **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "edc", "worker", "-Q", ",".join(filter(None, [queue, also])), "--pool=solo", "--loglevel=INFO",
         "--hostname", f"{queue}-{len(extra)}@%h"],
        env=env, start_new_session=True, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def kill(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def unacked(queue: str) -> int:
    """Messages delivered to a worker and not acknowledged (kombu's Redis `unacked` hash)."""
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        return sum(1 for raw in client.hvals("unacked") if queue.encode() in raw)


def waiting(queue: str) -> int:
    with app.connection_for_read() as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).message_count
        except conn.channel_errors:
            return 0  # Redis keeps no empty queue


@pytest.fixture
def private_route(request):  # noqa: ANN001, ANN201
    """Exports of this test go to a queue only its own workers read (routing, not a mock)."""
    queue = f"exportlost-{os.getpid()}"
    old = app.conf.task_routes
    app.conf.update(task_routes={**old, TASK: {"queue": queue}})
    yield queue
    app.conf.update(task_routes=old)
    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge(queue)
        except conn.channel_errors:
            pass


def _seed_trials_with_exports_in(settings, tmp_path):  # noqa: ANN001, ANN202
    """The seed trials and demo participants loaded, export files written under tmp_path/exports
    (a folder the worker processes share); skipped where no database server is (SQLite)."""
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database server (PostgreSQL)")
    exports = tmp_path / "exports"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(exports)}},
    }
    protocol_load([SEEDS], user=system_user())
    call_command("load_demo", verbosity=0)  # with the synthetic participants
    return exports


def test_a_worker_killed_mid_export_is_replaced_and_nothing_is_done_twice(settings, tmp_path, private_route) -> None:  # noqa: ANN001
    queue, exports = private_route, _seed_trials_with_exports_in(settings, tmp_path)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]

    first = start_worker(queue, exports, logs[0])
    second = None
    try:
        job = services.export_request(user=user("datamanager"), format="casebooks", trial=Trial.objects.get(code="ASC-DU"))
        # Kill the node once the export runs (claimed, a heartbeat written) and before it ends.
        wait_for(lambda: ExportJob.objects.filter(pk=job.pk, state=ExportState.RUNNING).exists(), timeout=120, interval=0.02)
        kill(first)
        job.refresh_from_db()
        assert job.state == ExportState.RUNNING and job.attempts == 1, "the export ended before the kill: make it longer"
        assert unacked(queue) == 1  # its message: delivered, never acknowledged
        assert list((exports / ".partial").glob(services._partial_prefix(job.pk, 1) + "*"))  # and its partial file

        # The other node; its Redis visibility timeout is short, so the killed node's message comes back too.
        second = start_worker(queue, exports, logs[1], CELERY_VISIBILITY_TIMEOUT_SECONDS="3")
        silent = timezone.now() + timedelta(minutes=5, seconds=1)  # EXPORT_HEARTBEAT_TIMEOUT_MINUTES = 5
        with time_machine.travel(silent, tick=True):
            assert services.exports_stale_requeue() == {"requeued": 1, "failed": 0}
        job = wait_for(lambda: ExportJob.objects.filter(pk=job.pk, state__in=[ExportState.DONE, ExportState.FAILED]).first(),
                       timeout=180)
        assert job.state == ExportState.DONE, job.error
        # The old message, redelivered, is consumed and changes nothing.
        wait_for(lambda: unacked(queue) == 0 and waiting(queue) == 0, timeout=120)
        wait_for(lambda: logs[1].read_text().count("succeeded in") >= 2, timeout=60)
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                kill(worker)

    job.refresh_from_db()
    log = logs[1].read_text()
    ended = [line for line in log.splitlines() if "succeeded in" in line]
    # Node B ran the new message (True) and the killed node's old one (False: nothing to do).
    assert sum(line.endswith(": True") for line in ended) == 1 and sum(line.endswith(": False") for line in ended) >= 1, log[-3000:]
    reasons = list(job.history.order_by("history_id").values_list("history_change_reason", flat=True))
    assert reasons == [
        "Export requested (blinded)", "Export started",
        "Export queued again: worker lost (no heartbeat), attempt 1 abandoned", "Export started (attempt 2)", "Export finished",
    ]
    assert job.state == ExportState.DONE and job.attempts == 2
    files = sorted(p.name for p in (exports / str(job.pk)).iterdir())
    assert files == [job.file_name.rsplit("/", 1)[-1]]  # one file
    assert not list((exports / ".partial").glob(f"export-{job.pk}-*"))  # no partial file left
    assert services._sha256(str(exports / job.file_name)) == (job.sha256, job.size)


def test_an_export_whose_database_connection_is_lost_is_queued_again_and_finishes_once(settings, tmp_path, private_route) -> None:  # noqa: ANN001
    """The lab's drill: a hot standby ended a running export's snapshot connection (a recovery
    conflict), and the export failed. Now the attempt is given up and the job queued again; the
    next attempt writes the one file. Here the snapshot's backend is terminated for real
    (pg_terminate_backend, as the standby does)."""
    queue, exports = private_route, _seed_trials_with_exports_in(settings, tmp_path)

    # Where the worker itself sends the job again (its own routes): a reports queue of its own, so that
    # no other worker reading "reports" (CI's) takes attempt 2 into another storage.
    reports = f"{queue}-reports"
    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge(reports)  # nothing left from another run of this test
        except conn.channel_errors:
            pass
    worker = start_worker(queue, exports, tmp_path / "worker.log", also=reports, CELERY_REPORTS_QUEUE=reports)
    try:
        job = services.export_request(user=user("datamanager"), format="casebooks", trial=Trial.objects.get(code="ASC-DU"))
        wait_for(lambda: ExportJob.objects.filter(pk=job.pk, state=ExportState.RUNNING).exists(), timeout=120, interval=0.02)

        def snapshot_backends() -> list[int]:  # the worker's open read transaction (progress and heartbeat autocommit)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND xact_start IS NOT NULL AND backend_type = 'client backend'"
                )
                return [row[0] for row in cursor.fetchall()]

        pids = wait_for(snapshot_backends, timeout=30, interval=0.02)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        job = wait_for(lambda: ExportJob.objects.filter(pk=job.pk, state__in=[ExportState.DONE, ExportState.FAILED]).first(),
                       timeout=240)
    finally:
        if worker.poll() is None:
            kill(worker)
    assert job.state == ExportState.DONE, job.error
    reasons = list(job.history.order_by("history_id").values_list("history_change_reason", flat=True))
    assert reasons[:2] == ["Export requested (blinded)", "Export started"]
    assert reasons[2].startswith("Export queued again: database connection lost") and reasons[2].endswith("attempt 1 abandoned")
    assert reasons[3:] == ["Export started (attempt 2)", "Export finished"] and job.attempts == 2
    assert sorted(p.name for p in (exports / str(job.pk)).iterdir()) == [job.file_name.rsplit("/", 1)[-1]]
    assert not list((exports / ".partial").glob(f"export-{job.pk}-*"))
