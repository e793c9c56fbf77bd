"""Operational rows that are not trial data: worker heartbeats for the health page."""

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
