"""The trial's CRF audit trail as an ODM 1.3.2 transactional file (issues 17 and 21: for inspectors).

Where the ODM snapshot (trials.exports.odm) gives each item's current value and one AuditRecord
per form, this file gives every change of every CRF item, oldest first: each save of a CRF entry
that changed items is a StudyEventData/FormData/ItemGroupData (TransactionType="Context": they
only place the items) holding one ItemData per changed item, with

- TransactionType "Insert" (the item had no value nor missing-data code before), "Update" (its
  value or code changed) or "Remove" (it was cleared, or the entry was deleted): ODM 1.3.2 §2.12,
  "Transactional" files; successive ItemData of one item are its values old -> new;
- its AuditRecord (§3.1.3): UserRef (a User of AdminData), LocationRef (the site), DateTimeStamp
  (the save's time, UTC), ReasonForChange (the reason recorded with the save) and SourceID (the
  history row: `visits.crfentry <entry id> history <history id>`);
- an item answered with a missing-data code: IsNull="Yes" with the code as an Annotation Flag
  (code list CL.MISSING), as in the snapshot.

The metadata (Study, AdminData) is the snapshot's, with the CRF versions that only the history
still names. Read a batch of participants at a time (one query for their history rows, one for
their visits), written as it is read: memory holds one batch.

Blinded (the default) like the CSV audit export (trials.exports.audit): every text (values,
reasons, protocol texts) has the arm codes and labels and, in a blinded file, every kit code of
the trial's allocation lists masked; a CRF entry holds no allocation. Identifying items
(`identifier: true`) have no ItemDef and so no ItemData, unless the spec asks for identifiers.
With a cut-off, only the saves recorded before the end of the cut-off day.

The participants' other records (visits, adverse events, queries, signatures, locks …) keep their
trail in the CSV audit export, one line per changed field; this file is the CRF items'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _
from lxml import etree

from trials.exports import audit, odm, selectors
from trials.exports.spec import ExportSpec, Progress
from trials.protocol.engine import ROW_ID
from trials.visits.models import CrfEntry, Visit

NS = odm.NS
BATCH_SIZE = 100
SOURCE_MODEL = "visits.crfentry"
# (item group OID, row key, item OID) -> (ODM value or None, missing-data code or None, reason)
State = dict[tuple[str, str, str], tuple[str | None, str | None, str]]


@dataclass(frozen=True)
class ItemChange:
    """One change of one item of one save: what an ItemData of the file says."""

    group_oid: str
    repeat_key: int | None  # the row's position in a repeating group
    item_oid: str
    transaction: str  # Insert | Update | Remove
    value: str | None
    code: str | None  # missing-data code (IsNull)
    reason: str  # the missing-data code's reason


def _value(item: odm.ItemSpec, raw: Any) -> str | None:
    """A stored answer as its ODM value, as the snapshot writes it (odm._item_data)."""
    if type(raw) is str and item.kind in odm.STORED_AS_IS:
        return raw or None
    return odm.odm_value(item, raw)


def _group_state(state: State, positions: dict, group: odm.GroupSpec, values: dict, missing: dict | None,
                 row_key: str, position: int | None) -> None:
    for item in group.items:
        raw = values.get(item.source)
        if raw is None:
            code = missing.get(item.source) if missing else None
            if isinstance(code, dict) and code.get("code") and item.kind != "option":
                key = (group.oid, row_key, item.oid)
                state[key] = (None, str(code["code"]), str(code.get("reason") or ""))
                positions[key] = position
            continue
        value = _value(item, raw)
        if value is not None:
            key = (group.oid, row_key, item.oid)
            state[key] = (value, None, "")
            positions[key] = position


def entry_state(form: odm.FormSpec, answers: dict | None, missing: dict | None) -> tuple[State, dict]:
    """Every ODM item of one version of an entry with its value or missing-data code, and the
    position of its row in a repeating group (the ItemGroupRepeatKey)."""
    answers, missing = answers or {}, missing or {}
    state: State = {}
    positions: dict = {}
    for group in form.groups:
        if group.repeating and group.source is not None:
            rows = answers.get(group.source)
            by_row = missing.get(group.source) if isinstance(missing.get(group.source), dict) else {}
            for position, row in enumerate(rows if isinstance(rows, list) else [], 1):
                if not isinstance(row, dict):
                    continue
                row_key = str(row.get(ROW_ID, position))
                row_missing = by_row.get(row_key) if isinstance(by_row.get(row_key), dict) else None
                _group_state(state, positions, group, row, row_missing, row_key, position)
            continue
        _group_state(state, positions, group, answers, missing, "", None)
    return state, positions


def item_changes(before: tuple[State, dict], after: tuple[State, dict], order: dict[str, int]) -> list[ItemChange]:
    """The items one save changed, in the CRF's order: Insert, Update or Remove."""
    (old, old_positions), (new, new_positions) = before, after
    changes = []
    # Keyed by (row, item): an item keeps its OID across CRF versions even when its group's changes.
    old_by = {(row, item): (group, key) for key in old for group, row, item in [key]}
    new_by = {(row, item): (group, key) for key in new for group, row, item in [key]}
    for row_item in sorted(set(old_by) | set(new_by), key=lambda k: (order.get(k[1], 10_000), k[0])):
        was = old.get(old_by[row_item][1]) if row_item in old_by else None
        now = new.get(new_by[row_item][1]) if row_item in new_by else None
        if was == now:
            continue
        if now is None:
            group, key = old_by[row_item]
            changes.append(ItemChange(group, old_positions.get(key), row_item[1], "Remove", None, None, ""))
            continue
        group, key = new_by[row_item]
        value, code, reason = now
        changes.append(ItemChange(group, new_positions.get(key), row_item[1], "Insert" if was is None else "Update", value, code, reason))
    return changes


@dataclass(frozen=True)
class _Event:
    oid: str
    repeat_key: str | None


def _events(visit_ids: set[int], meta: odm.StudyMetadata) -> dict[int, _Event | None]:
    """The study event of each visit the history rows name (from the visits' history, so that a
    deleted visit still has one); None: not in the export (a visit of a pooled CRF's trial)."""
    rows = (
        Visit.history.filter(id__in=visit_ids).order_by("id", "history_id")
        .values_list("id", "definition__code", "sequence", "record_kind", "log_crf_code")
    )
    events: dict[int, _Event | None] = {}
    for visit_id, code, sequence, kind, log_crf in rows:
        if kind == "log":
            events[visit_id] = _Event(odm.LOG_EVENT, f"{log_crf}.{sequence}")
        elif code is None:
            events[visit_id] = _Event(odm.UNSCHEDULED, str(sequence))
        else:
            oid = meta.event_by_visit.get(code)
            events[visit_id] = _Event(oid, None) if oid else None
    return events


def _history(spec: ExportSpec, participant_ids: list[int] | None = None):  # noqa: ANN202
    """The history rows of the export's CRF entries, per participant in time order."""
    queryset = CrfEntry.history.filter(
        participant__site_id__in=selectors.export_site_ids(spec), crf_code__in=selectors.export_crf_codes(spec),
    )
    if spec.trial_id is not None:
        queryset = queryset.filter(participant__trial_id=spec.trial_id)
    end = selectors.cutoff_end(spec)
    if end is not None:
        queryset = queryset.filter(history_date__lt=end)
    if participant_ids is not None:
        queryset = queryset.filter(participant_id__in=participant_ids)
    return queryset.order_by("participant_id", "history_date", "history_id")


def _item_order(meta: odm.StudyMetadata) -> dict[str, int]:
    order: dict[str, int] = {}
    for form in meta.forms.values():
        for group in form.groups:
            for item in group.items:
                order.setdefault(item.oid, len(order))
    return order


def _audit_record(data: etree._Element, row: Any, location: str, mask: Callable[[str], str]) -> None:
    record = etree.SubElement(data, f"{{{NS}}}AuditRecord", {"EditPoint": "DataManagement", "UsedImputationMethod": "No"})
    etree.SubElement(record, f"{{{NS}}}UserRef", {"UserOID": odm._user_oid(row.history_user_id)})
    etree.SubElement(record, f"{{{NS}}}LocationRef", {"LocationOID": location})
    etree.SubElement(record, f"{{{NS}}}DateTimeStamp").text = row.history_date.isoformat()
    if row.history_change_reason:
        etree.SubElement(record, f"{{{NS}}}ReasonForChange").text = odm._xml_text(mask(row.history_change_reason))
    etree.SubElement(record, f"{{{NS}}}SourceID").text = f"{SOURCE_MODEL} {row.id} history {row.history_id}"


def _item_data(group: etree._Element, change: ItemChange, item: odm.ItemSpec | None, row: Any, location: str,
               mask: Callable[[str], str]) -> None:
    attrs = {"ItemOID": change.item_oid, "TransactionType": change.transaction}
    if change.code is not None:
        attrs["IsNull"] = "Yes"
    elif change.value is not None:
        attrs["Value"] = odm._xml_text(mask(change.value)) if item is not None and item.kind == "text" else change.value
    data = etree.SubElement(group, f"{{{NS}}}ItemData", attrs)
    _audit_record(data, row, location, mask)
    if change.code is not None:
        annotation = etree.SubElement(data, f"{{{NS}}}Annotation", {"SeqNum": "1"})
        etree.SubElement(annotation, f"{{{NS}}}Comment").text = odm._xml_text(mask(change.reason))
        flag = etree.SubElement(annotation, f"{{{NS}}}Flag")
        etree.SubElement(flag, f"{{{NS}}}FlagValue", {"CodeListOID": odm.MISSING_CODELIST}).text = odm._xml_text(change.code)


def subject_audit(meta: odm.StudyMetadata, participant: Any, rows: list, events: dict[int, _Event | None],
                  order: dict[str, int]) -> tuple[etree._Element | None, int]:
    """One participant's SubjectData: each save of her CRF entries that changed items, oldest
    first; and how many item changes (AuditRecords) it holds. None when nothing changed."""
    location = odm._location_oid(meta.trial, participant.site_code)
    subject = etree.Element(f"{{{NS}}}SubjectData", {"SubjectKey": odm._xml_text(participant.subject), "TransactionType": "Context"})
    etree.SubElement(subject, f"{{{NS}}}SiteRef", {"LocationOID": location})
    previous: dict[int, tuple[Any, tuple[State, dict]]] = {}  # entry id -> (its last row, its state)
    written = 0
    for row in rows:
        form_oid = meta.form_by_crf.get(row.crf_id)
        form = meta.forms.get(form_oid) if form_oid else None
        before = previous.get(row.id, (None, ({}, {})))[1]
        after = ({}, {}) if row.history_type == "-" or form is None else entry_state(form, row.answers, row.missing)
        previous[row.id] = (row, after)  # a deleted entry ("-"): every item it had is removed
        changes = item_changes(before, after, order)
        event = events.get(row.visit_id)
        if not changes or event is None or event.oid is None:
            continue
        attrs = {"StudyEventOID": event.oid, "TransactionType": "Context"}
        if event.repeat_key is not None:
            attrs["StudyEventRepeatKey"] = event.repeat_key
        event_data = etree.SubElement(subject, f"{{{NS}}}StudyEventData", attrs)
        form_data = etree.SubElement(event_data, f"{{{NS}}}FormData", {"FormOID": form_oid, "TransactionType": "Context"})
        groups: dict[tuple[str, int | None], etree._Element] = {}
        for change in changes:
            key = (change.group_oid, change.repeat_key)
            if key not in groups:
                attrs = {"ItemGroupOID": change.group_oid, "TransactionType": "Context"}
                if change.repeat_key is not None:
                    attrs["ItemGroupRepeatKey"] = str(change.repeat_key)
                groups[key] = etree.SubElement(form_data, f"{{{NS}}}ItemGroupData", attrs)
            _item_data(groups[key], change, meta.items.get(change.item_oid), row, location, meta.mask)
            written += 1
    return (subject if written else None), written


def count(spec: ExportSpec) -> int:
    """Progress counts participants (their histories are read a batch at a time)."""
    return selectors.export_participants(spec).count()


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """Write the trial's CRF audit trail as an ODM transactional file into `out`."""
    trials = list(selectors.export_trials(spec))
    if spec.trial_id is None or not trials:
        raise PermissionDenied(_("You no longer have access to this trial."))
    trial = trials[0]
    crf_ids = set(_history(spec).order_by().values_list("crf_id", flat=True).distinct())
    meta = odm.study_metadata(spec, trial, history_crf_ids=crf_ids)
    meta.mask = lru_cache(maxsize=100_000)(audit.text_mask(spec))
    order = _item_order(meta)
    now = timezone.now().replace(microsecond=0)
    attrs = {
        "FileType": "Transactional", "FileOID": f"EDC.{odm.oid_part(trial.code)}.AUDIT.{now:%Y%m%dT%H%M%S}",
        "CreationDateTime": now.isoformat(), "ODMVersion": odm.ODM_VERSION, "Originator": "EDC",
        "SourceSystem": "EDC", "SourceSystemVersion": odm._software_version(),
        "Description": _("Audit trail of the CRF items"),
    }
    if (granularity := odm._granularity(spec, trials)) is not None:
        attrs["Granularity"] = granularity
    if spec.cutoff is not None:
        attrs["AsOfDateTime"] = selectors.cutoff_end(spec).isoformat()
    participants = selectors.export_participants(spec)
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{NS}}}ODM", attrs, nsmap={None: NS}):
            xf.write(odm.study_element(meta), pretty_print=True)
            xf.write(odm.admin_element(meta, selectors.export_audit_users(spec)), pretty_print=True)
            with xf.element(f"{{{NS}}}ClinicalData", {"StudyOID": meta.study_oid, "MetaDataVersionOID": meta.mdv_oid}):
                xf.write("\n")
                for batch, rows, events in _batches(spec, participants, meta):
                    for participant, history in zip(batch, rows, strict=True):
                        subject, _changes = subject_audit(meta, participant, history, events, order)
                        if subject is not None:
                            xf.write(subject)
                            xf.write("\n")
                    xf.flush()
                    progress(len(batch))


def _batches(spec: ExportSpec, participants: selectors.Rows, meta: odm.StudyMetadata) -> Iterator[tuple[list, list[list], dict]]:
    """Participants a batch at a time, with their history rows (one query) and the study events
    of the visits those rows name (one query)."""
    for batch in odm._batches(participants, BATCH_SIZE):
        by: dict[int, list] = {}
        for row in _history(spec, [p.id for p in batch]).iterator(chunk_size=500):
            by.setdefault(row.participant_id, []).append(row)
        rows = [by.get(p.id, []) for p in batch]
        yield batch, rows, _events({r.visit_id for history in rows for r in history}, meta)
