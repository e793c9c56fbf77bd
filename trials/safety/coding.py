"""Loading a coding dictionary (lowest-level terms with their preferred terms and system organ
classes) from a CSV file. All or nothing: any bad line is reported as `file:line: problem` and
nothing is written."""

from __future__ import annotations

import csv
from pathlib import Path

from django.db import transaction

from edc.db import analyze
from trials.safety.models import CodingTerm

COLUMNS = ("llt_code", "llt", "pt_code", "pt", "soc_code", "soc")


class CodingLoadError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def coding_dictionary_load(path: Path | str, *, dictionary: str, version: str) -> int:
    """Load (or complete) a dictionary version from CSV with a header row naming COLUMNS."""
    path = Path(path)
    problems: list[str] = []
    rows: dict[str, CodingTerm] = {}
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise CodingLoadError([f"{path}: cannot be read ({exc.strerror})"]) from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CodingLoadError([f"{path}:1: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})"])
        for line, record in enumerate(reader, start=2):
            values = {c: (record.get(c) or "").strip() for c in COLUMNS}
            empty = [c for c, v in values.items() if not v]
            if empty:
                problems.append(f"{path}:{line}: empty {', '.join(empty)}")
                continue
            too_long = [c for c, v in values.items() if len(v) > CodingTerm._meta.get_field(c).max_length]
            if too_long:
                problems.append(f"{path}:{line}: too long: {', '.join(too_long)}")
                continue
            if values["llt_code"] in rows:
                problems.append(f"{path}:{line}: duplicate llt_code {values['llt_code']}")
                continue
            rows[values["llt_code"]] = CodingTerm(dictionary=dictionary, version=version, **values)
    if not rows and not problems:
        problems.append(f"{path}: no terms")
    if problems:
        raise CodingLoadError(problems)
    with transaction.atomic():
        existing = set(CodingTerm.objects.filter(dictionary=dictionary, version=version).values_list("llt_code", flat=True))
        new = [term for code, term in rows.items() if code not in existing]
        CodingTerm.objects.bulk_create(new, batch_size=2000)
    if len(new) >= ANALYZE_AFTER:
        analyze(CodingTerm)  # a dictionary load is tens of thousands of terms: the planner's statistics now
    return len(new)


ANALYZE_AFTER = 1000  # rows written by one load
