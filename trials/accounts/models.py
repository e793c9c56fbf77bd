"""Rows about accounts, not trial data: the login audit and refused password re-entries."""

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.utils.translation import gettext_lazy as _


class LoginEventKind(models.TextChoices):
    LOGIN = "login", _("Logged in")
    LOGOUT = "logout", _("Logged out")
    FAILED = "failed", _("Failed login")
    LOCKED_OUT = "locked_out", _("Locked out")
    UNLOCKED = "unlocked", _("Unlocked by an administrator")
    PIN_SET = "pin_set", _("Staff PIN set")
    PIN_REMOVED = "pin_removed", _("Staff PIN removed")
    PIN_FAILED = "pin_failed", _("Wrong staff PIN")
    PIN_LOCKED = "pin_locked", _("Staff PIN locked")


class LoginEvent(models.Model):
    """One login, logout, failed login or lockout (21 CFR 11.300(d): attempts at unauthorized use
    are detected and reported). Written once, never changed: the admin shows it read-only."""

    kind = models.CharField(_("event"), max_length=20, choices=LoginEventKind.choices)
    at = models.DateTimeField(_("at"), db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("user")
    )
    username = models.CharField(_("user name typed"), max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("browser"), max_length=500, blank=True)
    detail = models.CharField(_("detail"), max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = _("login event")
        verbose_name_plural = _("login audit")
        indexes = [models.Index(fields=["user", "at"], name="login_event_user_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.username or self.user} ({self.at:%Y-%m-%d %H:%M} UTC)"


class PasswordReentryFailure(models.Model):
    """A wrong password re-entered to confirm an act (emergency unblinding, a cohort decision):
    three within the window block that act for the user (21 CFR 11.300(d))."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("user"))
    purpose = models.CharField(_("act"), max_length=40)
    at = models.DateTimeField(_("at"))

    class Meta:
        ordering = ["-at"]
        verbose_name = _("refused password re-entry")
        verbose_name_plural = _("refused password re-entries")
        indexes = [models.Index(fields=["user", "purpose", "at"], name="reentry_failure_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} – {self.purpose} ({self.at:%Y-%m-%d %H:%M} UTC)"


class AccountState(models.Model):
    """What an account must do before working: change a password an administrator set."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_state", verbose_name=_("user")
    )
    must_change_password = models.BooleanField(_("must change the password at next login"), default=False)
    password_changed_at = models.DateTimeField(_("password last changed"), null=True, blank=True)
    # Raised by "end all my other sessions": a session logged in under an older value is ended.
    session_generation = models.PositiveIntegerField(_("session generation"), default=0)

    class Meta:
        verbose_name = _("account state")
        verbose_name_plural = _("account states")

    def __str__(self) -> str:
        return f"{self.user}"


class StaffPin(models.Model):
    """A staff member's short PIN (4-8 digits) to take a tablet back from participant mode.

    Only its hash is kept (Django's password hashers, like the password). Wrong PINs are counted:
    after settings.EDC_PIN_FAILURE_LIMIT in a row the PIN is locked for EDC_PIN_LOCKOUT_MINUTES
    (the password still works). Setting, removing, wrong PINs and lockouts are written to the login
    audit (LoginEvent)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_pin", verbose_name=_("user"))
    pin_hash = models.CharField(_("PIN hash"), max_length=256)
    set_at = models.DateTimeField(_("set at"))
    failed_attempts = models.PositiveSmallIntegerField(_("wrong PINs in a row"), default=0)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        verbose_name = _("staff PIN")
        verbose_name_plural = _("staff PINs")

    def __str__(self) -> str:
        return f"{self.user}"


class UserSession(AbstractBaseSession):
    """A login session (settings.SESSION_ENGINE = trials.accounts.session_store): Django's session
    row plus the id of the user logged in, so that each request reads its session and its user
    in one query (issue 22) instead of two. The user is still read from the database on every
    request, in that query: a deactivated account or a changed password loses access on its next
    request, as with Django's own session table. Deleting a user deletes her sessions."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("user")
    )

    class Meta(AbstractBaseSession.Meta):
        verbose_name = _("session")
        verbose_name_plural = _("sessions")

    @classmethod
    def get_session_store_class(cls):  # noqa: ANN206
        from trials.accounts.session_store import SessionStore

        return SessionStore
