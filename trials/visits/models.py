"""Visits of a participant and the CRF entries made at them.

A CrfEntry stores its answers as one JSON document pinned to the CRF version it was entered
with (docs/architecture.md, "CRF data"). Scheduling (planned dates, windows, states) is built on
Visit by the scheduling issue.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.participants.models import Participant
from trials.protocol.models import CrfDefinition, VisitDefinition


class VisitStatus(models.TextChoices):
    UPCOMING = "upcoming", _("Upcoming")
    OPEN = "open", _("Open")
    DONE = "done", _("Done")
    OVERDUE = "overdue", _("Overdue")
    MISSED = "missed", _("Missed")
    NOT_DONE = "not_done", _("Not done")


# States the calendar moves (trials.visits.schedule.visit_states_refresh); the others are set by
# people (a visit date recorded, a missed visit confirmed) and are final for the calendar.
CALENDAR_STATES = frozenset({VisitStatus.UPCOMING, VisitStatus.OPEN, VisitStatus.OVERDUE})


class RecordKind(models.TextChoices):
    VISIT = "visit", _("Visit")
    LOG = "log", _("Log record")


class Visit(AuditedModel):
    """A planned (or unscheduled) visit of a participant, with its window and state.

    `status` moves with the calendar (upcoming -> open -> overdue, by the site's local date) in
    one guarded UPDATE per time zone, outside the history (`DERIVED_FIELDS`: recomputable, nobody
    enters it); a visit date, a missed or not-done visit and moved plans are people's changes,
    saved with a reason and audited.

    A record of a participant's log (a concomitant medication, a condition of the medical history)
    is a Visit of kind "log" holding that one CRF entry: no date, no window, never on the calendar.
    Locks, signatures, queries, SDV and exports then treat it as they treat a visit's entry
    (docs/architecture.md, "Logs outside visits")."""

    DERIVED_FIELDS = frozenset({"status"})

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="visits", verbose_name=_("participant"))
    definition = models.ForeignKey(
        VisitDefinition, on_delete=models.PROTECT, null=True, blank=True, related_name="visits",
        verbose_name=_("visit definition"), help_text=_("Empty for an unscheduled visit."),
    )
    record_kind = models.CharField(_("record kind"), max_length=10, choices=RecordKind.choices, default=RecordKind.VISIT)
    log_crf_code = models.CharField(_("log CRF"), max_length=40, blank=True, help_text=_("The CRF a log record holds."))
    sequence = models.PositiveSmallIntegerField(_("sequence"), default=1)
    label = models.CharField(_("label"), max_length=200)
    planned_date = models.DateField(_("planned date"), null=True, blank=True)
    window_start = models.DateField(_("window opens"), null=True, blank=True)
    window_end = models.DateField(_("window closes"), null=True, blank=True)
    visit_date = models.DateField(_("visit date"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=VisitStatus.choices, default=VisitStatus.UPCOMING)
    status_reason = models.TextField(_("reason"), blank=True, help_text=_("Why a visit was missed, not done or added."))
    out_of_window = models.BooleanField(_("done outside its window"), default=False)
    order = models.PositiveIntegerField(_("order"), default=0)

    class Meta:
        ordering = ["participant", "order", "sequence"]
        verbose_name = _("visit")
        verbose_name_plural = _("visits")
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "definition", "sequence"], condition=Q(definition__isnull=False),
                name="visit_unique_per_definition_and_sequence",
            ),
            models.UniqueConstraint(
                fields=["participant", "log_crf_code", "sequence"], condition=Q(record_kind="log"), name="log_record_unique_per_crf_and_sequence",
            ),
            models.CheckConstraint(
                condition=Q(record_kind="visit", log_crf_code="") | Q(record_kind="log", definition__isnull=True) & ~Q(log_crf_code=""),
                name="visit_log_record_has_crf_and_no_plan",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.participant} – {self.label}"


class EntryStatus(models.TextChoices):
    NOT_STARTED = "not_started", _("Not started")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETE = "complete", _("Complete")


class CrfEntry(AuditedModel):
    """The answers of one CRF at one visit: one JSON document, one row per save in the history."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="crf_entries", verbose_name=_("participant"))
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="crf_entries", verbose_name=_("visit"))
    crf = models.ForeignKey(CrfDefinition, on_delete=models.PROTECT, related_name="entries", verbose_name=_("CRF version"))
    crf_code = models.CharField(_("CRF code"), max_length=40)
    status = models.CharField(_("status"), max_length=20, choices=EntryStatus.choices, default=EntryStatus.NOT_STARTED)
    answers = models.JSONField(_("answers"), default=dict, blank=True)
    missing = models.JSONField(
        _("missing-data codes"), default=dict, blank=True, help_text=_("Item → {code, reason} for items answered as missing.")
    )
    warnings = models.JSONField(
        _("confirmed warnings"), default=list, blank=True, help_text=_("Soft edit checks the coordinator confirmed.")
    )
    revision = models.PositiveIntegerField(_("revision"), default=0, help_text=_("Raised by every save (optimistic locking)."))
    score_library_version = models.CharField(_("score library version"), max_length=20, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["visit", "crf_code"]
        verbose_name = _("CRF entry")
        verbose_name_plural = _("CRF entries")
        constraints = [models.UniqueConstraint(fields=["visit", "crf_code"], name="crf_entry_once_per_visit")]

    def __str__(self) -> str:
        return f"{self.visit} – {self.crf}"


class ReminderReason(models.TextChoices):
    OPENING = "opening", _("Window opens within 7 days")
    OVERDUE = "overdue", _("Overdue")
    MISSING_CRFS = "missing_crfs", _("Required CRFs missing")


class ReminderLog(models.Model):
    """One reminder sent to a coordinator about a visit, for a reason, on a (site-local) day.

    The unique key makes a second run of the digest (a task delivered twice, a beat tick after a
    Redis restart) send nothing already sent. Operational log, not trial data."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="reminders")
    reason = models.CharField(max_length=20, choices=ReminderReason.choices)
    day = models.DateField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "visit", "reason", "day"], name="reminder_once_per_day")]


class CalendarFeed(models.Model):
    """A coordinator's secret iCalendar feed URL (revocable: a new token replaces the old one)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feed")
    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class StoredFile(models.Model):
    """One uploaded file of a CRF `file` item (a photograph, a scanned report), kept for good.

    The entry's answer is a reference to this row (file id, original name, size, SHA-256, content
    type); a replacement is a new row and a new answer in the entry's audited history, so the old
    file stays retrievable. The id is random (UUID4) and the storage name another random value:
    neither reveals or follows from the participant, the item or the original name. Rows are
    written once and never changed or deleted (no update path in the code)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="stored_files", verbose_name=_("participant"))
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="stored_files", verbose_name=_("visit"))
    crf_code = models.CharField(_("CRF code"), max_length=40)
    item = models.CharField(_("item"), max_length=200, help_text=_("The item's name; in a repeating group group[row id].item."))
    original_name = models.CharField(_("original name"), max_length=255)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    content_type = models.CharField(_("content type (from the bytes)"), max_length=100)
    storage_name = models.CharField(_("storage name"), max_length=255, unique=True)
    thumbnail_name = models.CharField(_("thumbnail storage name"), max_length=255, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("uploaded by"))
    uploaded_at = models.DateTimeField(_("uploaded"), auto_now_add=True)

    class Meta:
        ordering = ["uploaded_at"]
        verbose_name = _("stored file")
        verbose_name_plural = _("stored files")

    def __str__(self) -> str:
        return f"{self.crf_code}.{self.item}: {self.original_name}"
