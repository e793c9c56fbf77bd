"""SPSS (.sav) and Stata (.dta) exports: a zip with one file per table, the tables of the CSV
export (trials.exports.tables), with variable labels and value labels, and the manifest.

Variables: the CSV column names, made valid for the package (Stata: at most 32 characters, not a
reserved word such as `long` or `in`; SPSS: at most 64, not ALL, AND, BY …), unique; variable
labels at most 80 characters (Stata) or 256 (SPSS). Values: yes/no as 1/0 labelled Yes/No; a
code list with integer codes keeps its codes; a code list with text codes (status, causality,
sex …) becomes 1, 2, 3 … in the code list's order, each number labelled with the code's label
(Stata has value labels for integers only; SPSS gets the same numbers so both files read alike).
The data dictionary in the zip gives the codes. Dates are dates, date-times are UTC date-times,
decimals are doubles, a missing text is an empty string (neither package has a missing string).

Missing-data codes (an item answered "not done", "unknown" or "not applicable") are kept in the
number and code columns (of the CRF tables and of the repeating-group tables alike) as the packages
mean them, each labelled with its meaning:
- SPSS: user-defined missing values -97 not done, -98 unknown, -99 not applicable, -96 prefers not
  to answer (a participant's answer, trials.epro) (declared as the
  variable's missing values, so SPSS leaves them out of every statistic); a column whose real
  values include one of these numbers keeps its codes as system-missing instead (the missing-data
  table still gives them);
- Stata: extended missing values .a not done, .b unknown, .c not applicable, .d prefers not to answer.
Text and date columns stay empty (SPSS allows string missing values of 8 bytes at most, Stata none;
dates in either are numbers with their own formats); the missing_data table gives every code.
Integers get an integer display format (SPSS F.0, Stata %.0f) and decimals their precision; SPSS
measurement levels are set: codes and texts nominal, numbers and dates scale.

Blinded: what the tables decide (tables.py, selectors.py): no allocation table, no kit code, and
in a masked trial every text and label with the arm codes and labels masked as "[blinded]" (a
visit named "Day 0 - digital injection (AdMSC or placebo)"), value labels included.

Memory: pyreadstat writes a table from a DataFrame, so one table is held in memory at a time;
rows are read from the database in chunks. The largest table is one CRF's wide table (one row
per entry): memory grows with the entries of one CRF, not with the number of CRFs or tables.
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyreadstat
from django.utils.translation import gettext_lazy

from trials.exports import manifest, tables
from trials.exports.sdtm import zip_file_member
from trials.exports.selectors import CHUNK_SIZE
from trials.exports.spec import ExportSpec, Progress
from trials.protocol.engine import DECLINED, MISSING_CODES

STATA_RESERVED = frozenset({
    "_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int", "long", "_n", "_pi", "_pred", "_rc",
    "_skip", "strl", "using", "with",
})
SPSS_RESERVED = frozenset({"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"})


@dataclass(frozen=True)
class Package:
    """What one statistics package accepts."""

    code: str
    extension: str
    name_width: int
    label_width: int
    file_label_width: int
    reserved: frozenset[str]
    writer: Callable[..., None]
    missing: dict[str, Any]  # missing-data code (trials.protocol.engine.MISSING_CODES) -> the package's value


SPSS = Package("sav", "sav", 64, 256, 64, SPSS_RESERVED, pyreadstat.write_sav,
               {"not_done": -97.0, "unknown": -98.0, "not_applicable": -99.0, DECLINED: -96.0})
# Format 118 (Stata 14 and later; pyreadstat's default, 119, needs Stata 15).
STATA = Package("dta", "dta", 32, 80, 80, STATA_RESERVED, partial(pyreadstat.write_dta, version=14),
                {"not_done": "a", "unknown": "b", "not_applicable": "c", DECLINED: "d"})
# A participant's "I prefer not to answer" (trials.epro) is a missing-data code of her own.
MISSING_LABELS = {**dict(MISSING_CODES), DECLINED: gettext_lazy("Prefers not to answer")}


def variable_name(name: str, taken: set[str], package: Package, *, labelled: bool = False) -> str:
    """A valid, unique (case-insensitively) variable name for the package. A Stata variable with
    value labels gets at most 28 characters: pyreadstat names its label set after it, plus a number."""
    width = package.name_width - (4 if labelled and package is STATA else 0)
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name) or "v"
    if not clean[0].isalpha():
        clean = f"v{clean}" if package is SPSS or not clean.startswith("_") else clean
    clean = clean[:width]
    candidate, counter = clean, 1
    while candidate.lower() in taken or candidate.lower() in package.reserved or _stata_type(candidate):
        counter += 1
        suffix = f"_{counter}"
        candidate = clean[: width - len(suffix)] + suffix
    taken.add(candidate.lower())
    return candidate


def _stata_type(name: str) -> bool:
    """str1 … str2045 are Stata type names, not allowed as variable names."""
    return name.lower().startswith("str") and name[3:].isdigit()


@dataclass
class ColumnPlan:
    """How one table column is written: its name, label, kind and value labels."""

    column: tables.Column
    name: str
    label: str
    kind: str  # "text" | "number" | "date" | "datetime" | "coded"
    codes: dict[Any, int] | None = None  # text code -> number (coded columns with text codes)
    value_labels: dict[int, str] | None = None


def column_plan(column: tables.Column, taken: set[str], package: Package, *, coded_missing: bool = False) -> ColumnPlan:
    """`coded_missing`: the table carries missing-data codes (a number column may then get value labels)."""
    numeric = column.type in {tables.INTEGER, tables.DECIMAL}
    labelled = bool(column.codes) or column.type == tables.BOOLEAN or (coded_missing and numeric)
    name = variable_name(column.name, taken, package, labelled=labelled)
    label = (column.label + (f" ({column.unit})" if column.unit else ""))[: package.label_width]
    if column.codes:
        integer = all(isinstance(code, (int, bool)) for code, _label in column.codes)
        if integer:
            labels = {int(code): str(text) for code, text in column.codes}
            return ColumnPlan(column, name, label, "coded", None, labels)
        codes = {code: number for number, (code, _text) in enumerate(column.codes, 1)}
        labels = {number: str(text) for number, (_code, text) in enumerate(column.codes, 1)}
        return ColumnPlan(column, name, label, "coded", codes, labels)
    kind = {
        tables.INTEGER: "number", tables.DECIMAL: "number", tables.BOOLEAN: "coded", tables.DATE: "date",
        tables.DATETIME: "datetime",
    }.get(column.type, "text")
    if column.type == tables.BOOLEAN:
        return ColumnPlan(column, name, label, "coded", None, {int(c): str(t) for c, t in tables.BOOLEAN_CODES})
    return ColumnPlan(column, name, label, kind)


def cell(plan: ColumnPlan, value: Any) -> Any:
    """A table value as the package stores it (None: missing)."""
    value = tables.typed(plan.column, value)
    if value is None:
        return "" if plan.kind == "text" else None
    if plan.kind == "coded":
        if plan.codes is not None:
            return plan.codes.get(value, plan.codes.get(str(value)))
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    if plan.kind == "number":
        try:
            return float(value) if not isinstance(value, bool) else float(int(value))
        except (TypeError, ValueError, ArithmeticError):
            return None
    if plan.kind == "date":
        return value if isinstance(value, date) and not isinstance(value, datetime) else None
    if plan.kind == "datetime":
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return None
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


@dataclass
class Frame:
    """A table ready for the package: the data, and per column the missing-data codes it holds."""

    data: pd.DataFrame
    rows: int
    missing: dict[str, set[str]]  # variable -> missing-data codes written in it


def table_frame(table: tables.Table, plans: list[ColumnPlan], progress: Progress, package: Package = SPSS) -> Frame:
    """The table as a DataFrame, rows read in chunks (progress per chunk). Numbers are kept as
    doubles (8 bytes a cell) and repeated texts once, so a table costs little more than its cells.
    A number or code cell answered with a missing-data code gets the package's missing value."""
    numeric = [plan.kind in {"number", "coded"} for plan in plans]
    columns: list = [array("d") if is_number else [] for is_number in numeric]
    texts: dict[str, str] = {}
    nan = float("nan")
    rows = pending = 0
    coded: dict[int, list[tuple[int, str]]] = {}  # column -> (row, missing-data code)
    source = table.coded_missing() if table.coded_missing is not None else ((row, None) for row in table.rows())
    for row, codes in source:
        for values, plan, is_number, value in zip(columns, plans, numeric, row, strict=True):
            value = cell(plan, value)
            if is_number:
                values.append(nan if value is None else value)
            elif type(value) is str:
                values.append(texts.setdefault(value, value))
            else:
                values.append(value)
        if codes:
            for index, code in codes.items():
                if numeric[index] and code in package.missing:
                    coded.setdefault(index, []).append((rows, code))
        rows += 1
        pending += 1
        if pending == CHUNK_SIZE:
            progress(pending)
            pending = 0
    if pending:
        progress(pending)
    data = {}
    missing: dict[str, set[str]] = {}
    for index, (plan, values) in enumerate(zip(plans, columns, strict=True)):
        if plan.kind in {"number", "coded"}:
            series = np.frombuffer(values, dtype=np.float64) if len(values) else np.array([], dtype=np.float64)
            cells = coded.get(index)
            if cells and not (package is SPSS and np.isin(series, list(package.missing.values())).any()):
                series = series.astype(object) if package is STATA else series.copy()
                for row_number, code in cells:
                    series[row_number] = package.missing[code]
                missing[plan.name] = {code for _row, code in cells}
            data[plan.name] = series
        elif plan.kind == "datetime":
            data[plan.name] = pd.to_datetime(pd.Series(values, dtype=object))
        else:
            data[plan.name] = pd.Series(values, dtype=object)
    return Frame(pd.DataFrame(data), rows, missing)


def _display(plan: ColumnPlan, package: Package) -> str | None:
    """The display format of a number column: integers without decimals, decimals at their precision."""
    column = plan.column
    if plan.kind != "number":
        return None
    places = 0 if column.type == tables.INTEGER else column.precision
    if places is None:
        return None
    return f"F12.{places}" if package is SPSS else f"%12.{places}f"


def table_write(table: tables.Table, path: Path, package: Package, progress: Progress) -> int:
    """One table as one .sav / .dta file; returns its rows."""
    taken: set[str] = set()
    coded_missing = table.coded_missing is not None
    plans = [column_plan(column, taken, package, coded_missing=coded_missing) for column in table.columns]
    frame = table_frame(table, plans, progress, package)
    value_labels = {p.name: dict(p.value_labels) for p in plans if p.value_labels}
    for name, codes in frame.missing.items():
        value_labels.setdefault(name, {}).update({package.missing[code]: str(MISSING_LABELS[code]) for code in sorted(codes)})
    formats = {p.name: f for p in plans if (f := _display(p, package))}
    options: dict[str, Any] = {}
    if package is SPSS:
        # SPSS holds at most three discrete missing values: four codes become the range -99 … -96.
        options["missing_ranges"] = {
            name: [package.missing[code] for code in sorted(codes)] if len(codes) <= 3 else [{"lo": -99.0, "hi": -96.0}]
            for name, codes in frame.missing.items()
        }
        options["variable_measure"] = {p.name: "scale" if p.kind in {"number", "date", "datetime"} else "nominal" for p in plans}
    else:
        options["missing_user_values"] = {name: [package.missing[code] for code in sorted(codes)] for name, codes in frame.missing.items()}
    package.writer(
        frame.data, str(path), file_label=table.label[: package.file_label_width],
        column_labels={p.name: p.label for p in plans}, variable_value_labels=value_labels,
        variable_format=formats, **options,
    )
    return frame.rows


def count(spec: ExportSpec) -> int:
    """Rows to write (all tables, the dictionary included)."""
    return tables.export_count(tables.export_tables(spec))


def _write(spec: ExportSpec, out: BinaryIO, progress: Progress, package: Package) -> None:
    header = manifest.manifest_header(spec, format_code=package.code)
    files = []
    with tempfile.TemporaryDirectory(prefix=f"{package.code}-") as scratch, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as archive:
        for table in tables.export_tables(spec):
            path = Path(scratch) / f"{table.name}.{package.extension}"
            rows = table_write(table, path, package, progress)
            files.append(zip_file_member(archive, path, path.name, rows, table.label))
        archive.writestr(manifest.zip_member(archive, manifest.MANIFEST_NAME), manifest.manifest_bytes(header, files))


def write_sav(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """The SPSS zip: one .sav per table, then manifest.json."""
    _write(spec, out, progress, SPSS)


def write_dta(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """The Stata zip: one .dta per table, then manifest.json."""
    _write(spec, out, progress, STATA)
