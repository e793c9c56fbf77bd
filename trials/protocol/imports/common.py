"""What the importers share: their problems, their limits, YAML with comments, and the one way out
through the loader.

An importer turns a foreign file (ODM, ClinicalTrials.gov, REDCap…) into trial and CRF YAML, then
hands that YAML to `trials.protocol.loader.protocol_check`: the loader stays the one place that
validates a protocol. The YAML reaches the output directory only when the importer and the loader
found nothing wrong; on any problem nothing is written and each problem says `file:line: problem`
against the *input* file where the importer knows the line (the loader's own messages name the
generated file and, where the importer recorded it, the input line it came from).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# A protocol's metadata is small: the four seed trials' ODM metadata is under 1 MB. The limits refuse
# a runaway or hostile file before it is parsed (size) or before it is translated (items).
MAX_BYTES = 20 * 1024 * 1024
MAX_ITEMS = 20_000

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,39}$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class ImportProblem:
    file: str
    message: str
    line: int | None = None
    where: str = ""  # a JSON path (`protocolSection.designModule.phases[0]`) or an OID

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place}: {self.where + ': ' if self.where else ''}{self.message}"


class ImportFailed(Exception):
    """The input cannot be imported; nothing was written."""

    def __init__(self, problems: Sequence[ImportProblem | Any]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def check_size(path: Path, label: str, limit: int = MAX_BYTES) -> bytes:
    """The file's bytes, refused before parsing when larger than `limit`."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFailed([ImportProblem(label, f"cannot read the file: {exc.strerror or exc}")]) from None
    if size > limit:
        raise ImportFailed([ImportProblem(
            label, f"the file is {size / 1024 / 1024:.1f} MB; imports are limited to {limit // 1024 // 1024} MB"
        )])
    return path.read_bytes()


def as_code(text: str, fallback: str = "X") -> str:
    """A protocol code (upper case, digits, `_` and `-`, at most 40 characters) from any text."""
    code = re.sub(r"[^A-Z0-9_-]+", "_", str(text).upper()).strip("_-")[:40].strip("_-")
    return code if code and CODE_PATTERN.match(code) else fallback


def as_name(text: str, fallback: str = "item") -> str:
    """A CRF item name (lower case, digits and `_`, a letter first) from any text."""
    name = re.sub(r"[^a-z0-9_]+", "_", str(text).lower()).strip("_")[:60]
    if name and not name[0].isalpha():
        name = f"f_{name}"[:60]
    return name if name and NAME_PATTERN.match(name) else fallback


def unique(value: str, taken: set[str], limit: int = 40) -> str:
    candidate, counter = value, 2
    while candidate in taken:
        suffix = f"_{counter}"
        candidate, counter = value[: limit - len(suffix)] + suffix, counter + 1
    taken.add(candidate)
    return candidate


# --- YAML with comments ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Values safe_dump can write (Decimal as int or float)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def dump_yaml(data: dict[str, Any], comments: dict[str, list[str]] | None = None, header: Iterable[str] = ()) -> str:
    """The mapping as YAML, each top-level key preceded by its comment lines (`# Assumption: …`)."""
    out = [f"# {line}" if line else "#" for line in header]
    for key, value in data.items():
        for line in (comments or {}).get(key, []):
            out.append(f"# {line}")
        out.append(yaml.safe_dump({key: _plain(value)}, sort_keys=False, allow_unicode=True, width=110).rstrip("\n"))
    return "\n".join(out) + "\n"


# --- Through the loader ------------------------------------------------------------------


@dataclass
class ImportResult:
    """The generated files (path relative to the output directory -> YAML text) and the report."""

    files: dict[str, str] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    # Generated file -> (YAML path prefix -> line of the input file), to point loader messages back.
    origins: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)

    def origin(self, relpath: str, yaml_path: str, label: str, line: int | None) -> None:
        if line:
            self.origins.setdefault(relpath, {})[yaml_path] = (label, line)


def _with_origin(problem: Any, result: ImportResult, directory: Path) -> str:
    text = str(problem)
    relpath = None
    for candidate in result.files:
        if problem.file.endswith(candidate):
            relpath = candidate
    if relpath is None:
        return text
    text = text.replace(str(directory / relpath), relpath).replace(str((directory / relpath).resolve()), relpath)
    origins = result.origins.get(relpath, {})
    best = max((p for p in origins if problem.path == p or problem.path.startswith(p + ".") or problem.path.startswith(p + "[")),
               key=len, default=None)
    if best is not None:
        label, line = origins[best]
        text += f" (from {label}:{line})"
    return text


def validate_and_write(result: ImportResult, out: Path | None) -> None:
    """Check the generated YAML with the loader; write it to `out` only when it all validates."""
    from trials.protocol.loader import ProtocolLoadError, protocol_check

    with tempfile.TemporaryDirectory(prefix="edc-import-") as tmp:
        directory = Path(tmp)
        (directory / "crfs").mkdir()
        for relpath, text in result.files.items():
            (directory / relpath).write_text(text, encoding="utf-8")
        try:
            protocol_check([directory])
        except ProtocolLoadError as exc:
            raise ImportFailed([_with_origin(p, result, directory) for p in exc.problems]) from None
    if out is None:
        return
    out = Path(out)
    clashes = [relpath for relpath in result.files if (out / relpath).exists()]
    if clashes:
        raise ImportFailed([ImportProblem(str(out / c), "already exists; choose an empty --out directory") for c in clashes])
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=out.parent if out.parent.exists() else None))
    try:
        for relpath, text in result.files.items():
            target = staging / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (out / "crfs").mkdir(parents=True, exist_ok=True)
        for relpath in result.files:
            shutil.move(str(staging / relpath), str(out / relpath))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class ImportCommand:
    """What `manage.py import_odm` and `import_ctgov` share: FILE… --out DIR, the problems on
    stderr and nothing written, else the report and the files written. A command class mixes it
    with BaseCommand and names its importer and its files."""

    files_help = "files to import"

    @staticmethod
    def importer(paths: list[Path], out: Path | None) -> ImportResult:  # pragma: no cover - set by each command
        raise NotImplementedError

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("files", nargs="+", help=self.files_help)
        parser.add_argument("--out", help="directory for the YAML (crfs/<code>.yaml, <trial>.yaml); without it, only check")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        from django.core.management.base import CommandError

        try:
            result = self.importer([Path(f) for f in options["files"]], Path(options["out"]) if options["out"] else None)
        except ImportFailed as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{len(exc.problems)} problem(s) found; nothing was written") from None
        for line in result.report:
            self.stdout.write(line)
        where = f"written under {options['out']}" if options["out"] else "checked, nothing written (no --out)"
        self.stdout.write(self.style.SUCCESS(f"{len(result.files)} file(s) {where}: " + ", ".join(sorted(result.files))))
