"""What a change of trial data means for its review, called explicitly by the write services of
trials.visits, trials.safety and trials.participants after a successful change (never a signal):
the signatures covering the data break, and the entry's source data verification is reset."""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Model, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.records.models import SdvItemTick, SdvMark, SdvState, Signature, SignatureState, item_value

# The rows changed are a Participant, a Visit, a CrfEntry: typed as Model here, since records
# never imports the code of the apps above it (docs/architecture.md, *Layers*).
Participant = Visit = CrfEntry = Model


def data_changed(
    *,
    participant: Participant,
    visit: Visit | None = None,
    entry: CrfEntry | None = None,
    user,  # noqa: ANN001
    reason: str,
    signed: bool | None = None,
) -> None:
    """After a change of a participant's data (at a visit, in an entry, or at the participant's
    level: consent, status, AEs …): break the signatures that covered it (the visit's and the
    casebook's), with who changed what and why, and reset the entry's SDV mark.

    `signed=False` says the caller already knows that no valid signature covers the data (the CRF
    first save reads it inside its one query), which spares a query."""
    if entry is not None and visit is None:
        visit = entry.visit
    if signed is not False:
        who = user.get_full_name() or user.username
        if entry is not None:
            what = _("%(crf)s at %(visit)s") % {"crf": entry.crf_code, "visit": visit.label}
        elif visit is not None:
            what = visit.label
        else:
            what = _("participant data")
        why = (reason or "").strip() or _("no reason given")
        signatures_break(
            participant=participant,
            visit=visit,
            user=user,
            reason=_("%(what)s changed by %(who)s: %(why)s") % {"what": what, "who": who, "why": why},
        )
    if entry is not None:
        sdv_entry_changed(entry=entry, user=user)


def signatures_break(*, participant: Participant, visit: Visit | None = None, user, reason: str) -> int:  # noqa: ANN001
    """Mark broken the valid signatures covering changed data: the casebook signature and, for a
    change at a visit, that visit's signature. Audited with the reason; returns how many broke."""
    covering = Q(visit__isnull=True) | Q(visit=visit) if visit is not None else Q(visit__isnull=True)
    signatures = list(
        Signature.objects.select_for_update().filter(covering, participant=participant, state=SignatureState.VALID)
    )
    now = timezone.now()
    for signature in signatures:
        signature.state, signature.broken_at, signature.broken_reason = SignatureState.BROKEN, now, reason
        audited_save(signature, user=user, reason=_("Signature broken: %(reason)s") % {"reason": reason})
    return len(signatures)


# Inside the caller's transaction (every CRF save has one) without a savepoint of its own: two
# statements fewer per save; an error here rolls back the whole save, as it must.
@transaction.atomic(savepoint=False)
def sdv_entry_changed(*, entry: CrfEntry, user) -> SdvMark | None:  # noqa: ANN001
    """After a save of `entry`: a mark verified at an older revision is reset, audited, and says
    by whose change and when (returned); so is every item tick whose value changed (the ticks of
    unchanged items stay). No mark, or a mark already reset: nothing to do (None)."""
    if entry.revision <= 1:
        return None  # a first save: nothing was verified before it
    if not _sdv_to_reset(entry):
        return None  # most saves: nothing ticked or verified at an older revision (one statement, not two)
    now = timezone.now()
    for tick in SdvItemTick.objects.select_for_update().filter(entry_id=entry.pk, ticked=True).exclude(entry_revision=entry.revision):
        if _plain(item_value(entry.answers, entry.missing, tick.item, tick.row_id)) == tick.value:
            continue
        tick.ticked, tick.reset_at, tick.reset_by = False, now, user
        audited_save(tick, user=user, reason=_("SDV tick of %(item)s reset by a change of its value (revision %(old)s → %(new)s)") % {
            "item": tick.item, "old": tick.entry_revision, "new": entry.revision})
    mark = (
        SdvMark.objects.select_for_update().filter(entry_id=entry.pk, state=SdvState.VERIFIED)
        .exclude(entry_revision=entry.revision).first()
    )
    if mark is None:
        return None
    mark.state, mark.reset_at, mark.reset_by = SdvState.RESET, now, user
    return audited_save(
        mark, user=user,
        reason=_("SDV reset by a change of the entry (revision %(old)s → %(new)s)") % {"old": mark.entry_revision, "new": entry.revision},
    )


def _sdv_to_reset(entry: CrfEntry) -> bool:
    """Is there a ticked item or a verified mark of the entry at another revision? One statement
    read after the entry's row lock (a new snapshot: a verification committed meanwhile is seen)."""
    ticks, marks = SdvItemTick._meta.db_table, SdvMark._meta.db_table
    sql = (
        f"SELECT EXISTS (SELECT 1 FROM {ticks} t WHERE t.entry_id = %s AND t.ticked AND t.entry_revision <> %s)"
        f" OR EXISTS (SELECT 1 FROM {marks} m WHERE m.entry_id = %s AND m.state = %s AND m.entry_revision <> %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [entry.pk, entry.revision, entry.pk, SdvState.VERIFIED, entry.revision])
        return bool(cursor.fetchone()[0])


def _plain(value):  # noqa: ANN001, ANN202
    """A value as it reads back from a JSON column (a Decimal or a date in memory compares equal to
    its stored form)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def stored_value(entry: CrfEntry, item: str, row_id: str = "") -> dict:
    """One item's value (in one row) and missing-data code as stored: what an SDV tick verifies."""
    return _plain(item_value(entry.answers, entry.missing, item, row_id))


def valid_signature_sql(*, participant_id: int, visit_id: int | None) -> tuple[str, list]:
    """An SQL EXISTS: is there a valid signature of the casebook or of this visit? For the CRF first
    save, which reads all its checks in one statement (see locks.covering_lock_sql)."""
    sql = (
        f"EXISTS (SELECT 1 FROM {Signature._meta.db_table} g WHERE g.participant_id = %s AND g.state = %s"
        " AND (g.visit_id IS NULL OR g.visit_id = %s))"
    )
    return sql, [participant_id, SignatureState.VALID, visit_id or 0]
