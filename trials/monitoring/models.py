"""Monitoring: data clarification queries, source data verification, e-signatures, locks and
protocol deviations.

All of it is trial data (audited, never deleted). The effects on CRF data — a lock refusing a
save, an edit resetting SDV and breaking a signature, an overridden soft check raising a query —
are explicit calls from the write services (trials.visits.services, trials.safety.services,
trials.participants.services) into trials.records (locks, data_changed), never signals.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.participants.models import Participant
from trials.protocol.models import Site, Trial
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, Visit


# --- Queries (data clarification) ------------------------------------------------------------

class QueryState(models.TextChoices):
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Answered")
    CLOSED = "closed", _("Closed")
    CANCELLED = "cancelled", _("Cancelled")


OPEN_QUERY_STATES = frozenset({QueryState.OPEN, QueryState.ANSWERED})


class QueryOrigin(models.TextChoices):
    MANUAL = "manual", _("Raised by a reviewer")
    EDIT_CHECK = "edit_check", _("Soft edit check overridden")
    QUALITY_RULE = "quality_rule", _("Data-quality rule")


class Query(AuditedModel):
    """A data clarification request on an item of a CRF entry (optionally one row of a repeating
    group), on a whole entry, or on an adverse event. open -> answered -> closed; re-opened goes
    back to open; cancelled ends it without an answer."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="queries", verbose_name=_("trial"))
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="queries", verbose_name=_("site"))
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="queries", verbose_name=_("participant"))
    entry = models.ForeignKey(CrfEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="queries", verbose_name=_("CRF entry"))
    item = models.CharField(_("item"), max_length=80, blank=True, help_text=_("Empty for a query on the whole entry."))
    row_id = models.CharField(_("row"), max_length=40, blank=True, help_text=_("The row of a repeating group, if any."))
    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="queries", verbose_name=_("adverse event")
    )
    state = models.CharField(_("state"), max_length=20, choices=QueryState.choices, default=QueryState.OPEN)
    origin = models.CharField(_("origin"), max_length=20, choices=QueryOrigin.choices, default=QueryOrigin.MANUAL)
    text = models.TextField(_("query"))
    value_at_raise = models.JSONField(_("value when raised"), null=True, blank=True)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("raised by"))
    raised_at = models.DateTimeField(_("raised at"))
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("closed by")
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    # The trial file's `quality_rules:` code of the rule that raised it (origin quality_rule).
    rule_code = models.CharField(_("data-quality rule"), max_length=40, blank=True)

    class Meta:
        ordering = ["-raised_at"]
        verbose_name = _("query")
        verbose_name_plural = _("queries")
        constraints = [
            models.CheckConstraint(
                condition=Q(entry__isnull=False, adverse_event__isnull=True) | Q(entry__isnull=True, adverse_event__isnull=False),
                name="query_on_entry_or_ae",
            ),
        ]
        indexes = [models.Index(fields=["site", "state"], name="query_site_state_idx")]

    def __str__(self) -> str:
        target = self.item or (self.entry.crf_code if self.entry_id else f"AE{self.adverse_event.number}")
        return f"{self.participant} – {target}: {self.get_state_display()}"


class QueryMessageKind(models.TextChoices):
    RAISE = "raise", _("Raised")
    ANSWER = "answer", _("Answered")
    CLOSE = "close", _("Closed")
    REOPEN = "reopen", _("Re-opened")
    CANCEL = "cancel", _("Cancelled")
    COMMENT = "comment", _("Comment")


class QueryMessage(AuditedModel):
    """One message of a query's thread (written once, never edited)."""

    query = models.ForeignKey(Query, on_delete=models.PROTECT, related_name="messages", verbose_name=_("query"))
    kind = models.CharField(_("kind"), max_length=20, choices=QueryMessageKind.choices)
    text = models.TextField(_("message"), blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("author"))
    at = models.DateTimeField(_("at"))

    class Meta:
        ordering = ["query", "at", "pk"]
        verbose_name = _("query message")
        verbose_name_plural = _("query messages")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} – {self.author}"


# --- Source data verification ---------------------------------------------------------------

class SdvScope(models.TextChoices):
    ALL = "all", _("All data")
    CRITICAL = "critical", _("Critical CRFs only")
    FIRST_N = "first_n", _("First N participants per site")


class SdvPlan(AuditedModel):
    """What a trial's monitors must verify (decides the SDV backlog)."""

    trial = models.OneToOneField(Trial, on_delete=models.PROTECT, related_name="sdv_plan", verbose_name=_("trial"))
    scope = models.CharField(_("scope"), max_length=20, choices=SdvScope.choices, default=SdvScope.ALL)
    critical_crfs = models.JSONField(_("critical CRFs"), default=list, blank=True, help_text=_("CRF codes."))
    critical_items = models.JSONField(
        _("critical items"), default=dict, blank=True, help_text=_("CRF code → item codes verified one by one.")
    )
    first_n = models.PositiveIntegerField(_("first N participants per site"), null=True, blank=True)

    class Meta:
        verbose_name = _("SDV plan")
        verbose_name_plural = _("SDV plans")

    def __str__(self) -> str:
        return f"{self.trial}: {self.get_scope_display()}"


# --- Electronic signatures ------------------------------------------------------------------

class SignatureFailure(AuditedModel):
    """A refused signature attempt (wrong password). 21 CFR 11.300(d) asks that attempts at
    unauthorized use be detected and reported: the row is written in its own transaction, so the
    refusal does not roll it back, and repeated failures block the user's signing for a while."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("user"))
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="+", verbose_name=_("participant"))
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("visit"))
    at = models.DateTimeField(_("at"))

    class Meta:
        ordering = ["-at"]
        verbose_name = _("refused signature attempt")
        verbose_name_plural = _("refused signature attempts")
        indexes = [models.Index(fields=["user", "at"], name="signature_failure_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} – {self.visit or self.participant} ({self.at:%Y-%m-%d %H:%M} UTC)"


# --- Protocol deviations --------------------------------------------------------------------

class DeviationCategory(models.TextChoices):
    VISIT_WINDOW = "visit_window", _("Visit out of window")
    ELIGIBILITY = "eligibility", _("Eligibility")
    CONSENT = "consent", _("Informed consent")
    TREATMENT = "treatment", _("Study treatment administration")
    PROCEDURE = "procedure", _("Study procedure not done or done incorrectly")
    SAFETY_REPORTING = "safety_reporting", _("Safety reporting")
    OTHER = "other", _("Other")


class DeviationSeverity(models.TextChoices):
    MINOR = "minor", _("Minor")
    MAJOR = "major", _("Major")


class DeviationState(models.TextChoices):
    PROPOSED = "proposed", _("Proposed (to confirm)")
    CONFIRMED = "confirmed", _("Confirmed")
    DISMISSED = "dismissed", _("Dismissed")


class ProtocolDeviation(AuditedModel):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="deviations", verbose_name=_("participant"))
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="deviations", verbose_name=_("visit"))
    category = models.CharField(_("category"), max_length=30, choices=DeviationCategory.choices)
    severity = models.CharField(_("severity"), max_length=10, choices=DeviationSeverity.choices, default=DeviationSeverity.MINOR)
    state = models.CharField(_("state"), max_length=20, choices=DeviationState.choices, default=DeviationState.CONFIRMED)
    occurred_on = models.DateField(_("occurred on"))
    identified_on = models.DateField(_("identified on"))
    description = models.TextField(_("description"))
    corrective_action = models.TextField(_("corrective and preventive action"), blank=True)
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("reported by"))

    class Meta:
        ordering = ["participant", "-occurred_on"]
        verbose_name = _("protocol deviation")
        verbose_name_plural = _("protocol deviations")
        constraints = [
            models.UniqueConstraint(
                fields=["visit", "category"], condition=Q(category="visit_window"), name="deviation_window_once_per_visit"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant}: {self.get_category_display()} ({self.get_severity_display()})"


class QualityRunState(models.Model):
    """Coalescing of data-quality runs (trials.monitoring.quality): one row per trial. `queued` while a
    run is pending or running, so a second request (a click during the nightly run) enqueues nothing;
    `dirty` when one came during a run, which then runs once more. The last run's hits per rule are
    kept for the report page."""

    trial = models.OneToOneField(Trial, on_delete=models.CASCADE, related_name="+")
    queued = models.BooleanField(default=False)
    dirty = models.BooleanField(default=False)
    runs = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_hits = models.JSONField(default=dict, blank=True)
