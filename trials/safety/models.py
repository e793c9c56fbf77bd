"""Adverse events and what safety is computed from them: SAE reporting clocks, the coding
dictionary, and stored safety summaries.

An AdverseEvent is trial data (audited like every CRF). Seriousness follows ICH E2A, the grade
CTCAE v5; a serious, related and unexpected AE is a suspected unexpected serious adverse reaction
(SUSAR) with its own, shorter reporting clock.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from edc.audit import AuditedModel
from trials.participants.models import Participant
from trials.protocol.models import Trial


class CodingTerm(models.Model):
    """One lowest-level term of the coding dictionary the data manager loaded (e.g. a MedDRA
    extract the sponsor licenses): LLT -> PT -> SOC. Nothing licensed ships with the EDC."""

    dictionary = models.CharField(_("dictionary"), max_length=60)
    version = models.CharField(_("version"), max_length=20)
    llt_code = models.CharField(_("lowest level term code"), max_length=20)
    llt = models.CharField(_("lowest level term"), max_length=200)
    pt_code = models.CharField(_("preferred term code"), max_length=20)
    pt = models.CharField(_("preferred term"), max_length=200)
    soc_code = models.CharField(_("system organ class code"), max_length=20)
    soc = models.CharField(_("system organ class"), max_length=200)

    class Meta:
        ordering = ["llt"]
        verbose_name = _("coding term")
        verbose_name_plural = _("coding terms")
        constraints = [models.UniqueConstraint(fields=["dictionary", "version", "llt_code"], name="coding_term_unique")]
        indexes = [models.Index(fields=["llt"], name="coding_term_llt_idx")]

    def __str__(self) -> str:
        return f"{self.llt} ({self.pt} / {self.soc})"


class Seriousness(models.TextChoices):
    DEATH = "death", _("Results in death")
    LIFE_THREATENING = "life_threatening", _("Is life-threatening")
    HOSPITALISATION = "hospitalisation", _("Requires or prolongs hospitalisation")
    DISABILITY = "disability", _("Results in persistent or significant disability/incapacity")
    CONGENITAL_ANOMALY = "congenital_anomaly", _("Is a congenital anomaly/birth defect")
    OTHER_IMPORTANT = "other_important", _("Other important medical event")


class Causality(models.TextChoices):
    NOT_RELATED = "not_related", _("Not related")
    UNLIKELY = "unlikely", _("Unlikely related")
    POSSIBLE = "possible", _("Possibly related")
    PROBABLE = "probable", _("Probably related")
    DEFINITE = "definite", _("Definitely related")


RELATED = frozenset({Causality.POSSIBLE, Causality.PROBABLE, Causality.DEFINITE})


class Procedure(models.TextChoices):
    NONE = "none", _("No procedure")
    LIPOSUCTION = "liposuction", _("Liposuction")
    INJECTION = "injection", _("Injection")
    INFUSION = "infusion", _("Infusion")


class ActionTaken(models.TextChoices):
    NONE = "none", pgettext_lazy("action taken", "None")
    DOSE_DELAYED = "dose_delayed", _("Dose delayed or interrupted")
    DOSE_REDUCED = "dose_reduced", _("Dose reduced")
    WITHDRAWN = "withdrawn", _("Study treatment withdrawn")
    NOT_APPLICABLE = "not_applicable", _("Not applicable")


class Outcome(models.TextChoices):
    RECOVERED = "recovered", _("Recovered/resolved")
    RECOVERING = "recovering", _("Recovering/resolving")
    NOT_RECOVERED = "not_recovered", _("Not recovered/not resolved")
    SEQUELAE = "sequelae", _("Recovered/resolved with sequelae")
    FATAL = "fatal", _("Fatal")
    UNKNOWN = "unknown", _("Unknown")


# CTCAE v5.0 general grade definitions, shown beside the choice.
GRADE_DEFINITIONS = {
    1: _("Mild; asymptomatic or mild symptoms; clinical or diagnostic observations only; intervention not indicated."),
    2: _("Moderate; minimal, local or noninvasive intervention indicated; limiting age-appropriate instrumental ADL."),
    3: _("Severe or medically significant but not immediately life-threatening; hospitalization or prolongation of hospitalization indicated; disabling; limiting self-care ADL."),
    4: _("Life-threatening consequences; urgent intervention indicated."),
    5: _("Death related to AE."),
}


class AdverseEvent(AuditedModel):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="adverse_events", verbose_name=_("participant"))
    number = models.PositiveIntegerField(_("AE number"))
    verbatim_term = models.CharField(_("verbatim term"), max_length=300)
    coded_term = models.ForeignKey(CodingTerm, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("coded term"))
    onset_date = models.DateField(_("onset date"))
    end_date = models.DateField(_("end date"), null=True, blank=True)
    ongoing = models.BooleanField(_("ongoing"), default=True)
    grade = models.PositiveSmallIntegerField(_("CTCAE grade"), choices=[(g, str(g)) for g in range(1, 6)])
    seriousness = models.JSONField(_("seriousness criteria"), default=list, blank=True)
    serious = models.BooleanField(_("serious"), default=False)
    related_product = models.CharField(_("relation to the study product"), max_length=20, choices=Causality.choices)
    # No defaults: every answer on the AE form is an explicit choice of the site (issue 13).
    procedure = models.CharField(_("procedure"), max_length=20, choices=Procedure.choices)
    related_procedure = models.CharField(_("relation to the procedure"), max_length=20, choices=Causality.choices)
    # Expectedness against the reference safety information is the sponsor's assessment (ICH E2A
    # III.C; EU CT-3 7.2.3.3): None = not assessed yet, which counts as unexpected for the clocks.
    expected = models.BooleanField(_("expected"), null=True, blank=True, default=None)
    expectedness_assessed_at = models.DateTimeField(_("expectedness assessed at"), null=True, blank=True)
    expectedness_assessed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("expectedness assessed by"),
    )
    action_taken = models.CharField(_("action taken"), max_length=20, choices=ActionTaken.choices)
    outcome = models.CharField(_("outcome"), max_length=20, choices=Outcome.choices)
    treatment_given = models.TextField(_("treatment given"), blank=True)
    aware_at = models.DateTimeField(_("site aware at"))
    # When the site learned that the AE is serious: the 24-hour SAE clock starts here (ICH E6(R2)
    # 4.11.1), which is later than `aware_at` for an AE that becomes serious on follow-up.
    serious_aware_at = models.DateTimeField(_("site aware of the seriousness at"), null=True, blank=True)
    is_dlt = models.BooleanField(_("dose-limiting toxicity"), default=False)
    leads_to_withdrawal = models.BooleanField(_("led to withdrawal"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["participant", "number"]
        verbose_name = _("adverse event")
        verbose_name_plural = _("adverse events")
        constraints = [
            models.UniqueConstraint(fields=["participant", "number"], name="ae_number_unique"),
            models.CheckConstraint(condition=Q(grade__gte=1, grade__lte=5), name="ae_grade_1_5"),
            models.CheckConstraint(condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("onset_date")), name="ae_end_after_onset"),
            models.CheckConstraint(
                condition=Q(serious=False, serious_aware_at__isnull=True) | Q(serious=True, serious_aware_at__gte=models.F("aware_at")),
                name="ae_serious_awareness",
            ),
        ]
        indexes = [models.Index(fields=["participant", "onset_date"], name="ae_participant_onset_idx")]

    def __str__(self) -> str:
        return f"{self.participant} AE{self.number}: {self.verbatim_term}"

    @property
    def is_related(self) -> bool:
        return self.related_product in RELATED

    @property
    def is_susar(self) -> bool:
        """Serious, related and assessed unexpected."""
        return self.serious and self.is_related and self.expected is False

    @property
    def awaits_expectedness(self) -> bool:
        """Serious and related, expectedness not assessed yet: a SUSAR until the sponsor says otherwise."""
        return self.serious and self.is_related and self.expected is None


class ClockKind(models.TextChoices):
    SAE_24H = "sae_24h", _("SAE: report within 24 hours of awareness")
    SUSAR_7D = "susar_7d", _("SUSAR, fatal or life-threatening: report within 7 days")
    SUSAR_15D = "susar_15d", _("SUSAR: report within 15 days")


class ReportingClock(AuditedModel):
    """A reporting deadline started by a serious AE; stopped when the report is recorded."""

    adverse_event = models.ForeignKey(AdverseEvent, on_delete=models.PROTECT, related_name="clocks", verbose_name=_("adverse event"))
    kind = models.CharField(_("kind"), max_length=20, choices=ClockKind.choices)
    started_at = models.DateTimeField(_("started at"))
    due_at = models.DateTimeField(_("due at"))
    reported_at = models.DateTimeField(_("reported at"), null=True, blank=True)
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("reported by"))
    cancelled = models.BooleanField(_("cancelled"), default=False, help_text=_("The AE is no longer serious (or no longer a SUSAR)."))
    cancel_reason = models.CharField(_("reason for the cancellation"), max_length=500, blank=True)

    class Meta:
        ordering = ["due_at"]
        verbose_name = _("reporting clock")
        verbose_name_plural = _("reporting clocks")
        constraints = [models.UniqueConstraint(fields=["adverse_event", "kind"], name="clock_once_per_kind")]

    def __str__(self) -> str:
        return f"{self.adverse_event} – {self.get_kind_display()}"


class ClockAlert(models.Model):
    """An alert about a clock (before the deadline, or overdue): raised once per clock and stage
    (`sent_at`: when it was raised), its e-mail an outbox entry: `emailed_at` once the mail server
    took it; `email_claimed_at` while a worker sends it (a claim older than
    CLOCK_ALERT_EMAIL_RETRY_MINUTES is a lost worker's, tried again); `email_error` the last
    failure (the mail server down: tried again at the next tick)."""

    clock = models.ForeignKey(ReportingClock, on_delete=models.PROTECT, related_name="alerts")
    stage = models.CharField(max_length=20)  # "elapsed_<percent>" (e.g. elapsed_50) | "overdue"
    sent_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_claimed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["clock", "stage"], name="clock_alert_once")]


class SafetySummary(models.Model):
    """A computed safety summary of a trial at a data cut-off: blinded (arms pooled) or not."""

    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="safety_summaries")
    blinded = models.BooleanField()
    cutoff_at = models.DateTimeField()
    content = models.JSONField()
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-cutoff_at"]
        get_latest_by = "cutoff_at"


class SummaryState(models.Model):
    """Coalescing of summary recomputations: one per trial. `queued` while a run is pending or
    running (since `queued_at`: one queued much longer lost its worker, and the stale scan enqueues
    it again); `dirty` when AEs changed since the running computation read them; `nightly_on` the
    last night whose refresh was requested (a nightly tick delivered twice requests it once)."""

    trial = models.OneToOneField(Trial, on_delete=models.CASCADE, related_name="+")
    queued = models.BooleanField(default=False)
    dirty = models.BooleanField(default=False)
    runs = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    nightly_on = models.DateField(null=True, blank=True)
