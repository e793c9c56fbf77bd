"""The tables of an export, independent of the file format.

A `Table` has a name (file or sheet name), columns (variable name, label, type, unit, code list)
and a row generator streaming tuples in column order from trials.exports.selectors. The format
writers (CSV, Excel, SPSS, Stata, SAS transport …) only lay these tables out; what is in them —
and what is never in them (arms in a blinded export, identifying items by default) — is decided
here and in the selectors. A writer that builds its own texts from the protocol (ODM metadata,
dataset labels) applies `selectors.arm_mask(spec)` to them too.

Tables of an export (`export_tables`): participants; allocations (unblinded exports only);
visits; one wide table per CRF (one row per entry, one column per item of any version of the
CRF); one table per repeating group of a CRF (one row per group row, with `entry_id` linking it
to its entry and the row's stable `row_id`); adverse events; queries; missing data (items
answered with a missing-data code); and the data dictionary describing every column above.

Values: None (empty), bool, int, str, Decimal, date or datetime. CRF answers keep their stored
form, so a DECIMAL column may hold the exact decimal as a string and a DATE / DATETIME column the
ISO string: `typed(column, value)` gives the Python value, `text(value)` the CSV text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from django.db import connection
from django.db.models import F, Func, IntegerField, Sum, TextField, Value
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from edc import spreadsheet
from trials.exports import selectors
from trials.exports.spec import ExportSpec
from trials.monitoring.models import QueryOrigin, QueryState
from trials.participants.models import AllocationMethod, ParticipantStatus
from trials.protocol.models import ArmType, CrfDefinition, VisitKind
from trials.safety.models import ActionTaken, Causality, Outcome, Procedure, Seriousness
from trials.protocol.engine import MISSING_CODES, ROW_ID, CrfSchema, Item, schema_for
from trials.protocol.schema import CONTENT_LANGUAGES
from trials.visits.models import EntryStatus, VisitStatus

TEXT, INTEGER, DECIMAL, DATE, DATETIME, BOOLEAN = "text", "integer", "decimal", "date", "datetime", "boolean"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # UTC, to the second (the same as the SQL path's to_char)
TYPES = (TEXT, INTEGER, DECIMAL, DATE, DATETIME, BOOLEAN)
BOOLEAN_CODES = ((1, "Yes"), (0, "No"))

# Table kinds (a writer may treat them differently: ODM, SDTM).
PARTICIPANTS, ALLOCATIONS, VISITS, CRF, GROUP, ADVERSE_EVENTS, QUERIES, MISSING, DICTIONARY = (
    "participants", "allocations", "visits", "crf", "group", "adverse_events", "queries", "missing_data",
    "data_dictionary",
)

_CRF_ITEM_TYPES = {
    "text": TEXT, "long_text": TEXT, "integer": INTEGER, "scale": INTEGER, "decimal": DECIMAL, "calculated": DECIMAL,
    "date": DATE, "datetime": DATETIME, "yes_no": BOOLEAN,
}


@dataclass(frozen=True)
class ItemInfo:
    """What the data dictionary says of a CRF item's column, as a REDCap dictionary would: the
    checks, the branching and the calculation as written in the CRF file (CEL), and the CRF
    versions that have the item."""

    required: bool = False
    min: str = ""
    max: str = ""
    section: str = ""
    help: str = ""
    show_if: str = ""
    calculation: str = ""
    identifier: bool = False
    versions: str = ""  # "1, 2"
    # The item in each language of its CRF (newest version with the item): (language, label, choices),
    # and where each translation stands ("fr: to_be_validated; es: to_be_validated"; trials.protocol.content).
    localized: tuple[tuple[str, str, tuple[tuple[Any, str], ...]], ...] = ()
    translation_status: str = ""


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    type: str
    unit: str = ""
    codes: tuple[tuple[Any, str], ...] = ()
    precision: int | None = None
    source: str = ""  # where the value comes from ("DEMOG.sex", "participant.status"), for the dictionary
    item: ItemInfo | None = None  # a CRF item's column: its checks and branching, for the dictionary
    labels: tuple[tuple[str, str], ...] = ()  # a CRF item's column: its label in each language of the CRF


@dataclass
class Table:
    name: str
    label: str
    kind: str
    columns: tuple[Column, ...]
    rows: Callable[[], Iterable[tuple]]
    count: Callable[[], int]
    crf_code: str = ""
    group: str = ""
    meta: dict = field(default_factory=dict)
    # PostgreSQL only: the table as one SELECT of CSV-ready text columns (sql, params), for
    # `COPY (…) TO STDOUT`; the same cells as `rows()` gives through `text()`, masked if needed.
    copy: Callable[[], tuple[str, list]] | None = None
    # CRF tables: the rows with, for each, the missing-data code of every cell answered with one
    # (column index -> code, e.g. {12: "not_done"}), for the SPSS/Stata user-defined missing values.
    coded_missing: Callable[[], Iterable[tuple[tuple, dict[int, str]]]] | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


# --- Values ---------------------------------------------------------------------------------


def typed(column: Column, value: Any) -> Any:
    """A cell as a Python value of its column's type (a stored string that does not parse is kept)."""
    if value is None or value == "":
        return None
    try:
        if column.type == DECIMAL and not isinstance(value, Decimal | bool):
            return Decimal(str(value))
        if column.type == DATE and isinstance(value, str):
            return date.fromisoformat(value[:10])
        if column.type == DATETIME and isinstance(value, str):
            return datetime.fromisoformat(value)
        if column.type == INTEGER and isinstance(value, str):
            return int(value)
    except (InvalidOperation, ValueError):
        return value
    return value


def text(value: Any) -> str:
    """A cell as CSV text: empty for None, 1/0 for yes/no, ISO dates, date-times in UTC to the
    second, exact decimals."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(DATETIME_FORMAT) if value.tzinfo else value.strftime(DATETIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def text_cells(table: Table) -> Callable[[tuple], Iterable]:
    """A fast `text` for a whole row: only the cells the csv module would not write as wanted (yes/no,
    dates, date-times, decimals) are converted; None, str and int pass as they are."""
    convert = [i for i, c in enumerate(table.columns) if c.type in (BOOLEAN, DATE, DATETIME, DECIMAL)]
    if not convert:
        return lambda row: row

    datetimes = [i for i, c in enumerate(table.columns) if c.type == DATETIME]

    def cells(row: tuple) -> list:
        out = list(row)
        for i in convert:
            value = out[i]
            if value is not None and value.__class__ is not str:
                out[i] = text(value)
        for i in datetimes:  # a stored date-time answer ("…+00:00"): the one spelling, UTC "…Z"
            value = out[i]
            if value.__class__ is str and len(value) > 10:
                out[i] = _utc_text(value)
        return out

    return cells


def _utc_text(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return text(parsed)


def _choices(choices: Any) -> tuple[tuple[Any, str], ...]:
    return tuple((code, str(label)) for code, label in choices)


# --- Key columns ----------------------------------------------------------------------------


def _keys(pooled: bool, *columns: Column) -> tuple[Column, ...]:
    trial = (Column("trial", _("Trial"), TEXT, source="trial.code"),) if pooled else ()
    return trial + (
        Column("site", _("Site"), TEXT, source="site.code"),
        Column("subject", _("Participant (screening number: given at screening, never changed)"), TEXT,
               source="participant.screening_number"),
    ) + columns


def _key_values(pooled: bool, row: Any) -> tuple:
    return ((row.trial_code,) if pooled else ()) + (row.site_code, row.subject)


# --- Participants, allocations, visits, AEs, queries ----------------------------------------


def participants_table(spec: ExportSpec) -> Table:
    pooled = spec.trial_id is None
    columns = list(_keys(
        pooled,
        Column("screening_number", _("Screening number"), TEXT, source="participant.screening_number"),
        Column("subject_number", _("Subject number"), TEXT, source="participant.subject_number"),
        Column("status", _("Status"), TEXT, codes=_choices(ParticipantStatus.choices), source="participant.status"),
        Column("status_reason", _("Reason for the status"), TEXT, source="participant.status_reason"),
        Column("status_date", _("Status date"), DATE, source="participant.status_date"),
        Column("screening_date", _("Screening date"), DATE, source="participant.screening_date"),
        Column("consent_date", _("Date of first consent"), DATE, source="participant.consent_date"),
        Column("consent_version", _("Consent document version"), TEXT, source="consent.version"),
        Column("enrolment_date", _("Enrolment date"), DATE, source="participant.enrolment_date"),
        Column("first_treatment_date", _("First treatment date"), DATE, source="participant.first_treatment_date"),
        Column("age_at_consent", _("Age at consent"), INTEGER, unit="years", source="date of birth, consent date"),
    ))
    if spec.identifiers:
        columns.append(Column("date_of_birth", _("Date of birth"), DATE, source=f"CRF item {selectors.BIRTH_ITEM}"))
    if not spec.blinded:
        columns.append(Column("unblinded_at", _("Emergency unblinding"), DATETIME, source="participant.unblinded_at"))
    rows = selectors.export_participants(spec)

    def generate() -> Iterator[tuple]:
        for r in rows:
            values = _key_values(pooled, r) + (
                r.screening_number, r.subject_number, r.status, r.status_reason, r.status_date, r.screening_date,
                r.consent_date, r.consent_version, r.enrolment_date, r.first_treatment_date, r.age_at_consent,
            )
            if spec.identifiers:
                values += (r.date_of_birth,)
            if not spec.blinded:
                values += (r.unblinded_at,)
            yield values

    return Table(PARTICIPANTS, _("Participants"), PARTICIPANTS, tuple(columns), generate, rows.count)


def allocations_table(spec: ExportSpec) -> Table:
    """Who received which arm or dose cohort: only in an unblinded export."""
    pooled = spec.trial_id is None
    columns = _keys(
        pooled,
        Column("arm", _("Arm or cohort (code)"), TEXT, source="arm.code"),
        Column("arm_label", _("Arm or cohort"), TEXT, source="arm.label"),
        Column("arm_type", _("Arm type"), TEXT, codes=_choices(ArmType.choices), source="arm.arm_type"),
        Column("dose", _("Dose"), DECIMAL, source="arm.dose"),
        Column("dose_unit", _("Dose unit"), TEXT, source="arm.dose_unit"),
        Column("method", _("Allocation method"), TEXT, codes=_choices(AllocationMethod.choices), source="allocation.method"),
        Column("kit_code", _("Kit / treatment code"), TEXT, source="allocation.kit_code"),
        Column("stratum", _("Stratum"), TEXT, source="allocation.stratum"),
        Column("allocated_at", _("Allocated at"), DATETIME, source="allocation.allocated_at"),
    )
    rows = selectors.export_allocations(spec)

    def generate() -> Iterator[tuple]:
        for r in rows:
            yield _key_values(pooled, r) + (
                r.arm_code, r.arm_label, r.arm_type, r.dose, r.dose_unit, r.method, r.kit_code, r.stratum, r.allocated_at,
            )

    return Table(ALLOCATIONS, _("Allocations"), ALLOCATIONS, columns, generate, rows.count)


def visits_table(spec: ExportSpec) -> Table:
    pooled = spec.trial_id is None
    columns = _keys(
        pooled,
        Column("visit", _("Visit (code; empty for an unscheduled visit)"), TEXT, source="visit_definition.code"),
        Column("visit_sequence", _("Visit sequence"), INTEGER, source="visit.sequence"),
        Column("visit_label", _("Visit"), TEXT, source="visit.label"),
        Column(
            "visit_kind", _("Kind of visit (\"log\": a record of the participant's log)"), TEXT,
            codes=_choices([*VisitKind.choices, ("log", _("Log record"))]), source="visit_definition.kind",
        ),
        Column("planned_date", _("Planned date"), DATE, source="visit.planned_date"),
        Column("window_start", _("Window opens"), DATE, source="visit.window_start"),
        Column("window_end", _("Window closes"), DATE, source="visit.window_end"),
        Column("visit_date", _("Visit date"), DATE, source="visit.visit_date"),
        Column("status", _("Visit status"), TEXT, codes=_choices(VisitStatus.choices), source="visit.status"),
        Column("status_reason", _("Reason (missed, not done, added)"), TEXT, source="visit.status_reason"),
        Column("out_of_window", _("Done outside its window"), BOOLEAN, codes=BOOLEAN_CODES, source="visit.out_of_window"),
    )
    rows = selectors.export_visits(spec)

    def generate() -> Iterator[tuple]:
        for r in rows:
            yield _key_values(pooled, r) + (
                r.visit_code, r.sequence, r.label, r.kind, r.planned_date, r.window_start, r.window_end, r.visit_date,
                r.status, r.status_reason, r.out_of_window,
            )

    return Table(VISITS, _("Visits"), VISITS, columns, generate, rows.count)


def adverse_events_table(spec: ExportSpec) -> Table:
    pooled = spec.trial_id is None
    causality = _choices(Causality.choices)
    seriousness = [
        Column(f"sae_{code}", str(label), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.seriousness")
        for code, label in Seriousness.choices
    ]
    columns = _keys(
        pooled,
        Column("ae_number", _("AE number"), INTEGER, source="adverse_event.number"),
        Column("verbatim_term", _("Verbatim term"), TEXT, source="adverse_event.verbatim_term"),
        Column("dictionary", _("Coding dictionary"), TEXT, source="coding_term.dictionary"),
        Column("dictionary_version", _("Coding dictionary version"), TEXT, source="coding_term.version"),
        Column("llt_code", _("Lowest level term code"), TEXT, source="coding_term.llt_code"),
        Column("llt", _("Lowest level term"), TEXT, source="coding_term.llt"),
        Column("pt_code", _("Preferred term code"), TEXT, source="coding_term.pt_code"),
        Column("pt", _("Preferred term"), TEXT, source="coding_term.pt"),
        Column("soc_code", _("System organ class code"), TEXT, source="coding_term.soc_code"),
        Column("soc", _("System organ class"), TEXT, source="coding_term.soc"),
        Column("onset_date", _("Onset date"), DATE, source="adverse_event.onset_date"),
        Column("end_date", _("End date"), DATE, source="adverse_event.end_date"),
        Column("ongoing", _("Ongoing"), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.ongoing"),
        Column("grade", _("CTCAE grade"), INTEGER, codes=tuple((g, str(g)) for g in range(1, 6)), source="adverse_event.grade"),
        Column("serious", _("Serious (any ICH E2A criterion)"), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.serious"),
        *seriousness,
        Column("related_product", _("Relation to the study product"), TEXT, codes=causality, source="adverse_event.related_product"),
        Column("procedure", _("Procedure"), TEXT, codes=_choices(Procedure.choices), source="adverse_event.procedure"),
        Column("related_procedure", _("Relation to the procedure"), TEXT, codes=causality, source="adverse_event.related_procedure"),
        Column("expected", _("Expected"), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.expected"),
        Column("action_taken", _("Action taken"), TEXT, codes=_choices(ActionTaken.choices), source="adverse_event.action_taken"),
        Column("outcome", _("Outcome"), TEXT, codes=_choices(Outcome.choices), source="adverse_event.outcome"),
        Column("treatment_given", _("Treatment given"), TEXT, source="adverse_event.treatment_given"),
        Column("aware_at", _("Site aware at"), DATETIME, source="adverse_event.aware_at"),
        Column("is_dlt", _("Dose-limiting toxicity"), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.is_dlt"),
        Column("leads_to_withdrawal", _("Led to withdrawal"), BOOLEAN, codes=BOOLEAN_CODES, source="adverse_event.leads_to_withdrawal"),
    )
    criteria = [code for code, _label in Seriousness.choices]
    rows = selectors.export_adverse_events(spec)

    def generate() -> Iterator[tuple]:
        for r in rows:
            chosen = set(r.seriousness or ())
            yield _key_values(pooled, r) + (
                r.number, r.verbatim_term, r.dictionary, r.dictionary_version, r.llt_code, r.llt, r.pt_code, r.pt,
                r.soc_code, r.soc, r.onset_date, r.end_date, r.ongoing, r.grade, r.serious,
                *(code in chosen for code in criteria),
                r.related_product, r.procedure, r.related_procedure, r.expected, r.action_taken, r.outcome,
                r.treatment_given, r.aware_at, r.is_dlt, r.leads_to_withdrawal,
            )

    return Table(ADVERSE_EVENTS, _("Adverse events"), ADVERSE_EVENTS, columns, generate, rows.count)


def queries_table(spec: ExportSpec) -> Table:
    pooled = spec.trial_id is None
    columns = _keys(
        pooled,
        Column("query_id", _("Query"), INTEGER, source="query.id"),
        Column("entry_id", _("CRF entry (links to the CRF tables)"), INTEGER, source="crf_entry.id"),
        Column("crf", _("CRF"), TEXT, source="crf_entry.crf_code"),
        Column("visit", _("Visit"), TEXT, source="visit_definition.code"),
        Column("visit_sequence", _("Visit sequence"), INTEGER, source="visit.sequence"),
        Column("ae_number", _("AE number"), INTEGER, source="adverse_event.number"),
        Column("item", _("Item"), TEXT, source="query.item"),
        Column("row_id", _("Row of a repeating group"), TEXT, source="query.row_id"),
        Column("state", _("State"), TEXT, codes=_choices(QueryState.choices), source="query.state"),
        Column("origin", _("Origin"), TEXT, codes=_choices(QueryOrigin.choices), source="query.origin"),
        Column("text", _("Query text"), TEXT, source="query.text"),
        Column("raised_by", _("Raised by (user name)"), TEXT, source="query.raised_by"),
        Column("raised_at", _("Raised at"), DATETIME, source="query.raised_at"),
        Column("closed_at", _("Closed at"), DATETIME, source="query.closed_at"),
    )
    rows = selectors.export_queries(spec)

    def generate() -> Iterator[tuple]:
        for r in rows:
            yield _key_values(pooled, r) + (
                r.id, r.entry_id, r.crf_code, r.visit_code, r.visit_sequence, r.ae_number, r.item, r.row_id, r.state,
                r.origin, r.text, r.raised_by_username, r.raised_at, r.closed_at,
            )

    return Table(QUERIES, _("Queries"), QUERIES, columns, generate, rows.count)


# --- CRF tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemColumns:
    """The columns of one CRF item: one, or one yes/no column per option of a multiple choice."""

    item: str
    columns: tuple[Column, ...]
    options: tuple[Any, ...] = ()  # multiple choice: the option code of each column


def field_sources(fields: list[dict]) -> dict[str, dict]:
    """A CRF file's fields by name (repeating-group children too): show_if and calculation as written."""
    found: dict[str, dict] = {}
    for field_ in fields or []:
        found.setdefault(field_.get("name"), field_)
        found.update({k: v for k, v in field_sources(field_.get("fields") or []).items() if k not in found})
    return found


def _calculation_text(calculation: dict | None) -> str:
    """A calculated item's method as the dictionary writes it: the CEL, or score(inputs)."""
    if not calculation:
        return ""
    if calculation.get("cel"):
        return str(calculation["cel"])
    score = calculation.get("score", "")
    inputs = ", ".join(f"{k}={v}" for k, v in sorted((calculation.get("inputs") or {}).items()))
    return f"{score}({inputs})"


def _item_infos(versions: list[CrfDefinition], items: list[Item], identifiers: bool) -> dict[str, ItemInfo]:
    """The dictionary's facts of each item: from the newest version that has it (`items`, as
    _crf_items chose them), and the versions that have it. Without identifiers, an expression
    naming an identifying item (an age computed from the date of birth) names "[identifier]"
    instead, as in the ODM export: the export leaves those items out, their names included."""
    sources = [(crf.version, field_sources((crf.definition or {}).get("fields") or [])) for crf in versions]
    hidden = set() if identifiers else {
        name for _version, fields in sources for name, spec in fields.items() if spec.get("identifier")}

    def unnamed(text: str) -> str:
        for name in hidden:
            if name in text:
                text = re.sub(rf"\b{re.escape(name)}\b", "[identifier]", text)
        return text

    by_version = {crf.version: crf for crf in versions}
    infos = {}
    for item in items:
        found = [(version, fields[item.name]) for version, fields in sources if item.name in fields]
        source = found[0][1] if found else {}
        newest = by_version.get(found[0][0]) if found else None
        localized, statuses = (), ""
        if newest is not None:
            schema = schema_for(newest)
            localized = tuple(
                (language, (translated := _item_in(schema_for(newest, language), item.name)).label, translated.choices)
                for language in schema.languages
            )
            status_of = (newest.definition or {}).get("translation_status") or {}
            statuses = "; ".join(f"{language}: {status_of[language]}" for language in schema.languages if language in status_of)
        infos[item.name] = ItemInfo(
            required=item.required, min="" if item.min is None else f"{item.min}", max="" if item.max is None else f"{item.max}",
            section=item.section, help=str(item.help or ""), show_if=unnamed(str(source.get("show_if") or "")),
            calculation=unnamed(_calculation_text(source.get("calculation"))) if item.type == "calculated" else "",
            identifier=item.identifier, versions=", ".join(str(v) for v in sorted(v for v, _f in found)),
            localized=localized, translation_status=statuses,
        )
    return infos


def _item_in(schema: CrfSchema, name: str) -> Item:
    try:
        return schema.item(name)
    except KeyError:
        return Item(name=name, label="", type="text")


def _item_columns(crf_code: str, item: Item, taken: set[str], info: ItemInfo | None = None) -> ItemColumns | None:
    source = f"{crf_code}.{item.name}"

    def unique(name: str) -> str:
        candidate = name
        while candidate in taken:
            candidate = f"{candidate}_item"
        taken.add(candidate)
        return candidate

    localized = info.localized if info else ()
    if item.type == "multiple_choice":
        columns = tuple(
            Column(unique(f"{item.name}_{_code_suffix(code)}"), f"{item.label}: {label}", BOOLEAN, codes=BOOLEAN_CODES,
                   source=f"{source} = {code}", item=info,
                   labels=tuple((lang, f"{text_}: {dict(choices).get(code, label)}") for lang, text_, choices in localized))
            for code, label in item.choices
        )
        return ItemColumns(item.name, columns, tuple(code for code, _label in item.choices))
    kind = _CRF_ITEM_TYPES.get(item.type)
    if item.type == "single_choice":
        kind = INTEGER if item.choices and all(isinstance(c, int) and not isinstance(c, bool) for c, _l in item.choices) else TEXT
    if kind is None:
        return None
    codes = tuple((c, str(label)) for c, label in item.choices) or (BOOLEAN_CODES if kind == BOOLEAN else ())
    column = Column(unique(item.name), item.label, kind, unit=item.unit, codes=codes, precision=item.precision, source=source,
                    item=info, labels=tuple((lang, text_) for lang, text_, _choices in localized))
    return ItemColumns(item.name, (column,))


def _code_suffix(code: Any) -> str:
    text_code = str(code).lower()
    return "".join(ch if ch.isalnum() else "_" for ch in text_code)


def _crf_items(crf_code: str, versions: list[CrfDefinition], group: str | None, identifiers: bool) -> list[Item]:
    """The union of the items of every version (newest first, then items only older versions had),
    top-level or of one repeating group; identifying items left out unless asked."""
    seen: dict[str, Item] = {}
    for crf in versions:
        schema = schema_for(crf)
        if group is None:
            items = schema.items
        else:
            parent = next((i for i in schema.items if i.name == group and i.type == "repeating_group"), None)
            items = parent.children if parent else ()
        for item in items:
            if item.name in seen or (item.identifier and not identifiers):
                continue
            seen[item.name] = item
    return list(seen.values())


def _groups(versions: list[CrfDefinition]) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for crf in versions:
        for item in schema_for(crf).items:
            if item.type == "repeating_group":
                found.setdefault(item.name, item.label)
    return list(found.items())


def _extractor(item_columns: list[ItemColumns]) -> Callable[[dict], list]:
    """A function answers -> cells, in column order (multiple choices as one yes/no per option)."""
    plan: list[tuple[str, tuple]] = [(ic.item, ic.options) for ic in item_columns]
    if all(not options for _name, options in plan):
        names = [name for name, _options in plan]
        return lambda answers: [answers.get(name) for name in names]

    def extract(answers: dict) -> list:
        cells: list = []
        for name, options in plan:
            value = answers.get(name)
            if not options:
                cells.append(value)
            elif value is None:
                cells.extend([None] * len(options))
            else:
                cells.extend(code in value for code in options)
        return cells

    return extract


def _item_indexes(first: int, item_columns) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    """The row positions of each item's columns, the item columns starting at `first`."""
    indexes: dict[str, tuple[int, ...]] = {}
    for ic in item_columns:
        indexes[ic.item] = tuple(range(first, first + len(ic.columns)))
        first += len(ic.columns)
    return indexes


def crf_table(spec: ExportSpec, crf_code: str, versions: list[CrfDefinition] | None = None) -> Table:
    """One row per entry of the CRF, one column per item (repeating groups in their own tables)."""
    versions = versions if versions is not None else selectors.export_crf_versions(crf_code)
    pooled = spec.trial_id is None
    keys = _keys(
        pooled,
        Column("visit", _("Visit (code; empty for an unscheduled visit)"), TEXT, source="visit_definition.code"),
        Column("visit_sequence", _("Visit sequence"), INTEGER, source="visit.sequence"),
        Column("visit_date", _("Visit date"), DATE, source="visit.visit_date"),
        Column("entry_id", _("CRF entry (links repeating groups and queries)"), INTEGER, source="crf_entry.id"),
        Column("crf_version", _("CRF version"), INTEGER, source="crf_definition.version"),
        Column("entry_status", _("Entry status"), TEXT, codes=_choices(EntryStatus.choices), source="crf_entry.status"),
        Column("last_saved", _("Last saved"), DATETIME, source="crf_entry.updated_at"),
    )
    taken = {c.name for c in keys}
    items = _crf_items(crf_code, versions, None, spec.identifiers)
    infos = _item_infos(versions, items, spec.identifiers)
    item_columns = [
        ic for item in items
        if item.type != "repeating_group" and (ic := _item_columns(crf_code, item, taken, infos[item.name])) is not None
    ]
    extract = _extractor(item_columns)
    rows = selectors.export_entries(spec, crf_code)

    columns = keys + tuple(c for ic in item_columns for c in ic.columns)
    # The columns of each item (a multiple choice: all its option columns carry the item's code).
    item_indexes = _item_indexes(len(keys), item_columns)

    def generate_coded() -> Iterator[tuple[tuple, dict[int, str]]]:
        for r in rows:
            head = ((r.trial_code,) if pooled else ()) + (
                r.site_code, r.subject, r.visit_code, r.visit_sequence, r.visit_date, r.id, r.crf_version, r.status,
                r.updated_at,
            )
            codes = {
                i: value["code"] for item, value in (r.missing or {}).items()
                if isinstance(value, dict) and isinstance(value.get("code"), str) for i in item_indexes.get(item, ())
            }
            yield head + tuple(extract(r.answers or {})), codes

    def generate() -> Iterator[tuple]:
        return (row for row, _codes in generate_coded())

    title = versions[0].title if versions else crf_code
    copy = None
    if connection.vendor == "postgresql":
        copy = partial(_crf_copy_sql, rows.queryset, pooled, item_columns, columns, selectors.arm_mask_pattern(spec))
    return Table(crf_code, title, CRF, columns, generate, rows.count, crf_code=crf_code, meta={"versions": versions},
                 copy=copy, coded_missing=generate_coded)


class _JsonCell(Func):
    """One item of an entry's answers as CSV text, in SQL (PostgreSQL): the stored text or number,
    1/0 for yes/no, 1/0 for one option of a multiple choice (empty when unanswered)."""

    output_field = TextField()

    def __init__(self, key: str, kind: str = "plain", option: Any = None) -> None:
        super().__init__(F("answers"))
        self.key, self.kind, self.option = key, kind, option

    def as_sql(self, compiler, connection, **extra):  # noqa: ANN001, ANN003, ANN201
        answers, params = compiler.compile(self.source_expressions[0])
        key = [*params, self.key]
        if self.kind == BOOLEAN:
            return (
                f"(CASE {answers} -> %s WHEN 'true'::jsonb THEN '1' WHEN 'false'::jsonb THEN '0' ELSE {answers} ->> %s END)",
                key + key,
            )
        if self.kind == "option":
            return (
                f"(CASE WHEN jsonb_typeof({answers} -> %s) = 'array' THEN "
                f"(CASE WHEN {answers} -> %s @> %s::jsonb THEN '1' ELSE '0' END) END)",
                [*key, *key, json.dumps([self.option])],
            )
        if self.kind == DATETIME:  # the one date-time spelling of the CSV: UTC to the second, "Z"
            value = f"({answers} ->> %s)"
            return (
                f"(CASE WHEN {value} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T' THEN to_char(({value})::timestamptz "
                f"AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') ELSE {value} END)",
                key * 3,
            )
        return f"({answers} ->> %s)", key


class _UtcText(Func):
    """A date-time as text in UTC to the second, as `text()` writes it."""

    output_field = TextField()
    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _masked_sql(expression: Any, pattern: str | None) -> Any:
    if pattern is None:
        return expression
    return Func(expression, Value(pattern), Value(selectors.BLINDED_WORD), Value("gi"), function="regexp_replace",
                output_field=TextField())


class _FormulaGuarded(Func):
    """A text with a leading single quote when a spreadsheet could run it as a formula: the rule
    of edc/spreadsheet.py in SQL, so the COPY path writes the cells the csv module path writes."""

    output_field = TextField()

    function = "regexp_replace"

    def __init__(self, expression: Any) -> None:
        super().__init__(expression, Value(spreadsheet.SQL_FORMULA_START), Value(spreadsheet.SQL_GUARDED))


def _crf_copy_sql(
    queryset: Any, pooled: bool, item_columns: list[ItemColumns], columns: tuple[Column, ...], pattern: str | None,
) -> tuple[str, list]:
    """The wide CRF table as one SELECT of CSV text columns, in column order (PostgreSQL); texts
    masked (a blinded export of a masked trial), then guarded against formulas."""
    keys: list[Any] = [F("trial_code")] if pooled else []
    keys += [
        F("site_code"), F("subject"), F("visit_code"), F("visit_sequence"), F("visit_date"), F("id"), F("crf_version"),
        F("status"), _UtcText(F("updated_at")),
    ]
    cells: list[Any] = []
    for ic in item_columns:
        if ic.options:
            cells += [_JsonCell(ic.item, "option", option) for option in ic.options]
        else:
            kind = ic.columns[0].type if ic.columns[0].type in (BOOLEAN, DATETIME) else "plain"
            cells.append(_JsonCell(ic.item, kind))
    expressions = {}
    for i, (column, expression) in enumerate(zip(columns, keys + cells, strict=True)):
        if column.type == TEXT:
            expression = _FormulaGuarded(_masked_sql(expression, pattern))
        elif isinstance(expression, _JsonCell) and expression.kind == "plain":
            expression = _FormulaGuarded(expression)  # a stored text that is not of the item's type
        expressions[f"_c{i}"] = expression
    return queryset.annotate(**expressions).values_list(*expressions).query.sql_with_params()


class _JsonArrayLength(Func):
    """Rows of a repeating group in an entry's answers (0 when absent), on PostgreSQL and SQLite."""

    output_field = IntegerField()

    def __init__(self, group: str) -> None:
        super().__init__(Value(group))
        self.group = group

    def as_sql(self, compiler, connection, **extra):
        if connection.vendor == "postgresql":
            return (
                "(CASE WHEN jsonb_typeof(answers -> %s) = 'array' THEN jsonb_array_length(answers -> %s) ELSE 0 END)",
                [self.group, self.group],
            )
        return "COALESCE(json_array_length(answers, %s), 0)", [f'$."{self.group}"']


def group_table(spec: ExportSpec, crf_code: str, group: str, label: str, versions: list[CrfDefinition]) -> Table:
    """One row per row of a repeating group, linked to its entry by `entry_id`, with the row's
    stable id and its position."""
    pooled = spec.trial_id is None
    keys = _keys(
        pooled,
        Column("visit", _("Visit (code; empty for an unscheduled visit)"), TEXT, source="visit_definition.code"),
        Column("visit_sequence", _("Visit sequence"), INTEGER, source="visit.sequence"),
        Column("entry_id", _("CRF entry (links to the CRF table)"), INTEGER, source="crf_entry.id"),
        Column("row_number", _("Row number in the entry"), INTEGER, source=f"{crf_code}.{group}"),
        Column("row_id", _("Row identity (stable across saves)"), TEXT, source=f"{crf_code}.{group}.{ROW_ID}"),
    )
    taken = {c.name for c in keys}
    items = _crf_items(crf_code, versions, group, spec.identifiers)
    infos = _item_infos(versions, items, spec.identifiers)
    item_columns = [
        ic for item in items
        if (ic := _item_columns(f"{crf_code}.{group}", item, taken, infos[item.name])) is not None
    ]
    extract = _extractor(item_columns)
    rows = selectors.export_entries(spec, crf_code)

    # The columns of each child item (a multiple choice: all its option columns carry the code).
    item_indexes = _item_indexes(len(keys), item_columns)

    def generate_coded() -> Iterator[tuple[tuple, dict[int, str]]]:
        """The rows with the missing-data code of each cell answered with one: the entry's
        `missing` holds a group's codes as {group: {row id: {item: {code, reason}}}}."""
        for r in rows:
            group_rows = (r.answers or {}).get(group)
            if not isinstance(group_rows, list):
                continue
            head = ((r.trial_code,) if pooled else ()) + (r.site_code, r.subject, r.visit_code, r.visit_sequence, r.id)
            by_row = (r.missing or {}).get(group)
            by_row = by_row if isinstance(by_row, dict) and "code" not in by_row else {}
            for number, row in enumerate(group_rows, start=1):
                row_missing = by_row.get(str(row.get(ROW_ID))) or {}
                codes = {
                    i: value["code"] for item, value in row_missing.items()
                    if isinstance(value, dict) and isinstance(value.get("code"), str) for i in item_indexes.get(item, ())
                }
                yield head + (number, row.get(ROW_ID)) + tuple(extract(row)), codes

    def generate() -> Iterator[tuple]:
        return (row for row, _codes in generate_coded())

    def count() -> int:
        queryset = rows.queryset.annotate(_rows=_JsonArrayLength(group)).order_by()
        return queryset.aggregate(n=Sum("_rows"))["n"] or 0

    columns = keys + tuple(c for ic in item_columns for c in ic.columns)
    return Table(f"{crf_code}_{group}", f"{versions[0].title if versions else crf_code}: {label}", GROUP, columns,
                 generate, count, crf_code=crf_code, group=group, coded_missing=generate_coded)


def missing_table(spec: ExportSpec) -> Table:
    """Items answered with a missing-data code (not done, unknown, not applicable) and the reason."""
    pooled = spec.trial_id is None
    columns = _keys(
        pooled,
        Column("visit", _("Visit"), TEXT, source="visit_definition.code"),
        Column("visit_sequence", _("Visit sequence"), INTEGER, source="visit.sequence"),
        Column("entry_id", _("CRF entry"), INTEGER, source="crf_entry.id"),
        Column("crf", _("CRF"), TEXT, source="crf_entry.crf_code"),
        Column("item", _("Item"), TEXT, source="crf_entry.missing"),
        Column("row_id", _("Row of a repeating group"), TEXT, source="crf_entry.missing"),
        Column("code", _("Missing-data code"), TEXT, codes=_choices(MISSING_CODES), source="crf_entry.missing"),
        Column("reason", _("Why it is missing"), TEXT, source="crf_entry.missing"),
    )
    rows = selectors.export_entries(spec, with_missing_only=True)

    def generate() -> Iterator[tuple]:
        for r in rows:
            head = ((r.trial_code,) if pooled else ()) + (r.site_code, r.subject, r.visit_code, r.visit_sequence, r.id, r.crf_code)
            for item, value in (r.missing or {}).items():
                if isinstance(value, dict) and "code" in value:
                    yield head + (item, None, value.get("code"), value.get("reason") or None)
                elif isinstance(value, dict):  # a repeating group: {row_id: {item: {code, reason}}}
                    for row_id, items in value.items():
                        for name, code in (items or {}).items():
                            yield head + (f"{item}.{name}", row_id, code.get("code"), code.get("reason") or None)

    def count() -> int:
        return sum(1 for _row in generate())

    return Table(MISSING, _("Missing data"), MISSING, columns, generate, count)


# What the data dictionary says of every text variable (edc/spreadsheet.py).
TEXT_NOTE = gettext_lazy(
    "CSV: a text beginning with = + - @, a tab or a carriage return is written with a leading ' so that "
    "no spreadsheet runs it as a formula (a plain negative number such as -2 is left as it is); remove "
    "that one character to get the value. Excel: the exact text, in a cell marked as text. ODM, SPSS "
    "and Stata: the exact text. SAS transport: the exact text within its ASCII limits."
)


def dictionary_table(tables: list[Table]) -> Table:
    """The data dictionary: one row per column of every other table, a note on text variables
    (how the CSV and Excel files guard them against formula injection)."""
    columns = (
        Column("table", _("Table"), TEXT),
        Column("variable", _("Variable"), TEXT),
        Column("label", _("Label"), TEXT),
        Column("type", _("Type"), TEXT, codes=tuple((t, t) for t in TYPES)),
        Column("unit", _("Unit"), TEXT),
        Column("codes", _("Codes (code=label; …)"), TEXT),
        Column("codes_json", _("Codes as JSON ([[code, label], …]: unambiguous)"), TEXT),
        Column("precision", _("Decimal places"), INTEGER),
        Column("required", _("Required"), BOOLEAN, codes=BOOLEAN_CODES),
        Column("min", _("Minimum"), TEXT),
        Column("max", _("Maximum"), TEXT),
        Column("section", _("Section"), TEXT),
        Column("help", _("Help text"), TEXT),
        Column("branching", _("Asked only when (CEL)"), TEXT),
        Column("calculation", _("Calculation (CEL or score)"), TEXT),
        Column("identifier", _("Identifying item"), BOOLEAN, codes=BOOLEAN_CODES),
        Column("crf_versions", _("CRF versions with the item"), TEXT),
        Column("source", _("Source"), TEXT),
        Column("note", _("Note"), TEXT),
        # A CRF item's label in each language its CRF declares (empty where it has none), last so that
        # the columns above keep their places; codes and variable names are the same in every language.
        *(Column(f"label_{language}", _("Label (%(language)s)") % {"language": language}, TEXT) for language in CONTENT_LANGUAGES),
        Column("translation_status", _("Translation status (per language)"), TEXT),
    )
    note = str(TEXT_NOTE)

    def generate() -> Iterator[tuple]:
        for table in tables:
            for column in table.columns:
                codes = "; ".join(f"{text(code)}={label}" for code, label in column.codes)
                codes_json = json.dumps([[code, str(label)] for code, label in column.codes], ensure_ascii=False) if column.codes else None
                info = column.item
                item = (
                    info.required, info.min or None, info.max or None, info.section or None, info.help or None,
                    info.show_if or None, info.calculation or None, info.identifier, info.versions or None,
                ) if info else (None,) * 9
                labels = dict(column.labels)
                translations = (*(labels.get(language) or None for language in CONTENT_LANGUAGES), (info.translation_status or None) if info else None)
                yield (table.name, column.name, column.label, column.type, column.unit or None, codes or None, codes_json,
                       column.precision, *item, column.source or None, note if column.type == TEXT else None, *translations)

    return Table(DICTIONARY, _("Data dictionary"), DICTIONARY, columns, generate,
                 lambda: sum(len(t.columns) for t in tables))


# --- An export ------------------------------------------------------------------------------


def crf_tables(spec: ExportSpec, crf_code: str) -> list[Table]:
    """The wide table of a CRF and one table per repeating group."""
    versions = selectors.export_crf_versions(crf_code)
    tables = [crf_table(spec, crf_code, versions)]
    tables += [group_table(spec, crf_code, name, label, versions) for name, label in _groups(versions)]
    return tables


def masked(table: Table, mask: Callable[[str], str]) -> Table:
    """The table with `mask` applied to its labels and to every text cell (a blinded export of a
    masked trial: no arm code or label in any text, see selectors.arm_mask)."""
    columns = tuple(
        Column(c.name, mask(c.label), c.type, c.unit, tuple((code, mask(label)) for code, label in c.codes), c.precision,
               mask(c.source), c.item, tuple((language, mask(label)) for language, label in c.labels))
        for c in table.columns
    )
    texts = [i for i, c in enumerate(columns) if c.type == TEXT]
    rows = table.rows

    def masked_row(row: tuple) -> tuple:
        cells = list(row)
        for i in texts:
            if isinstance(cells[i], str):
                cells[i] = mask(cells[i])
        return tuple(cells)

    def generate() -> Iterator[tuple]:
        return (masked_row(row) for row in rows())

    coded_missing = None
    if table.coded_missing is not None:
        coded = table.coded_missing

        def coded_missing() -> Iterator[tuple[tuple, dict[int, str]]]:
            return ((masked_row(row), codes) for row, codes in coded())

    return Table(table.name, mask(table.label), table.kind, columns, generate, table.count, table.crf_code, table.group,
                 table.meta, table.copy, coded_missing)  # the copy SQL masks its own texts


def export_tables(spec: ExportSpec, *, dictionary: bool = True) -> list[Table]:
    """Every table of an export, in file order; the data dictionary last. In a blinded export of a
    masked trial every text is masked (`selectors.arm_mask`)."""
    tables = _export_tables(spec)
    mask = selectors.arm_mask(spec)
    if mask is not None:
        tables = [masked(table, mask) for table in tables]
    if dictionary:
        tables.append(dictionary_table(list(tables)))
    return tables


def _export_tables(spec: ExportSpec) -> list[Table]:
    tables = [participants_table(spec)]
    if not spec.blinded:
        tables.append(allocations_table(spec))
    if spec.trial_id is not None:
        tables.append(visits_table(spec))
    for code in selectors.export_crf_codes(spec):
        tables += crf_tables(spec, code)
    if spec.trial_id is not None:
        tables += [adverse_events_table(spec), queries_table(spec)]
    tables.append(missing_table(spec))
    return tables


def export_count(tables: list[Table]) -> int:
    """Rows of all tables (the progress bar's total)."""
    return sum(table.count() for table in tables)


__all__ = [
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "DECIMAL",
    "INTEGER",
    "TEXT",
    "TYPES",
    "Column",
    "Table",
    "crf_table",
    "crf_tables",
    "dictionary_table",
    "export_count",
    "export_tables",
    "group_table",
    "missing_table",
    "participants_table",
    "text",
    "typed",
]
