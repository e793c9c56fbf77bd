"""Writes about accounts: the login audit, and the guard on passwords re-entered to confirm an act."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.accounts.models import AccountState, LoginEvent, LoginEventKind, PasswordReentryFailure

logger = logging.getLogger("edc.security")


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind the TLS proxy (BEHIND_TLS_PROXY) the last
    address of X-Forwarded-For, the one the proxy itself appended (earlier ones the client may forge)."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR") or None


def login_event_record(*, kind: str, request: HttpRequest | None, user=None, username: str = "", detail: str = "") -> LoginEvent:  # noqa: ANN001
    """Write one row of the login audit: who, when, from which address and browser."""
    if user is not None and not username:
        username = user.get_username()
    event = LoginEvent(
        kind=kind,
        at=timezone.now(),
        user=user if user is not None and user.pk else None,
        username=(username or "")[:150],
        ip_address=client_ip(request) if request is not None else None,
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:500],
        detail=detail[:300],
    )
    event.save()
    if kind in (LoginEventKind.FAILED, LoginEventKind.LOCKED_OUT):
        logger.warning("%s: username=%s ip=%s", kind, event.username, event.ip_address)
    return event


def _reentry_blocked_until(user, purpose: str):  # noqa: ANN001, ANN202
    window = timedelta(minutes=settings.EDC_REENTRY_WINDOW_MINUTES)
    limit = settings.EDC_REENTRY_FAILURE_LIMIT
    failures = list(
        PasswordReentryFailure.objects.filter(user=user, purpose=purpose, at__gte=timezone.now() - window)
        .order_by("-at")
        .values_list("at", flat=True)[:limit]
    )
    return failures[0] + window if len(failures) >= limit else None


def password_reentry_check(*, user, password: str, purpose: str) -> None:  # noqa: ANN001
    """Confirm an act by the user's password. A wrong password is recorded; after EDC_REENTRY_FAILURE_LIMIT wrong passwords
    within the window the act is refused, even with the right password, until the window passes."""
    blocked = _reentry_blocked_until(user, purpose)
    if blocked is not None:
        raise ValidationError(
            {"password": _("Too many wrong passwords: this is blocked until %(time)s UTC.") % {"time": f"{blocked:%H:%M}"}}
        )
    if user.check_password(password or ""):
        return
    # Callers check the password before their own transaction opens, so this row stays when the
    # act is refused; inside a transaction it would roll back with the refusal (logged below anyway).
    PasswordReentryFailure.objects.create(user=user, purpose=purpose, at=timezone.now())
    logger.warning("Password re-entry refused: user=%s act=%s", user.get_username(), purpose)
    raise ValidationError({"password": _("The password is not correct.")})



def password_change_require(*, user) -> None:  # noqa: ANN001
    """The user must choose her own password at her next login (an administrator set this one)."""
    AccountState.objects.update_or_create(user=user, defaults={"must_change_password": True})


def password_changed(*, user) -> None:  # noqa: ANN001
    """The user chose her own password: nothing more is required of her."""
    AccountState.objects.update_or_create(
        user=user, defaults={"must_change_password": False, "password_changed_at": timezone.now()}
    )


def must_change_password(user) -> bool:  # noqa: ANN001
    """Whether the logged-in user must change her password before anything else."""
    return AccountState.objects.filter(user=user, must_change_password=True).exists()
