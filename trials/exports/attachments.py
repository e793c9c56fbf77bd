"""Files of CRF `file` items in an export package: each file the export's entries reference (as
they stood at the cut-off, identifying items left out unless asked) is written as
`files/<file id>.<ext>`, with `attachments.csv` saying whose file it is (site, participant, visit,
entry, CRF, item, row), and each one is listed in manifest.json with its size and SHA-256 (computed
from the bytes written, so a recipient checks what she received). The ODM file names the same
path and checksum as the item's value (ODM 1.3.2 carries no files)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from typing import Any

from edc.spreadsheet import FORMULA_TRIGGERS, text_cell
from trials.exports import manifest, selectors
from trials.exports.spec import ExportSpec
from trials.protocol.engine import ROW_ID, schema_for
from trials.visits.files import storage
from trials.visits.models import StoredFile

INDEX_NAME = "attachments.csv"
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}
INDEX_COLUMNS = (
    "site", "subject", "visit", "visit_sequence", "entry_id", "crf", "item", "row_id", "file", "original_name",
    "content_type", "bytes", "sha256",
)
COPY_CHUNK = 1 << 20


def attachment_path(reference: dict) -> str:
    """Where a file is in the package (its id: never the original name, which may identify)."""
    return f"files/{reference['file_id']}{EXTENSIONS.get(str(reference.get('content_type')), '')}"


def attachment_value(reference: dict) -> str | None:
    if not reference.get("file_id"):
        return None
    return f"{attachment_path(reference)} sha256:{reference.get('sha256')}"


def _file_items(spec: ExportSpec, crf_code: str) -> list[tuple[str, str]]:
    """(group or "", item) of every file item of any version of the CRF."""
    found: list[tuple[str, str]] = []
    for crf in selectors.export_crf_versions(crf_code):
        schema = schema_for(crf)
        for item in schema.items:
            if item.type == "file" and (spec.identifiers or not item.identifier):
                found.append(("", item.name))
            for child in item.children:
                if child.type == "file" and (spec.identifiers or not child.identifier):
                    found.append((item.name, child.name))
    return list(dict.fromkeys(found))


def attachments(spec: ExportSpec) -> Iterator[dict[str, Any]]:
    """One dict per file referenced by the export's entries (scoped, at the cut-off)."""
    for crf_code in selectors.export_crf_codes(spec):
        items = _file_items(spec, crf_code)
        if not items:
            continue
        for entry in selectors.export_entries(spec, crf_code):
            answers = entry.answers or {}
            for group, name in items:
                rows = [(None, answers)] if not group else [(row.get(ROW_ID), row) for row in answers.get(group) or [] if isinstance(row, dict)]
                for row_id, values in rows:
                    reference = values.get(name)
                    if isinstance(reference, dict) and reference.get("file_id"):
                        yield {
                            "site": entry.site_code, "subject": entry.subject, "visit": entry.visit_code or entry.visit_label,
                            "visit_sequence": entry.visit_sequence, "entry_id": entry.id, "crf": crf_code,
                            "item": f"{group}.{name}" if group else name, "row_id": row_id or "", "reference": reference,
                        }


def write(spec: ExportSpec, archive: zipfile.ZipFile) -> list[dict[str, Any]]:
    """Write the files and attachments.csv into the archive; returns their manifest entries (none,
    and no index, when the export has no file)."""
    found = list(attachments(spec))
    if not found:
        return []
    mask = _mask(spec)
    rows = StoredFile.objects.in_bulk([a["reference"]["file_id"] for a in found])
    files: list[dict[str, Any]] = []
    written: set[str] = set()
    index = io.StringIO()
    writer = csv.writer(index, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for found_file in found:
        reference = found_file["reference"]
        stored = rows.get(_uuid(reference["file_id"]))
        if stored is None:
            continue
        path = attachment_path(reference)
        if path not in written:
            written.add(path)
            with storage().open(stored.storage_name, "rb") as source, \
                    archive.open(manifest.zip_member(archive, path), "w", force_zip64=True) as member:
                hashing = manifest.HashingWriter(member)
                while chunk := source.read(COPY_CHUNK):
                    hashing.write(chunk)
            entry = {"name": path, "table": "attachment", "bytes": hashing.size, "sha256": hashing.sha256(),
                     "content_type": stored.content_type}
            if hashing.sha256() != stored.sha256:  # the storage no longer holds the bytes uploaded
                entry["sha256_at_upload"] = stored.sha256
            files.append(entry)
        writer.writerow([_cell(mask(str(v))) if isinstance(v, str) else v for v in (
            found_file["site"], found_file["subject"], found_file["visit"], found_file["visit_sequence"],
            found_file["entry_id"], found_file["crf"], found_file["item"], found_file["row_id"], path,
            stored.original_name, stored.content_type, stored.size, stored.sha256,
        )])
    data = index.getvalue().encode("utf-8")
    with archive.open(manifest.zip_member(archive, INDEX_NAME), "w") as member:
        hashing = manifest.HashingWriter(member)
        hashing.write(data)
    rows_written = data.count(b"\n") - 1
    return [{"name": INDEX_NAME, "table": "Attachments (files of CRF file items)", "rows": rows_written,
             "bytes": hashing.size, "sha256": hashing.sha256()}, *files]


def _uuid(value: str):  # noqa: ANN202
    import uuid

    return uuid.UUID(str(value))


def _cell(value: str) -> str:
    return text_cell(value) if value[:1] in FORMULA_TRIGGERS else value


def _mask(spec: ExportSpec):  # noqa: ANN202
    mask = selectors.arm_mask(spec)
    return mask if mask is not None else (lambda text: text)
