"""Personal API tokens and the log of every API call.

A token is shown once, at creation; the database keeps its first characters (to find the row) and
the SHA-256 of the whole token, so a copy of the database gives nobody a working token. Tokens are
not trial data: they are account settings (revoked, never deleted, so the call log keeps its
reference), and the log is an operational record, like the login audit.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from trials.protocol.models import Trial


class TokenScope(models.TextChoices):
    READ = "read", _("Read")
    WRITE = "write", _("Read and write")


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user"))
    name = models.CharField(_("name"), max_length=100, help_text=_("What the token is for, e.g. 'R pipeline'."))
    prefix = models.CharField(_("prefix"), max_length=12, unique=True)
    hashed = models.CharField(_("SHA-256"), max_length=64)
    scope = models.CharField(_("scope"), max_length=10, choices=TokenScope.choices, default=TokenScope.READ)
    trials = models.ManyToManyField(Trial, related_name="+", verbose_name=_("trials"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def writes(self) -> bool:
        return self.scope == TokenScope.WRITE


class ApiCall(models.Model):
    """One API request: who, with which token, what, and the answer's status."""

    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    token = models.ForeignKey(ApiToken, on_delete=models.PROTECT, null=True, blank=True, related_name="calls")
    method = models.CharField(_("method"), max_length=10)
    path = models.CharField(_("path"), max_length=500)
    query = models.CharField(_("query string"), max_length=1000, blank=True)
    status = models.PositiveSmallIntegerField(_("status"))

    class Meta:
        ordering = ["-at"]
        verbose_name = _("API call")
        verbose_name_plural = _("API calls")
