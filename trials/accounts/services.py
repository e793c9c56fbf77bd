"""Writes about accounts: the login audit, the guard on passwords re-entered to confirm an act,
forced password changes and the sessions of a user."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from trials.accounts.models import AccountState, LoginEvent, LoginEventKind, PasswordReentryFailure, StaffPin

logger = logging.getLogger("edc.security")

# Session keys written at login and read by trials.accounts.middleware.
LAST_SEEN = "edc_last_seen"
SESSION_GENERATION = "edc_session_generation"
MUST_CHANGE = "edc_must_change_password"
NEEDS_SECOND_FACTOR = "edc_needs_second_factor"
# Set after the first e-signature of a session: later ones ask for the password only (21 CFR 11.200(a)(1)).
SIGNED_IN_SESSION = "edc_signed_in_session"


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
    if kind in (LoginEventKind.FAILED, LoginEventKind.LOCKED_OUT, LoginEventKind.PIN_FAILED, LoginEventKind.PIN_LOCKED):
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


def _generation_key(user_id: int) -> str:
    return f"edc:session-generation:{user_id}"


def session_generation(user_id: int) -> int:
    """The user's current session generation (from the cache; the database when the cache lost it)."""
    value = cache.get(_generation_key(user_id))
    if value is None:
        value = AccountState.objects.filter(user_id=user_id).values_list("session_generation", flat=True).first() or 0
        cache.set(_generation_key(user_id), value, None)
    return value


@transaction.atomic
def sessions_end_others(*, user, request: HttpRequest) -> None:  # noqa: ANN001
    """End every session of the user but this one: they are refused at their next request."""
    state, _created = AccountState.objects.select_for_update().get_or_create(user=user)
    state.session_generation += 1
    state.save(update_fields=["session_generation"])
    # Forget the cached value (now, and once committed, in case a request cached the old one
    # meanwhile): the next request of any session reads the new one.
    cache.delete(_generation_key(user.pk))
    transaction.on_commit(lambda: cache.delete(_generation_key(user.pk)))
    request.session[SESSION_GENERATION] = state.session_generation
    login_event_record(kind=LoginEventKind.LOGOUT, request=request, user=user, detail="ended all other sessions")


def session_start(*, request: HttpRequest, user) -> None:  # noqa: ANN001
    """At login: what the session middlewares check later without a query (last activity, the
    session generation, whether a password change is required)."""
    request.session[LAST_SEEN] = int(time.time())
    request.session[SESSION_GENERATION] = session_generation(user.pk)
    request.session[MUST_CHANGE] = must_change_password(user)
    from trials.accounts.twofactor import second_factor_required

    request.session[NEEDS_SECOND_FACTOR] = second_factor_required(user)


# --- Staff PIN --------------------------------------------------------------------------------

PIN_PATTERN = re.compile(r"^[0-9]{4,8}$")


def has_pin(user) -> bool:  # noqa: ANN001
    """Whether the user has set a staff PIN."""
    return StaffPin.objects.filter(user=user).exists()


def pin_set(*, user, pin: str, password: str, request: HttpRequest | None = None) -> StaffPin:  # noqa: ANN001
    """Set (or replace) the user's staff PIN, confirmed by her password; only its hash is kept, audited."""
    password_reentry_check(user=user, password=password, purpose="staff_pin")  # wrong passwords counted and blocked
    if not PIN_PATTERN.match(pin or ""):
        raise ValidationError({"pin": _("A PIN is 4 to 8 digits.")})
    if len(set(pin)) == 1 or pin in "0123456789" or pin in "9876543210":
        raise ValidationError({"pin": _("This PIN is too easy to guess (one digit repeated, or digits in a row).")})
    from django.contrib.auth.hashers import make_password

    with transaction.atomic():
        staff_pin, _created = StaffPin.objects.update_or_create(
            user=user, defaults={"pin_hash": make_password(pin), "set_at": timezone.now(), "failed_attempts": 0, "locked_until": None},
        )
        login_event_record(kind=LoginEventKind.PIN_SET, request=request, user=user)
    return staff_pin


def pin_remove(*, user, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    """Remove the user's staff PIN (audited); the tablet is then taken back with the password only."""
    with transaction.atomic():
        if StaffPin.objects.filter(user=user).delete()[0]:
            login_event_record(kind=LoginEventKind.PIN_REMOVED, request=request, user=user)


class PinLocked(Exception):
    """Too many wrong PINs in a row: the PIN is refused until `until` (the password still works)."""

    def __init__(self, until) -> None:  # noqa: ANN001
        super().__init__(until)
        self.until = until


def pin_check(*, user, pin: str, request: HttpRequest | None = None) -> bool:  # noqa: ANN001
    """Whether `pin` is the user's staff PIN. A wrong PIN is counted and audited; after
    EDC_PIN_FAILURE_LIMIT in a row the PIN is locked (PinLocked) for EDC_PIN_LOCKOUT_MINUTES."""
    from django.contrib.auth.hashers import check_password

    with transaction.atomic():
        staff_pin = StaffPin.objects.select_for_update().filter(user=user).first()
        if staff_pin is None:
            return False
        now = timezone.now()
        if staff_pin.locked_until and staff_pin.locked_until > now:
            raise PinLocked(staff_pin.locked_until)
        if check_password(pin or "", staff_pin.pin_hash):
            if staff_pin.failed_attempts or staff_pin.locked_until:
                staff_pin.failed_attempts, staff_pin.locked_until = 0, None
                staff_pin.save(update_fields=["failed_attempts", "locked_until"])
            return True
        staff_pin.failed_attempts += 1
        locked = staff_pin.failed_attempts >= settings.EDC_PIN_FAILURE_LIMIT
        if locked:
            staff_pin.locked_until = now + timedelta(minutes=settings.EDC_PIN_LOCKOUT_MINUTES)
            staff_pin.failed_attempts = 0
        staff_pin.save(update_fields=["failed_attempts", "locked_until"])
        login_event_record(kind=LoginEventKind.PIN_FAILED, request=request, user=user)
        if locked:
            login_event_record(
                kind=LoginEventKind.PIN_LOCKED, request=request, user=user,
                detail=f"{settings.EDC_PIN_FAILURE_LIMIT} wrong PINs in a row",
            )
    if locked:
        raise PinLocked(staff_pin.locked_until)
    return False
