"""The CRF engine: a CRF version's definition -> schema -> Django forms, and validation.

`validate_answers` is the one place a CRF's rules are applied (type, required, missing-data codes,
min/max, dates, branching, CEL edit checks, calculations). It is a pure function over parsed
answers: the data-entry page, the services and future imports share it, and tests call it with a
dict. Branching is evaluated here, on the server, for the live page too (htmx posts the form and
gets it back re-rendered): there is no second evaluator in JavaScript.

Storage (CrfEntry.answers): text/date/datetime as ISO strings, integers as ints, decimals as
strings (exact), choices as their codes, yes/no as booleans, a repeating group as a list of row
dicts each with a stable `_row_id`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import cel
from cel import stdlib as cel_stdlib
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from trials.protocol.content import localized
from trials.protocol.models import CrfDefinition
from trials.protocol import medications, scores

MISSING_CODES = (
    ("not_done", gettext_lazy("Not done")),
    ("unknown", gettext_lazy("Unknown")),
    ("not_applicable", gettext_lazy("Not applicable")),
)
# "I prefer not to answer": a participant's answer on the items that allow it (`prefer_not_to_answer`
# in a participant-reported CRF); not offered to staff, so not one of MISSING_CODES.
DECLINED = "declined"
ROW_ID = "_row_id"
MAX_REASON = 500
# Other CRFs of the participant an expression may read, as `<namespace>.<CRF code>.<item>`:
#   visit    - the CRFs entered at this visit;
#   previous - the latest entry of that CRF at an earlier visit;
#   baseline - the first entry of that CRF (at an earlier visit).
# A CRF not entered there is absent from the map, so a check reading it cannot be evaluated and is
# not applied (like a check reading an unanswered item); `has(previous.VITALS)` tests for it.
CRF_NAMESPACES = ("visit", "previous", "baseline")
# What a CRF's expressions may read about the participant's allocation (null when it does not apply),
# filled by trials.visits.services.entry_context:
# - `planned_dose_per_kg`: the dose per kg of her dose cohort (the nominal dose: the same for active
#   and placebo inside a cohort, so it reveals nothing);
# - `dose_tolerance_percent`: the trial's `escalation.dose_tolerance_percent`;
# - `allocation_kit_code`: the kit code of her allocation (drawn apart from the arm: it says nothing of it).
ALLOCATION_CONTEXT_NAMES = ("planned_dose_per_kg", "dose_tolerance_percent", "allocation_kit_code")
CRF_REFERENCE = re.compile(
    r"(?<![\w.])(visit|previous|baseline)\b"
    r"(?:\s*\.\s*([A-Za-z0-9_]+)|\s*\[\s*(['\"])([A-Za-z0-9_-]+)\3\s*\])?"
    r"(?:\s*\.\s*([a-z][a-z0-9_]*))?"
)
# Aggregates CEL lacks natively, from the cel package's own extension library (Kubernetes' list
# library spelling): `ulcers.map(u, u.length_mm).sum()`. Counting, any and all are CEL macros:
# `ulcers.filter(u, u.active == true).size()`, `ulcers.exists(u, …)`, `ulcers.all(u, …)`.
EXTRA_FUNCTIONS = {"sum": cel_stdlib.sum_, "min": cel_stdlib.min_, "max": cel_stdlib.max_, **medications.FUNCTIONS}
# Functions of the CEL core the `cel` package implements, besides operators (_+_, _[_] …).
BUILTIN_FUNCTIONS = frozenset({
    "size", "has", "matches", "contains", "startsWith", "endsWith", "int", "uint", "double", "string",
    "bytes", "bool", "timestamp", "duration", "dyn", "type", "all", "exists", "exists_one", "map", "filter",
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours",
    "getMinutes", "getSeconds", "getMilliseconds",
})
INPUT_TYPES = {
    "text", "long_text", "integer", "decimal", "date", "datetime", "single_choice", "multiple_choice", "yes_no", "scale", "file",
}
# A stored `file` answer is a reference (trials.visits.files): the file itself is in the storage.
FILE_REFERENCE_KEYS = frozenset({"file_id", "name", "size", "sha256", "content_type"})


# --- Schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An edit check: `program` must be true for valid data."""

    program: cel.Program
    expression: str
    message: str
    severity: str  # "hard" blocks the save; "soft" needs the coordinator's confirmation
    field: str | None


@dataclass(frozen=True)
class Item:
    name: str
    label: str
    type: str
    required: bool = False
    help: str = ""
    unit: str = ""
    min: Decimal | None = None
    max: Decimal | None = None
    precision: int | None = None
    choices: tuple[tuple[Any, str], ...] = ()
    widget: str | None = None
    show_if: cel.Program | None = None
    rules: tuple[Rule, ...] = ()
    calculation: dict | None = None
    calculation_program: cel.Program | None = None
    calculation_inputs: tuple[str, ...] = ()
    section: str = ""
    identifier: bool = False
    may_precede_consent: bool = False
    children: tuple[Item, ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    carry_forward: tuple[str, ...] = ()
    lab_test: str | None = None  # CTCAE-graded laboratory result (trials.protocol.ctcae)
    accept: tuple[str, ...] = ()  # a file item: the kinds accepted (image, jpeg, png, pdf)
    max_size_kb: int | None = None  # a file item: the largest upload
    prefer_not_to_answer: bool = False  # the participant may decline (stored as the missing code DECLINED)

    @property
    def is_input(self) -> bool:
        return self.type in INPUT_TYPES

    @property
    def choice_labels(self) -> dict:
        return dict(self.choices)


@dataclass(frozen=True)
class Section:
    name: str  # in the CRF's default language: what items name their section by
    layout: str = "stack"
    help: str = ""
    title: str = ""  # the name in the schema's language

    @property
    def heading(self) -> str:
        return self.title or self.name


@dataclass(frozen=True)
class CrfSchema:
    crf_id: int
    code: str
    version: int
    title: str
    description: str
    items: tuple[Item, ...]
    sections: tuple[Section, ...]
    rules: tuple[Rule, ...]
    # CRF codes read from other CRFs, per namespace (what the service loads besides the submission).
    references: dict[str, frozenset[str]] = field(default_factory=dict)
    # Whether an expression reads ALLOCATION_CONTEXT_NAMES (the service then reads the allocation).
    reads_allocation: bool = False
    # "participant" (patient-reported, answered in trials.epro) or "staff".
    respondent: str = "staff"
    # The language its texts are in (trials.protocol.content), the CRF's languages and default one,
    # and the status of this language's translation ("", "original", "validated", "to_be_validated").
    language: str = "en"
    languages: tuple[str, ...] = ("en",)
    default_language: str = "en"
    translation_status: str = ""

    @property
    def translation_to_be_validated(self) -> bool:
        """Staff pages mark a working translation of a published instrument (never shown to participants)."""
        return self.translation_status == "to_be_validated"

    def item(self, name: str) -> Item:
        for item in self.items:
            if item.name == name:
                return item
            for child in item.children:
                if child.name == name:
                    return child
        raise KeyError(name)

    @property
    def groups(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.type == "repeating_group")

    @property
    def blocks(self) -> list[tuple[Section | None, list[Item]]]:
        """Items grouped by section, in the order sections first appear (for the page)."""
        declared = {s.name: s for s in self.sections}
        blocks: list[tuple[Section | None, list[Item]]] = []
        for item in self.items:
            section = declared.get(item.section) or (Section(item.section) if item.section else None)
            if blocks and (blocks[-1][0].name if blocks[-1][0] else "") == item.section:
                blocks[-1][1].append(item)
            else:
                blocks.append((section, [item]))
        return blocks


def _rules(checks: list[dict], language: str | None = None) -> tuple[Rule, ...]:
    """The edit checks, their messages in `language` where the CRF gives one (else its default)."""
    return tuple(
        Rule(cel.compile(c["expression"]), c["expression"], localized(c, "message", language), c.get("severity", "hard"), c.get("field"))
        for c in checks
    )


def crf_references(expression: str) -> list[tuple[str, str | None, str | None]]:
    """Other-CRF references of an expression: (namespace, CRF code or None, item or None)."""
    return [(m[1], m[2] or m[4] or None, m[5] or None) for m in CRF_REFERENCE.finditer(expression)]


def unknown_functions(program: cel.Program) -> list[str]:
    """Functions an expression calls that neither CEL nor the engine provide (a typo, or `avg`)."""
    return sorted(
        name for name in program.functions()
        if not name.startswith(("_", "@", "!", "-")) and name not in BUILTIN_FUNCTIONS and name not in EXTRA_FUNCTIONS
    )


def _expressions(spec: dict) -> list[str]:
    out = [c["expression"] for c in spec.get("checks") or []]
    if spec.get("show_if"):
        out.append(spec["show_if"])
    if (spec.get("calculation") or {}).get("cel"):
        out.append(spec["calculation"]["cel"])
    for child in spec.get("fields") or ():
        out += _expressions(child)
    return out


def _calculation_inputs(spec: dict) -> tuple[str, ...]:
    """The items a calculation reads (for messages about its result)."""
    calculation = spec.get("calculation") or {}
    if calculation.get("cel"):
        return tuple(cel.compile(calculation["cel"]).variables())
    score = scores.SCORES.get(calculation.get("score") or "")
    if score is None or score.inputs is None:
        return ()
    inputs = calculation.get("inputs") or {}
    return tuple(inputs.get(argument, argument) for argument in score.inputs)


def _item(spec: dict, codelists: dict, language: str | None = None) -> Item:
    choices = spec.get("choices")
    if isinstance(choices, str):
        choices = codelists[choices]
    calculation = spec.get("calculation")
    return Item(
        name=spec["name"],
        label=localized(spec, "label", language),
        type=spec["type"],
        required=spec.get("required", False),
        help=localized(spec, "help", language),
        unit=localized(spec, "unit", language),
        min=Decimal(str(spec["min"])) if spec.get("min") is not None else None,
        max=Decimal(str(spec["max"])) if spec.get("max") is not None else None,
        precision=spec.get("precision"),
        choices=tuple((c["code"], localized(c, "label", language)) for c in choices or ()),
        widget=spec.get("widget"),
        show_if=cel.compile(spec["show_if"]) if spec.get("show_if") else None,
        rules=_rules(spec.get("checks", []), language),
        calculation=calculation,
        calculation_program=cel.compile(calculation["cel"]) if calculation and calculation.get("cel") else None,
        calculation_inputs=_calculation_inputs(spec) if calculation else (),
        section=spec.get("section") or "",
        identifier=spec.get("identifier", False),
        may_precede_consent=spec.get("may_precede_consent", False),
        children=tuple(_item(child, codelists, language) for child in spec.get("fields") or ()),
        min_rows=spec.get("min_rows"),
        max_rows=spec.get("max_rows"),
        carry_forward=tuple(spec.get("carry_forward") or ()),
        lab_test=spec.get("lab_test"),
        accept=tuple(spec.get("accept") or ()),
        max_size_kb=spec.get("max_size_kb"),
        prefer_not_to_answer=spec.get("prefer_not_to_answer", False),
    )


_SCHEMAS: dict[tuple[int, str, str], CrfSchema] = {}


def _score_input_references(fields: list[dict]) -> list[tuple[str, str, str]]:
    """Score inputs that read another CRF (`baseline.DAS28.tjc28`), in groups too."""
    out = []
    for spec in fields:
        for source in ((spec.get("calculation") or {}).get("inputs") or {}).values():
            reference = scores.crf_input(source)
            if reference is not None:
                out.append(reference)
        out += _score_input_references(spec.get("fields") or [])
    return out


def _all_expressions(definition: dict) -> list[str]:
    expressions = [c["expression"] for c in definition.get("checks", [])]
    for spec in definition["fields"]:
        expressions += _expressions(spec)
    return expressions


_ALLOCATION_NAME = re.compile(r"\b(?:" + "|".join(ALLOCATION_CONTEXT_NAMES) + r")\b")


def _reads_allocation(definition: dict) -> bool:
    return any(_ALLOCATION_NAME.search(expression) for expression in _all_expressions(definition))


def _references(definition: dict) -> dict[str, frozenset[str]]:
    expressions = _all_expressions(definition)
    found: dict[str, set[str]] = {}
    for expression in expressions:
        for namespace, code, _item_name in crf_references(expression):
            if code:
                found.setdefault(namespace, set()).add(code)
    for namespace, code, _item_name in _score_input_references(definition["fields"]):
        found.setdefault(namespace, set()).add(code)
    return {namespace: frozenset(codes) for namespace, codes in found.items()}


_LANGUAGES: dict[tuple[int, str], tuple[str, tuple[str, ...]]] = {}


def _crf_languages(crf: CrfDefinition) -> tuple[str, tuple[str, ...]]:
    """A CRF version's default language and declared languages, read from its definition once per
    version (the definition is a large JSON column that the hot paths defer)."""
    key = (crf.pk, crf.content_sha256)
    found = _LANGUAGES.get(key)
    if found is None:
        definition = crf.definition or {}
        default = definition.get("default_language") or "en"
        found = _LANGUAGES[key] = (default, tuple(definition.get("languages") or [default]))
    return found


def crf_language(crf: CrfDefinition, wanted: str | None) -> str:
    """The language a CRF version is shown in: `wanted` if the CRF has it, else its default language."""
    default, languages = _crf_languages(crf)
    wanted = (wanted or "").split("-")[0].lower()  # a browser's "fr-FR" is French
    return wanted if wanted in languages else default


def schema_for(crf: CrfDefinition, language: str | None = None) -> CrfSchema:
    """The compiled schema of a CRF version, its texts in `language` when the CRF has it (else in
    its default language; codes and names are the same in every language). Versions never change,
    so each is cached for good."""
    language = crf_language(crf, language)
    key = (crf.pk, crf.content_sha256, language)
    schema = _SCHEMAS.get(key)
    if schema is None:
        definition = crf.definition
        codelists = definition.get("codelists", {})
        sections = tuple(
            Section(s["name"], s.get("layout", "stack"), localized(s, "help", language), localized(s, "name", language))
            for s in definition.get("sections", [])
        )
        default = definition.get("default_language") or "en"
        schema = CrfSchema(
            crf_id=crf.pk,
            code=crf.code,
            version=crf.version,
            title=localized(definition, "title", language) or crf.title,
            description=crf.description,
            language=language,
            languages=tuple(definition.get("languages") or [default]),
            default_language=default,
            translation_status=(definition.get("translation_status") or {}).get(language, ""),
            items=tuple(_item(spec, codelists, language) for spec in definition["fields"]),
            sections=sections,
            rules=_rules(definition.get("checks", []), language),
            references=_references(definition),
            reads_allocation=_reads_allocation(definition),
            respondent=definition.get("respondent", "staff"),
        )
        _SCHEMAS[key] = schema
    return schema


# --- Values ---------------------------------------------------------------------------------


def to_storage(item: Item, value: Any) -> Any:
    """A parsed form value as stored in CrfEntry.answers (JSON)."""
    if value is None or value == "" or value == []:
        return None
    if item.type == "decimal" or (item.type == "calculated" and isinstance(value, Decimal)):
        number = Decimal(value)
        if number == 0:
            number = abs(number)  # "-0" is stored as 0
        if item.precision is not None:
            number = number.quantize(Decimal(1).scaleb(-item.precision), rounding=ROUND_HALF_UP)
        return str(number)
    if item.type in {"integer", "scale"}:
        return int(value)
    if item.type == "date":
        return value.isoformat() if isinstance(value, date) else str(value)
    if item.type == "datetime":
        if isinstance(value, datetime):
            if timezone.is_naive(value):
                value = timezone.make_aware(value)
            return value.astimezone(dt_timezone.utc).isoformat()
        return str(value)
    if item.type == "multiple_choice":
        return list(value)
    return value


def to_cel(item: Item, stored: Any) -> Any:
    """A stored answer as CEL sees it: decimals as doubles, dates as ISO strings, null if unanswered."""
    if stored is None:
        return None
    if item.type == "file":  # expressions see the file's original name (or null): `photo != null`
        return stored.get("name") if isinstance(stored, dict) else None
    if item.type in {"decimal", "calculated"} and isinstance(stored, str):
        try:
            return float(Decimal(stored))
        except InvalidOperation:
            return None
    return stored


def cel_answers(schema: CrfSchema, answers: dict) -> dict:
    """A stored entry's answers as CEL sees them (repeating groups as lists of row maps)."""
    out: dict[str, Any] = {}
    for item in schema.items:
        if item.type == "descriptive":
            continue
        if item.type == "repeating_group":
            out[item.name] = [
                {child.name: to_cel(child, row.get(child.name)) for child in item.children}
                for row in answers.get(item.name) or [] if isinstance(row, dict)
            ]
        else:
            out[item.name] = to_cel(item, answers.get(item.name))
    return out


def plain(number: Decimal) -> str:
    """A decimal as people write it: 100, 0.5 (never 1E+2)."""
    text = f"{number.normalize():f}"
    return text


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


_PROGRAM_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def evaluate(program: cel.Program, context: dict) -> tuple[bool, Any]:
    """Run a compiled expression over a context built like `validate_answers` builds it (for the
    data-quality rules over stored data): (False, None) when it cannot be evaluated."""
    return _evaluate(program, context)


def _evaluate(program: cel.Program, context: dict) -> tuple[bool, Any]:
    """Run a CEL program; (False, None) when it cannot be evaluated (e.g. arithmetic on a null, or
    a CRF of another visit that is not entered).

    Only the names the program uses are passed: the cel extension converts every value it is
    given, and a 100-item context on each of 30 checks was most of a save's time. The aggregate
    functions are registered only for the programs that call them.
    """
    known = _PROGRAM_NAMES.get(program.source)
    if known is None:
        known = _PROGRAM_NAMES[program.source] = (
            tuple(program.variables()), tuple(f for f in program.functions() if f in EXTRA_FUNCTIONS)
        )
    names, functions = known
    values = {name: context[name] for name in names if name in context}
    try:
        if functions:
            environment = cel.Context()
            for name in functions:
                environment.add_function(name, EXTRA_FUNCTIONS[name])
            environment.update(values)
            return True, program.execute(environment)
        return True, program.execute(values)
    except Exception:  # noqa: BLE001 - the cel extension raises several types; none may escape to the user
        return False, None


# --- Validation -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What validating a submission found; `answers`/`missing` are what a save would store."""

    answers: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    row_errors: dict[str, dict[int, dict[str, list[str]]]] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)
    hidden_in_rows: dict[str, dict[int, set[str]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        return not self.errors and not any(self.row_errors.values())

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def add_row(self, group: str, index: int, name: str, message: str) -> None:
        self.row_errors.setdefault(group, {}).setdefault(index, {}).setdefault(name, []).append(message)


def _check_value(item: Item, stored: Any, context: dict, report) -> None:  # noqa: ANN001
    """Range and date rules of one answered item; `report(message)` records an error."""
    if item.type in {"integer", "decimal", "scale"}:
        number = _number(stored)
        if number is not None and item.min is not None and number < item.min:
            report(_("Must be at least %(min)s%(unit)s.") % {"min": plain(item.min), "unit": f" {item.unit}" if item.unit else ""})
        if number is not None and item.max is not None and number > item.max:
            report(_("Must be at most %(max)s%(unit)s.") % {"max": plain(item.max), "unit": f" {item.unit}" if item.unit else ""})
    if item.type in {"date", "datetime"}:
        day = str(stored)[:10]
        today = context.get("today")
        if today and day > today:
            report(_("This date is in the future."))
        consent = context.get("consent_date")
        if consent and day < consent and not item.may_precede_consent:
            report(_("This date is before the participant's consent (%(date)s).") % {"date": consent})
    if item.type == "single_choice" and item.choices and stored not in item.choice_labels:
        report(_("Choose one of the listed answers."))
    if item.type == "multiple_choice" and item.choices and any(v not in item.choice_labels for v in stored):
        report(_("Choose among the listed answers."))
    if item.type == "file" and not (isinstance(stored, dict) and FILE_REFERENCE_KEYS <= stored.keys()):
        report(_("This is not a stored file: upload the file on the CRF page."))


def _with_unit(value: Any, unit: str) -> str:
    number = _number(value)
    text = plain(number) if number is not None else str(value)
    return f"{text} {unit}" if unit else text


def _check_calculated_range(item: Item, value: Any, siblings: tuple[Item, ...], stored: dict, report) -> None:  # noqa: ANN001
    """A calculated value outside its hard range blocks the save, naming the answers it comes from
    (an impossible BMI is a wrong weight or height, not a new fact)."""
    number = _number(value)
    if number is None:
        return
    if item.min is not None and number < item.min:
        template = _("%(label)s %(value)s is below the minimum %(limit)s: check %(inputs)s.")
        limit = item.min
    elif item.max is not None and number > item.max:
        template = _("%(label)s %(value)s is above the maximum %(limit)s: check %(inputs)s.")
        limit = item.max
    else:
        return
    by_name = {sibling.name: sibling for sibling in siblings}
    inputs = [
        f"{by_name[name].label} {_with_unit(stored[name], by_name[name].unit)}"
        for name in item.calculation_inputs if name in by_name and stored.get(name) is not None
    ]
    report(template % {
        "label": item.label, "value": _with_unit(number, item.unit), "limit": _with_unit(limit, item.unit),
        "inputs": ", ".join(inputs) or _("the answers it is calculated from"),
    })


def _calculate(item: Item, answers: dict, context: dict, cel_context: dict) -> tuple[Any, str]:
    calculation = item.calculation or {}
    if item.calculation_program is not None:
        ok, value = _evaluate(item.calculation_program, cel_context)
        if not ok or value is None or isinstance(value, bool):
            return None, ""
        try:
            return to_storage(item, Decimal(str(value))), ""
        except InvalidOperation:
            return None, ""
    result = scores.compute(calculation["score"], answers, calculation.get("inputs", {}), context)
    value = result.value
    stored = str(value) if isinstance(value, Decimal) else value
    note = result.note
    if result.category:
        note = f"{result.category}" + (f" – {note}" if note else "")
    return stored, note


def _validate_items(
    items: tuple[Item, ...],
    raw: dict,
    missing_in: dict,
    context: dict,
    cel_context: dict,
    stored: dict,
    report,  # noqa: ANN001
    hidden: set[str],
    missing_out: dict,
    notes: dict,
    warnings: list[dict],
) -> None:
    """Visibility, required/missing, value rules, calculations and field checks, in item order."""
    for item in items:
        if item.type == "repeating_group":
            continue
        if item.show_if is not None:
            ok, shown = _evaluate(item.show_if, cel_context)
            if not (ok and shown is True):
                # Hidden: cleared, not validated, not stored (a descriptive text is just not shown).
                hidden.add(item.name)
                cel_context[item.name] = None
                continue
        if item.type == "descriptive":
            continue
        if item.type == "calculated":
            value, note = _calculate(item, {**stored, **raw}, context, cel_context)
            stored[item.name] = value
            cel_context[item.name] = to_cel(item, value)
            if note:
                notes[item.name] = note
            if value is not None:
                _check_calculated_range(item, value, items, stored, lambda message, name=item.name: report(name, message))
            continue
        value = to_storage(item, raw.get(item.name))
        code = (missing_in.get(item.name) or {}).get("code")
        if value is None and code == DECLINED and item.prefer_not_to_answer:
            missing_out[item.name] = {"code": DECLINED, "reason": str(_("The participant preferred not to answer."))}
        elif value is None and code:
            reason = ((missing_in.get(item.name) or {}).get("reason") or "").strip()
            if code not in dict(MISSING_CODES):
                report(item.name, _("Unknown missing-data code."))
            elif not reason:
                report(item.name, _("Give a reason why this item is missing."))
            elif "\x00" in reason:
                report(item.name, _("The reason contains a character that cannot be stored."))
            elif len(reason) > MAX_REASON:
                report(item.name, _("Keep the reason under %(n)s characters.") % {"n": MAX_REASON})
            else:
                missing_out[item.name] = {"code": code, "reason": reason}
        elif value is None and item.required:
            report(item.name, _("This item is required: answer it, or mark it as not done, unknown or not applicable with a reason."))
        elif value is not None:
            _check_value(item, value, context, lambda message, name=item.name: report(name, message))
        stored[item.name] = value
        cel_context[item.name] = to_cel(item, value)
    for item in items:
        if item.name in hidden or item.type in {"descriptive", "repeating_group"}:
            continue
        for rule in item.rules:
            _apply_rule(rule, item.name, cel_context, report, warnings)


def _apply_rule(rule: Rule, target: str, cel_context: dict, report, warnings: list[dict]) -> None:  # noqa: ANN001
    ok, passed = _evaluate(rule.program, cel_context)
    if not ok or passed is not False:
        return  # cannot be evaluated yet (missing data) or true: nothing to say
    if rule.severity == "hard":
        report(target, rule.message)
    else:
        warnings.append({"field": target, "message": rule.message, "expression": rule.expression})


def validate_answers(
    schema: CrfSchema, raw: dict, *, missing: dict | None = None, context: dict | None = None,
    known_row_ids: set[str] | None = None,
) -> Outcome:
    """Apply every rule of the CRF to parsed answers; returns what to store, or the errors.

    `raw`: item name -> parsed value (date, Decimal, code …); a repeating group -> list of row dicts.
    `missing`: item name -> {"code", "reason"} for items answered with a missing-data code
    (in a group: `missing["<group>"][row_index][item]`).
    `context`: `today`, `visit_date`, `consent_date` (ISO dates), trial settings for scores, and
    `crfs`: namespace -> CRF code -> answers of the other CRFs the schema reads (`cel_answers`).
    `known_row_ids`: row identities the server issued for this entry (its stored rows and the rows
    carried forward); any other posted identity is replaced by a new one. None: format check only.
    """
    context = dict(context or {})
    context.setdefault("today", timezone.localdate().isoformat())
    missing = missing or {}
    outcome = Outcome()
    cel_context: dict[str, Any] = {k: context.get(k) for k in ("today", "visit_date", "consent_date", *ALLOCATION_CONTEXT_NAMES)}
    # Other CRFs (`visit.VITALS.weight_kg`): CRF code -> its answers as CEL sees them; see CRF_NAMESPACES.
    other_crfs = context.get("crfs") or {}
    cel_context.update({namespace: other_crfs.get(namespace) or {} for namespace in CRF_NAMESPACES})
    # Unknown names in a submission (tampering, or an older form) are ignored, never stored.
    _validate_items(
        schema.items, raw, missing, context, cel_context, outcome.answers, outcome.add,
        outcome.hidden, outcome.missing, outcome.notes, outcome.warnings,
    )
    for group in schema.groups:
        rows_in = raw.get(group.name) or []
        if group.show_if is not None:
            ok, shown = _evaluate(group.show_if, cel_context)
            if not (ok and shown is True):
                outcome.hidden.add(group.name)
                cel_context[group.name] = []
                continue
        rows_out: list[dict] = []
        cel_rows: list[dict] = []
        group_missing = missing.get(group.name) or {}
        for index, row in enumerate(rows_in):
            row_stored: dict[str, Any] = {ROW_ID: _row_id(row.get(ROW_ID), known_row_ids)}
            row_cel = dict(cel_context)
            row_hidden: set[str] = set()
            row_missing: dict = {}
            _validate_items(
                group.children, row, group_missing.get(index) or {}, context, row_cel, row_stored,
                lambda name, message, i=index: outcome.add_row(group.name, i, name, message),
                row_hidden, row_missing, {}, outcome.warnings,
            )
            if row_hidden:
                outcome.hidden_in_rows.setdefault(group.name, {})[index] = row_hidden
            if row_missing:
                outcome.missing.setdefault(group.name, {})[row_stored[ROW_ID]] = row_missing
            rows_out.append(row_stored)
            cel_rows.append({c.name: row_cel.get(c.name) for c in group.children})
        if group.min_rows is not None and len(rows_out) < group.min_rows:
            outcome.add(group.name, _("At least %(n)s row(s) are needed.") % {"n": group.min_rows})
        if group.max_rows is not None and len(rows_out) > group.max_rows:
            outcome.add(group.name, _("At most %(n)s rows are allowed.") % {"n": group.max_rows})
        ids = [r[ROW_ID] for r in rows_out]
        if len(ids) != len(set(ids)):
            outcome.add(group.name, _("Two rows have the same identity; reload the page."))
        outcome.answers[group.name] = rows_out
        cel_context[group.name] = cel_rows
    for rule in schema.rules:
        _apply_rule(rule, rule.field or "__all__", cel_context, outcome.add, outcome.warnings)
    return outcome


def _row_id(value: Any, known: set[str] | None) -> str:
    """A row keeps the identity the server gave it; a new (or forged) row gets a new one."""
    if isinstance(value, str):
        try:
            row_id = uuid.UUID(hex=value).hex
        except ValueError:
            row_id = None
        if row_id and (known is None or row_id in known):
            return row_id
    return uuid.uuid4().hex
