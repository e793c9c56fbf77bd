"""The manifest of an export: what it contains, for whom, at which cut-off and blinding, made by
which software version, and the SHA-256 of every file in it (so a recipient can check that no
file was changed or left out)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC
from typing import Any

from django.conf import settings
from django.utils import timezone

from trials.exports import selectors
from trials.exports.spec import ExportSpec

MANIFEST_NAME = "manifest.json"
CUTOFF_MEANING = (
    "Data as recorded in the EDC up to the end of the cut-off day (UTC), each value as it stood then "
    "(read from the audit trail)."
)


class HashingWriter:
    """A write-only binary stream that passes bytes on and keeps their SHA-256 and count."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self.raw.flush()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:
        self.raw.close()

    def sha256(self) -> str:
        return self.digest.hexdigest()


def manifest_header(spec: ExportSpec, *, format_code: str) -> dict[str, Any]:
    """Everything about the export but its files."""
    user = selectors.export_user(spec)
    trials = list(selectors.export_trials(spec).values_list("code", flat=True))
    sites = [f"{trial}/{code}" for trial, code in selectors.export_sites(spec).values_list("trial__code", "code")]
    return {
        "software": "EDC",
        "software_version": settings.EDC_VERSION,
        "format": format_code,
        "job": spec.options.get("job"),
        "trial": trials[0] if spec.trial_id is not None and trials else None,
        "pooled_crf": spec.pooled_crf,
        "trials": trials,
        "sites": sites,
        "crfs": selectors.export_crf_codes(spec),
        "cutoff": spec.cutoff.isoformat() if spec.cutoff else None,
        "cutoff_meaning": CUTOFF_MEANING if spec.cutoff else "Data as they were when the export ran.",
        "blinded": spec.blinded,
        "identifiers": spec.identifiers,
        "requested_by": {"username": user.username, "name": user.get_full_name()},
        "generated_at": timezone.now().isoformat(timespec="seconds"),
    }


def manifest_bytes(header: dict[str, Any], files: list[dict[str, Any]]) -> bytes:
    """The manifest as JSON: the header and, per file, its name, rows, size and SHA-256."""
    return json.dumps({**header, "files": files}, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


def zip_member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """A zip member dated now (UTC, the time in manifest.json's `generated_at`) and compressed like
    the archive. `ZipFile.open(name, "w")` alone dates a member 1980-01-01 (APPNOTE 4.4.6: the
    MS-DOS date of the file)."""
    info = zipfile.ZipInfo(name, date_time=timezone.now().astimezone(UTC).timetuple()[:6])
    info.compress_type = archive.compression
    try:
        info.compress_level = archive.compresslevel  # the public name from Python 3.13 on
    except AttributeError:
        info._compresslevel = archive.compresslevel  # noqa: SLF001 - what ZipFile.open(name) sets (Python 3.11/3.12)
    info.external_attr = 0o644 << 16  # a regular file readable by all
    return info
