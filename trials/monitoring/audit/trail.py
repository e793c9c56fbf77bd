"""The audit trail of a participant and of a CRF entry: who, when, which field, old -> new, why.

Read from the simple-history tables of every model that holds the participant's data (one query
per model, whatever the number of rows: see SOURCES). Consecutive historical rows of one record
are compared field by field; a CRF entry's answers (one JSON document) are compared item by item,
row by row in repeating groups, with the missing-data codes. Times are stored in UTC and shown
with the site's local time beside them.

Blinding: a user who may not see allocations in the trial (`user_sees_allocation`) never gets a
record that reveals one: no emergency unblinding event, no arm or randomization slot of an
allocation, no `unblinded_at` of the participant. They are left out here, where the trail is
built, so the page, the CSV and the admin's participant page cannot show them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext as _

from edc.spreadsheet import text_cell
from trials.monitoring.models import ProtocolDeviation, Query, QueryMessage, SignatureFailure
from trials.epro.models import ProLink, ProResponse
from trials.records.models import Lock, SdvItemTick, SdvMark, Signature
from trials.participants.models import Allocation, Consent, EligibilityAnswer, Participant, Unblinding
from trials.protocol.models import Trial
from trials.protocol.selectors import user_sees_allocation
from trials.safety.models import AdverseEvent, ReportingClock
from trials.protocol.engine import ROW_ID, CrfSchema, Item, schema_for
from trials.visits.models import CrfEntry, Visit

ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
# Bookkeeping that every save changes and nobody enters.
NOISE_FIELDS = frozenset({"updated_at", "revision"})
# Fields of a CRF entry compared item by item (answers and missing-data codes together).
ENTRY_DATA_FIELDS = frozenset({"answers", "missing"})


@dataclass(frozen=True)
class Change:
    """One field (or CRF item) of one record that one save changed."""

    field: str
    label: str
    old: str
    new: str
    row: str = ""  # the row id of a repeating group


@dataclass(frozen=True)
class AuditRow:
    """One save of one record: who, when, why, and what it changed."""

    at: datetime  # UTC
    local: datetime  # the site's local time
    user: str  # username ("" when unknown)
    user_name: str
    action: str  # created / changed / deleted
    kind: str  # the record's type, e.g. "CRF entry"
    model: str  # app_label.model_name
    object_id: int
    record: str  # which record, in trial words ("Day 0 – VITALS", "AE2 Nausea")
    reason: str
    history_id: int
    changes: tuple[Change, ...] = ()

    @property
    def at_text(self) -> str:
        return self.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def local_text(self) -> str:
        """The site's wall-clock time with its offset (templates would convert a datetime back to UTC)."""
        return self.local.strftime("%Y-%m-%d %H:%M:%S %Z")

    @property
    def action_label(self) -> str:
        return {"created": _("created"), "changed": _("changed"), "deleted": _("deleted")}[self.action]


@dataclass(frozen=True)
class Source:
    """A model holding a participant's data, and how to find its history rows."""

    model: type[models.Model]
    for_participant: Callable[[Participant], Q]
    for_entry: Callable[[CrfEntry], Q] | None
    describe: Callable[[object, Callable[[str, object], str]], str]
    reveals_allocation: bool = False  # the whole model is hidden from blinded users
    allocation_fields: frozenset[str] = frozenset()  # fields hidden from blinded users


def _entries_of(participant: Participant) -> models.QuerySet:
    return CrfEntry.objects.filter(participant=participant).values("pk")


def _locks_of_participant(p: Participant) -> Q:
    return (
        Q(participant_id=p.pk) | Q(visit_id__in=Visit.objects.filter(participant=p).values("pk"))
        | Q(entry_id__in=_entries_of(p)) | Q(level="trial", trial_id=p.trial_id)
    )


def _locks_of_entry(e: CrfEntry) -> Q:
    return (
        Q(entry_id=e.pk) | Q(level="visit", visit_id=e.visit_id) | Q(level="participant", participant_id=e.participant_id)
        | Q(level="trial", trial_id=e.participant.trial_id)
    )


# Every model that holds a participant's data (tests/monitoring/test_audit_trail.py checks that no
# AuditedModel with a path to a participant is missing). `describe(row, fk)` names the record from
# its historical row; `fk(field, row)` is the label of the row's foreign key.
SOURCES: tuple[Source, ...] = (
    Source(Participant, lambda p: Q(id=p.pk), None, lambda r, fk: r.subject_number or r.screening_number,
           allocation_fields=frozenset({"unblinded_at"})),
    Source(Consent, lambda p: Q(participant_id=p.pk), None, lambda r, fk: _("consent to %(version)s") % {"version": fk("document", r)}),
    Source(EligibilityAnswer, lambda p: Q(participant_id=p.pk), None,
           lambda r, fk: fk("criterion", r) + (f" ({_('lesion')} {r.lesion[:8]})" if r.lesion else "")),
    Source(Allocation, lambda p: Q(participant_id=p.pk), None, lambda r, fk: _("allocation"),
           allocation_fields=frozenset({"arm", "slot"})),
    Source(Unblinding, lambda p: Q(participant_id=p.pk), None, lambda r, fk: _("emergency unblinding"), reveals_allocation=True),
    Source(Visit, lambda p: Q(participant_id=p.pk), None, lambda r, fk: r.label),
    Source(CrfEntry, lambda p: Q(participant_id=p.pk), lambda e: Q(id=e.pk), lambda r, fk: f"{fk('visit', r)} – {r.crf_code}"),
    Source(AdverseEvent, lambda p: Q(participant_id=p.pk), None, lambda r, fk: f"AE{r.number} {r.verbatim_term}"),
    Source(ReportingClock, lambda p: Q(adverse_event_id__in=AdverseEvent.objects.filter(participant=p).values("pk")), None,
           lambda r, fk: f"{fk('adverse_event', r)} – {r.get_kind_display()}"),
    Source(Query, lambda p: Q(participant_id=p.pk), lambda e: Q(entry_id=e.pk),
           lambda r, fk: _("query #%(id)s on %(target)s") % {
               "id": r.id, "target": ".".join(x for x in (fk("entry", r) or fk("adverse_event", r), r.item) if x)}),
    Source(QueryMessage, lambda p: Q(query_id__in=Query.objects.filter(participant=p).values("pk")),
           lambda e: Q(query_id__in=Query.objects.filter(entry=e).values("pk")),
           lambda r, fk: _("query #%(id)s: %(kind)s") % {"id": r.query_id, "kind": r.get_kind_display()}),
    Source(SdvMark, lambda p: Q(entry_id__in=_entries_of(p)), lambda e: Q(entry_id=e.pk),
           lambda r, fk: _("SDV of %(entry)s") % {"entry": fk("entry", r)}),
    Source(SdvItemTick, lambda p: Q(entry_id__in=_entries_of(p)), lambda e: Q(entry_id=e.pk),
           lambda r, fk: _("SDV tick of %(item)s in %(entry)s") % {"item": r.item, "entry": fk("entry", r)}),
    Source(Signature, lambda p: Q(participant_id=p.pk),
           lambda e: Q(participant_id=e.participant_id) & (Q(visit_id=e.visit_id) | Q(visit_id__isnull=True)),
           lambda r, fk: _("signature of %(what)s") % {"what": fk("visit", r) or _("the casebook")}),
    Source(SignatureFailure, lambda p: Q(participant_id=p.pk), None,
           lambda r, fk: _("refused signature of %(what)s") % {"what": fk("visit", r) or _("the casebook")}),
    Source(Lock, _locks_of_participant, _locks_of_entry,
           lambda r, fk: f"{r.get_kind_display()}: {r.get_level_display()}"),
    Source(ProtocolDeviation, lambda p: Q(participant_id=p.pk), None,
           lambda r, fk: _("deviation: %(category)s") % {"category": r.get_category_display()}),
    # ePRO (trials.epro): the participant's personal links and how she completed a questionnaire.
    Source(ProLink, lambda p: Q(participant_id=p.pk), lambda e: Q(visit_id=e.visit_id, crf_code=e.crf_code),
           lambda r, fk: _("questionnaire link: %(crf)s") % {"crf": r.crf_code}),
    Source(ProResponse, lambda p: Q(entry_id__in=_entries_of(p)), lambda e: Q(entry_id=e.pk),
           lambda r, fk: _("completed by the participant: %(entry)s") % {"entry": fk("entry", r)}),
)


# --- Labels of foreign keys, read in one query per related model --------------------------------

def _user_label(user) -> str:  # noqa: ANN001
    name = user.get_full_name()
    return f"{name} ({user.username})" if name else user.username


# How a foreign key is shown: (select_related, label). Default: str(obj).
_FK_LABELS: dict[str, tuple[tuple[str, ...], Callable[[object], str]]] = {
    "participants.participant": ((), lambda o: o.number),
    "participants.allocationslot": ((), lambda o: f"#{o.pk}"),
    "protocol.arm": ((), lambda o: o.code),
    "protocol.consentdocument": ((), lambda o: f"v{o.version}"),
    "protocol.criterion": ((), lambda o: o.code),
    "protocol.crfdefinition": ((), lambda o: f"{o.code} v{o.version}"),
    "protocol.trial": ((), lambda o: o.code),
    "protocol.site": ((), lambda o: o.code),
    "protocol.visitdefinition": ((), lambda o: o.code),
    "visits.visit": ((), lambda o: o.label),
    "visits.crfentry": (("visit",), lambda o: f"{o.visit.label} – {o.crf_code}"),
    "safety.adverseevent": ((), lambda o: f"AE{o.number} {o.verbatim_term}"),
    "safety.codingterm": ((), lambda o: f"{o.llt} ({o.llt_code})"),
    "monitoring.query": ((), lambda o: f"#{o.pk}"),
}


class _ForeignKeys:
    """Labels of every foreign key the rows point at, read in one query per related model."""

    def __init__(self, rows_by_model: dict[type[models.Model], list], user_ids: set[int]) -> None:
        wanted: dict[type[models.Model], set] = defaultdict(set)
        wanted[get_user_model()] |= user_ids
        for model, rows in rows_by_model.items():
            for f in _fk_fields(model):
                wanted[f.related_model].update(getattr(r, f.attname) for r in rows if getattr(r, f.attname) is not None)
        self.labels: dict[tuple[type, object], str] = {}
        self.users: dict[int, tuple[str, str]] = {}
        for related, ids in wanted.items():
            if not ids:
                continue
            if related is get_user_model():
                for obj in related.objects.filter(pk__in=ids):
                    self.labels[(related, obj.pk)] = _user_label(obj)
                    self.users[obj.pk] = (obj.username, _user_label(obj))
                continue
            select, label = _FK_LABELS.get(related._meta.label_lower, ((), str))
            for obj in related._default_manager.filter(pk__in=ids).select_related(*select):
                self.labels[(related, obj.pk)] = label(obj)

    def label(self, model: type[models.Model], value: object) -> str:
        if value is None:
            return ""
        return self.labels.get((model, value), f"#{value}")

    def user(self, user_id: int | None) -> tuple[str, str]:
        """(username, readable name) of a history row's user."""
        if user_id is None:
            return "", ""
        return self.users.get(user_id, (f"#{user_id}", f"#{user_id}"))


def _fk_fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.is_relation and (f.many_to_one or f.one_to_one)]


# --- Values as text ------------------------------------------------------------------------------

def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, date | Decimal | int | float):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str) if value else ""
    return str(value)


def _field_text(model_field: models.Field, value: object, fks: _ForeignKeys) -> str:
    if model_field.is_relation:
        return fks.label(model_field.related_model, value)
    if model_field.choices and value not in (None, ""):
        return str(dict(model_field.flatchoices).get(value, value))
    return _text(value)


def _answer_text(item: Item | None, value: object) -> str:
    """A stored CRF answer as text: choice labels with their code, yes/no, numbers as stored."""
    if item is not None and item.type == "file" and isinstance(value, dict):
        # The file's name, size and checksum, and its id (the old file stays downloadable: /files/<id>/).
        return f"{value.get('name')} ({value.get('size')} bytes, sha256 {value.get('sha256')}, file {value.get('file_id')})"
    if item is not None and item.choices and value not in (None, ""):
        labels = {str(code): label for code, label in item.choices}
        values = value if isinstance(value, list) else [value]
        return "; ".join(f"{labels.get(str(v), v)} [{v}]" for v in values)
    return _text(value)


def _missing_text(missing: object) -> str:
    if isinstance(missing, dict):
        return f"[{missing.get('code', '')}: {missing.get('reason', '')}]"
    return _text(missing)


# --- CRF answers, item by item -------------------------------------------------------------------

def _flatten(answers: dict, missing: dict, schema: CrfSchema | None) -> dict[tuple[str, str], tuple[str, str, int]]:
    """(item, row id) -> (text, group, row position) for every answered or missing item of an entry."""
    answers, missing = answers or {}, missing or {}
    items = {i.name: i for i in schema.items} if schema else {}
    flat: dict[tuple[str, str], tuple[str, str, int]] = {}
    for name, value in answers.items():
        item = items.get(name)
        if (item is not None and item.type == "repeating_group") or (item is None and isinstance(value, list) and value and isinstance(value[0], dict)):
            children = {c.name: c for c in item.children} if item else {}
            for position, row in enumerate(value or [], start=1):
                row_id = str(row.get(ROW_ID, position))
                for child, child_value in row.items():
                    if child != ROW_ID and child_value not in (None, ""):
                        flat[(child, row_id)] = (_answer_text(children.get(child), child_value), name, position)
            continue
        if value not in (None, ""):
            flat[(name, "")] = (_answer_text(item, value), "", 0)
    for name, code in missing.items():
        item = items.get(name)
        if item is not None and item.type == "repeating_group" and isinstance(code, dict) and "code" not in code:
            positions = {str(r.get(ROW_ID)): n for n, r in enumerate(answers.get(name) or [], start=1)}
            for row_id, row_missing in code.items():
                for child, child_missing in (row_missing or {}).items():
                    flat[(child, str(row_id))] = (_missing_text(child_missing), name, positions.get(str(row_id), 0))
        else:
            flat[(name, "")] = (_missing_text(code), "", 0)
    return flat


def _item_labels(schema: CrfSchema | None) -> tuple[dict[str, str], dict[str, int]]:
    """Labels of every item and child item, and their order in the CRF."""
    labels: dict[str, str] = {}
    order: dict[str, int] = {}
    for item in schema.items if schema else ():
        labels[item.name] = item.label
        order[item.name] = len(order)
        for child in item.children:
            labels[child.name] = child.label
            order[child.name] = len(order)
    return labels, order


def answer_changes(old: dict, old_missing: dict, new: dict, new_missing: dict, schema: CrfSchema | None) -> list[Change]:
    """Item-by-item differences between two versions of an entry's answers (and missing-data codes)."""
    before, after = _flatten(old, old_missing, schema), _flatten(new, new_missing, schema)
    labels, order = _item_labels(schema)
    changes = []
    for key in set(before) | set(after):
        old_text, group, position = before.get(key, ("", "", 0))
        new_text, new_group, new_position = after.get(key, ("", "", 0))
        if old_text == new_text:
            continue
        group, position = new_group or group, new_position or position
        item, row_id = key
        label = labels.get(item, item)
        code = item
        if group:
            label = f"{labels.get(group, group)} #{position} › {label}"
            code = f"{group}.{item}"
        changes.append((order.get(group or item, 10_000), position, order.get(item, 10_000), Change(code, label, old_text, new_text, row_id)))
    return [c for *_key, c in sorted(changes, key=lambda t: t[:3])]


# --- Building the trail --------------------------------------------------------------------------

@dataclass
class _Context:
    zone: ZoneInfo
    sees_allocation: bool
    participant_id: int | None = None  # the trail's participant: a record pointing at her needs no line saying so
    schemas: dict[int, CrfSchema] = field(default_factory=dict)


def _sources(sees_allocation: bool) -> list[Source]:
    return [s for s in SOURCES if sees_allocation or not s.reveals_allocation]


def _read(filters: list[tuple[Source, Q]]) -> dict[type[models.Model], list]:
    rows: dict[type[models.Model], list] = {}
    for source, condition in filters:
        rows[source.model] = list(source.model.history.filter(condition).order_by("id", "history_date", "history_id"))
    return rows


def _schemas(rows: list) -> dict[int, CrfSchema]:
    from trials.protocol.models import CrfDefinition

    ids = {r.crf_id for r in rows}
    return {pk: schema_for(crf) for pk, crf in CrfDefinition.objects.in_bulk(ids).items()} if ids else {}


def _record_changes(source: Source, previous, row, fks: _ForeignKeys, ctx: _Context) -> list[Change]:  # noqa: ANN001
    hidden = set() if ctx.sees_allocation else set(source.allocation_fields)
    changes: list[Change] = []
    for f in source.model._meta.concrete_fields:
        if f.primary_key or f.name in NOISE_FIELDS or f.name in hidden:
            continue
        if source.model is CrfEntry and f.name in ENTRY_DATA_FIELDS:
            continue
        old = getattr(previous, f.attname) if previous is not None else None
        new = getattr(row, f.attname)
        if old == new or (previous is None and new in (None, "", [], {})):
            continue
        if previous is None and f.related_model is Participant and new == ctx.participant_id:
            continue
        changes.append(Change(f.name, str(f.verbose_name), _field_text(f, old, fks), _field_text(f, new, fks)))
    if source.model is CrfEntry:
        schema = ctx.schemas.get(row.crf_id)
        changes = answer_changes(
            previous.answers if previous is not None else {}, previous.missing if previous is not None else {},
            row.answers, row.missing, schema,
        ) + changes
    return changes


def _rows_of(source: Source, records: list, fks: _ForeignKeys, ctx: _Context) -> list[AuditRow]:
    result: list[AuditRow] = []
    previous = None
    kind = str(source.model._meta.verbose_name)
    model = source.model._meta.label_lower
    fk = lambda name, r: fks.label(source.model._meta.get_field(name).related_model, getattr(r, f"{name}_id"))  # noqa: E731
    for row in records:
        if previous is not None and previous.id != row.id:
            previous = None
        changes = _record_changes(source, previous, row, fks, ctx)
        action = ACTIONS.get(row.history_type, "changed")
        # A save whose only change is hidden from this user (an unblinding on the participant) is not shown.
        skip = action == "changed" and not changes and previous is not None and _only_hidden_changed(source, previous, row, ctx)
        if not skip:
            username, name = fks.user(row.history_user_id)
            result.append(AuditRow(
                at=row.history_date, local=row.history_date.astimezone(ctx.zone), user=username, user_name=name,
                action=action, kind=kind, model=model, object_id=row.id, record=source.describe(row, fk),
                reason=row.history_change_reason or "", history_id=row.history_id, changes=tuple(changes),
            ))
        previous = row
    return result


def _only_hidden_changed(source: Source, previous, row, ctx: _Context) -> bool:  # noqa: ANN001
    if ctx.sees_allocation or not source.allocation_fields:
        return False
    return any(getattr(previous, source.model._meta.get_field(n).attname) != getattr(row, source.model._meta.get_field(n).attname)
               for n in source.allocation_fields)


def _trail(filters: list[tuple[Source, Q]], ctx: _Context) -> list[AuditRow]:
    rows = _read(filters)
    user_ids = {r.history_user_id for records in rows.values() for r in records if r.history_user_id is not None}
    fks = _ForeignKeys(rows, user_ids)
    ctx.schemas = _schemas(rows.get(CrfEntry, []))
    trail: list[AuditRow] = []
    for source, _condition in filters:
        trail.extend(_rows_of(source, rows[source.model], fks, ctx))
    trail.sort(key=lambda r: (r.at, r.history_id))
    return trail


def participant_trail(user, participant: Participant, *, blinded: bool = False) -> list[AuditRow]:  # noqa: ANN001
    """Every audited change to the participant's data, oldest first, as this user may see it
    (the caller has checked that the participant is in the user's scope). `blinded`: as a blinded
    user would, whatever the user's own rights (a blinded export asked by an unblinded person)."""
    sees = not blinded and user_sees_allocation(user, participant.trial)
    ctx = _Context(ZoneInfo(participant.site.time_zone), sees, participant.pk)
    return _trail([(s, s.for_participant(participant)) for s in _sources(ctx.sees_allocation)], ctx)


def participant_trail_as(participant: Participant, *, sees_allocation: bool) -> list[AuditRow]:
    """The participant's trail for an output whose blinding is decided by its request, not by one
    user's roles (a blinded casebook export asked for by a DSMB member leaves allocation out)."""
    ctx = _Context(ZoneInfo(participant.site.time_zone), sees_allocation, participant.pk)
    return _trail([(s, s.for_participant(participant)) for s in _sources(sees_allocation)], ctx)


def entry_trail(user, entry: CrfEntry) -> list[AuditRow]:  # noqa: ANN001
    """Every audited change to one CRF entry, its queries, SDV mark, and the signatures and locks
    that cover it, oldest first."""
    participant = entry.participant
    ctx = _Context(ZoneInfo(participant.site.time_zone), user_sees_allocation(user, participant.trial), participant.pk)
    sources = [s for s in _sources(ctx.sees_allocation) if s.for_entry is not None]
    return _trail([(s, s.for_entry(entry)) for s in sources], ctx)


def entry_answer_trail(entry: CrfEntry) -> list[AuditRow]:
    """The saves of one CRF entry alone, item by item (the entry's admin page); nothing in it
    concerns allocation, so it needs no user."""
    source = next(s for s in SOURCES if s.model is CrfEntry)
    return _trail([(source, Q(id=entry.pk))], _Context(ZoneInfo(entry.participant.site.time_zone), sees_allocation=False, participant_id=entry.participant_id))


def hides_allocation(user, trial: Trial) -> bool:  # noqa: ANN001
    """Whether records about allocation are left out of this user's trail (a note on the page says so)."""
    return trial.is_blinded and not user_sees_allocation(user, trial)


# --- CSV for inspectors --------------------------------------------------------------------------

CSV_HEADER = (
    "time_utc", "time_local", "time_zone", "user", "user_name", "action", "record_type", "record", "record_id",
    "field", "row", "label", "old", "new", "reason", "history_id",
)


def csv_rows(trail: Iterable[AuditRow], time_zone: str) -> Iterator[tuple[str, ...]]:
    """One line per changed field (one line for a save that changed nothing shown)."""
    yield CSV_HEADER
    for row in trail:
        head = (
            row.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), row.local.isoformat(timespec="seconds"), time_zone,
            row.user, row.user_name, row.action, row.kind, row.record, str(row.object_id),
        )
        tail = (row.reason, str(row.history_id))
        for change in row.changes or (Change("", "", "", ""),):
            yield tuple(text_cell(v) for v in (*head, change.field, change.row, change.label, change.old, change.new, *tail))
