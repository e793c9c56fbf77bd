"""The protocol as data: trials, sites, arms/cohorts, criteria, visit schedule, CRF library, roles.

Rows are written by `trials.protocol.loader` (from seeds/) and `trials.protocol.services`;
every model is audited (edc.audit.AuditedModel) and never deleted: a row that leaves the
protocol is deactivated (`is_active=False`) with a reason.
"""

from datetime import date
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel


class Phase(models.TextChoices):
    EARLY_1 = "early_1", _("Early phase 1")
    PHASE_1 = "1", _("Phase 1")
    PHASE_1_2 = "1_2", _("Phase 1/2")
    PHASE_2 = "2", _("Phase 2")
    PHASE_2_3 = "2_3", _("Phase 2/3")
    PHASE_3 = "3", _("Phase 3")
    PHASE_4 = "4", _("Phase 4")
    NA = "na", _("Not applicable")


class Design(models.TextChoices):
    RANDOMIZED = "randomized", _("Randomized")
    OPEN_LABEL = "open_label", _("Open-label")
    DOSE_ESCALATION = "dose_escalation", _("Dose escalation")
    REGISTRY = "registry", _("Registry")


class StudyType(models.TextChoices):
    INTERVENTIONAL = "interventional", _("Interventional")
    OBSERVATIONAL = "observational", _("Observational")


class Masking(models.TextChoices):
    NONE = "none", _("None (open label)")
    SINGLE = "single", _("Single")
    DOUBLE = "double", _("Double")
    TRIPLE = "triple", _("Triple")
    QUADRUPLE = "quadruple", _("Quadruple")


class RecruitmentStatus(models.TextChoices):
    NOT_YET_RECRUITING = "not_yet_recruiting", _("Not yet recruiting")
    RECRUITING = "recruiting", _("Recruiting")
    ENROLLING_BY_INVITATION = "enrolling_by_invitation", _("Enrolling by invitation")
    ACTIVE_NOT_RECRUITING = "active_not_recruiting", _("Active, not recruiting")
    SUSPENDED = "suspended", _("Suspended")
    TERMINATED = "terminated", _("Terminated")
    COMPLETED = "completed", _("Completed")
    WITHDRAWN = "withdrawn", _("Withdrawn")


# ClinicalTrials.gov masked parties that are people using the EDC (the participant never is).
STAFF_MASKED_ROLES = frozenset({"care_provider", "investigator", "outcomes_assessor"})


class Trial(AuditedModel):
    code = models.CharField(_("code"), max_length=40, unique=True)
    title = models.TextField(_("title"))
    short_title = models.CharField(_("short title"), max_length=200, blank=True)
    acronym = models.CharField(_("acronym"), max_length=40, blank=True)
    nct_id = models.CharField(_("ClinicalTrials.gov number"), max_length=11, blank=True)
    org_study_id = models.CharField(_("sponsor's study id"), max_length=100, blank=True)
    other_ids = models.JSONField(_("other registry ids"), default=dict, blank=True)
    phase = models.CharField(_("phase"), max_length=10, choices=Phase.choices)
    study_type = models.CharField(_("study type"), max_length=20, choices=StudyType.choices)
    design = models.CharField(_("design"), max_length=20, choices=Design.choices)
    intervention_model = models.CharField(_("intervention model"), max_length=20, blank=True)
    primary_purpose = models.CharField(_("primary purpose"), max_length=100, blank=True)
    masking = models.CharField(_("masking"), max_length=10, choices=Masking.choices)
    masked_roles = models.JSONField(_("masked roles"), default=list, blank=True)
    target_enrolment = models.PositiveIntegerField(_("target enrolment"))
    status = models.CharField(_("status"), max_length=30, choices=RecruitmentStatus.choices)
    start_date = models.DateField(_("start date"), null=True, blank=True)
    completion_date = models.DateField(_("completion date"), null=True, blank=True)
    sponsor = models.CharField(_("sponsor"), max_length=200)
    principal_investigator = models.CharField(_("principal investigator"), max_length=200, blank=True)
    conditions = models.JSONField(_("conditions"), default=list)
    min_age_years = models.PositiveSmallIntegerField(_("minimum age (years)"), null=True, blank=True)
    max_age_years = models.PositiveSmallIntegerField(_("maximum age (years)"), null=True, blank=True)
    sex = models.CharField(_("eligible sex"), max_length=10, default="all")
    healthy_volunteers = models.BooleanField(_("accepts healthy volunteers"), default=False)
    follow_up_weeks = models.PositiveSmallIntegerField(_("follow-up (weeks)"), null=True, blank=True)
    summary = models.TextField(_("summary"), blank=True)
    source = models.TextField(_("source of the protocol facts"), blank=True)
    numbering = models.JSONField(_("participant number patterns"), default=dict)
    randomization = models.JSONField(_("randomization settings"), null=True, blank=True)
    escalation = models.JSONField(_("dose-escalation settings"), null=True, blank=True)
    safety_reporting = models.JSONField(
        _("safety reporting"), default=dict, blank=True,
        help_text=_("The sponsor's safety contacts and when reporting-clock reminders go out."),
    )
    eligibility = models.JSONField(_("eligibility data sources"), default=dict, blank=True)
    score_settings = models.JSONField(_("score settings"), default=dict, blank=True)
    # Data-quality rules over stored data (trial file `quality_rules:`, run by trials.monitoring.quality).
    quality_rules = models.JSONField(_("data-quality rules"), default=list, blank=True)
    # Participant-reported outcomes (trial file `epro:`): e.g. {"show_initials": true}.
    epro_settings = models.JSONField(_("ePRO settings"), default=dict, blank=True)
    source_file = models.CharField(_("loaded from"), max_length=300, blank=True)
    source_sha256 = models.CharField(_("file SHA-256"), max_length=64, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("trial")
        verbose_name_plural = _("trials")
        constraints = [
            models.UniqueConstraint(fields=["nct_id"], condition=~Q(nct_id=""), name="trial_nct_id_unique"),
            models.CheckConstraint(
                condition=Q(completion_date__isnull=True) | Q(start_date__isnull=True) | Q(completion_date__gte=models.F("start_date")),
                name="trial_completion_after_start",
            ),
        ]

    def __str__(self) -> str:
        return self.short_title or self.code

    @property
    def is_blinded(self) -> bool:
        """Whether the trial's staff are masked to the allocated arm.

        Only the participant masked (a single-blind dose escalation): staff know the cohort.
        Any of care provider, investigator or outcomes assessor masked: every EDC role but the
        DSMB / unblinded statistician is blinded.
        """
        return bool(set(self.masked_roles) & STAFF_MASKED_ROLES)

    @property
    def dlt_window_days(self) -> int | None:
        return (self.escalation or {}).get("dlt_window_days")


class Site(AuditedModel):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="sites", verbose_name=_("trial"))
    code = models.CharField(_("code"), max_length=40)
    name = models.CharField(_("name"), max_length=200)
    city = models.CharField(_("city"), max_length=100)
    country = models.CharField(_("country"), max_length=2, help_text=_("ISO 3166 alpha-2 code"))
    time_zone = models.CharField(_("time zone"), max_length=64, help_text=_("IANA name, e.g. Europe/Paris"))
    recruitment_status = models.CharField(_("recruitment status"), max_length=30, choices=RecruitmentStatus.choices)
    principal_investigator = models.CharField(_("principal investigator"), max_length=200, blank=True)
    language = models.CharField(
        _("language"), max_length=5, blank=True, choices=settings.LANGUAGES,
        help_text=_("Default language of the site's participant questionnaires and of its users who never chose one."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial__code", "code"]
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="site_code_unique_per_trial")]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"

    def today(self) -> date:
        """Today at the site: every date rule (visit windows, "not in the future") uses the site's
        local date, not the server's (the seed trials run in France, Mexico and Spain)."""
        return timezone.localdate(timezone=ZoneInfo(self.time_zone))


class ArmType(models.TextChoices):
    EXPERIMENTAL = "experimental", _("Experimental")
    PLACEBO_COMPARATOR = "placebo_comparator", _("Placebo comparator")
    ACTIVE_COMPARATOR = "active_comparator", _("Active comparator")
    NO_INTERVENTION = "no_intervention", _("No intervention")
    SHAM_COMPARATOR = "sham_comparator", _("Sham comparator")
    OTHER = "other", _("Other")


class Arm(AuditedModel):
    """An arm of the trial; a dose-escalation cohort is an arm with a dose, a unit and an order."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="arms", verbose_name=_("trial"))
    code = models.CharField(_("code"), max_length=40)
    label = models.CharField(_("label"), max_length=200)
    arm_type = models.CharField(_("type"), max_length=30, choices=ArmType.choices)
    description = models.TextField(_("description"), blank=True)
    intervention = models.TextField(_("intervention"), blank=True)
    planned_size = models.PositiveIntegerField(_("planned size"), null=True, blank=True)
    dose = models.DecimalField(_("dose"), max_digits=14, decimal_places=4, null=True, blank=True)
    dose_unit = models.CharField(_("dose unit"), max_length=60, blank=True)
    order = models.PositiveSmallIntegerField(_("cohort order"), null=True, blank=True)
    administration_days = models.JSONField(_("administration days"), default=list, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial__code", "order", "code"]
        verbose_name = _("arm / cohort")
        verbose_name_plural = _("arms / cohorts")
        constraints = [
            models.UniqueConstraint(fields=["trial", "code"], name="arm_code_unique_per_trial"),
            models.UniqueConstraint(
                fields=["trial", "order"], condition=Q(order__isnull=False), name="arm_cohort_order_unique_per_trial"
            ),
            models.CheckConstraint(condition=Q(dose__isnull=True) | ~Q(dose_unit=""), name="arm_dose_has_unit"),
        ]

    def __str__(self) -> str:
        return f"{self.code} – {self.label}"


class ConsentDocument(AuditedModel):
    """An approved version of the trial's informed-consent document.

    Participants consent to a version; when a newer version is approved, those on an older one
    must re-consent before further data entry. Versions come from the trial YAML, and the data
    manager adds newly approved ones in the admin.
    """

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="consent_documents", verbose_name=_("trial"))
    version = models.CharField(_("version"), max_length=40)
    title = models.CharField(_("title"), max_length=200, blank=True)
    approved_on = models.DateField(_("approved on"), help_text=_("Date of the ethics committee approval."))
    requires_reconsent = models.BooleanField(
        _("requires re-consent"),
        default=True,
        help_text=_("Participants who consented to an earlier version must consent to this one before further data entry."),
    )
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial__code", "approved_on", "version"]
        verbose_name = _("consent document version")
        verbose_name_plural = _("consent document versions")
        constraints = [models.UniqueConstraint(fields=["trial", "version"], name="consent_version_unique_per_trial")]

    def __str__(self) -> str:
        return f"{self.trial.code} v{self.version}"


class CriterionKind(models.TextChoices):
    INCLUSION = "inclusion", _("Inclusion")
    EXCLUSION = "exclusion", _("Exclusion")


class CriterionLevel(models.TextChoices):
    PARTICIPANT = "participant", _("Participant")
    LESION = "lesion", _("Lesion (answered per lesion)")


class Criterion(AuditedModel):
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="criteria", verbose_name=_("trial"))
    code = models.CharField(_("code"), max_length=40)
    kind = models.CharField(_("kind"), max_length=10, choices=CriterionKind.choices)
    text = models.TextField(_("text"))
    level = models.CharField(_("level"), max_length=12, choices=CriterionLevel.choices, default=CriterionLevel.PARTICIPANT)
    expression = models.TextField(
        _("CEL expression"), blank=True, help_text=_("Evaluated over screening data; true when the criterion applies.")
    )
    applies_when = models.TextField(
        _("applies when (CEL)"), blank=True,
        help_text=_("Evaluated over screening data; false makes the criterion not applicable to the participant (empty: applies to everyone)."),
    )
    order = models.PositiveSmallIntegerField(_("order"), default=0)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial__code", "order"]
        verbose_name = _("eligibility criterion")
        verbose_name_plural = _("eligibility criteria")
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="criterion_code_unique_per_trial")]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_kind_display()})"


class CrfDefinition(AuditedModel):
    """One version of a CRF of the shared library; a changed CRF file becomes a new version."""

    code = models.CharField(_("code"), max_length=40)
    version = models.PositiveIntegerField(_("version"))
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    source = models.TextField(_("published source"), blank=True)
    definition = models.JSONField(_("definition"), help_text=_("The validated CRF file, as loaded."))
    content_sha256 = models.CharField(_("content SHA-256"), max_length=64)
    source_file = models.CharField(_("loaded from"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["code", "-version"]
        verbose_name = _("CRF definition")
        verbose_name_plural = _("CRF definitions")
        constraints = [
            models.UniqueConstraint(fields=["code", "version"], name="crf_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="crf_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


class FieldType(models.TextChoices):
    TEXT = "text", _("Text")
    LONG_TEXT = "long_text", _("Long text")
    INTEGER = "integer", _("Integer")
    DECIMAL = "decimal", _("Decimal")
    DATE = "date", _("Date")
    DATETIME = "datetime", _("Date and time")
    SINGLE_CHOICE = "single_choice", _("Single choice")
    MULTIPLE_CHOICE = "multiple_choice", _("Multiple choice")
    YES_NO = "yes_no", _("Yes / no")
    SCALE = "scale", _("Scale")
    CALCULATED = "calculated", _("Calculated")
    REPEATING_GROUP = "repeating_group", _("Repeating group")
    DESCRIPTIVE = "descriptive", _("Descriptive text")


class FieldDefinition(AuditedModel):
    """An item of a CRF version; fields of a repeating group point at the group as `parent`."""

    crf = models.ForeignKey(CrfDefinition, on_delete=models.PROTECT, related_name="fields", verbose_name=_("CRF"))
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children", verbose_name=_("group")
    )
    name = models.CharField(_("name"), max_length=63)
    label = models.TextField(_("label"))
    field_type = models.CharField(_("type"), max_length=20, choices=FieldType.choices)
    required = models.BooleanField(_("required"), default=False)
    help_text = models.TextField(_("help text"), blank=True)
    unit = models.CharField(_("unit"), max_length=40, blank=True)
    min_value = models.DecimalField(_("minimum"), max_digits=20, decimal_places=6, null=True, blank=True)
    max_value = models.DecimalField(_("maximum"), max_digits=20, decimal_places=6, null=True, blank=True)
    precision = models.PositiveSmallIntegerField(_("decimal places"), null=True, blank=True)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    widget = models.CharField(_("widget"), max_length=20, blank=True)
    show_if = models.TextField(_("show if (CEL)"), blank=True)
    checks = models.JSONField(_("edit checks"), default=list, blank=True)
    calculation = models.JSONField(_("calculation"), null=True, blank=True)
    section = models.CharField(_("section"), max_length=200, blank=True)
    identifier = models.BooleanField(
        _("identifies the participant"), default=False, help_text=_("Left out of exports by default.")
    )
    min_rows = models.PositiveSmallIntegerField(_("minimum rows"), null=True, blank=True)
    max_rows = models.PositiveSmallIntegerField(_("maximum rows"), null=True, blank=True)
    order = models.PositiveIntegerField(_("order"))

    class Meta:
        ordering = ["crf", "order"]
        verbose_name = _("CRF field")
        verbose_name_plural = _("CRF fields")
        constraints = [
            models.UniqueConstraint(fields=["crf", "name"], name="field_name_unique_per_crf"),
            models.CheckConstraint(
                condition=Q(min_value__isnull=True) | Q(max_value__isnull=True) | Q(min_value__lte=models.F("max_value")),
                name="field_min_not_above_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.crf}: {self.name}"


class VisitAnchor(models.TextChoices):
    ENROLMENT = "enrolment", _("Enrolment")
    FIRST_TREATMENT = "first_treatment", _("First treatment")


class VisitKind(models.TextChoices):
    SCREENING = "screening", _("Screening")
    BASELINE = "baseline", _("Baseline")
    TREATMENT = "treatment", _("Treatment")
    FOLLOW_UP = "follow_up", _("Follow-up")
    END_OF_STUDY = "end_of_study", _("End of study")


class VisitDefinition(AuditedModel):
    """A planned visit: day offset from its anchor, with a window in days either side."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="visit_definitions", verbose_name=_("trial"))
    code = models.CharField(_("code"), max_length=40)
    label = models.CharField(_("label"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=VisitKind.choices, default=VisitKind.FOLLOW_UP)
    anchor = models.CharField(_("anchor"), max_length=20, choices=VisitAnchor.choices, default=VisitAnchor.ENROLMENT)
    day_offset = models.IntegerField(_("day offset from anchor"))
    window_before_days = models.PositiveSmallIntegerField(_("window before (days)"), default=0)
    window_after_days = models.PositiveSmallIntegerField(_("window after (days)"), default=0)
    order = models.PositiveSmallIntegerField(_("order"))
    is_active = models.BooleanField(_("active"), default=True)
    crfs = models.ManyToManyField(CrfDefinition, through="VisitCrf", related_name="visit_definitions")

    class Meta:
        ordering = ["trial__code", "order"]
        verbose_name = _("visit definition")
        verbose_name_plural = _("visit definitions")
        constraints = [models.UniqueConstraint(fields=["trial", "code"], name="visit_code_unique_per_trial")]

    def __str__(self) -> str:
        return f"{self.code} – {self.label}"


class VisitCrf(AuditedModel):
    """A CRF due at a visit, pointing at the CRF version new entries are made with."""

    visit_definition = models.ForeignKey(
        VisitDefinition, on_delete=models.PROTECT, related_name="visit_crfs", verbose_name=_("visit")
    )
    crf = models.ForeignKey(CrfDefinition, on_delete=models.PROTECT, related_name="visit_crfs", verbose_name=_("CRF"))
    crf_code = models.CharField(_("CRF code"), max_length=40)
    required = models.BooleanField(_("required"), default=True)
    order = models.PositiveSmallIntegerField(_("order"))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["visit_definition", "order"]
        verbose_name = _("CRF at a visit")
        verbose_name_plural = _("CRFs at visits")
        constraints = [
            models.UniqueConstraint(fields=["visit_definition", "crf_code"], name="visit_crf_once_per_visit")
        ]

    def __str__(self) -> str:
        return f"{self.visit_definition.code}: {self.crf}"


class TrialCrfUse(models.TextChoices):
    LOG = "log", _("Log (repeating, kept with the participant)")
    UNSCHEDULED = "unscheduled", _("Allowed at unscheduled visits")


class TrialCrf(AuditedModel):
    """A CRF a trial uses outside its visit plan: a participant-level log (concomitant medications,
    medical history) or a CRF allowed at unscheduled visits; points at the version new entries use."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="trial_crfs", verbose_name=_("trial"))
    use = models.CharField(_("use"), max_length=20, choices=TrialCrfUse.choices)
    crf = models.ForeignKey(CrfDefinition, on_delete=models.PROTECT, related_name="trial_crfs", verbose_name=_("CRF"))
    crf_code = models.CharField(_("CRF code"), max_length=40)
    order = models.PositiveSmallIntegerField(_("order"))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial", "use", "order"]
        verbose_name = _("CRF outside the visit plan")
        verbose_name_plural = _("CRFs outside the visit plan")
        constraints = [models.UniqueConstraint(fields=["trial", "use", "crf_code"], name="trial_crf_once_per_use")]

    def __str__(self) -> str:
        return f"{self.trial.code} {self.get_use_display()}: {self.crf}"


class Role(models.TextChoices):
    COORDINATOR = "coordinator", _("Site coordinator")
    INVESTIGATOR = "investigator", _("Investigator")
    MONITOR = "monitor", _("Monitor")
    DATA_MANAGER = "data_manager", _("Data manager")
    SPONSOR = "sponsor", _("Sponsor")
    DSMB = "dsmb", _("DSMB / unblinded statistician")


# Roles that may ever see an allocated arm in a masked trial. Everyone else is blinded.
UNBLINDED_ROLES = frozenset({Role.DSMB})
# Roles that work in the Django admin.
STAFF_ROLES = frozenset({Role.MONITOR, Role.DATA_MANAGER})


class StudyRole(AuditedModel):
    """What a user may do in a trial: at one site, or at all sites when `site` is empty."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="study_roles", verbose_name=_("user")
    )
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="study_roles", verbose_name=_("trial"))
    site = models.ForeignKey(
        Site,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="study_roles",
        verbose_name=_("site"),
        help_text=_("Empty: all sites of the trial."),
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["trial__code", "user__username", "role"]
        verbose_name = _("study role")
        verbose_name_plural = _("study roles")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "trial", "role"], condition=Q(site__isnull=True), name="study_role_unique_all_sites"
            ),
            models.UniqueConstraint(
                fields=["user", "trial", "site", "role"], condition=Q(site__isnull=False), name="study_role_unique_site"
            ),
        ]

    def __str__(self) -> str:
        where = self.site.code if self.site_id else _("all sites")
        return f"{self.user} – {self.get_role_display()} – {self.trial.code} ({where})"

    @property
    def is_blinded(self) -> bool:
        return self.trial.is_blinded and self.role not in UNBLINDED_ROLES


def role_sees_arms_of_blinded_trial(trial: Trial, role: str) -> bool:
    """Whether `role` is one of the few that see the allocated arms of a trial whose staff are
    blinded: granting or ending it is logged (`UnblindedAccessEvent`) and notified. In a trial
    whose staff are not blinded every role sees the arms and there is nothing to log."""
    return trial.is_blinded and role in UNBLINDED_ROLES


class UnblindedAccessAction(models.TextChoices):
    GRANTED = "granted", _("Granted")
    REVOKED = "revoked", _("Ended")


class UnblindedAccessEvent(AuditedModel):
    """A role that sees the allocated arms of a blinded trial was granted or ended: who, by whom,
    when, why, and who was told. The trial's unblinded-access log; it names no arm."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="unblinded_access_events", verbose_name=_("trial"))
    study_role = models.ForeignKey(
        StudyRole, on_delete=models.PROTECT, related_name="unblinded_access_events", verbose_name=_("study role")
    )
    action = models.CharField(_("action"), max_length=10, choices=UnblindedAccessAction.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("by")
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now)
    reason = models.TextField(_("reason"))
    notified = models.JSONField(_("notified"), default=list, blank=True, help_text=_("E-mail addresses told of the change."))

    class Meta:
        ordering = ["trial__code", "-created_at", "-pk"]
        verbose_name = _("unblinded access log entry")
        verbose_name_plural = _("unblinded access log entries")

    def __str__(self) -> str:
        return f"{self.trial.code}: {self.study_role.user} – {self.get_action_display()} ({self.created_at:%Y-%m-%d %H:%M})"


class LabSex(models.TextChoices):
    ALL = "", _("All")
    FEMALE = "F", _("Female")
    MALE = "M", _("Male")


def _lab_test_choices() -> list[tuple[str, str]]:
    from trials.protocol.ctcae import LAB_TESTS

    return [(test.code, f"{test.code} – {test.name} ({test.unit})") for test in LAB_TESTS.values()]


class LabNormalRange(AuditedModel):
    """A site laboratory's normal range for one test, from a date on: the LLN and ULN that CTCAE
    grades relate to. A change of range is a new row with a later `effective_from` (the old one
    keeps grading the samples taken before it); a wrong row is deactivated with a reason.
    Sex- and age-specific rows apply to those participants only; an "All" row to everyone else."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="lab_ranges", verbose_name=_("site"))
    test = models.CharField(_("test"), max_length=10, choices=_lab_test_choices)
    unit = models.CharField(
        _("unit"), max_length=20, help_text=_("The unit of the CRF item; the limits are in this unit.")
    )
    sex = models.CharField(_("sex"), max_length=1, choices=LabSex.choices, blank=True, default=LabSex.ALL)
    age_from_years = models.PositiveSmallIntegerField(_("from age (years)"), default=0)
    age_to_years = models.PositiveSmallIntegerField(
        _("to age (years, excluded)"), default=150, help_text=_("The range applies from the first age up to, not including, this one.")
    )
    lln = models.DecimalField(_("lower limit of normal (LLN)"), max_digits=10, decimal_places=3, null=True, blank=True)
    uln = models.DecimalField(_("upper limit of normal (ULN)"), max_digits=10, decimal_places=3, null=True, blank=True)
    effective_from = models.DateField(_("effective from"), help_text=_("Samples taken on or after this date use this range."))
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["site__trial__code", "site__code", "test", "sex", "age_from_years", "-effective_from"]
        verbose_name = _("laboratory normal range")
        verbose_name_plural = _("laboratory normal ranges")
        constraints = [
            models.UniqueConstraint(
                fields=["site", "test", "sex", "age_from_years", "age_to_years", "effective_from"],
                name="lab_range_unique_version",
            ),
            models.CheckConstraint(
                condition=Q(lln__isnull=True) | Q(uln__isnull=True) | Q(lln__lt=models.F("uln")), name="lab_range_lln_below_uln"
            ),
            models.CheckConstraint(condition=Q(lln__isnull=False) | Q(uln__isnull=False), name="lab_range_has_a_limit"),
            models.CheckConstraint(condition=Q(age_from_years__lt=models.F("age_to_years")), name="lab_range_age_ascends"),
        ]

    def __str__(self) -> str:
        return f"{self.site.code} {self.test} {self.lln}-{self.uln} {self.unit} from {self.effective_from}"
