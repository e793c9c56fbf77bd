"""Excel export: one sheet per table (the same tables as the CSV export), the data dictionary and
a manifest sheet, written with openpyxl's write-only workbook (rows are streamed to temporary
files, not kept in memory). Cells hold native types: numbers, dates, date-times (UTC) and
yes/no as 1/0, so a sheet opens ready for analysis. A table longer than Excel's row limit
continues on a sheet named "<table> (2)".

A text that a spreadsheet would run as a formula (`=1+2`, `@SUM(…)`, `-2+3`; edc/spreadsheet.py)
is written as a text cell marked "quote prefix", Excel's own form of a typed leading apostrophe:
the cell holds the exact text, is never evaluated, and stays text when someone edits it. (openpyxl
would otherwise store a string beginning with "=" as a formula.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, BinaryIO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from edc.spreadsheet import FORMULA_TRIGGERS, runs_as_formula
from trials.exports import manifest, tables
from trials.exports.selectors import CHUNK_SIZE
from trials.exports.spec import ExportSpec, Progress

MAX_ROWS = 1_048_576 - 1  # Excel's limit, less the header row
MAX_TEXT = 32_767
INVALID_SHEET_CHARACTERS = str.maketrans({c: "_" for c in "[]:*?/\\"})


def count(spec: ExportSpec) -> int:
    return tables.export_count(tables.export_tables(spec))


def cell(column: tables.Column, value: Any) -> Any:
    """A value as Excel stores it: native numbers and dates, naive UTC date-times, 1/0 for yes/no."""
    value = tables.typed(column, value)
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)[:MAX_TEXT]
    return value


def text_guarded(sheet: WriteOnlyWorksheet, value: Any) -> Any:
    """A text that could run as a formula as a quote-prefixed text cell; any other value as it is."""
    if value.__class__ is not str or value[:1] not in FORMULA_TRIGGERS or not runs_as_formula(value):
        return value
    text = WriteOnlyCell(sheet, value)
    text.data_type = "s"  # openpyxl made "=…" a formula
    text.quotePrefix = True
    return text


class _Sheets:
    """Unique Excel sheet names (31 characters, no []:*?/\\)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def name(self, wanted: str) -> str:
        base = wanted.translate(INVALID_SHEET_CHARACTERS)[:31] or "sheet"
        name, n = base, 1
        while name.lower() in self.used:
            n += 1
            suffix = f" ({n})"
            name = base[: 31 - len(suffix)] + suffix
        self.used.add(name.lower())
        return name


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    header = manifest.manifest_header(spec, format_code="xlsx")
    workbook = Workbook(write_only=True)
    sheets = _Sheets()
    summary = []
    for table in tables.export_tables(spec):
        columns = table.columns
        sheet = workbook.create_sheet(sheets.name(table.name))
        sheet.append(table.names)
        rows_in_sheet = written = pending = 0
        for row in table.rows():
            if rows_in_sheet == MAX_ROWS:
                sheet = workbook.create_sheet(sheets.name(table.name))
                sheet.append(table.names)
                rows_in_sheet = 0
            sheet.append([text_guarded(sheet, cell(c, v)) for c, v in zip(columns, row, strict=True)])
            rows_in_sheet += 1
            pending += 1
            if pending == CHUNK_SIZE:
                written += pending
                progress(pending)
                pending = 0
        written += pending
        if pending:
            progress(pending)
        summary.append((table.name, table.label, written))
    sheet = workbook.create_sheet(sheets.name("manifest"))
    for key, value in header.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        sheet.append([key, text_guarded(sheet, value)])  # a requester's name is free text too
    sheet.append([])
    sheet.append(["table", "label", "rows"])
    for row in summary:
        sheet.append(list(row))
    workbook.save(out)
