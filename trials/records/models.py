"""Records: the rules every writer of trial data obeys, below the apps that write (participants,
visits, safety) and above the protocol: locks and freezes (`locks.assert_writable`), and what a
change of data does to its review (`services.data_changed`: the signatures covering it break, the
entry's SDV mark is reset).

The rows here point at participants, visits and CRF entries by Django's lazy "app.Model"
reference (a database reference, declared in the migrations); no code of those apps is imported,
so every writer can call down into this app without a cycle (docs/architecture.md, *Layers*).
The monitor's side (signing, verifying, applying locks in the admin, queries) is trials.monitoring.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.protocol.models import Trial


class SdvState(models.TextChoices):
    VERIFIED = "verified", _("Verified")
    RESET = "reset", _("Reset by a later edit")
    WITHDRAWN = "withdrawn", _("Withdrawn by the monitor (an item unticked)")


class SdvMark(AuditedModel):
    """A monitor's verification of one CRF entry (and of its critical items) at a revision; an
    edit after it resets the mark, and says so."""

    entry = models.OneToOneField("visits.CrfEntry", on_delete=models.PROTECT, related_name="sdv", verbose_name=_("CRF entry"))
    state = models.CharField(_("state"), max_length=20, choices=SdvState.choices, default=SdvState.VERIFIED)
    items = models.JSONField(_("verified items"), default=list, blank=True)
    entry_revision = models.PositiveIntegerField(_("entry revision verified"))
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("verified by"))
    verified_at = models.DateTimeField(_("verified at"))
    reset_at = models.DateTimeField(_("reset at"), null=True, blank=True)
    reset_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=_("reset by"), help_text=_("Who made the change that reset the mark."),
    )

    # Moved from trials.monitoring (issue 14): the tables keep their names, no data moved.
    HISTORY_DB_TABLE = "monitoring_historicalsdvmark"

    class Meta:
        db_table = "monitoring_sdvmark"
        verbose_name = _("SDV mark")
        verbose_name_plural = _("SDV marks")

    def __str__(self) -> str:
        return f"{self.entry}: {self.get_state_display()}"

class SdvItemTick(AuditedModel):
    """A monitor's tick of one item (of one row, for a repeating group) verified against the
    source, saved the moment it is ticked: the value it verified, who and when. Unticking keeps the
    row (ticked = False, audited); a later change of the item's value resets the tick, and says so."""

    entry = models.ForeignKey("visits.CrfEntry", on_delete=models.PROTECT, related_name="sdv_ticks", verbose_name=_("CRF entry"))
    item = models.CharField(_("item"), max_length=100)
    row_id = models.CharField(_("row"), max_length=64, blank=True, default="", help_text=_("The row's identity, for an item of a repeating group."))
    ticked = models.BooleanField(_("ticked"), default=True)
    value = models.JSONField(_("value verified"), null=True, blank=True, help_text=_("The item's value and missing-data code when ticked."))
    entry_revision = models.PositiveIntegerField(_("entry revision when ticked"))
    ticked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("ticked or unticked by"))
    ticked_at = models.DateTimeField(_("ticked or unticked at"))
    reset_at = models.DateTimeField(_("reset at"), null=True, blank=True)
    reset_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        verbose_name=_("reset by"), help_text=_("Who changed the item's value after the tick."),
    )

    class Meta:
        verbose_name = _("SDV item tick")
        verbose_name_plural = _("SDV item ticks")
        constraints = [models.UniqueConstraint(fields=["entry", "item", "row_id"], name="sdv_tick_one_per_item_row")]

    def __str__(self) -> str:
        where = f"{self.item}[{self.row_id[:8]}]" if self.row_id else self.item
        return f"{self.entry_id}:{where} {'✓' if self.ticked else '–'}"


def item_value(answers: dict, missing: dict, item: str, row_id: str = "") -> dict:
    """The stored value of one item (of one row) and its missing-data code: what a tick verifies."""
    if not row_id:
        return {"value": (answers or {}).get(item), "missing": (missing or {}).get(item)}
    for group, rows in (answers or {}).items():
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict) and row.get("_row_id") == row_id:
                    gone = (((missing or {}).get(group) or {}).get(row_id) or {}).get(item)
                    return {"value": row.get(item), "missing": gone}
    return {"row_removed": True}


SIGNATURE_MEANING = _("I have reviewed and approve these data.")


class SignatureState(models.TextChoices):
    VALID = "valid", _("Valid")
    BROKEN = "broken", _("Broken by a later change")


class Signature(AuditedModel):
    """An investigator's electronic signature (21 CFR 11.50, 11.200) of a visit or, with no visit,
    of a participant's whole casebook: printed name, date-time and meaning, given by re-entering
    the password. A later change to signed data breaks it (visibly, audited)."""

    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, related_name="signatures", verbose_name=_("participant"))
    visit = models.ForeignKey(
        "visits.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="signatures",
        verbose_name=_("visit"), help_text=_("Empty for the whole casebook."),
    )
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("signed by"))
    printed_name = models.CharField(_("printed name"), max_length=300)
    meaning = models.CharField(_("meaning"), max_length=300)
    signed_at = models.DateTimeField(_("signed at"))
    state = models.CharField(_("state"), max_length=20, choices=SignatureState.choices, default=SignatureState.VALID)
    broken_at = models.DateTimeField(_("broken at"), null=True, blank=True)
    broken_reason = models.TextField(_("why it broke"), blank=True)

    # Moved from trials.monitoring (issue 14): the tables keep their names, no data moved.
    HISTORY_DB_TABLE = "monitoring_historicalsignature"

    class Meta:
        db_table = "monitoring_signature"
        ordering = ["participant", "-signed_at"]
        verbose_name = _("signature")
        verbose_name_plural = _("signatures")

    def __str__(self) -> str:
        return f"{self.printed_name} – {self.visit or self.participant} ({self.get_state_display()})"

# --- Locks and freezes ----------------------------------------------------------------------

class LockLevel(models.TextChoices):
    ENTRY = "entry", _("CRF entry")
    VISIT = "visit", _("Visit")
    PARTICIPANT = "participant", _("Participant")
    TRIAL = "trial", _("Trial (database lock)")


class LockKind(models.TextChoices):
    FREEZE = "freeze", _("Freeze (no data changes; queries still possible)")
    LOCK = "lock", _("Lock (no changes at all)")


class Lock(AuditedModel):
    """A data manager's lock or freeze on an entry, a visit, a participant or a whole trial.
    Active while `released_at` is empty; only a data manager releases it, with a reason."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="locks", verbose_name=_("trial"))
    level = models.CharField(_("level"), max_length=20, choices=LockLevel.choices)
    kind = models.CharField(_("kind"), max_length=20, choices=LockKind.choices, default=LockKind.LOCK)
    participant = models.ForeignKey("participants.Participant", on_delete=models.PROTECT, null=True, blank=True, related_name="locks", verbose_name=_("participant"))
    visit = models.ForeignKey(
        "visits.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="locks", verbose_name=_("visit"))
    entry = models.ForeignKey("visits.CrfEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="locks", verbose_name=_("CRF entry"))
    reason = models.TextField(_("reason"))
    locked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("locked by"))
    locked_at = models.DateTimeField(_("locked at"))
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("released by")
    )
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)
    release_reason = models.TextField(_("reason for release"), blank=True)

    # Moved from trials.monitoring (issue 14): the tables keep their names, no data moved.
    HISTORY_DB_TABLE = "monitoring_historicallock"

    class Meta:
        db_table = "monitoring_lock"
        ordering = ["trial", "-locked_at"]
        verbose_name = _("lock")
        verbose_name_plural = _("locks")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(level="trial", participant__isnull=True, visit__isnull=True, entry__isnull=True)
                    | Q(level="participant", participant__isnull=False, visit__isnull=True, entry__isnull=True)
                    | Q(level="visit", visit__isnull=False, entry__isnull=True)
                    | Q(level="entry", entry__isnull=False)
                ),
                name="lock_target_matches_level",
            ),
        ]
        indexes = [models.Index(fields=["trial", "released_at"], name="lock_trial_active_idx")]

    def __str__(self) -> str:
        target = self.entry or self.visit or self.participant or self.trial
        return f"{self.get_kind_display()}: {target}"
