"""CSV export: a zip with one UTF-8 CSV file per table (participants, visits, one wide file per
CRF, one per repeating group, adverse events, queries, missing data), the data dictionary and a
manifest with the SHA-256 of every file.

Rows go from the database cursor through the csv module straight into the zip member
(`ZipFile.open(name, "w")` compresses as it goes), so memory does not grow with the trial.
CSV conventions: a header row of variable names; empty cell = no value; yes/no as 1/0; dates
and times ISO 8601 (times in UTC); decimals exactly as entered; codes, not labels (the
dictionary gives the labels); lines end with LF. On PostgreSQL the wide CRF tables (the bulk of an
export) are written by `COPY (SELECT …) TO STDOUT`: the database extracts and formats the items.

A text that a spreadsheet would run as a formula (`=1+2`, `@SUM(…)`, `-2+3`) gets a leading single
quote (edc/spreadsheet.py, OWASP's rule), in the Python and the COPY paths alike; numbers, dates
and plain negative numbers are left as they are. The data dictionary says so on each text variable.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterable
from typing import BinaryIO

from django.db import connection

from edc.spreadsheet import FORMULA_TRIGGERS, text_cell
from trials.exports import attachments, manifest, tables
from trials.exports.selectors import CHUNK_SIZE
from trials.exports.spec import ExportSpec, Progress

WRITE_BYTES = 1 << 18
# Deflate level 1: about three times faster than the default 6 for CSV, files about 15 % larger.
COMPRESS_LEVEL = 1


def count(spec: ExportSpec) -> int:
    """Rows to write (all tables, the dictionary included)."""
    return tables.export_count(tables.export_tables(spec))


def table_write(table: tables.Table, stream: BinaryIO, progress: Progress) -> int:
    """Write one table as CSV into a binary stream; returns the number of data rows."""
    if table.copy is not None and connection.vendor == "postgresql":
        return _copy_write(table, stream, progress)
    wrapper = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
    writer = csv.writer(wrapper, lineterminator="\n")
    # The csv module quotes a field with a line feed but not one with a lone carriage return when
    # lines end with LF: a row with one is written with every field quoted (still RFC 4180).
    quoted = csv.writer(wrapper, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(table.names)
    cells = _guarded(tables.text_cells(table))
    written = pending = 0
    for row in table.rows():
        out, carriage_return = cells(row)
        (quoted if carriage_return else writer).writerow(out)
        pending += 1
        if pending == CHUNK_SIZE:
            written += pending
            progress(pending)
            pending = 0
    written += pending
    if pending:
        progress(pending)
    wrapper.flush()
    wrapper.detach()
    return written


def _guarded(cells: Callable[[tuple], Iterable]) -> Callable[[tuple], tuple[list, bool]]:
    """The row's cells with every text that could run as a formula guarded (edc/spreadsheet.py),
    and whether a text holds a carriage return."""

    def guard(row: tuple) -> tuple[list, bool]:
        out = list(cells(row))
        carriage_return = False
        for i, value in enumerate(out):
            if value.__class__ is str:
                if value[:1] in FORMULA_TRIGGERS:
                    out[i] = text_cell(value)
                if "\r" in value:
                    carriage_return = True
        return out, carriage_return

    return guard


def _copy_write(table: tables.Table, stream: BinaryIO, progress: Progress) -> int:
    """PostgreSQL: the table's SELECT through `COPY … TO STDOUT (FORMAT csv)`, its blocks written
    straight into the zip member (the database formats the cells; Python only passes bytes on).
    Progress counts lines as they come, then the exact row count from COPY."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.names)
    stream.write(header.getvalue().encode("utf-8"))
    sql, params = table.copy()
    reported = 0
    buffer = bytearray()  # COPY sends one message per row: write (and compress) in larger pieces
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, ENCODING 'UTF8')", params) as copy:
            for block in copy:
                buffer += block
                if len(buffer) >= WRITE_BYTES:
                    stream.write(bytes(buffer))
                    lines = buffer.count(b"\n")
                    buffer.clear()
                    progress(lines)
                    reported += lines
        rows = raw.rowcount
    stream.write(bytes(buffer))
    if rows - reported:
        progress(rows - reported)
    return rows


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """The zip: one CSV per table, then manifest.json."""
    header = manifest.manifest_header(spec, format_code="csv")
    files = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for table in tables.export_tables(spec):
            name = f"{table.name}.csv"
            with archive.open(manifest.zip_member(archive, name), "w", force_zip64=True) as member:
                hashing = manifest.HashingWriter(member)
                rows = table_write(table, hashing, progress)
            files.append({"name": name, "table": table.label, "rows": rows, "bytes": hashing.size, "sha256": hashing.sha256()})
        files += attachments.write(spec, archive)  # files of CRF file items, with attachments.csv
        archive.writestr(manifest.zip_member(archive, manifest.MANIFEST_NAME), manifest.manifest_bytes(header, files))
