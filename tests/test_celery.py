"""The broker -> worker -> database round trip, and at-least-once delivery settings."""

import os

import pytest
from django.conf import settings
from django.db import transaction

from edc.celery import app
from edc.ops.models import WorkerHeartbeat
from edc.ops.services import heartbeat_request
from edc.ops.tasks import heartbeat_answer
from tests.conftest import wait_for

needs_worker = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="set REDIS_URL and start a Celery worker on the test database (.ci/run does both) to run this",
)


def test_at_least_once_delivery_is_configured():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] > settings.CELERY_MAX_COUNTDOWN_SECONDS


@pytest.mark.django_db(transaction=True)
def test_heartbeat_runs_in_process_when_eager():
    """The embedded default: no broker, the task runs inside the request after commit."""
    with transaction.atomic():
        token = heartbeat_request()
        assert not WorkerHeartbeat.objects.filter(token=token).exists()  # not before commit
    if settings.CELERY_TASK_ALWAYS_EAGER:
        assert WorkerHeartbeat.objects.get(token=token).eager
    else:
        heartbeat_answer.apply(kwargs={"token": "local-" + token, "requested_at": "2026-01-01T00:00:00+00:00"})
        assert WorkerHeartbeat.objects.get(token="local-" + token).eager


@pytest.mark.django_db(transaction=True)
def test_heartbeat_is_idempotent_when_delivered_twice():
    kwargs = {"token": "redelivered", "requested_at": "2026-01-01T00:00:00+00:00"}
    heartbeat_answer.apply(kwargs=kwargs)
    heartbeat_answer.apply(kwargs=kwargs)
    assert WorkerHeartbeat.objects.filter(token="redelivered").count() == 1


@needs_worker
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_heartbeat_round_trip_through_redis_and_a_real_worker():
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    with transaction.atomic():
        token = heartbeat_request()
    row = wait_for(lambda: WorkerHeartbeat.objects.filter(token=token).first(), timeout=60)
    assert row.eager is False
    assert row.worker  # the worker's host name, not this process
