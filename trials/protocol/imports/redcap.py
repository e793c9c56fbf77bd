"""Import a REDCap project (data dictionary CSV, optional arms/events/instrument-event mapping CSVs)
as trial and CRF YAML that the loader (trials.protocol.loader) validates.

`import_redcap(paths)` reads every file, builds one CRF file per instrument and a trial file whose
visit plan comes from the events, runs the loader's own validation on the generated files, and
returns them with what could not be carried over. Nothing here writes to the database or to the
output folder: the management command writes the files only when `result.problems` is empty.

Three kinds of findings, each with the dictionary's file and line:
- problems: the files cannot be imported (malformed CSV, unknown field type, bad min/max, a loader
  error on the generated YAML) - nothing is written;
- file uploads and signatures become file items (images and PDFs; a signature a PNG), said as a note;
- not imported: fields the CRF engine cannot hold (SQL, the record ID);
- untranslated: branching logic or calculations CEL cannot express (translated by redcap_logic).

REDCap's meaning of each column: REDCap Help & FAQ, "Data Dictionary" (column names, field types,
validation types, choices as `code, label | code, label`, slider labels `left | middle | right`).
"""

from __future__ import annotations

import csv
import html
import io
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from trials.protocol.imports.redcap_logic import FieldInfo, Untranslatable, cel_string, translate_calc, translate_logic
from trials.protocol.loader import RESERVED_NAMES, Problem, ProtocolLoadError, protocol_check

# libyaml's dumper when PyYAML has it (the same YAML, several times faster on a large dictionary).
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MAX_BYTES = 20 * 1024 * 1024  # a REDCap dictionary of 5,000 fields is about 2 MB
MAX_FIELDS = 20_000

# The data dictionary's human headers (as REDCap's "Download the Data Dictionary" writes them) -> the
# API's column names (REDCap API, "Export Metadata").
HUMAN_HEADERS = {
    "variable / field name": "field_name",
    "form name": "form_name",
    "section header": "section_header",
    "field type": "field_type",
    "field label": "field_label",
    "choices, calculations, or slider labels": "select_choices_or_calculations",
    "field note": "field_note",
    "text validation type or show slider number": "text_validation_type_or_show_slider_number",
    "text validation min": "text_validation_min",
    "text validation max": "text_validation_max",
    "identifier?": "identifier",
    "branching logic (show field only if...)": "branching_logic",
    "required field?": "required_field",
    "custom alignment": "custom_alignment",
    "question number (surveys only)": "question_number",
    "matrix group name": "matrix_group_name",
    "matrix ranking?": "matrix_ranking",
    "field annotation": "field_annotation",
}
DICTIONARY_REQUIRED = ("field_name", "form_name", "field_type", "field_label")
FIELD_TYPES = {"text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "slider", "calc", "descriptive", "file", "sql"}

# Text validation types -> (engine type, precision, format regex or None). Regexes are ours, written to
# the formats REDCap's "Field Validation Types" list describes; None: the engine's own type checks it.
DATE_FORMATS = {"ymd": "%Y-%m-%d", "mdy": "%m-%d-%Y", "dmy": "%d-%m-%Y"}
FORMAT_CHECKS = {
    "alpha_only": (r"^[A-Za-z]+$", "letters only"),
    "email": (r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an e-mail address"),
    "phone": (r"^\(?[2-9][0-9]{2}\)?[-. ]?[2-9][0-9]{2}[-. ]?[0-9]{4}(\s*(x|ext\.?)\s*[0-9]+)?$", "a North American phone number"),
    "phone_australia": (r"^\(?0[2-9]\)?[ -]?[0-9]{4}[ -]?[0-9]{4}$", "an Australian phone number"),
    "zipcode": (r"^[0-9]{5}(-[0-9]{4})?$", "a U.S. ZIP code (12345 or 12345-6789)"),
    "postalcode_australia": (r"^[0-9]{4}$", "an Australian postcode (4 digits)"),
    "postalcode_canada": (r"^(?i)[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z] ?[0-9][ABCEGHJ-NPRSTV-Z][0-9]$", "a Canadian postal code"),
    "postalcode_french": (r"^[0-9]{5}$", "a French postal code (5 digits)"),
    "postalcode_germany": (r"^[0-9]{5}$", "a German postal code (5 digits)"),
    "ssn": (r"^[0-9]{3}-[0-9]{2}-[0-9]{4}$", "a U.S. social security number (123-45-6789)"),
    "mrn_10d": (r"^[0-9]{10}$", "a 10-digit MRN"),
    "mrn_generic": (r"^[A-Za-z0-9_-]+$", "an MRN (letters, digits, - and _)"),
    "vmrn": (r"^[0-9]{4,9}$", "a Vanderbilt MRN (4 to 9 digits)"),
    "time": (r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "a time HH:MM (00:00-23:59)"),
    "time_hh_mm_ss": (r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$", "a time HH:MM:SS"),
    "time_mm_ss": (r"^[0-5][0-9]:[0-5][0-9]$", "a duration MM:SS"),
}
_NUMBER_DP = re.compile(r"^number_(\d)dp(_comma_decimal)?$")
_DATE = re.compile(r"^date_(ymd|mdy|dmy)$")
_DATETIME = re.compile(r"^datetime_(seconds_)?(ymd|mdy|dmy)$")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Finding:
    """A field or rule that was not carried over, with where it comes from."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class ImportResult:
    trial_code: str = ""
    dictionary: str = ""
    files: dict[str, str] = field(default_factory=dict)  # relative path -> YAML text
    problems: list[Problem] = field(default_factory=list)
    not_imported: list[Finding] = field(default_factory=list)
    untranslated: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    rules_total: int = 0
    rules_translated: int = 0
    fields_imported: int = 0
    crfs: list[str] = field(default_factory=list)
    visits: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# REDCap's file upload takes any file up to the server's limit; a file item here takes images and
# PDFs, checked from their bytes (trials.visits.files): the import says so for each. A signature is
# the PNG REDCap draws.
FILE_UPLOAD = {"accept": ["image", "pdf"], "max_size_kb": 10 * 1024}
SIGNATURE = {"accept": ["png"], "max_size_kb": 1024}


def _file_item(spec: Spec, result: ImportResult, label: str) -> dict:
    """A REDCap file upload or signature as a file item (images and PDFs; a signature a PNG)."""
    signature = spec.row.get("text_validation_type_or_show_slider_number", "").strip().lower() == "signature"
    limits = SIGNATURE if signature else FILE_UPLOAD
    result.notes.append(Finding(label, spec.line, spec.redcap_name, (
        "a signature: a file item taking the PNG image REDCap draws" if signature else
        "a file upload: a file item taking images (JPEG, PNG) and PDFs up to 10 MB; other kinds of file are refused")))
    return {"name": spec.name, "label": plain_text(spec.row.get("field_label", "")) or spec.name, "type": "file",
            "accept": list(limits["accept"]), "max_size_kb": limits["max_size_kb"]}


def describe(problem: Problem) -> str:
    """`file:line: field: problem`, the line being the CSV row's (the loader's format, for a CSV)."""
    where = f"{problem.file}:{problem.line}" if problem.line else problem.file
    return f"{where}: {problem.path}: {problem.message}" if problem.path else f"{where}: {problem.message}"


# --- CSV --------------------------------------------------------------------------------------


@dataclass
class Table:
    label: str
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line of the row's start, column -> cell)
    form_titles: dict[str, str] = field(default_factory=dict)  # instrument labels (project XML only)


def _normal_column(name: str) -> str:
    key = " ".join(name.strip().lower().split())
    return HUMAN_HEADERS.get(key, key.replace(" ", "_"))


def read_table(path: Path, problems: list[Problem]) -> Table | None:
    """A CSV as rows of cells keyed by API column name; problems name the line."""
    label = path.name
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            problems.append(Problem(label, "", f"the file is {size // (1024 * 1024)} MB; the import takes at most {MAX_BYTES // (1024 * 1024)} MB", 1))
            return None
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(label, "", f"cannot read the file: {exc.strerror or exc}"))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problems.append(Problem(label, "", f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the CSV as UTF-8", line))
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        problems.append(Problem(label, "", "the file holds a NUL character: not a CSV", line))
        return None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            problems.append(Problem(label, "", "the file is empty (no header row)", 1))
            return None
        columns = [_normal_column(c) for c in header]
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
                problems.append(Problem(label, "", f"the row has {len(cells)} cells, the header {len(columns)}", line))
                continue
            cells = cells + [""] * (len(columns) - len(cells))
            rows.append((line, dict(zip(columns, cells))))
            if len(rows) > MAX_FIELDS:
                problems.append(Problem(label, "", f"more than {MAX_FIELDS} rows: too large to import", line))
                return None
    except csv.Error as exc:
        problems.append(Problem(label, "", f"malformed CSV: {exc}", reader.line_num or 1))
        return None
    return Table(label, columns, rows)


def _kind_of(table: Table) -> str:
    columns = set(table.columns)
    if {"field_name", "form_name"} <= columns:
        return "dictionary"
    if {"unique_event_name", "form"} <= columns:
        return "mapping"
    if {"unique_event_name", "event_name"} <= columns:
        return "events"
    if {"arm_num", "name"} <= columns:
        return "arms"
    return "unknown"


# --- Values -----------------------------------------------------------------------------------


def plain_text(value: str) -> str:
    """A REDCap label (which may hold HTML and line breaks) as one line of text."""
    return " ".join(html.unescape(_TAG.sub(" ", value or "")).split())


def parse_choices(text: str) -> list[tuple[str, str]]:
    """`1, Yes | 0, No` -> [("1", "Yes"), ("0", "No")]; ValueError on an option without its code."""
    out = []
    for part in (text or "").split("|"):
        part = part.strip()
        if not part:
            continue
        code, sep, label = part.partition(",")
        if not sep or not code.strip():
            raise ValueError(f"the option '{part}' has no 'code, label'")
        out.append((code.strip(), plain_text(label) or code.strip()))
    if not out:
        raise ValueError("no options given (write them as 'code, label | code, label')")
    return out


def typed_codes(choices: list[tuple[str, str]]) -> tuple[list[dict], bool]:
    """Choices as the CRF file writes them: integer codes when every code is a plain integer."""
    as_int = all(re.fullmatch(r"-?(0|[1-9][0-9]{0,8})", code) for code, _ in choices)
    return [{"code": int(code) if as_int else code, "label": label} for code, label in choices], as_int


def parse_number(text: str) -> Decimal:
    """A min/max as REDCap writes it: 1.5, -2, or with a decimal comma (1,5)."""
    value = text.strip().replace(" ", "")
    if value.count(",") == 1 and "." not in value:
        value = value.replace(",", ".")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"'{text}' is not a number") from None
    if not number.is_finite():
        raise ValueError(f"'{text}' is not a number")
    return number


def parse_date_limit(text: str, order: str, with_time: bool) -> str:
    """A date/datetime min/max -> 'today', or an ISO date (with 'THH:MM[:SS]' for datetimes).

    REDCap writes it Y-M-D, or in the field's own order (D-M-Y, M-D-Y), with - or /."""
    value = text.strip()
    if value.lower() in {"today", "now"}:
        return "today"
    value = value.replace("/", "-").replace("T", " ")
    day, _, clock = value.partition(" ")
    for fmt in dict.fromkeys([DATE_FORMATS["ymd"], DATE_FORMATS[order]]):
        try:
            parsed = datetime.strptime(day, fmt).date()
            break
        except ValueError:
            continue
    else:
        raise ValueError(f"'{text}' is not a date (Y-M-D or {order[0].upper()}-{order[1].upper()}-{order[2].upper()})")
    if clock:
        if not with_time or not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?", clock):
            raise ValueError(f"'{text}' is not a date{' and time' if with_time else ''}")
        return f"{parsed.isoformat()}T{clock}"
    return parsed.isoformat()


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"y", "yes", "1", "true"}


# --- Dictionary -> CRFs -----------------------------------------------------------------------


@dataclass
class Spec:
    """One dictionary row on its way to a CRF item."""

    line: int
    name: str  # the item's name (a reserved REDCap name gets `_rc`)
    redcap_name: str
    form: str
    row: dict[str, str]
    item: dict = field(default_factory=dict)
    kind: str = "text"  # FieldInfo kind for the logic translator
    calc: str = ""
    logic: str = ""


def _crf_code(form: str, prefix: str) -> str:
    return re.sub(r"[^A-Z0-9_-]", "_", (prefix + form).upper())[:40]


def _title(form: str) -> str:
    return form.replace("_", " ").strip().capitalize() or form


def _typed_item(spec: Spec, label: str, problems: list[Problem], findings: ImportResult) -> dict | None:
    """The item of one row without its rules; None when the engine cannot hold it."""
    row, name = spec.row, spec.name
    ftype = row.get("field_type", "").strip().lower()
    validation = row.get("text_validation_type_or_show_slider_number", "").strip().lower()
    item: dict = {"name": name, "label": plain_text(row.get("field_label", "")) or name}

    def problem(message: str) -> None:
        problems.append(Problem(label, name, message, spec.line))

    if ftype in {"dropdown", "radio", "checkbox"}:
        try:
            choices, as_int = typed_codes(parse_choices(row.get("select_choices_or_calculations", "")))
        except ValueError as exc:
            problem(f"{ftype} choices: {exc}")
            return None
        codes = [c["code"] for c in choices]
        if len(codes) != len(set(codes)):
            problem(f"{ftype} choices: a code is given twice")
            return None
        item["choices"] = choices
        if ftype == "checkbox":
            item.update(type="multiple_choice", widget="checkbox")
            spec.kind = "checkbox_int" if as_int else "checkbox"
        else:
            horizontal = row.get("custom_alignment", "").strip().upper() in {"RH", "LH"}
            item.update(type="single_choice", widget="dropdown" if ftype == "dropdown" else ("inline_radio" if horizontal else "radio"))
            spec.kind = "choice_int" if as_int else "choice_str"
    elif ftype == "yesno":
        item["type"] = "yes_no"
        spec.kind = "bool"
    elif ftype == "truefalse":
        # REDCap stores 1 = True, 0 = False (Help & FAQ, field types): kept as those codes and labels.
        item.update(type="single_choice", widget="radio", choices=[{"code": 1, "label": "True"}, {"code": 0, "label": "False"}])
        spec.kind = "choice_int"
    elif ftype == "notes":
        item["type"] = "long_text"
        spec.kind = "text"
    elif ftype == "descriptive":
        item["type"] = "descriptive"
        spec.kind = "descriptive"
    elif ftype == "slider":
        # A slider is 0-100 unless min/max say otherwise; its labels sit at the left, middle and right.
        try:
            low = parse_number(row.get("text_validation_min") or "0")
            high = parse_number(row.get("text_validation_max") or "100")
        except ValueError as exc:
            problem(f"slider min/max: {exc}")
            return None
        if low != low.to_integral_value() or high != high.to_integral_value() or low >= high:
            problem(f"slider min/max must be whole numbers with min < max (got {low}, {high})")
            return None
        item.update(type="scale", widget="slider", min=int(low), max=int(high))
        labels = [plain_text(p) for p in (row.get("select_choices_or_calculations") or "").split("|")]
        if any(labels):
            ends = dict(zip(("left", "middle", "right") if len(labels) == 3 else ("left", "right"), labels))
            item["help"] = "; ".join(f"{where}: {text}" for where, text in ends.items() if text)
        spec.kind = "int"
    elif ftype == "calc":
        item["type"] = "calculated"
        spec.kind = "double"
        spec.calc = row.get("select_choices_or_calculations", "").strip()
        if not spec.calc:
            problem("a calc field needs its calculation in 'Choices, Calculations, OR Slider Labels'")
            return None
    elif ftype == "text":
        spec.kind = "text"
        item["type"] = "text"
        dp = _NUMBER_DP.match(validation)
        if validation == "integer":
            item["type"], spec.kind = "integer", "int"
        elif validation in {"number", "number_comma_decimal"} or dp:
            item["type"], spec.kind = "decimal", "double"
            if dp:
                item["precision"] = int(dp[1])
        elif _DATE.match(validation) or _DATETIME.match(validation):
            # REDCap accepts any date; the engine refuses dates before consent unless told they may precede it.
            spec.kind = "date" if _DATE.match(validation) else "datetime"
            item.update(type=spec.kind, may_precede_consent=True)
        elif validation in FORMAT_CHECKS:
            regex, what = FORMAT_CHECKS[validation]
            item["checks"] = [{"expression": f"{name}.matches({cel_string(regex)})", "message": f"Enter {what}."}]
        elif validation:
            findings.notes.append(
                Finding(label, spec.line, spec.redcap_name, f"validation type '{validation}' is not known here: imported as text without a format check")
            )
    else:
        problem(f"unknown field type '{ftype}' (REDCap's are: {', '.join(sorted(FIELD_TYPES))})")
        return None
    return item


def _limits(spec: Spec, label: str, problems: list[Problem]) -> None:
    """REDCap's min/max on a text field: out of range is a warning the user may confirm (REDCap Help &
    FAQ: "values outside the range ... can still be saved"), so a soft check, not a hard min/max."""
    item, row = spec.item, spec.row
    if item["type"] not in {"integer", "decimal", "date", "datetime"}:
        return
    validation = row.get("text_validation_type_or_show_slider_number", "").strip().lower()
    limits: dict[str, str] = {}
    for key in ("min", "max"):
        text = (row.get(f"text_validation_{key}") or "").strip()
        if not text:
            continue
        try:
            if item["type"] in {"integer", "decimal"}:
                number = parse_number(text)
                if item["type"] == "integer" and number != number.to_integral_value():
                    raise ValueError(f"'{text}' is not a whole number")
                limits[key] = f"{number:f}"
            else:
                order = (_DATE.match(validation) or _DATETIME.match(validation)).groups()[-1]
                limits[key] = parse_date_limit(text, order, item["type"] == "datetime")
        except ValueError as exc:
            problems.append(Problem(label, spec.name, f"text validation {key}: {exc}", spec.line))
            return
    if not limits:
        return
    name = spec.name
    if item["type"] in {"integer", "decimal"}:
        if "min" in limits and "max" in limits and Decimal(limits["min"]) > Decimal(limits["max"]):
            problems.append(Problem(label, name, f"text validation min ({limits['min']}) is greater than max ({limits['max']})", spec.line))
            return
        terms = {k: (v if item["type"] == "integer" or "." in v else v + ".0") for k, v in limits.items()}
    else:
        if "min" in limits and "max" in limits and "today" not in limits.values() and limits["min"] > limits["max"]:
            problems.append(Problem(label, name, f"text validation min ({limits['min']}) is after max ({limits['max']})", spec.line))
            return
        terms = {}
        for key, value in limits.items():
            if value == "today":
                # A datetime is stored as an ISO string: 'today + T23:59:59' bounds the whole day.
                terms[key] = "today" if item["type"] == "date" or key == "min" else "today + 'T23:59:59'"
            else:
                terms[key] = cel_string(value)
    checks = item.setdefault("checks", [])
    if "min" in terms and "max" in terms:
        checks.append({
            "expression": f"{name} >= {terms['min']} && {name} <= {terms['max']}",
            "message": f"Outside the expected range {limits['min']} to {limits['max']}: confirm or correct.",
            "severity": "soft",
        })
    elif "min" in terms:
        checks.append({"expression": f"{name} >= {terms['min']}", "message": f"Below the expected minimum {limits['min']}: confirm or correct.", "severity": "soft"})
    else:
        checks.append({"expression": f"{name} <= {terms['max']}", "message": f"Above the expected maximum {limits['max']}: confirm or correct.", "severity": "soft"})


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out, n = f"{name} ({n})", n + 1
    taken.add(out)
    return out


def build_crfs(
    table: Table, result: ImportResult, prefix: str
) -> tuple[dict[str, dict], dict[str, list[tuple[int, str]]], list[str]]:
    """CRF documents by code, the dictionary line and field of each CRF item (by index), the CRF codes in order."""
    label = table.label
    problems = result.problems
    specs: list[Spec] = []
    seen: dict[str, int] = {}
    for line, row in table.rows:
        missing = [c for c in DICTIONARY_REQUIRED if not (row.get(c) or "").strip() and c != "field_label"]
        if missing:
            problems.append(Problem(label, "", f"empty {', '.join(missing)}", line))
            continue
        raw_name = row["field_name"].strip()
        form = row["form_name"].strip()
        if not _FIELD_NAME.match(raw_name):
            problems.append(Problem(label, raw_name, "a field name is lower-case letters, digits and _ (starting with a letter, at most 63)", line))
            continue
        if not re.fullmatch(r"[a-z0-9_]+", form):
            problems.append(Problem(label, raw_name, f"form name '{form}' is not lower-case letters, digits and _", line))
            continue
        if raw_name in seen:
            problems.append(Problem(label, raw_name, f"field '{raw_name}' is also defined on line {seen[raw_name]}", line))
            continue
        seen[raw_name] = line
        name = raw_name
        if raw_name in RESERVED_NAMES:
            name = f"{raw_name}_rc"
            result.notes.append(Finding(label, line, raw_name, f"renamed {name}: '{raw_name}' is a name the CRF engine reserves"))
        specs.append(Spec(line, name, raw_name, form, row))
    if not specs and not problems:
        problems.append(Problem(label, "", "the dictionary has no fields", 2))
    if specs:
        # REDCap's first field is the record ID; participants here are numbered by the trial (numbering).
        record_id = specs.pop(0)
        result.not_imported.append(
            Finding(label, record_id.line, record_id.redcap_name, "the record ID: participants are numbered by the trial's 'numbering'")
        )
    kept: list[Spec] = []
    skipped: dict[str, str] = {}
    for spec in specs:
        ftype = spec.row.get("field_type", "").strip().lower()
        if ftype == "sql":
            reason = "a dynamic SQL field: the CRF engine has no item type for it"
            result.not_imported.append(Finding(label, spec.line, spec.redcap_name, reason))
            skipped[spec.redcap_name] = reason
            continue
        if ftype == "file":
            item = _file_item(spec, result, label)
        else:
            item = _typed_item(spec, label, problems, result)
        if item is None:
            continue
        spec.item = item
        note = plain_text(spec.row.get("field_note", ""))
        if note:
            item["help"] = f"{item['help']}; {note}" if item.get("help") else note
        if _truthy(spec.row.get("required_field", "")) and item["type"] not in {"descriptive", "calculated"}:
            item["required"] = True
        if _truthy(spec.row.get("identifier", "")) and item["type"] != "descriptive":
            item["identifier"] = True
        _limits(spec, label, problems)
        spec.logic = (spec.row.get("branching_logic") or "").strip()
        kept.append(spec)

    codes: dict[str, str] = {}
    for spec in kept:
        if spec.form not in codes:
            code = _crf_code(spec.form, prefix)
            if code in codes.values():
                problems.append(Problem(label, spec.redcap_name, f"form '{spec.form}' gives CRF code {code}, as another form does", spec.line))
            codes[spec.form] = code

    _translate(kept, codes, skipped, label, result)

    crfs: dict[str, dict] = {}
    lines: dict[str, list[tuple[int, str]]] = {}
    state: dict[str, dict] = {}
    for spec in kept:
        if spec.item is None:
            continue
        code = codes[spec.form]
        crf = crfs.setdefault(code, {
            "code": code, "title": plain_text(table.form_titles.get(spec.form, "")) or _title(spec.form),
            "source": f"REDCap data dictionary {label}, instrument '{spec.form}'",
            "sections": [], "fields": [],
        })
        _place_in_section(spec, crf, state.setdefault(code, {"taken": set(), "section": None, "group": ""}))
        crf["fields"].append(spec.item)
        lines.setdefault(code, []).append((spec.line, spec.redcap_name))
        if spec.item["type"] != "descriptive":
            result.fields_imported += 1
    forms: list[str] = []
    for spec in specs:
        code = codes.get(spec.form) or _crf_code(spec.form, prefix)
        if code not in forms:
            forms.append(code)
    for code in forms:
        crf = crfs.get(code)
        if crf is None or not any(f["type"] != "descriptive" for f in crf["fields"]):
            first = next(s for s in specs if _crf_code(s.form, prefix) == code)
            result.not_imported.append(Finding(label, first.line, first.form, "instrument without any field the CRF engine can hold: not imported"))
            crfs.pop(code, None)
            lines.pop(code, None)
        elif not crf["sections"]:
            del crf["sections"]
    return crfs, lines, [c for c in forms if c in crfs]


def _place_in_section(spec: Spec, crf: dict, state: dict) -> None:
    """Section headers start a section; a matrix group is a section with the matrix layout."""
    header = plain_text(spec.row.get("section_header", ""))
    group = (spec.row.get("matrix_group_name") or "").strip()
    new_group = group and group != state["group"]
    left_group = state["group"] and group != state["group"]
    section = state["section"]
    if header or new_group or (left_group and section is not None):
        if header:
            base = header
        elif new_group:
            base = group.replace("_", " ")
        else:
            base = f"{state['base']} (continued)"
        name = _unique(base, state["taken"])
        section = {"name": name}
        if group:
            section["layout"] = "matrix"
        crf["sections"].append(section)
        state["section"], state["base"] = section, base
    state["group"] = group
    if section is not None:
        spec.item["section"] = section["name"]


def _translate(specs: list[Spec], codes: dict[str, str], skipped: dict[str, str], label: str, result: ImportResult) -> None:
    """Calculations first (a calculation that cannot be translated is not imported, and the rules
    reading it say so), then branching logic."""
    infos: dict[str, tuple[str, str, str]] = {
        s.redcap_name: (s.name, s.kind, codes[s.form]) for s in specs if s.item and s.kind != "descriptive"
    }

    def scope(form_code: str) -> dict[str, FieldInfo]:
        return {
            redcap: FieldInfo(name if code == form_code else f"visit.{code}.{name}", kind)
            for redcap, (name, kind, code) in infos.items()
        }

    scopes: dict[str, dict[str, FieldInfo]] = {}
    calcs = [s for s in specs if s.calc and s.item]
    result.rules_total += len(calcs) + sum(1 for s in specs if s.logic and s.item)
    pending = list(calcs)
    while pending:
        failed = False
        for spec in list(pending):
            code = codes[spec.form]
            fields = scopes.setdefault(code, scope(code))
            try:
                cel_text, precision = translate_calc(spec.calc, fields, skipped)
            except Untranslatable as exc:
                reason = f"calculation '{spec.calc}' not translated: {exc}"
                result.untranslated.append(Finding(label, spec.line, spec.redcap_name, reason))
                result.not_imported.append(Finding(label, spec.line, spec.redcap_name, "a calculated field whose calculation could not be translated"))
                skipped[spec.redcap_name] = "its calculation could not be translated"
                if spec.logic:
                    result.untranslated.append(
                        Finding(label, spec.line, spec.redcap_name, f"branching logic '{spec.logic}' not used: the field is not imported")
                    )
                infos.pop(spec.redcap_name, None)
                spec.item = None  # type: ignore[assignment]
                pending.remove(spec)
                scopes.clear()
                failed = True
                break
            spec.item["calculation"] = {"cel": cel_text}
            if precision is not None:
                spec.item["precision"] = precision
        if not failed:
            break
    result.rules_translated += sum(1 for s in calcs if s.item)
    for spec in specs:
        if not spec.logic or not spec.item:
            continue
        code = codes[spec.form]
        fields = scopes.setdefault(code, scope(code))
        try:
            spec.item["show_if"] = translate_logic(spec.logic, fields, skipped)
            result.rules_translated += 1
        except Untranslatable as exc:
            result.untranslated.append(
                Finding(label, spec.line, spec.redcap_name, f"branching logic '{spec.logic}' not translated (the field is always shown): {exc}")
            )


# --- Events -> visit plan ------------------------------------------------------------------------


def _event_stem(unique_name: str) -> str:
    return re.sub(r"_arm_\d+[a-z]?$", "", unique_name.strip())


def build_visits(
    events: Table | None, mapping: Table | None, crf_codes: list[str], forms_to_codes: dict[str, str], result: ImportResult
) -> tuple[list[dict], dict[int, int]]:
    """Visits (and the events file line of each, by index). Without events: one visit holding every CRF."""
    if events is None:
        result.notes.append(Finding(result.dictionary, 1, "visits", "no events file: one visit (BASELINE) holds every CRF"))
        return [{"code": "BASELINE", "label": "Baseline", "kind": "baseline", "day_offset": 0, "crfs": list(crf_codes)}], {}
    visits: dict[str, dict] = {}
    lines: dict[str, int] = {}
    unique_to_stem: dict[str, str] = {}
    for line, row in events.rows:
        unique = (row.get("unique_event_name") or "").strip()
        if not re.fullmatch(r"[a-z0-9_]+", unique):
            result.problems.append(Problem(events.label, "", f"unique_event_name '{unique}' is not lower-case letters, digits and _", line))
            continue
        stem = _event_stem(unique)
        unique_to_stem[unique] = stem
        code = re.sub(r"[^A-Z0-9_-]", "_", stem.upper())[:40]
        offset_text = (row.get("day_offset") or row.get("days_offset") or "").strip()
        try:
            offset = int(Decimal(offset_text)) if offset_text else None
            before = int(Decimal(row.get("offset_min") or "0"))
            after = int(Decimal(row.get("offset_max") or "0"))
        except (InvalidOperation, ValueError):
            result.problems.append(Problem(events.label, "", "day_offset/offset_min/offset_max must be numbers", line))
            continue
        if code in visits:
            continue  # the same event in another arm: one visit (the plan is the same for every arm here)
        visits[code] = {
            "code": code, "label": plain_text(row.get("custom_event_label") or "") or plain_text(row.get("event_name") or "") or code,
            "kind": "follow_up", "day_offset": offset, "window_before_days": abs(before), "window_after_days": abs(after), "crfs": [],
        }
        lines[code] = line
    if mapping is not None:
        for line, row in mapping.rows:
            unique = (row.get("unique_event_name") or "").strip()
            form = (row.get("form") or "").strip()
            if unique not in unique_to_stem:
                result.problems.append(Problem(mapping.label, "", f"unknown event '{unique}' (not in the events file)", line))
                continue
            code = forms_to_codes.get(form)
            if code is None:
                if form not in forms_to_codes.values():
                    result.problems.append(Problem(mapping.label, "", f"unknown instrument '{form}' (not in the dictionary)", line))
                continue
            if code not in crf_codes:
                continue  # not imported (said already)
            visit = visits[re.sub(r"[^A-Z0-9_-]", "_", unique_to_stem[unique].upper())[:40]]
            if code not in visit["crfs"]:
                visit["crfs"].append(code)
    else:
        result.notes.append(Finding(events.label, 1, "visits", "no instrument-event mapping: every CRF is listed at every visit, not required"))
        for visit in visits.values():
            visit["crfs"] = [{"crf": code, "required": False} for code in crf_codes]
    plan = list(visits.values())
    if not plan:
        if not result.problems:
            result.problems.append(Problem(events.label, "", "the events file lists no event", 2))
        return [], {}
    if any(v["day_offset"] is None for v in plan):
        result.notes.append(Finding(events.label, 1, "visits", "events without a day offset: numbered 0, 1, 2… days (set the real schedule)"))
    for index, visit in enumerate(plan):
        if visit["day_offset"] is None:
            visit["day_offset"] = index
        if not visit["window_before_days"]:
            del visit["window_before_days"]
        if not visit["window_after_days"]:
            del visit["window_after_days"]
    plan[0]["kind"] = "baseline"
    return plan, {i: lines[v["code"]] for i, v in enumerate(plan)}


def build_arms(arms: Table | None, result: ImportResult) -> list[dict]:
    if arms is None:
        return []
    out = []
    for line, row in arms.rows:
        number = (row.get("arm_num") or "").strip()
        if not number.isdigit():
            result.problems.append(Problem(arms.label, "", f"arm_num '{number}' is not a number", line))
            continue
        out.append({"code": f"ARM{number}", "label": plain_text(row.get("name") or "") or f"Arm {number}", "type": "other"})
    return out


# --- Trial file ---------------------------------------------------------------------------------


def trial_yaml(code: str, title: str, arms: list[dict], visits: list[dict], source: str) -> str:
    """The trial file, with what a person must decide said as `# TODO:` / `# Assumption:` comments."""
    document = {
        "code": code,
        "title": title,
        "phase": "na",
        "study_type": "interventional" if arms else "observational",
        "design": "open_label",
        "masking": {"level": "none", "masked": []},
        "target_enrolment": 1,
        "status": "not_yet_recruiting",
        "sponsor": "TODO",
        "conditions": ["TODO"],
        "source": source,
        "sites": [{
            "code": "SITE1", "name": "TODO", "city": "TODO", "country": "XX", "time_zone": "UTC",
            "recruitment_status": "not_yet_recruiting",
        }],
    }
    if arms:
        document["arms"] = arms
    document["visits"] = visits
    header = (
        f"# Imported from REDCap ({source}).\n"
        "# TODO: a REDCap data dictionary holds no protocol: set phase, study_type, design, masking,\n"
        "#   target_enrolment, sponsor, conditions and the sites (code, name, city, country, time zone).\n"
        "# Assumption: open-label, no masking, one placeholder site SITE1; the arms (if any) are REDCap's arms,\n"
        "#   typed 'other'; the visit plan is the events' (the same events of different arms are one visit).\n"
        "# TODO: visit day offsets and windows (REDCap's day offsets when the events file has them).\n"
    )
    return header + yaml.dump(document, Dumper=DUMPER, sort_keys=False, allow_unicode=True, width=10_000)


ITEM_KEYS = (
    "name", "label", "type", "widget", "required", "identifier", "may_precede_consent", "section", "help",
    "min", "max", "precision", "choices", "accept", "max_size_kb", "calculation", "show_if", "checks",
)


def crf_yaml(crf: dict) -> str:
    """A CRF file, its items' keys in the order people read them (name, label, type first)."""
    ordered = dict(crf)
    ordered["fields"] = [{key: item[key] for key in ITEM_KEYS if key in item} for item in crf["fields"]]
    return yaml.dump(ordered, Dumper=DUMPER, sort_keys=False, allow_unicode=True, width=10_000)


# --- Entry point -------------------------------------------------------------------------------


def _default_code(path: Path) -> str:
    stem = path.name.split(".")[0]
    return (re.sub(r"[^A-Z0-9_-]", "_", stem.upper()).strip("_-") or "REDCAP")[:40]


_ITEM_PATH = re.compile(r"^fields\[(\d+)\]")
_VISIT_PATH = re.compile(r"^visits\[(\d+)\]")


def import_redcap(
    paths: Sequence[Path | str], *, trial_code: str | None = None, title: str | None = None, crf_prefix: str = ""
) -> ImportResult:
    """Read the REDCap files, build the trial and CRF YAML, validate it with the loader (read-only)."""
    result = ImportResult()
    tables: dict[str, Table] = {}
    from trials.protocol.imports.redcap_xml import read_project_xml  # it builds this module's Tables

    found: list[tuple[str, Table]] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".xml":
            found += read_project_xml(path, result.problems)
            continue
        table = read_table(path, result.problems)
        if table is not None:
            found.append((_kind_of(table), table))
    for kind, table in found:
        if kind == "unknown":
            result.problems.append(
                Problem(table.label, "", "not a REDCap data dictionary, arms, events or instrument-event mapping CSV (unknown columns)", 1)
            )
        elif kind in tables:
            result.problems.append(Problem(table.label, "", f"a second {kind} file (also {tables[kind].label})", 1))
        else:
            tables[kind] = table
    dictionary = tables.get("dictionary")
    if dictionary is None:
        if not result.problems:
            result.problems.append(Problem(", ".join(str(p) for p in paths), "", "no data dictionary among the files"))
        return result
    missing = [c for c in DICTIONARY_REQUIRED if c not in dictionary.columns]
    if missing:
        result.problems.append(Problem(dictionary.label, "", f"missing column(s): {', '.join(missing)}", 1))
        return result
    result.dictionary = dictionary.label
    code = trial_code or _default_code(Path(paths[0]) if len(paths) == 1 else Path(dictionary.label))
    result.trial_code = code
    crfs, item_lines, crf_codes = build_crfs(dictionary, result, crf_prefix)
    forms_to_codes = {}
    for _line, row in dictionary.rows:
        form = (row.get("form_name") or "").strip()
        if form:
            forms_to_codes.setdefault(form, _crf_code(form, crf_prefix))
    arms = build_arms(tables.get("arms"), result)
    visits, visit_lines = build_visits(tables.get("events"), tables.get("mapping"), crf_codes, forms_to_codes, result)
    if result.problems:
        return result
    sources = ", ".join(tables[k].label for k in ("dictionary", "arms", "events", "mapping") if k in tables)
    files = {f"crfs/{c.lower()}.yaml": crf_yaml(crf) for c, crf in crfs.items()}
    trial_name = f"{code.lower()}.yaml"
    files[trial_name] = trial_yaml(code, title or f"{code} (imported from REDCap)", arms, visits, sources)
    result.crfs = list(crfs)
    result.visits = [v["code"] for v in visits]
    _validate(files, item_lines, visit_lines, dictionary.label, tables.get("events"), trial_name, result)
    if not result.problems:
        result.files = files
    return result


def _validate(
    files: dict[str, str], item_lines: dict[str, list[tuple[int, str]]], visit_lines: dict[int, int], dictionary: str,
    events: Table | None, trial_name: str, result: ImportResult,
) -> None:
    """The loader's validation of the generated files; its messages are put back on the CSV rows."""
    with tempfile.TemporaryDirectory(prefix="redcap-import-") as folder:
        root = Path(folder)
        (root / "crfs").mkdir()
        for relative, text in files.items():
            (root / relative).write_text(text, encoding="utf-8")
        try:
            protocol_check([root])
        except ProtocolLoadError as exc:
            for problem in exc.problems:
                generated = Path(problem.file).name
                relative = trial_name if generated == trial_name else f"crfs/{generated}"
                where = f" (generated {relative}:{problem.line or 1}: {problem.path})"
                code = generated.removesuffix(".yaml").upper()
                item = _ITEM_PATH.match(problem.path or "")
                visit = _VISIT_PATH.match(problem.path or "")
                if relative != trial_name and item and code in item_lines:
                    line, name = item_lines[code][int(item[1])]
                    result.problems.append(Problem(dictionary, name, problem.message + where, line))
                elif relative == trial_name and visit and events is not None and int(visit[1]) in visit_lines:
                    result.problems.append(Problem(events.label, "", problem.message + where, visit_lines[int(visit[1])]))
                else:
                    result.problems.append(Problem(dictionary, "", problem.message + where, None))
