"""Operational rows that are not trial data: worker heartbeats for the health page, user preferences."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class WorkerHeartbeat(models.Model):
    """Written by a Celery worker on request: proves the broker → worker → database path works."""

    token = models.CharField(_("token"), max_length=64, unique=True)
    requested_at = models.DateTimeField(_("requested at"))
    answered_at = models.DateTimeField(_("answered at"))
    worker = models.CharField(_("worker"), max_length=200, blank=True)
    eager = models.BooleanField(_("ran in-process (eager)"), default=False)

    class Meta:
        ordering = ["-answered_at"]
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")

    def __str__(self) -> str:
        return f"{self.token} @ {self.answered_at:%Y-%m-%d %H:%M:%S}"


class UserPreference(models.Model):
    """What a user chose for herself, kept on the server so it follows her to every device."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preference", verbose_name=_("user")
    )
    # A code of settings.LANGUAGES (checked by user_language_set); empty: the browser's language.
    language = models.CharField(_("interface language"), max_length=10, blank=True)

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self) -> str:
        return f"{self.user} ({self.language or '-'})"
