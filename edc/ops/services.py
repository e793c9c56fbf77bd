"""Health of the running system: database, cache and the Celery round trip."""

import uuid

from django.db import transaction
from django.utils import timezone

from edc.ops.models import WorkerHeartbeat


def heartbeat_request() -> str:
    """Enqueue a heartbeat for a worker to answer (after commit); returns its token."""
    from edc.ops.tasks import heartbeat_answer

    token = uuid.uuid4().hex
    requested_at = timezone.now().isoformat()
    transaction.on_commit(lambda: heartbeat_answer.delay(token=token, requested_at=requested_at))
    return token


def heartbeat_record(*, token: str, requested_at: str, worker: str, eager: bool) -> WorkerHeartbeat:
    """Record that a worker answered; a redelivered message finds the row and changes nothing."""
    heartbeat, _created = WorkerHeartbeat.objects.get_or_create(
        token=token,
        defaults={
            "requested_at": timezone.datetime.fromisoformat(requested_at),
            "answered_at": timezone.now(),
            "worker": worker,
            "eager": eager,
        },
    )
    return heartbeat
