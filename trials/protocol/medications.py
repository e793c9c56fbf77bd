"""The medication log as eligibility criteria read it: CEL functions over `meds`.

`meds` is the participant's medication log (CONMED records), each record a map with `name`,
`class` (the CONMED drug class code), `start` and `stop` (ISO dates; `stop` null while ongoing),
`ongoing` and `stop_reason`; `meds` is null while the log holds no record (an empty log is not
evidence of no medication), so an expression says what to do then (`meds == null ? null : …`). `screening_date` is the date criteria are judged at (the screening visit's date, or
the site's today before it is recorded). A record is one stable course: a change of dose stops
one record and starts another (seeds/crfs/conmed.yaml), so "stable for N days" is the age of the
current record.

`what` names a drug class code (`statin`) or a medication name (case-insensitive, `sildenafil`);
a list of them matches any.
"""

from __future__ import annotations

from datetime import date
from typing import Any

# The log CRF whose records make `meds`; criteria may name `meds` only in a trial that keeps it.
MEDICATION_LOG = "CONMED"
# Context names a criterion may use besides the eligibility CRFs' items.
CRITERION_NAMES = ("meds", "screening_date")


def _day(value: Any) -> date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _matches(record: dict, what: Any) -> bool:
    wanted = [what] if isinstance(what, str) else list(what)
    wanted = {str(w).strip().lower() for w in wanted}
    return str(record.get("class") or "").lower() in wanted or str(record.get("name") or "").strip().lower() in wanted


def _current(meds: list, what: Any, on_date: Any) -> list[dict]:
    """The records of `what` being taken on `on_date` (started on or before it, not stopped before it)."""
    day = _day(on_date)
    out = []
    for record in meds or []:
        start, stop = _day(record.get("start")), _day(record.get("stop"))
        if _matches(record, what) and start is not None and start <= day and (stop is None or stop >= day):
            out.append(record)
    return out


def taking(meds: list, what: Any, on_date: Any) -> bool:
    """Whether the log shows `what` taken on `on_date`."""
    return bool(_current(meds, what, on_date))


def days_taking(meds: list, what: Any, on_date: Any) -> int:
    """How many days the current course of `what` has lasted on `on_date` (its most recent start
    among the records being taken then); 0 when it is not being taken."""
    current = _current(meds, what, on_date)
    if not current:
        return 0
    latest = max(_day(r.get("start")) for r in current)
    return (_day(on_date) - latest).days


def days_treated(meds: list, what: Any, on_date: Any) -> int:
    """How many days `what` has been taken without a break on `on_date`: back from the current
    records through records that ended the day before (or after) the next began (a dose change, a
    switch within the named classes); 0 when it is not being taken."""
    day = _day(on_date)
    current = _current(meds, what, on_date)
    if not current:
        return 0
    earliest = min(_day(r.get("start")) for r in current)
    others = [r for r in meds or [] if _matches(r, what) and _day(r.get("start")) is not None]
    changed = True
    while changed:
        changed = False
        for record in others:
            start, stop = _day(record.get("start")), _day(record.get("stop"))
            if start < earliest and (stop is None or (earliest - stop).days <= 1):
                earliest, changed = start, True
    return (day - earliest).days


def changed_within(meds: list, what: Any, on_date: Any, days: int) -> bool:
    """Whether a course of `what` started or stopped in the `days` days up to `on_date` (treatment
    not stable over that period)."""
    day = _day(on_date)
    for record in meds or []:
        if not _matches(record, what):
            continue
        for moment in (_day(record.get("start")), _day(record.get("stop"))):
            if moment is not None and moment <= day and (day - moment).days < int(days):
                return True
    return False


def courses_failed(meds: list, what: Any, on_date: Any) -> int:
    """How many different medications of `what` were stopped before `on_date` for an inadequate
    response or intolerance (CONMED `stop_reason`), counted once per name."""
    day = _day(on_date)
    names = {
        str(r.get("name") or "").strip().lower()
        for r in meds or []
        if _matches(r, what) and r.get("stop_reason") in FAILURE_REASONS and _day(r.get("stop")) is not None and _day(r.get("stop")) <= day
    }
    return len(names)


FAILURE_REASONS = frozenset({"inadequate_response", "intolerance"})


def took_within(meds: list, what: Any, on_date: Any, days: int) -> bool:
    """Whether `what` was taken at any time in the `days` days up to `on_date` (a course that
    stopped less than `days` days before counts)."""
    day = _day(on_date)
    for record in meds or []:
        start, stop = _day(record.get("start")), _day(record.get("stop"))
        if not _matches(record, what) or start is None or start > day:
            continue
        if stop is None or (day - stop).days < int(days):
            return True
    return False


FUNCTIONS = {
    "taking": taking, "days_taking": days_taking, "days_treated": days_treated, "took_within": took_within,
    "changed_within": changed_within, "courses_failed": courses_failed,
}
