"""Two-factor authentication (TOTP, RFC 6238, with django-otp; static recovery codes).

Required (EDC_REQUIRE_2FA, on in production) for staff accounts and for every role that may see
arms, sign, unblind or export: everyone but the site coordinator. 21 CFR 11.300 and the EMA 2023
guideline on computerised systems (access control), OWASP ASVS 2.7/2.8.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from trials.accounts.models import LoginEventKind
from trials.accounts.services import login_event_record
from trials.protocol.models import Role
from trials.protocol.selectors import study_roles_for_user

RECOVERY_CODES = 10
# Roles that never see arms, sign, unblind nor export: only they may work with a password alone.
PASSWORD_ONLY_ROLES = frozenset({Role.COORDINATOR})


def second_factor_required(user) -> bool:  # noqa: ANN001
    """Whether the user must pass a second factor after her password."""
    if not settings.EDC_REQUIRE_2FA or not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    roles = set(study_roles_for_user(user).values_list("role", flat=True))
    return bool(roles - PASSWORD_ONLY_ROLES)


def totp_device_pending(user) -> TOTPDevice:  # noqa: ANN001
    """The user's authenticator being enrolled (not confirmed yet), created on first call."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


@transaction.atomic
def totp_enrol_confirm(*, request: HttpRequest, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm the pending authenticator with a code it shows; returns the new recovery codes
    (shown once), or None if the code is wrong."""
    if not device.verify_token((token or "").strip()):
        login_event_record(kind=LoginEventKind.FAILED, request=request, user=device.user, detail="second factor enrolment: wrong code")
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=device.user).exclude(pk=device.pk).delete()
    codes = recovery_codes_renew(user=device.user)
    otp_login(request, device)
    login_event_record(kind=LoginEventKind.LOGIN, request=request, user=device.user, detail="second factor enrolled")
    return codes


def recovery_codes_renew(*, user) -> list[str]:  # noqa: ANN001
    """New single-use recovery codes for a lost phone (the old ones stop working)."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    for code in codes:
        device.token_set.create(token=code)
    return codes


def second_factor_verify(*, request: HttpRequest, token: str) -> bool:
    """Check a code of the user's authenticator (or a recovery code, used up) and mark the session verified."""
    device = match_token(request.user, (token or "").strip().replace(" ", ""))
    if device is None:
        login_event_record(kind=LoginEventKind.FAILED, request=request, user=request.user, detail="second factor: wrong code")
        return False
    otp_login(request, device)
    detail = "second factor: recovery code" if isinstance(device, StaticDevice) else "second factor"
    login_event_record(kind=LoginEventKind.LOGIN, request=request, user=request.user, detail=detail)
    return True


@transaction.atomic
def second_factor_reset(*, user, by, request: HttpRequest | None = None) -> None:  # noqa: ANN001
    """An administrator removes a user's lost authenticator and recovery codes: she enrols anew at
    her next login. Written to the login audit with the administrator's name."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    login_event_record(
        kind=LoginEventKind.UNLOCKED, request=request, user=user, detail=f"second factor reset by {by.get_username()}"
    )


def has_confirmed_device(user) -> bool:  # noqa: ANN001
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()
