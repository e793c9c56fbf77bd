"""Participants of a trial at a site, from screening to the end of their participation.

No names are stored: a participant is a screening number and, once enrolled, a subject number.
Identifying items (date of birth, initials) live in CRFs, flagged `identifier`, and are left out of
exports. Every write goes through trials.participants.services, which enforces the lifecycle
(`TRANSITIONS`), eligibility, consent and allocation; the constraints here are the backstop.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.protocol.models import Arm, ConsentDocument, Criterion, Site, Trial


class ParticipantStatus(models.TextChoices):
    SCREENING = "screening", _("Screening")
    SCREEN_FAILURE = "screen_failure", _("Screen failure")
    ENROLLED = "enrolled", _("Enrolled")
    ON_TREATMENT = "on_treatment", _("On treatment")
    COMPLETED = "completed", _("Completed")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    LOST_TO_FOLLOW_UP = "lost_to_follow_up", _("Lost to follow-up")
    DIED = "died", _("Died")


S = ParticipantStatus
# The lifecycle: every status change goes through this table (services.participant_transition).
TRANSITIONS: dict[str, frozenset[str]] = {
    S.SCREENING: frozenset({S.SCREEN_FAILURE, S.ENROLLED}),
    S.SCREEN_FAILURE: frozenset(),
    S.ENROLLED: frozenset({S.ON_TREATMENT, S.COMPLETED, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP, S.DIED}),
    S.ON_TREATMENT: frozenset({S.COMPLETED, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP, S.DIED}),
    S.COMPLETED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.LOST_TO_FOLLOW_UP: frozenset({S.DIED}),
    S.DIED: frozenset(),
}
# End states that need a reason (withdrawal reason, date last seen, cause …).
REASON_REQUIRED = frozenset({S.SCREEN_FAILURE, S.WITHDRAWN, S.LOST_TO_FOLLOW_UP, S.DIED})
IN_FOLLOW_UP = frozenset({S.ENROLLED, S.ON_TREATMENT})


class Participant(AuditedModel):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="participants", verbose_name=_("trial"))
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="participants", verbose_name=_("site"))
    screening_number = models.CharField(_("screening number"), max_length=40)
    subject_number = models.CharField(_("subject number"), max_length=40, blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=ParticipantStatus.choices, default=ParticipantStatus.SCREENING
    )
    status_reason = models.TextField(_("reason for the status"), blank=True)
    status_date = models.DateField(_("status date"), null=True, blank=True)
    screening_date = models.DateField(_("screening date"), null=True, blank=True)
    # The current consent (denormalised from Consent so every CRF check reads one row).
    consent_date = models.DateField(_("consent date"), null=True, blank=True)
    consent_document = models.ForeignKey(
        ConsentDocument, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("consent version")
    )
    enrolment_date = models.DateField(_("enrolment date"), null=True, blank=True)
    first_treatment_date = models.DateField(_("first treatment date"), null=True, blank=True)
    unblinded_at = models.DateTimeField(_("emergency unblinding"), null=True, blank=True)
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
            models.CheckConstraint(
                condition=Q(status__in=[S.SCREENING, S.SCREEN_FAILURE]) | ~Q(subject_number=""),
                name="participant_enrolled_has_subject_number",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[S.SCREENING, S.SCREEN_FAILURE]) | Q(consent_date__isnull=False),
                name="participant_enrolled_has_consent",
            ),
        ]

    def __str__(self) -> str:
        return self.subject_number or self.screening_number

    @property
    def number(self) -> str:
        return self.subject_number or self.screening_number

    def allowed_transitions(self) -> frozenset[str]:
        return TRANSITIONS[self.status]


class NumberKind(models.TextChoices):
    SCREENING = "screening", _("Screening number")
    SUBJECT = "subject", _("Subject number")


class NumberSequence(models.Model):
    """The last number handed out per site and kind. Taken under the site's row lock in the same
    transaction as the participant, so numbers are unique and gap-free: a rolled-back enrolment
    rolls its number back too. Internal bookkeeping, not trial data (the numbers themselves are
    audited on the participant)."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=NumberKind.choices)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "kind"], name="number_sequence_unique")]


class Consent(AuditedModel):
    """A participant's consent to one version of the consent document."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="consents", verbose_name=_("participant"))
    document = models.ForeignKey(ConsentDocument, on_delete=models.PROTECT, related_name="consents", verbose_name=_("version"))
    consented_at = models.DateTimeField(_("consented at"))
    obtained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("obtained by")
    )
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        ordering = ["participant", "consented_at"]
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [models.UniqueConstraint(fields=["participant", "document"], name="consent_once_per_version")]

    def __str__(self) -> str:
        return f"{self.participant} – v{self.document.version}"


class CriterionAnswer(models.TextChoices):
    MET = "met", _("Met")
    NOT_MET = "not_met", _("Not met")
    UNKNOWN = "unknown", _("Unknown")
    NOT_APPLICABLE = "na", _("Not applicable")


class EligibilityAnswer(AuditedModel):
    """The answer to one criterion for a participant, or for one lesion (`lesion` = the row id of
    the lesion in the screening CRF's repeating group; empty for participant-level criteria).

    "Met" means the criterion's statement is true: an inclusion criterion must be met, an
    exclusion criterion must not be."""

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="eligibility_answers", verbose_name=_("participant")
    )
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="+", verbose_name=_("criterion"))
    lesion = models.CharField(_("lesion"), max_length=40, blank=True)
    answer = models.CharField(_("answer"), max_length=10, choices=CriterionAnswer.choices)
    automatic = models.BooleanField(_("evaluated from screening data"), default=False)
    note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        ordering = ["participant", "criterion__order", "lesion"]
        verbose_name = _("eligibility answer")
        verbose_name_plural = _("eligibility answers")
        constraints = [
            models.UniqueConstraint(fields=["participant", "criterion", "lesion"], name="eligibility_answer_once"),
        ]

    def __str__(self) -> str:
        return f"{self.participant} {self.criterion.code}{' ' + self.lesion if self.lesion else ''}: {self.answer}"


class AllocationList(AuditedModel):
    """A trial's randomization list: generated once by the data manager from a secret seed, or
    imported once by an unblinded statistician; never regenerated (services.allocation_list_generate,
    services.allocation_list_import).

    The seed is never shown on a page, in the admin or in an export: whoever knows it knows every arm."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="allocation_list", verbose_name=_("trial"))
    seed = models.CharField(
        _("seed"), max_length=64, blank=True,
        help_text=_("Secret, from the operating system's random source; empty for an imported list. Never shown."),
    )
    block_sizes = models.JSONField(_("block sizes"))
    slots_per_stratum = models.PositiveIntegerField(_("slots per stratum"))
    strata = models.JSONField(_("strata"), help_text=_("The stratum keys the list covers."))
    generated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("generated by"))
    generated_at = models.DateTimeField(_("generated at"), auto_now_add=True)
    algorithm = models.CharField(_("algorithm"), max_length=60, default="permuted-blocks/v1")
    source_sha256 = models.CharField(_("SHA-256 of the imported file"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("allocation list")
        verbose_name_plural = _("allocation lists")

    def __str__(self) -> str:
        return f"{self.trial.code} allocation list"


class AllocationSlot(AuditedModel):
    """One line of the allocation list: stratum, position, arm and the kit code blinded users see."""

    allocation_list = models.ForeignKey(AllocationList, on_delete=models.PROTECT, related_name="slots", verbose_name=_("list"))
    stratum = models.CharField(_("stratum"), max_length=200)
    sequence = models.PositiveIntegerField(_("sequence"))
    block = models.PositiveIntegerField(_("block"))
    block_size = models.PositiveSmallIntegerField(_("block size"))
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="+", verbose_name=_("arm"))
    kit_code = models.CharField(_("kit code"), max_length=20)
    # A placebo inside a dose cohort (the arm is then the cohort, known to the site): concealed like
    # an arm, never shown to a blinded role.
    placebo = models.BooleanField(_("placebo within the cohort"), default=False)

    class Meta:
        ordering = ["allocation_list", "stratum", "sequence"]
        verbose_name = _("allocation slot")
        verbose_name_plural = _("allocation slots")
        constraints = [
            models.UniqueConstraint(fields=["allocation_list", "stratum", "sequence"], name="slot_unique_position"),
            models.UniqueConstraint(fields=["allocation_list", "kit_code"], name="slot_unique_kit_code"),
        ]

    def __str__(self) -> str:
        return f"{self.stratum} #{self.sequence}"


class AllocationMethod(models.TextChoices):
    RANDOMIZATION = "randomization", _("Randomization (allocation list)")
    ASSIGNMENT = "assignment", _("Assignment by the investigator")
    COHORT = "cohort", _("Dose cohort")


class Allocation(AuditedModel):
    """The arm (or dose cohort) a participant receives. One per participant, never changed."""

    participant = models.OneToOneField(Participant, on_delete=models.PROTECT, related_name="allocation", verbose_name=_("participant"))
    arm = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="allocations", verbose_name=_("arm"))
    method = models.CharField(_("method"), max_length=20, choices=AllocationMethod.choices)
    slot = models.OneToOneField(
        AllocationSlot, on_delete=models.PROTECT, null=True, blank=True, related_name="allocation", verbose_name=_("slot")
    )
    kit_code = models.CharField(_("kit / treatment code"), max_length=20, blank=True)
    stratum = models.CharField(_("stratum"), max_length=200, blank=True)
    # Dose escalation: the signed cohort decision that opened the place she took (None: a sentinel
    # place of the first cohort). Nothing may be dated before it (services.participant_enrol).
    opened_by = models.ForeignKey(
        "CohortDecision", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("opened by the decision"),
    )
    allocated_at = models.DateTimeField(_("allocated at"), auto_now_add=True)
    allocated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("allocated by"))

    class Meta:
        ordering = ["participant"]
        verbose_name = _("allocation")
        verbose_name_plural = _("allocations")

    def __str__(self) -> str:
        # Never the arm: str() ends up in logs, admin titles and error messages.
        return f"{self.participant} – {self.kit_code or self.get_method_display()}"


class CohortDecisionKind(models.TextChoices):
    EXPAND = "expand", _("Expand the cohort")
    ESCALATE = "escalate", _("Escalate to the next dose")
    STOP = "stop", _("Stop escalation")


class CohortDecision(AuditedModel):
    """A safety review decision on a dose cohort (3+3 or sentinel then expansion): it reopens,
    closes or stops enrolment."""

    cohort = models.ForeignKey(Arm, on_delete=models.PROTECT, related_name="decisions", verbose_name=_("cohort"))
    decision = models.CharField(_("decision"), max_length=10, choices=CohortDecisionKind.choices)
    participants_reviewed = models.PositiveSmallIntegerField(_("participants reviewed"))
    dlt_count = models.PositiveSmallIntegerField(_("participants with a DLT"), null=True, blank=True)
    rationale = models.TextField(_("rationale"))
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("decided by"))
    decided_at = models.DateTimeField(_("decided at"), auto_now_add=True)

    class Meta:
        ordering = ["cohort", "decided_at"]
        verbose_name = _("cohort decision")
        verbose_name_plural = _("cohort decisions")

    def __str__(self) -> str:
        return f"{self.cohort.code}: {self.get_decision_display()}"


class Unblinding(AuditedModel):
    """An emergency unblinding of one participant: who, when, why."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="unblindings", verbose_name=_("participant"))
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested by"))
    reason = models.TextField(_("reason"))
    unblinded_at = models.DateTimeField(_("unblinded at"), auto_now_add=True)
    notified = models.JSONField(_("notified"), default=list, blank=True)

    class Meta:
        ordering = ["participant", "unblinded_at"]
        verbose_name = _("emergency unblinding")
        verbose_name_plural = _("emergency unblindings")

    def __str__(self) -> str:
        return f"{self.participant} – {self.unblinded_at:%Y-%m-%d %H:%M}"
