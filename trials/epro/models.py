"""Participant-reported outcomes: personal links and the record that an entry's source is the participant.

A CRF declared `respondent: participant` is answered by the participant herself, on the site's
tablet in participant mode or through a personal link (docs/architecture.md, "ePRO"). The answers
become the visit's ordinary CrfEntry (same validation, scores, audit); `ProResponse` says that the
entry's source is the participant, how and when she completed it, which makes the entry read-only
for staff (ALCOA: a correction is a query or a new administration).
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.participants.models import Participant
from trials.visits.models import CrfEntry, Visit


class Mode(models.TextChoices):
    TABLET = "tablet", _("participant mode on the site tablet")
    LINK = "link", _("personal link")


class ProLink(AuditedModel):
    """A personal link to one questionnaire at one visit: only the SHA-256 of its token is stored.

    Bound to participant + visit + CRF, valid from `valid_from` to `expires_at` (the visit's window,
    in the site's time zone), used once (`used_at`)."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="pro_links", verbose_name=_("participant"))
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="pro_links", verbose_name=_("visit"))
    crf_code = models.CharField(_("CRF code"), max_length=40)
    token_sha256 = models.CharField(_("token SHA-256"), max_length=64, unique=True)
    valid_from = models.DateTimeField(_("valid from"))
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("answered"), null=True, blank=True)
    emailed_at = models.DateTimeField(_("e-mailed"), null=True, blank=True)
    revoked = models.BooleanField(_("revoked"), default=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("revoked by"),
    )
    revoked_reason = models.TextField(_("reason for revoking"), blank=True)
    # Stamped when the link was listed in a coordinator's reminder digest: listed once, never again.
    reminded_at = models.DateTimeField(_("reminder sent"), null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("created by"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["visit", "crf_code", "-created_at"]
        verbose_name = _("personal questionnaire link")
        verbose_name_plural = _("personal questionnaire links")

    def __str__(self) -> str:
        return f"{self.visit} – {self.crf_code} ({self.created_at:%Y-%m-%d %H:%M})"


class ProResponse(AuditedModel):
    """The participant is the source of this entry: how (tablet or link) and when she completed it."""

    entry = models.OneToOneField(CrfEntry, on_delete=models.PROTECT, related_name="pro_response", verbose_name=_("CRF entry"))
    mode = models.CharField(_("mode"), max_length=10, choices=Mode.choices)
    link = models.ForeignKey(ProLink, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("link"))
    handed_over_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=_("tablet handed over by"),
    )
    completed_at = models.DateTimeField(_("completed by the participant"))

    class Meta:
        verbose_name = _("participant-reported response")
        verbose_name_plural = _("participant-reported responses")

    def __str__(self) -> str:
        return f"{self.entry} ({self.get_mode_display()}, {self.completed_at:%Y-%m-%d %H:%M} UTC)"
