"""What a data manager uploads, turned into the trial/CRF YAML files the loader reads.

`upload_to_yaml` is the one place where importers plug in: a converter per file extension takes
the uploaded bytes and returns YAML files (name → bytes): YAML as is, a zip of YAML files, an ODM
metadata file or a ClinicalTrials.gov record (.xml, .json), and the .csv files of a REDCap project
read together (trials.protocol.imports). Imported files get the same validation, preview and apply
as a hand-written file.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from django.utils.translation import gettext as _

# One file, and everything a zip unpacks to, is refused above this size (a trial file is ~30 kB).
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_FILES = 200
YAML_SUFFIXES = (".yaml", ".yml")


class UploadError(Exception):
    """The upload cannot be read: one message per problem, `file: problem`. Nothing was written."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


@dataclass(frozen=True)
class UploadedFile:
    name: str  # as the data manager named it (inside a zip: its path there)
    data: bytes


def _yaml(name: str, data: bytes) -> dict[str, bytes]:
    return {name: data}


def _zip(name: str, data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError([_("%(file)s: not a zip file") % {"file": name}]) from None
    members = [m for m in archive.infolist() if not m.is_dir() and not PurePosixPath(m.filename).name.startswith(".")]
    if len(members) > MAX_FILES:
        raise UploadError([_("%(file)s: more than %(n)s files") % {"file": name, "n": MAX_FILES}])
    if sum(m.file_size for m in members) > MAX_UPLOAD_BYTES:  # declared sizes: checked before inflating
        raise UploadError([_("%(file)s: unpacks to more than %(mb)s MB") % {"file": name, "mb": MAX_UPLOAD_BYTES // 2**20}])
    files: dict[str, bytes] = {}
    problems = []
    for member in members:
        path = PurePosixPath(member.filename)
        if path.suffix.lower() not in YAML_SUFFIXES:
            problems.append(_("%(file)s: %(member)s is not a YAML file") % {"file": name, "member": member.filename})
            continue
        with archive.open(member) as handle:
            content = handle.read(MAX_UPLOAD_BYTES + 1)
        if len(content) > MAX_UPLOAD_BYTES:
            problems.append(_("%(file)s: %(member)s is too large") % {"file": name, "member": member.filename})
            continue
        files[member.filename] = content
    if problems:
        raise UploadError(problems)
    return files


def _imported(run: Callable[[list[Path]], object], uploads: list[tuple[str, bytes]]) -> dict[str, bytes]:
    """The trial/CRF YAML an importer of trials.protocol.imports makes of the uploaded files (it
    validates them with the loader itself); its problems, `file:line: problem`, name the uploaded
    files, never the scratch folder."""
    from trials.protocol.imports.common import ImportFailed
    from trials.protocol.imports.redcap import describe

    with tempfile.TemporaryDirectory(prefix="edc-build-import-") as scratch:
        paths = []
        for name, data in uploads:
            path = Path(scratch) / safe_relative(name).name
            path.write_bytes(data)
            paths.append(path)

        def named(text: str) -> str:
            return text.replace(str(Path(scratch).resolve()) + "/", "").replace(scratch + "/", "")

        try:
            result = run(paths)
        except ImportFailed as failed:
            raise UploadError([named(str(problem)) for problem in failed.problems]) from None
        problems = getattr(result, "problems", None) or []
        if problems:
            raise UploadError([named(describe(problem)) for problem in problems])
        return {relpath: text.encode() for relpath, text in result.files.items()}


def _odm_or_ctgov(name: str, data: bytes) -> dict[str, bytes]:
    """An .xml: CDISC ODM metadata (REDCap's project XML is ODM with redcap: attributes), or a
    ClinicalTrials.gov record in its legacy XML."""
    from trials.protocol.imports.ctgov import import_ctgov
    from trials.protocol.imports.odm import import_odm
    from trials.protocol.imports.redcap import import_redcap

    head = data[:4096]
    if b"<clinical_study" in head:
        return _imported(import_ctgov, [(name, data)])
    if b"redcap" in head.lower():
        return _imported(import_redcap, [(name, data)])
    return _imported(import_odm, [(name, data)])


def _ctgov(name: str, data: bytes) -> dict[str, bytes]:
    """A .json: a ClinicalTrials.gov API v2 record."""
    from trials.protocol.imports.ctgov import import_ctgov

    return _imported(import_ctgov, [(name, data)])


def _redcap(uploads: list[UploadedFile]) -> dict[str, bytes]:
    """The .csv files together: a REDCap data dictionary with its optional arms, events and
    instrument-event mapping files."""
    from trials.protocol.imports.redcap import import_redcap

    return _imported(import_redcap, [(upload.name, upload.data) for upload in uploads])


# Extension → converter. Importers add theirs here (see the module's docstring); the .csv files of
# an upload are read together (REDCap: dictionary, arms, events, mapping), in `upload_to_yaml`.
CONVERTERS: dict[str, Callable[[str, bytes], dict[str, bytes]]] = {
    ".yaml": _yaml, ".yml": _yaml, ".zip": _zip, ".xml": _odm_or_ctgov, ".json": _ctgov,
}
GROUPED = {".csv": _redcap}


def upload_to_yaml(uploads: list[UploadedFile]) -> dict[str, bytes]:
    """The trial/CRF YAML files the uploads stand for, by relative path; UploadError lists every
    file that is too large, of an unknown kind or unreadable."""
    if not uploads:
        raise UploadError([_("Choose the trial file (YAML), its CRF files, or a zip of them.")])
    problems: list[str] = []
    files: dict[str, bytes] = {}
    grouped: dict[str, list[UploadedFile]] = {}
    conversions: list[Callable[[], dict[str, bytes]]] = []
    for upload in uploads:
        if len(upload.data) > MAX_UPLOAD_BYTES:
            problems.append(too_large_message(upload.name, len(upload.data)))
            continue
        suffix = PurePosixPath(upload.name).suffix.lower()
        if suffix in GROUPED:
            grouped.setdefault(suffix, []).append(upload)
            continue
        converter = CONVERTERS.get(suffix)
        if converter is None:
            problems.append(_("%(file)s: not a file the study build reads (%(kinds)s)") % {
                "file": upload.name, "kinds": ", ".join(sorted({*CONVERTERS, *GROUPED}))})
            continue
        conversions.append(partial(converter, upload.name, upload.data))
    conversions += [partial(GROUPED[suffix], group) for suffix, group in grouped.items()]
    for conversion in conversions:
        try:
            converted = conversion()
        except UploadError as error:
            problems += error.messages
            continue
        for name, data in converted.items():
            if name in files:
                problems.append(_("%(file)s: uploaded twice") % {"file": name})
            files[name] = data
    if problems:
        raise UploadError(problems)
    return files


def too_large_message(name: str, size: int) -> str:
    """Said before the file is read: a 100 MB upload is refused by its size."""
    return _("%(file)s: the file is too large (%(size)s MB; at most %(mb)s MB)") % {
        "file": name, "size": round(size / 2**20, 1), "mb": MAX_UPLOAD_BYTES // 2**20}


def safe_relative(name: str) -> PurePosixPath:
    """An uploaded name as a path that stays inside the working folder (no `..`, no root)."""
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    return PurePosixPath(*parts) if parts else PurePosixPath("file.yaml")
