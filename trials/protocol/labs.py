"""Laboratory results of a CRF entry graded by CTCAE v5.0 against the site's normal ranges.

The CRF items name their test (`lab_test` in the CRF file); the ranges are `LabNormalRange` rows of
the participant's site. `grade_answers` is pure over the rows it is given, so the CRF page, the save
and the exports share it (each reads the rows once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from trials.protocol.ctcae import LabGrade, grade
from trials.protocol.engine import CrfSchema
from trials.protocol.models import LabNormalRange

BASELINE_GRADED = frozenset({"ALT", "AST", "ALP", "BILI", "CREAT", "HGB"})  # CTCAE relates these to an abnormal baseline


def pick_range(
    ranges: Iterable[LabNormalRange], *, test: str, sex: str | None, age: int | None, on: date
) -> LabNormalRange | None:
    """The range that grades a sample: same test, in force on the sample date (the latest
    `effective_from` on or before it), for the participant's sex and age; a sex-specific row wins
    over an "All" row. A row limited by sex or age needs the participant's sex or age to apply."""
    best: LabNormalRange | None = None
    for row in ranges:
        if row.test != test or not row.is_active or row.effective_from > on:
            continue
        if row.sex and row.sex != sex:
            continue
        if (row.age_from_years > 0 or row.age_to_years < 150) and (age is None or not row.age_from_years <= age < row.age_to_years):
            continue
        if best is None or (row.effective_from, bool(row.sex)) > (best.effective_from, bool(best.sex)):
            best = row
    return best


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def grade_answers(
    schema: CrfSchema,
    answers: Mapping[str, Any],
    *,
    ranges: Iterable[LabNormalRange],
    sex: str | None,
    age: int | None,
    on: date,
    baseline: Mapping[str, Any] | None = None,
) -> dict[str, LabGrade]:
    """Item name -> its CTCAE grade, for every answered lab item with a range at the site."""
    ranges = list(ranges)
    out: dict[str, LabGrade] = {}
    for item in schema.items:
        if not item.lab_test:
            continue
        value = _decimal(answers.get(item.name))
        if value is None:
            continue
        row = pick_range(ranges, test=item.lab_test, sex=sex, age=age, on=on)
        if row is None:
            continue
        before = _decimal((baseline or {}).get(item.name)) if item.lab_test in BASELINE_GRADED else None
        out[item.name] = grade(item.lab_test, value, lln=row.lln, uln=row.uln, baseline=before)
    return out


def iso_date(value: object) -> date | None:
    """A stored date answer (`YYYY-MM-DD`, or a datetime's ISO text) as a date; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def grade_entry(
    schema: CrfSchema,
    answers: Mapping[str, Any],
    *,
    ranges: Iterable[LabNormalRange],
    demog: Mapping[str, Any],
    baseline: Mapping[str, Any] | None,
    visit_date: date | None,
    today: Callable[[], date],
) -> dict[str, LabGrade]:
    """`grade_answers` for a CRF entry as the CRF page and the data-quality rules grade it: on the
    sample date (the CRF's `sample_date`, else the visit date, else the site's today), for the sex
    and the age on that day from the participant's DEMOG answers (`sex`, `date_of_birth`)."""
    on = iso_date(answers.get("sample_date")) or visit_date or today()
    born = iso_date(demog.get("date_of_birth"))
    age = None if born is None else on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return grade_answers(schema, answers, ranges=ranges, sex=demog.get("sex"), age=age, on=on, baseline=baseline)
