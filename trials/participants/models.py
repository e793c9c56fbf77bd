"""Participants of a trial at a site. No names: only numbers; identifying items live in CRFs,
flagged `identifier`, and are left out of exports.

This is the minimal participant the CRF engine needs; screening, eligibility, consent versions,
enrolment numbering and allocation are built on it by the participants issue.
"""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.protocol.models import Site, Trial


class ParticipantStatus(models.TextChoices):
    SCREENING = "screening", _("Screening")
    SCREEN_FAILURE = "screen_failure", _("Screen failure")
    ENROLLED = "enrolled", _("Enrolled")
    ON_TREATMENT = "on_treatment", _("On treatment")
    COMPLETED = "completed", _("Completed")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", _("Lost to follow-up")
    DIED = "died", _("Died")


class Participant(AuditedModel):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="participants", verbose_name=_("trial"))
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="participants", verbose_name=_("site"))
    screening_number = models.CharField(_("screening number"), max_length=40)
    subject_number = models.CharField(_("subject number"), max_length=40, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=ParticipantStatus.choices, default=ParticipantStatus.SCREENING
    )
    consent_date = models.DateField(_("consent date"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["trial__code", "site__code", "screening_number"]
        verbose_name = _("participant")
        verbose_name_plural = _("participants")
        constraints = [
            models.UniqueConstraint(fields=["trial", "screening_number"], name="participant_screening_number_unique"),
            models.UniqueConstraint(
                fields=["trial", "subject_number"], condition=~Q(subject_number=""), name="participant_subject_number_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.subject_number or self.screening_number
