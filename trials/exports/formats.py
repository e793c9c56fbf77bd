"""The export formats: code -> label, file extension, writer and row count.

A writer is `write(spec, out, progress)` and a counter `count(spec)` (the contract in
trials.exports.spec). They are named by dotted path and imported when used, so a format module
may import the services or models without a cycle. To add a format, add one `register(...)` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from trials.exports.spec import ExportSpec, Progress


@dataclass(frozen=True)
class ExportFormat:
    code: str
    label: str
    extension: str
    content_type: str
    writer: str  # dotted path of write(spec, out, progress)
    counter: str  # dotted path of count(spec)
    pooled: bool = True  # also offered for a pooled export of one CRF across trials

    @property
    def write(self) -> Callable[[ExportSpec, object, Progress], None]:
        return import_string(self.writer)

    @property
    def count(self) -> Callable[[ExportSpec], int]:
        return import_string(self.counter)


FORMATS: dict[str, ExportFormat] = {}


def register(export_format: ExportFormat) -> None:
    FORMATS[export_format.code] = export_format


def format_get(code: str) -> ExportFormat | None:
    return FORMATS.get(code)


def format_choices(*, pooled: bool = False) -> list[tuple[str, str]]:
    return [(f.code, f.label) for f in FORMATS.values() if f.pooled or not pooled]


register(ExportFormat(
    "csv", _("CSV (a zip of tables)"), "zip", "application/zip",
    "trials.exports.csvzip.write", "trials.exports.csvzip.count",
))
register(ExportFormat(
    "xlsx", _("Excel workbook (xlsx)"),
    "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "trials.exports.xlsx.write", "trials.exports.xlsx.count",
))
# Formats of trials.exports.odm / sdtm / stats register below.
register(ExportFormat(
    "odm", _("CDISC ODM 1.3.2 (XML)"), "xml", "application/xml",
    "trials.exports.odm.write", "trials.exports.odm.count",
))
register(ExportFormat(
    "xpt", _("SAS transport, SDTM-style (a zip of .xpt)"), "zip", "application/zip",
    "trials.exports.sdtm.write", "trials.exports.sdtm.count", pooled=False,
))
register(ExportFormat(
    "sav", _("SPSS (a zip of .sav)"), "zip", "application/zip",
    "trials.exports.stats.write_sav", "trials.exports.stats.count",
))
register(ExportFormat(
    "audit", _("Audit trail, whole trial (CSV)"), "csv", "text/csv",
    "trials.exports.audit.write", "trials.exports.audit.count", pooled=False,
))
register(ExportFormat(
    "odm_audit", _("Audit trail, whole trial (ODM 1.3.2 transactions)"), "xml", "application/xml",
    "trials.exports.odm_audit.write", "trials.exports.odm_audit.count", pooled=False,
))
register(ExportFormat(
    "dta", _("Stata (a zip of .dta)"), "zip", "application/zip",
    "trials.exports.stats.write_dta", "trials.exports.stats.count",
))
register(ExportFormat(
    "casebooks", _("Participant casebooks (a zip of PDFs)"), "zip", "application/zip",
    "trials.exports.casebook_pdf.write", "trials.exports.casebook_pdf.count", pooled=False,
))
