"""Load trials and CRFs from YAML (seeds/) into the protocol tables.

`protocol_load(paths, user=…)` reads every file, validates all of it (schema, references between
files, CEL expressions), and only then writes, in one transaction. Any problem raises
`ProtocolLoadError` listing each one as `file:line: path: problem`, and nothing is written.
A second run with the same files writes nothing: rows are compared before they are saved.
A CRF whose content changed becomes a new version; older versions stay for the data entered
with them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cel
import yaml
from django.conf import settings
from django.db import transaction
from pydantic import ValidationError

from edc.audit import audited_bulk_create, audited_save, changed_fields
from trials.protocol import hooks
from trials.protocol.allocation_rules import allocation_ratio, block_size_message
from trials.protocol.engine import ALLOCATION_CONTEXT_NAMES, CRF_NAMESPACES, crf_references, unknown_functions
from trials.protocol.medications import CRITERION_NAMES, MEDICATION_LOG
from trials.protocol.models import (
    Arm,
    ConsentDocument,
    CrfDefinition,
    Criterion,
    FieldDefinition,
    Site,
    Trial,
    TrialCrf,
    TrialCrfUse,
    VisitCrf,
    VisitDefinition,
)
from trials.protocol.quality import (
    AE_FIELDS,
    AE_ITEMS,
    AE_RULE_NAMES,
    CRF_RULE_NAMES,
    LAB_KEYS,
    ae_member_names,
    lab_references,
)
from trials.protocol.content import check_languages, default_text, split_localized
from trials.protocol.schema import CrfField, CrfFile, TrialFile
from trials.protocol.scores import SCORES, crf_input

# Names every expression may use besides the CRF's own fields.
CONTEXT_NAMES = frozenset({"visit_date", "consent_date", "today", *ALLOCATION_CONTEXT_NAMES})
# Names a CRF's expressions may also use to read other CRFs (`visit.VITALS.weight_kg`).
RESERVED_NAMES = CONTEXT_NAMES | frozenset(CRF_NAMESPACES)


@dataclass(frozen=True)
class CrfReference:
    """`<namespace>.<crf>.<item>` in an expression, checked once the whole CRF library is known."""

    source: SourceFile
    loc: tuple
    crf_code: str
    namespace: str
    crf: str
    item: str | None
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class ProtocolLoadError(Exception):
    """One or more files are invalid; nothing was written."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class LoadReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deactivated: dict[str, int] = field(default_factory=dict)
    crf_versions: list[str] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)

    def count(self, bucket: dict[str, int], model: type, n: int = 1) -> None:
        bucket[model.__name__] = bucket.get(model.__name__, 0) + n

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated)


# --- Reading files --------------------------------------------------------------------------


@dataclass
class SourceFile:
    path: Path
    label: str
    text: str
    data: Any = None
    node: yaml.Node | None = None

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """Line (1-based) of the deepest node of `loc` found in the YAML."""
        node, line = self.node, None
        if node is not None:
            line = node.start_mark.line + 1
        for key in loc:
            if isinstance(node, yaml.MappingNode):
                match = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
                if match is None:
                    break
                key_node = next(k for k, v in node.value if getattr(k, "value", None) == key)
                node, line = match, key_node.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
                node = node.value[key]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def problem(self, loc: Sequence[Any], message: str) -> Problem:
        return Problem(self.label, format_path(loc), message, self.line_of(loc))


def format_path(loc: Sequence[Any]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _duplicate_keys(node: yaml.Node, loc: tuple = ()) -> Iterable[Problem]:
    """YAML keeps the last of two equal keys silently; in a protocol that hides a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = getattr(key_node, "value", None)
            if key in seen:
                yield Problem("", format_path(loc + (key,)), f"duplicate key '{key}'", key_node.start_mark.line + 1)
            seen.add(key)
            yield from _duplicate_keys(value_node, loc + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            yield from _duplicate_keys(child, loc + (index,))


def read_source(path: Path, label: str, problems: list[Problem]) -> SourceFile | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(label, "", f"cannot read the file: {exc}"))
        return None
    source = SourceFile(path=path, label=label, text=text)
    try:
        loader = yaml.SafeLoader(text)  # one parse: the node tree (for line numbers) and the data
        try:
            source.node = loader.get_single_node()
            source.data = loader.construct_document(source.node) if source.node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problems.append(Problem(label, "", f"YAML syntax error: {getattr(exc, 'problem', None) or exc}", line))
        return None
    if not isinstance(source.data, dict):
        problems.append(Problem(label, "", "the file must hold a mapping (key: value lines) at the top", 1))
        return None
    for duplicate in _duplicate_keys(source.node):
        problems.append(Problem(label, duplicate.path, duplicate.message, duplicate.line))
    return source


def _clean_loc(data: Any, loc: Sequence[Any]) -> tuple:
    """Drop the union-member names pydantic inserts into error locations."""
    out: list = []
    node = data
    for key in loc:
        if isinstance(node, dict) and key in node:
            out.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            out.append(key)
            node = node[key]
        elif isinstance(node, dict) and isinstance(key, str) and not key[:1].isupper() and "[" not in key:
            out.append(key)  # a missing key: name it
            node = None
    return tuple(out)


def validate_model(source: SourceFile, model: type, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(source.data)
    except ValidationError as exc:
        messages: dict[tuple, list[str]] = {}
        for error in exc.errors():
            loc = _clean_loc(source.data, error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key '{loc[-1] if loc else error['loc'][-1]}'"
            elif error["type"] == "missing":
                message = "required key is missing"
            elif error["type"] == "literal_error":
                message = f"'{error.get('input')}' is not allowed: {error['msg'].removeprefix('Input should be ')}"
            messages.setdefault(loc, [])
            if message not in messages[loc]:
                messages[loc].append(message)
        for loc, texts in messages.items():
            problems.append(source.problem(loc, "; or ".join(texts)))
        return None


# --- Expressions ------------------------------------------------------------------------------


def check_expression(
    source: SourceFile, loc: Sequence[Any], expression: str, known: set[str], problems: list[Problem],
    references: list[CrfReference] | None = None, crf_code: str = "",
) -> None:
    """Compile a CEL expression and make sure it only names known fields and functions.

    With `references` (a CRF's expressions), `visit.`/`previous.`/`baseline.<CRF>.<item>` may read
    other CRFs; they are collected there and checked against the library by `check_references`."""
    try:
        program = cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0].replace("Failed to parse expression", "does not compile")
        problems.append(source.problem(loc, f"CEL expression {first.strip()}"))
        return
    bound = set(_MACRO_BINDING.findall(expression))
    allowed = CONTEXT_NAMES | (frozenset(CRF_NAMESPACES) if references is not None else frozenset())
    unknown = sorted(set(program.variables()) - known - bound - allowed)
    if unknown:
        problems.append(
            source.problem(loc, f"expression '{expression}' uses unknown field name(s): {', '.join(unknown)}")
        )
    functions = unknown_functions(program)
    if functions:
        problems.append(source.problem(loc, f"expression '{expression}' calls unknown function(s): {', '.join(functions)}"))
    if references is None:
        return
    for namespace, code, item in crf_references(expression):
        if code is None:
            problems.append(source.problem(loc, f"'{namespace}' reads another CRF: write {namespace}.CRF_CODE.item"))
        elif namespace == "visit" and code == crf_code:
            problems.append(source.problem(loc, f"'visit.{code}' is this CRF: use its items by their names"))
        else:
            references.append(CrfReference(source, tuple(loc), crf_code, namespace, code, item))


def check_references(references: Iterable[CrfReference], library: dict[str, CrfFields], problems: list[Problem]) -> None:
    """Other-CRF references must name a CRF of the library and one of its items (or groups)."""
    for ref in references:
        fields = library.get(ref.crf)
        if fields is None:
            problems.append(ref.source.problem(ref.loc, f"'{ref.namespace}.{ref.crf}' names an unknown CRF '{ref.crf}'"))
        elif ref.item is not None and ref.item not in fields.top:
            problems.append(
                ref.source.problem(ref.loc, f"'{ref.namespace}.{ref.crf}.{ref.item}': CRF '{ref.crf}' has no item '{ref.item}'")
            )


def _field_names(fields: Iterable[CrfField]) -> set[str]:
    return {f.name for f in fields if f.type != "descriptive"}


def validate_crf(
    source: SourceFile, crf: CrfFile, problems: list[Problem], references: list[CrfReference] | None = None
) -> None:
    """Checks that need the whole CRF: unique names, codelists, sections, expressions (references
    to other CRFs are collected in `references`, checked once the library is known)."""
    references = [] if references is None else references

    def check(loc: tuple, expression: str, scope: set[str]) -> None:
        check_expression(source, loc, expression, scope, problems, references, crf.code)

    top = _field_names(crf.fields)
    check_languages(
        source.data, crf.content_languages, crf.default_language, lambda loc, message: problems.append(source.problem(loc, message))
    )
    declared_sections = {default_text(s.name, crf.default_language) for s in crf.sections}
    seen: dict[str, tuple] = {}

    def visit(fields: Sequence[CrfField], loc: tuple, scope: set[str]) -> None:
        for index, item in enumerate(fields):
            here = loc + (index,)
            if item.name in seen:
                problems.append(source.problem(here + ("name",), f"duplicate field name '{item.name}'"))
            if item.name in RESERVED_NAMES:
                problems.append(
                    source.problem(here + ("name",), f"'{item.name}' is reserved: expressions get it from the visit or other CRFs")
                )
            seen[item.name] = here
            if isinstance(item.choices, str) and item.choices not in crf.codelists:
                problems.append(source.problem(here + ("choices",), f"unknown codelist '{item.choices}'"))
            if isinstance(item.choices, list):
                codes = [c.code for c in item.choices]
                if len(codes) != len(set(codes)):
                    problems.append(source.problem(here + ("choices",), "duplicate choice codes"))
            if item.section and declared_sections and item.section not in declared_sections:
                problems.append(source.problem(here + ("section",), f"unknown section '{item.section}'"))
            if item.show_if:
                check(here + ("show_if",), item.show_if, scope)
            for c_index, item_check in enumerate(item.checks):
                check(here + ("checks", c_index, "expression"), item_check.expression, scope)
            if item.calculation and item.calculation.cel:
                check(here + ("calculation", "cel"), item.calculation.cel, scope)
            if item.calculation and item.calculation.score:
                _check_score(source, here + ("calculation",), item.calculation.score, item.calculation.inputs, problems)
            if item.calculation:
                for arg, name in item.calculation.inputs.items():
                    reference = crf_input(name)
                    if reference is not None:
                        namespace, code, field_name = reference
                        loc = here + ("calculation", "inputs", arg)
                        if namespace == "visit" and code == crf.code:
                            problems.append(source.problem(loc, f"'visit.{code}' is this CRF: use its items by their names"))
                        else:
                            references.append(CrfReference(source, loc, crf.code, namespace, code, field_name))
                    elif name not in scope and name not in CONTEXT_NAMES:
                        problems.append(
                            source.problem(here + ("calculation", "inputs", arg), f"unknown field name '{name}'")
                        )
            if item.fields is not None:
                visit(item.fields, here + ("fields",), scope | _field_names(item.fields))

    section_names = [default_text(s.name, crf.default_language) for s in crf.sections]
    for index, name in enumerate(section_names):
        if name in section_names[:index]:
            problems.append(source.problem(("sections", index, "name"), f"duplicate section '{name}'"))
    visit(crf.fields, ("fields",), top)
    for name, codes in crf.codelists.items():
        values = [c.code for c in codes]
        if len(values) != len(set(values)):
            problems.append(source.problem(("codelists", name), "duplicate choice codes"))
    for index, crf_check in enumerate(crf.checks):
        check(("checks", index, "expression"), crf_check.expression, top)
        if crf_check.field and crf_check.field not in seen:
            problems.append(source.problem(("checks", index, "field"), f"unknown field name '{crf_check.field}'"))


def _check_score(source: SourceFile, loc: tuple, name: str, inputs: dict, problems: list[Problem]) -> None:
    """A calculation's score must exist in the score library and take the inputs it is given."""
    known = SCORES.get(name)
    if known is None:
        problems.append(source.problem(loc + ("score",), f"unknown score '{name}' (the library has: {', '.join(sorted(SCORES))})"))
        return
    if known.inputs is None and inputs:
        problems.append(source.problem(loc + ("inputs",), f"score '{name}' reads its items by name: give no 'inputs'"))
    elif known.inputs is not None:
        extra = sorted(set(inputs) - set(known.inputs))
        if extra:
            problems.append(
                source.problem(loc + ("inputs",), f"score '{name}' takes {', '.join(known.inputs)}, not {', '.join(extra)}")
            )


@dataclass(frozen=True)
class CrfFields:
    """What the trial validation needs to know about a CRF: its field names and groups."""

    top: frozenset[str]
    groups: dict[str, frozenset[str]]
    labs: frozenset[str] = frozenset()  # items graded against the site's lab ranges (`lab_test`)

    @classmethod
    def from_definition(cls, definition: dict) -> CrfFields:
        fields = definition.get("fields", [])
        top = frozenset(f["name"] for f in fields if f["type"] != "descriptive")
        groups = {
            f["name"]: frozenset(g["name"] for g in f.get("fields") or [] if g["type"] != "descriptive")
            for f in fields
            if f["type"] == "repeating_group"
        }
        return cls(top, groups, frozenset(f["name"] for f in fields if f.get("lab_test")))


def check_block_sizes(source: SourceFile, trial: TrialFile, problems: list[Problem]) -> None:
    """Block sizes against the allocation ratio, by the rule the allocation service applies
    (trials.protocol.allocation_rules): a file that loads is a list that can be generated."""
    if trial.randomization is not None:
        ratio = allocation_ratio([arm.planned_size or 1 for arm in trial.arms])
        problem = block_size_message(ratio, trial.randomization.block_sizes)
        if problem:
            problems.append(source.problem(("randomization", "block_sizes"), problem))
    placebo = trial.escalation.placebo if trial.escalation else None
    if placebo is not None:
        for arm in trial.arms:
            if arm.planned_size is None or arm.code not in placebo.per_cohort:
                continue  # said by the schema
            n_placebo = placebo.per_cohort[arm.code]
            ratio = allocation_ratio([arm.planned_size - n_placebo, n_placebo])
            problem = block_size_message(ratio, placebo.block_sizes or [arm.planned_size])
            if problem:
                problems.append(source.problem(("escalation", "placebo", "block_sizes"), f"cohort {arm.code} (active:placebo): {problem}"))


def validate_trial(source: SourceFile, trial: TrialFile, library: dict[str, CrfFields], problems: list[Problem]) -> None:
    """Checks that need the CRF library: unique codes, CRF references, criterion expressions."""
    check_block_sizes(source, trial, problems)
    for key in ("sites", "arms", "criteria", "visits"):
        seen: set[str] = set()
        for index, item in enumerate(getattr(trial, key)):
            if item.code in seen:
                problems.append(source.problem((key, index, "code"), f"duplicate code '{item.code}' in {key}"))
            seen.add(item.code)
    for index, visit in enumerate(trial.visits):
        codes: set[str] = set()
        for c_index, link in enumerate(visit.crf_links()):
            loc = ("visits", index, "crfs", c_index)
            if link.crf not in library:
                problems.append(source.problem(loc, f"visit '{visit.code}' refers to unknown CRF '{link.crf}'"))
            if link.crf in codes:
                problems.append(source.problem(loc, f"CRF '{link.crf}' is listed twice at visit '{visit.code}'"))
            codes.add(link.crf)
    participant_scope: set[str] = set()
    for index, code in enumerate(trial.eligibility.crfs):
        if code not in library:
            problems.append(source.problem(("eligibility", "crfs", index), f"unknown CRF '{code}'"))
        else:
            participant_scope |= library[code].top
    lesion_scope: set[str] | None = None
    lesion = trial.eligibility.lesion
    if lesion is not None:
        if lesion.crf not in library:
            problems.append(source.problem(("eligibility", "lesion", "crf"), f"unknown CRF '{lesion.crf}'"))
        elif lesion.group not in library[lesion.crf].groups:
            problems.append(
                source.problem(
                    ("eligibility", "lesion", "group"), f"CRF '{lesion.crf}' has no repeating group '{lesion.group}'"
                )
            )
        else:
            lesion_scope = set(library[lesion.crf].groups[lesion.group])
    for key, codes in (("logs", trial.logs), ("unscheduled", trial.unscheduled.crfs)):
        seen_codes: set[str] = set()
        for index, code in enumerate(codes):
            loc = (key, index) if key == "logs" else (key, "crfs", index)
            if code not in library:
                problems.append(source.problem(loc, f"unknown CRF '{code}'"))
            if code in seen_codes:
                problems.append(source.problem(loc, f"CRF '{code}' is listed twice"))
            seen_codes.add(code)
    check_quality_rules(source, trial, library, problems)
    # Criteria may read the medication log (`meds`, at `screening_date`) when the trial keeps one.
    medication_names = set(CRITERION_NAMES) if MEDICATION_LOG in trial.logs else set()
    for index, criterion in enumerate(trial.criteria):
        loc = ("criteria", index)
        if criterion.level == "lesion" and lesion is None:
            problems.append(
                source.problem(loc + ("level",), "a lesion-level criterion needs 'eligibility.lesion' (CRF and group)")
            )
            continue
        scope = lesion_scope if criterion.level == "lesion" else participant_scope | medication_names
        if scope is None:
            continue
        if criterion.expression:
            check_expression(source, loc + ("expression",), criterion.expression, scope, problems)
        if criterion.applies_when:
            check_expression(source, loc + ("applies_when",), criterion.applies_when, scope, problems)


def check_quality_rules(source: SourceFile, trial: TrialFile, library: dict[str, CrfFields], problems: list[Problem]) -> None:
    """`quality_rules:`: unique codes, a known CRF and item, an expression over that CRF's items and
    the other CRFs its checks may read (the runner evaluates it with the CRF checks' context), plus
    the participant's AEs and graded lab values (trials.protocol.quality): `aes` members among the AE
    fields, `lab.<item>` a lab item of the CRF and `lab.<item>.<key>` a key of a graded value. A rule
    on the AE log (`subject: adverse_event`) reads the AE's fields by name."""
    seen: set[str] = set()
    references: list[CrfReference] = []
    for index, rule in enumerate(trial.quality_rules):
        loc = ("quality_rules", index)
        if rule.code in seen:
            problems.append(source.problem(loc + ("code",), f"duplicate code '{rule.code}' in quality_rules"))
        seen.add(rule.code)
        expression_loc = loc + ("expression",)
        if rule.subject == "adverse_event":
            if rule.item and rule.item not in AE_ITEMS:
                problems.append(source.problem(loc + ("item",), f"an adverse event has no item '{rule.item}' (one of: {', '.join(AE_ITEMS)})"))
            _check_ae_rule_names(source, expression_loc, rule.code, rule.expression, problems)
            check_expression(source, expression_loc, rule.expression, set(AE_RULE_NAMES), problems)
            _check_rule_members(source, expression_loc, rule.expression, frozenset(), problems)
            continue
        fields = library.get(rule.crf)
        if fields is None:
            problems.append(source.problem(loc + ("crf",), f"quality rule '{rule.code}' targets unknown CRF '{rule.crf}'"))
            continue
        if rule.item and rule.item not in fields.top and rule.item not in fields.groups:
            problems.append(source.problem(loc + ("item",), f"CRF '{rule.crf}' has no item '{rule.item}'"))
        check_expression(source, expression_loc, rule.expression, set(fields.top) | set(CRF_RULE_NAMES), problems, references, rule.crf)
        _check_rule_members(source, expression_loc, rule.expression, fields.labs, problems, crf=rule.crf)
    check_references(references, library, problems)


_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


def _check_ae_rule_names(source: SourceFile, loc: tuple, code: str, expression: str, problems: list[Problem]) -> None:
    """A rule on the AE log is evaluated per adverse event, which has no visit (nor an allocation
    context): `visit_date` & co. are refused by name, rather than accepted and never defined (the
    rule would then be silently never evaluated)."""
    try:
        names = set(cel.compile(expression).variables())
    except (ValueError, RuntimeError):
        return  # check_expression says it does not compile
    for name in sorted((names & CONTEXT_NAMES) - set(AE_RULE_NAMES)):
        problems.append(source.problem(
            loc, f"quality rule '{code}' is on the AE log (subject: adverse_event) and reads '{name}', which an "
            f"adverse event does not have (it has no visit); it may read: {', '.join(AE_RULE_NAMES)}",
        ))


def _check_rule_members(
    source: SourceFile, loc: tuple, expression: str, labs: frozenset[str], problems: list[Problem], *, crf: str = "",
) -> None:
    """The members a rule reads in the `aes` and `lab` namespaces must exist."""
    unknown = sorted(set(ae_member_names(expression)) - set(AE_FIELDS))
    if unknown:
        problems.append(source.problem(loc, f"'aes' events have no field(s) {', '.join(unknown)} (fields: {', '.join(AE_FIELDS)})"))
    for item, key in lab_references(expression):
        if item in _MACROS:
            continue
        if not crf:
            problems.append(source.problem(loc, "'lab' is read by a rule on a CRF with laboratory items, not on the AE log"))
        elif item not in labs:
            known = ", ".join(sorted(labs)) or "none"
            problems.append(source.problem(loc, f"'lab.{item}': CRF '{crf}' has no laboratory item '{item}' (graded items: {known})"))
        elif key is not None and key not in LAB_KEYS:
            problems.append(source.problem(loc, f"'lab.{item}.{key}': a graded value has no '{key}' (keys: {', '.join(LAB_KEYS)})"))


# --- Writing ------------------------------------------------------------------------------


def content_sha256(model: Any) -> str:
    """Hash of the validated content. Defaults are left out, so a new optional key in the format
    does not turn every existing CRF into a new version."""
    content = model.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _upsert(
    model: type, lookup: dict, values: dict, *, user: Any, reason: str, report: LoadReport, initial: dict | None = None
) -> Any:
    """Create the row, or bring it in line with `values`; `initial` values are only set on creation."""
    try:
        obj = model.objects.get(**lookup)
    except model.DoesNotExist:
        obj = model(**lookup, **values, **(initial or {}))
        audited_save(obj, user=user, reason=reason)
        report.count(report.created, model)
        return obj
    changes = changed_fields(obj, values)
    if changes:
        for name, (_old, new) in changes.items():
            setattr(obj, name, new)
        audited_save(obj, user=user, reason=f"{reason} (changed: {', '.join(sorted(changes))})")
        report.count(report.updated, model)
    return obj


def _deactivate_missing(queryset: Any, keep: set, key: str, *, user: Any, reason: str, report: LoadReport) -> None:
    for obj in queryset.filter(is_active=True).exclude(**{f"{key}__in": keep}):
        obj.is_active = False
        audited_save(obj, user=user, reason=f"{reason} (no longer in the file)")
        report.count(report.deactivated, type(obj))


def _write_crf(source: SourceFile, crf: CrfFile, *, user: Any, report: LoadReport) -> CrfDefinition:
    digest = content_sha256(crf)
    latest = CrfDefinition.objects.filter(code=crf.code).order_by("-version").first()
    if latest is not None and latest.content_sha256 == digest:
        return latest
    version = 1 if latest is None else latest.version + 1
    reason = f"Loaded from {source.label} (sha256 {digest[:12]})"
    definition = CrfDefinition(
        code=crf.code,
        version=version,
        title=default_text(crf.title, crf.default_language)[:200],
        description=crf.description,
        source=crf.source,
        # Texts in the default language where they always were, their translations beside them.
        definition=split_localized(crf.model_dump(mode="json"), crf.default_language),
        content_sha256=digest,
        source_file=source.label,
    )
    audited_save(definition, user=user, reason=reason)
    report.count(report.created, CrfDefinition)
    report.crf_versions.append(str(definition))

    order = 0

    def build(fields: Sequence[CrfField], parent: FieldDefinition | None) -> list[FieldDefinition]:
        nonlocal order
        rows = []
        default = crf.default_language
        for item in fields:
            order += 1
            choices = crf.codelists[item.choices] if isinstance(item.choices, str) else (item.choices or [])
            choices = [{**c.model_dump(mode="json"), "label": default_text(c.label, default)} for c in choices]
            rows.append(
                FieldDefinition(
                    crf=definition,
                    parent=parent,
                    name=item.name,
                    label=default_text(item.label, default),
                    field_type=item.type,
                    required=item.required,
                    help_text=default_text(item.help, default),
                    unit=default_text(item.unit, default)[:40],
                    min_value=item.min,
                    max_value=item.max,
                    precision=item.precision,
                    choices=choices,
                    widget=item.widget or "",
                    show_if=item.show_if or "",
                    checks=[c.model_dump(mode="json") for c in item.checks],
                    calculation=item.calculation.model_dump(mode="json", exclude_none=True) if item.calculation else None,
                    section=item.section or "",
                    identifier=item.identifier,
                    min_rows=item.min_rows,
                    max_rows=item.max_rows,
                    order=order,
                )
            )
        return rows

    top_rows = audited_bulk_create(FieldDefinition, build(crf.fields, None), user=user, reason=reason)
    report.count(report.created, FieldDefinition, len(top_rows))
    by_name = {row.name: row for row in FieldDefinition.objects.filter(crf=definition)}
    children = []
    for item in crf.fields:
        if item.fields:
            children += build(item.fields, by_name[item.name])
    if children:
        audited_bulk_create(FieldDefinition, children, user=user, reason=reason)
        report.count(report.created, FieldDefinition, len(children))
    return definition


def _write_trial(source: SourceFile, spec: TrialFile, crfs: dict[str, CrfDefinition], *, user: Any, report: LoadReport) -> Trial:
    digest = content_sha256(spec)  # of the validated content: comments and layout are not changes
    reason = f"Loaded from {source.label}"
    rules_before = Trial.objects.filter(code=spec.code).values_list("quality_rules", flat=True).first()
    trial = _upsert(
        Trial,
        {"code": spec.code},
        {
            "title": spec.title,
            "short_title": spec.short_title,
            "acronym": spec.acronym,
            "nct_id": spec.registry_ids.nct or "",
            "org_study_id": spec.registry_ids.org_study_id or "",
            "other_ids": dict(spec.registry_ids.other),
            "phase": spec.phase,
            "study_type": spec.study_type,
            "design": spec.design,
            "intervention_model": spec.intervention_model or "",
            "primary_purpose": spec.primary_purpose,
            "masking": spec.masking.level,
            "masked_roles": list(spec.masking.masked),
            "target_enrolment": spec.target_enrolment,
            "start_date": spec.start_date,
            "completion_date": spec.completion_date,
            "sponsor": spec.sponsor,
            "principal_investigator": spec.principal_investigator,
            "conditions": list(spec.conditions),
            "min_age_years": spec.min_age_years,
            "max_age_years": spec.max_age_years,
            "sex": spec.sex,
            "healthy_volunteers": spec.healthy_volunteers,
            "follow_up_weeks": spec.follow_up_weeks,
            "summary": spec.summary,
            "source": spec.source,
            "numbering": spec.numbering.model_dump(mode="json"),
            "randomization": spec.randomization.model_dump(mode="json") if spec.randomization else None,
            "escalation": spec.escalation.model_dump(mode="json") if spec.escalation else None,
            "safety_reporting": spec.safety_reporting.model_dump(mode="json"),
            "eligibility": spec.eligibility.model_dump(mode="json"),
            "score_settings": spec.score_settings.model_dump(mode="json", exclude_none=True),
            "quality_rules": [rule.model_dump(mode="json") for rule in spec.quality_rules],
            "epro_settings": spec.epro.model_dump(mode="json"),
            "source_file": source.label,
            "source_sha256": digest,
        },
        user=user,
        reason=reason,
        report=report,
        # Operational state: the file gives the starting value, the data manager keeps it current.
        initial={"status": spec.status},
    )
    for site in spec.sites:
        _upsert(
            Site,
            {"trial": trial, "code": site.code},
            {
                "name": site.name,
                "city": site.city,
                "country": site.country,
                "time_zone": site.time_zone,
                "language": site.language or "",
                "is_active": True,
            },
            user=user,
            reason=reason,
            report=report,
            initial={"recruitment_status": site.recruitment_status, "principal_investigator": site.principal_investigator},
        )
    _deactivate_missing(trial.sites, {s.code for s in spec.sites}, "code", user=user, reason=reason, report=report)
    for arm in spec.arms:
        _upsert(
            Arm,
            {"trial": trial, "code": arm.code},
            {
                "label": arm.label,
                "arm_type": arm.type,
                "description": arm.description,
                "intervention": arm.intervention,
                "planned_size": arm.planned_size,
                "dose": arm.dose,
                "dose_unit": arm.dose_unit,
                "order": arm.order,
                "administration_days": list(arm.administration_days),
                "is_active": True,
            },
            user=user,
            reason=reason,
            report=report,
        )
    _deactivate_missing(trial.arms, {a.code for a in spec.arms}, "code", user=user, reason=reason, report=report)
    for index, criterion in enumerate(spec.criteria, start=1):
        _upsert(
            Criterion,
            {"trial": trial, "code": criterion.code},
            {
                "kind": criterion.kind,
                "text": criterion.text,
                "level": criterion.level,
                "expression": criterion.expression or "",
                "applies_when": criterion.applies_when or "",
                "order": index,
                "is_active": True,
            },
            user=user,
            reason=reason,
            report=report,
        )
    _deactivate_missing(trial.criteria, {c.code for c in spec.criteria}, "code", user=user, reason=reason, report=report)
    for document in spec.consent_documents:
        # New versions are added; the data manager may also add versions in the admin, so versions
        # missing from the file are left alone.
        _upsert(
            ConsentDocument,
            {"trial": trial, "version": document.version},
            {"approved_on": document.approved_on, "title": document.title},
            user=user,
            reason=reason,
            report=report,
        )
    for index, visit in enumerate(spec.visits, start=1):
        definition = _upsert(
            VisitDefinition,
            {"trial": trial, "code": visit.code},
            {
                "label": visit.label,
                "kind": visit.kind,
                "anchor": visit.anchor,
                "day_offset": visit.day_offset,
                "window_before_days": visit.window_before_days,
                "window_after_days": visit.window_after_days,
                "order": index,
                "is_active": True,
            },
            user=user,
            reason=reason,
            report=report,
        )
        links = visit.crf_links()
        for c_index, link in enumerate(links, start=1):
            _upsert(
                VisitCrf,
                {"visit_definition": definition, "crf_code": link.crf},
                {"crf": crfs[link.crf], "required": link.required, "order": c_index, "is_active": True},
                user=user,
                reason=reason,
                report=report,
            )
        _deactivate_missing(
            definition.visit_crfs, {link.crf for link in links}, "crf_code", user=user, reason=reason, report=report
        )
    _deactivate_missing(
        trial.visit_definitions, {v.code for v in spec.visits}, "code", user=user, reason=reason, report=report
    )
    for use, codes in ((TrialCrfUse.LOG, spec.logs), (TrialCrfUse.UNSCHEDULED, spec.unscheduled.crfs)):
        for index, code in enumerate(codes, start=1):
            _upsert(
                TrialCrf,
                {"trial": trial, "use": use, "crf_code": code},
                {"crf": crfs[code], "order": index, "is_active": True},
                user=user,
                reason=reason,
                report=report,
            )
        _deactivate_missing(trial.trial_crfs.filter(use=use), set(codes), "crf_code", user=user, reason=reason, report=report)
    report.trials.append(trial.code)
    if rules_before is not None and rules_before != trial.quality_rules:
        # New, changed or removed rules run again over the stored data (a new trial has none).
        hooks.quality_rules_changed(trial.pk)
    return trial


# --- Entry point --------------------------------------------------------------------------


def _collect(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted((path / "crfs").glob("*.yaml")) + sorted((path / "crfs").glob("*.yml"))
            files += sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        else:
            files.append(path)
    return files


def _label(path: Path) -> str:
    """How a file is named in messages and in `source_file`: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path.resolve())


def _check_registry_ids(trial_specs: dict[str, tuple[SourceFile, TrialFile]], problems: list[Problem]) -> None:
    """An NCT number names one trial: across the files and against trials already loaded."""
    owners = dict(Trial.objects.exclude(nct_id="").values_list("nct_id", "code"))
    seen: dict[str, str] = {}
    for code, (source, trial) in trial_specs.items():
        nct = trial.registry_ids.nct
        if not nct:
            continue
        other = seen.get(nct) or (owners.get(nct) if owners.get(nct) != code else None)
        if other and other != code:
            problems.append(source.problem(("registry_ids", "nct"), f"{nct} is already the number of trial '{other}'"))
        seen[nct] = code


@dataclass
class ValidatedFiles:
    crfs: dict[str, tuple[SourceFile, CrfFile]]
    trials: dict[str, tuple[SourceFile, TrialFile]]


def protocol_check(paths: Sequence[Path | str]) -> ValidatedFiles:
    """Read and validate every file under `paths` against the schema and the CRF library; write nothing."""
    problems: list[Problem] = []
    files = _collect([Path(p) for p in paths])
    for path in paths:
        if not Path(path).exists():
            problems.append(Problem(str(path), "", "no such file or directory"))
    if not files and not problems:
        problems.append(Problem(", ".join(str(p) for p in paths), "", "no .yaml files found"))

    crf_specs: dict[str, tuple[SourceFile, CrfFile]] = {}
    references: list[CrfReference] = []
    trial_specs: dict[str, tuple[SourceFile, TrialFile]] = {}
    for path in files:
        source = read_source(path, _label(path), problems)
        if source is None:
            continue
        if path.parent.name == "crfs" or "fields" in source.data:  # a CRF file
            crf = validate_model(source, CrfFile, problems)
            if crf is None:
                continue
            if crf.code in crf_specs:
                problems.append(source.problem(("code",), f"CRF '{crf.code}' is also defined in {crf_specs[crf.code][0].label}"))
                continue
            validate_crf(source, crf, problems, references)
            crf_specs[crf.code] = (source, crf)
        else:
            trial = validate_model(source, TrialFile, problems)
            if trial is None:
                continue
            if trial.code in trial_specs:
                problems.append(
                    source.problem(("code",), f"trial '{trial.code}' is also defined in {trial_specs[trial.code][0].label}")
                )
                continue
            trial_specs[trial.code] = (source, trial)

    library: dict[str, CrfFields] = {}
    for stored in CrfDefinition.objects.order_by("code", "-version").only("code", "definition"):
        library.setdefault(stored.code, CrfFields.from_definition(stored.definition))  # latest version
    library.update({code: CrfFields.from_definition(spec.model_dump(mode="json")) for code, (_s, spec) in crf_specs.items()})
    check_references(references, library, problems)
    for source, trial in trial_specs.values():
        validate_trial(source, trial, library, problems)
    _check_registry_ids(trial_specs, problems)
    if problems:
        raise ProtocolLoadError(problems)
    return ValidatedFiles(crf_specs, trial_specs)


def protocol_load(paths: Sequence[Path | str], *, user: Any) -> LoadReport:
    """Validate every file under `paths`, then write trials and CRFs in one transaction."""
    validated = protocol_check(paths)
    report = LoadReport()
    with transaction.atomic():
        written = {code: _write_crf(source, crf, user=user, report=report) for code, (source, crf) in validated.crfs.items()}
        needed = {link.crf for _s, t in validated.trials.values() for v in t.visits for link in v.crf_links()}
        needed |= {code for _s, t in validated.trials.values() for code in (*t.logs, *t.unscheduled.crfs)}
        for code in needed - set(written):
            written[code] = CrfDefinition.objects.filter(code=code).order_by("-version").first()
        for source, trial in validated.trials.values():
            _write_trial(source, trial, written, user=user, report=report)
    return report
