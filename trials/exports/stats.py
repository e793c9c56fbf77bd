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

from trials.exports import manifest, tables
from trials.exports.sdtm import zip_file_member
from trials.exports.selectors import CHUNK_SIZE
from trials.exports.spec import ExportSpec, Progress

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


SPSS = Package("sav", "sav", 64, 256, 64, SPSS_RESERVED, pyreadstat.write_sav)
# Format 118 (Stata 14 and later; pyreadstat's default, 119, needs Stata 15).
STATA = Package("dta", "dta", 32, 80, 80, STATA_RESERVED, partial(pyreadstat.write_dta, version=14))


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


def column_plan(column: tables.Column, taken: set[str], package: Package) -> ColumnPlan:
    name = variable_name(column.name, taken, package, labelled=bool(column.codes) or column.type == tables.BOOLEAN)
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


def table_frame(table: tables.Table, plans: list[ColumnPlan], progress: Progress) -> tuple[pd.DataFrame, int]:
    """The table as a DataFrame, rows read in chunks (progress per chunk). Numbers are kept as
    doubles (8 bytes a cell) and repeated texts once, so a table costs little more than its cells."""
    numeric = [plan.kind in {"number", "coded"} for plan in plans]
    columns: list = [array("d") if is_number else [] for is_number in numeric]
    texts: dict[str, str] = {}
    nan = float("nan")
    rows = pending = 0
    for row in table.rows():
        for values, plan, is_number, value in zip(columns, plans, numeric, row, strict=True):
            value = cell(plan, value)
            if is_number:
                values.append(nan if value is None else value)
            elif type(value) is str:
                values.append(texts.setdefault(value, value))
            else:
                values.append(value)
        rows += 1
        pending += 1
        if pending == CHUNK_SIZE:
            progress(pending)
            pending = 0
    if pending:
        progress(pending)
    data = {}
    for plan, values in zip(plans, columns, strict=True):
        if plan.kind in {"number", "coded"}:
            data[plan.name] = np.frombuffer(values, dtype=np.float64) if len(values) else np.array([], dtype=np.float64)
        elif plan.kind == "datetime":
            data[plan.name] = pd.to_datetime(pd.Series(values, dtype=object))
        else:
            data[plan.name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data), rows


def table_write(table: tables.Table, path: Path, package: Package, progress: Progress) -> int:
    """One table as one .sav / .dta file; returns its rows."""
    taken: set[str] = set()
    plans = [column_plan(column, taken, package) for column in table.columns]
    frame, rows = table_frame(table, plans, progress)
    value_labels = {p.name: p.value_labels for p in plans if p.value_labels}
    package.writer(
        frame, str(path), file_label=table.label[: package.file_label_width],
        column_labels={p.name: p.label for p in plans}, variable_value_labels=value_labels,
    )
    return rows


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
