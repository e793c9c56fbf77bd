"""Health of the running system (database, cache, the Celery round trip) and user preferences."""

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.ops.models import UserPreference, WorkerHeartbeat


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


def user_language_set(*, user, language: str) -> UserPreference:  # noqa: ANN001 - any AUTH_USER_MODEL
    """Remember the interface language a user chose (a code of settings.LANGUAGES)."""
    if language not in dict(settings.LANGUAGES):
        raise ValidationError(_("Unknown language: %(code)s.") % {"code": language})
    preference, _created = UserPreference.objects.update_or_create(user=user, defaults={"language": language})
    return preference


def user_language(user) -> str:  # noqa: ANN001
    """The interface language a user chose, or "" if she never chose one."""
    preference = UserPreference.objects.filter(user=user).only("language").first()
    return preference.language if preference else ""
