"""The login audit's receivers: Django and django-axes announce logins, logouts, failures and
lockouts only as signals, so these four hand them to `services.login_event_record`."""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from trials.accounts.models import LoginEventKind
from trials.accounts.services import login_event_record, session_start


@receiver(user_logged_in, dispatch_uid="edc_login_audit_in")
def _logged_in(sender, request, user, **kwargs):  # noqa: ANN001, ANN003, ANN202
    login_event_record(kind=LoginEventKind.LOGIN, request=request, user=user)
    if request is not None and hasattr(request, "session"):
        session_start(request=request, user=user)


@receiver(user_logged_out, dispatch_uid="edc_login_audit_out")
def _logged_out(sender, request, user, **kwargs):  # noqa: ANN001, ANN003, ANN202
    if user is not None:
        reason = getattr(request, "edc_logout_reason", "")
        login_event_record(kind=LoginEventKind.LOGOUT, request=request, user=user, detail=reason)


@receiver(user_login_failed, dispatch_uid="edc_login_audit_failed")
def _login_failed(sender, credentials, request=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
    username = str(credentials.get("username") or "")
    user = get_user_model().objects.filter(username=username).first() if username else None
    login_event_record(kind=LoginEventKind.FAILED, request=request, user=user, username=username)


@receiver(user_locked_out, dispatch_uid="edc_login_audit_locked")
def _locked_out(sender, request, username=None, ip_address=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
    user = get_user_model().objects.filter(username=username).first() if username else None
    login_event_record(kind=LoginEventKind.LOCKED_OUT, request=request, user=user, username=username or "")
