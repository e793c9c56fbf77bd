"""Safety summaries of a trial at a data cut-off: who was at risk, who had adverse events, how
severe (worst CTCAE grade per participant), serious, related, leading to withdrawal, fatal, DLTs,
by system organ class and term, and the incidence per 100 participant-years.

Everything is counted in the database (each participant's AEs aggregated once, then grouped by arm;
grouped counts by organ class and term), so the Python side grows with the number of groups, not
of AEs or participants.
Two versions are stored per cut-off: by arm (or dose cohort) for the DSMB / unblinded statistician,
and pooled ("All participants") for everybody else. The pooled version never reads the allocation
table, so it cannot carry an arm label.

Recomputation is coalesced per trial through the `SummaryState` row: many AE saves in a short
time lead to at most one running and one pending computation (see `summary_request_recompute`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    Count,
    F,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from trials.participants.models import Allocation, Participant, ParticipantStatus
from trials.protocol.models import Design, Trial
from trials.safety.models import RELATED, AdverseEvent, Outcome, SafetySummary, SummaryState

SUMMARY_FORMAT = 1
GRADES = (1, 2, 3, 4, 5)
# At risk: enrolled at some time (every status after screening), enrolled on or before the cut-off.
NOT_AT_RISK = (ParticipantStatus.SCREENING, ParticipantStatus.SCREEN_FAILURE)
# Statuses after which a participant is no longer followed: follow-up ends at their status date.
ENDED = (ParticipantStatus.COMPLETED, ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED)
DAYS_PER_YEAR = 365.25
# Group keys of the stored content (labels are translated when shown, arm labels are protocol data).
POOLED = "all"
UNALLOCATED = "unallocated"
UNCODED_SOC = ""  # AEs not coded yet: grouped under "Not coded", by verbatim term


def cutoff_date_of(cutoff_at: datetime) -> date:
    """The calendar day of the cut-off (in the server's time zone, where dates are stored)."""
    return timezone.localdate(cutoff_at)


def _group_expression(blinded: bool, prefix: str = "") -> Any:
    """The column participants are grouped by: the allocated arm, or a constant when pooled."""
    if blinded:
        return Value(POOLED)
    return F(f"{prefix}allocation__arm_id")


def _key(value: Any, blinded: bool, has_arms: bool) -> str:
    if blinded or not has_arms:
        return POOLED
    return f"arm-{value}" if value is not None else UNALLOCATED


def _pct(n: int, of: int) -> float | None:
    return round(100.0 * n / of, 1) if of else None


def _empty_counts() -> dict[str, Any]:
    return {
        "at_risk": 0, "with_ae": 0, "grades": {str(g): 0 for g in GRADES}, "with_sae": 0, "with_related": 0,
        "with_withdrawal": 0, "deaths": 0, "with_dlt": 0, "events": 0, "sae_events": 0, "followup_days": 0,
    }


def _finish(counts: dict[str, Any]) -> dict[str, Any]:
    """Percentages of the participants at risk, follow-up in years and the incidence rate."""
    at_risk = counts["at_risk"]
    for name in ("with_ae", "with_sae", "with_related", "with_withdrawal", "deaths", "with_dlt"):
        counts[f"{name}_pct"] = _pct(counts[name], at_risk)
    counts["grades_pct"] = {g: _pct(n, at_risk) for g, n in counts["grades"].items()}
    years = counts["followup_days"] / DAYS_PER_YEAR
    counts["followup_years"] = round(years, 2)
    counts["incidence_per_100py"] = round(100.0 * counts["events"] / years, 1) if years > 0 else None
    return counts


def _sql_codes(values) -> str:  # noqa: ANN001
    """A list of the models' fixed choice codes as SQL literals (never user input)."""
    return ", ".join(f"'{value}'" for value in sorted(values))


def _participant_rows(trial: Trial, cutoff: date, pooled: bool) -> list[tuple]:
    """(group, worst grade, participants, follow-up days, events, serious events, with a serious AE,
    with a related AE, with an AE leading to withdrawal, with a DLT, deaths) per arm and worst grade.

    Hand-written SQL, because the ORM cannot group over a per-participant pre-aggregate: the
    participants at risk joined to their AEs' aggregates (one pass over the AE index), grouped by
    arm. Deaths: an AE of grade 5 or with a fatal outcome before the cut-off, or the status "died"
    on or before it. The pooled version does not join (or read) the allocation table."""
    participant, ae = Participant._meta.db_table, AdverseEvent._meta.db_table
    if pooled:
        group, join = "NULL", ""
    else:
        group = "al.arm_id"
        join = f"LEFT JOIN {Allocation._meta.db_table} al ON al.participant_id = p.id"
    end = f"CASE WHEN p.status IN ({_sql_codes(ENDED)}) AND p.status_date < %(cut)s THEN p.status_date ELSE %(cut)s END"
    if connection.vendor == "postgresql":
        days = f"({end} - p.enrolment_date)"
    else:
        days = f"CAST(julianday({end}) - julianday(p.enrolment_date) AS INTEGER)"
    sql = f"""
        WITH at_risk AS (
            SELECT p.id, {group} AS grp, {days} AS days,
                   CASE WHEN p.status = '{ParticipantStatus.DIED.value}' AND (p.status_date IS NULL OR p.status_date <= %(cut)s)
                        THEN 1 ELSE 0 END AS died
            FROM {participant} p {join}
            WHERE p.trial_id = %(trial)s AND p.enrolment_date <= %(cut)s AND p.status NOT IN ({_sql_codes(NOT_AT_RISK)})
        ), per AS (
            SELECT e.participant_id, MAX(e.grade) AS worst, COUNT(*) AS events,
                   SUM(CASE WHEN e.serious THEN 1 ELSE 0 END) AS sae_events,
                   MAX(CASE WHEN e.serious THEN 1 ELSE 0 END) AS sae,
                   MAX(CASE WHEN e.related_product IN ({_sql_codes(RELATED)}) THEN 1 ELSE 0 END) AS related,
                   MAX(CASE WHEN e.leads_to_withdrawal THEN 1 ELSE 0 END) AS withdrawal,
                   MAX(CASE WHEN e.is_dlt THEN 1 ELSE 0 END) AS dlt,
                   MAX(CASE WHEN e.grade = 5 OR e.outcome = '{Outcome.FATAL.value}' THEN 1 ELSE 0 END) AS fatal
            FROM {ae} e JOIN at_risk r ON r.id = e.participant_id
            WHERE e.onset_date <= %(cut)s
            GROUP BY e.participant_id
        )
        SELECT r.grp, per.worst, COUNT(*), SUM(r.days), SUM(per.events), SUM(per.sae_events), SUM(per.sae),
               SUM(per.related), SUM(per.withdrawal), SUM(per.dlt),
               SUM(CASE WHEN per.fatal = 1 OR r.died = 1 THEN 1 ELSE 0 END)
        FROM at_risk r LEFT JOIN per ON per.participant_id = r.id
        GROUP BY r.grp, per.worst
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trial": trial.pk, "cut": cutoff})
        return cursor.fetchall()


def compute_summary(trial: Trial, *, cutoff_at: datetime, blinded: bool) -> dict[str, Any]:
    """The safety summary of `trial` at `cutoff_at`, by arm / cohort, or pooled when `blinded`
    (a JSON-ready dict; see the module docstring for what it counts)."""
    cutoff = cutoff_date_of(cutoff_at)
    arms = list(trial.arms.order_by(F("order").asc(nulls_last=True), "code"))
    has_arms = bool(arms)
    by_cohort = trial.design == Design.DOSE_ESCALATION
    pooled = blinded or not has_arms

    groups: dict[str, dict[str, Any]] = {}
    if not pooled:
        for arm in arms:
            groups[f"arm-{arm.pk}"] = {
                "key": f"arm-{arm.pk}", "kind": "cohort" if by_cohort else "arm", "code": arm.code, "label": arm.label,
                "dose": f"{arm.dose.normalize():f} {arm.dose_unit}" if arm.dose is not None else "",
                "counts": _empty_counts(),
            }
    else:
        groups[POOLED] = {"key": POOLED, "kind": "pooled", "code": "", "label": "", "dose": "", "counts": _empty_counts()}

    def group(key: str) -> dict[str, Any]:
        if key not in groups:  # participants without an allocation (unblinded view only)
            groups[key] = {"key": key, "kind": "unallocated", "code": "", "label": "", "dose": "", "counts": _empty_counts()}
        return groups[key]

    # 1. Participant level, in one statement: each participant at risk with the aggregates of their
    # AEs before the cut-off (worst grade, events, flags), then grouped by arm and worst grade.
    for group_value, worst, *numbers in _participant_rows(trial, cutoff, pooled):
        # SUM() is numeric on PostgreSQL (Decimal) and NULL over participants without AEs.
        n, days, events, sae_events, with_sae, with_related, with_withdrawal, with_dlt, deaths = (int(x or 0) for x in numbers)
        counts = group(_key(group_value, pooled, has_arms))["counts"]
        counts["at_risk"] += n
        counts["followup_days"] += days
        counts["deaths"] += deaths
        if worst is not None:
            counts["with_ae"] += n
            counts["grades"][str(worst)] += n
            counts["events"] += events
            counts["sae_events"] += sae_events
            counts["with_sae"] += with_sae
            counts["with_related"] += with_related
            counts["with_withdrawal"] += with_withdrawal
            counts["with_dlt"] += with_dlt

    # 2. AEs before the cut-off of the participants at risk (one join to the participant; grouped).
    aes = (
        AdverseEvent.objects.filter(
            participant__trial=trial, participant__enrolment_date__lte=cutoff, onset_date__lte=cutoff,
        )
        .exclude(participant__status__in=NOT_AT_RISK)
        .annotate(group=_group_expression(pooled, "participant__"))
        .order_by()
    )

    # 3. By system organ class and term (preferred term when coded, else the verbatim term).
    coded = aes.annotate(
        soc=Coalesce(F("coded_term__soc"), Value(UNCODED_SOC)),
        term=Coalesce(F("coded_term__pt"), F("verbatim_term")),
    )
    socs: dict[str, dict[str, Any]] = {}
    for row in coded.values("group", "soc").annotate(participants=Count("participant", distinct=True), events=Count("pk")):
        entry = socs.setdefault(row["soc"], {"soc": row["soc"], "coded": row["soc"] != UNCODED_SOC, "groups": {}, "terms": {}})
        entry["groups"][_key(row["group"], pooled, has_arms)] = {"participants": row["participants"], "events": row["events"]}
    for row in coded.values("group", "soc", "term").annotate(participants=Count("participant", distinct=True), events=Count("pk")):
        terms = socs[row["soc"]]["terms"]
        entry = terms.setdefault(row["term"], {"term": row["term"], "groups": {}})
        entry["groups"][_key(row["group"], pooled, has_arms)] = {"participants": row["participants"], "events": row["events"]}

    # 4. Serious AEs by onset date, cumulated for the chart.
    daily = (
        aes.filter(serious=True).values("group", "onset_date").annotate(n=Count("pk")).order_by("onset_date")
    )
    timeline: dict[str, dict[str, int]] = {}
    for row in daily:
        per_day = timeline.setdefault(row["onset_date"].isoformat(), {})
        key = _key(row["group"], pooled, has_arms)
        per_day[key] = per_day.get(key, 0) + row["n"]

    ordered = [g for g in groups.values() if g["kind"] != "unallocated"] + [g for g in groups.values() if g["kind"] == "unallocated"]
    keys = [g["key"] for g in ordered]
    total = _empty_counts()
    for g in ordered:
        for name, value in g["counts"].items():
            if name == "grades":
                for grade, n in value.items():
                    total["grades"][grade] += n
            else:
                total[name] += value
        _finish(g["counts"])
    _finish(total)

    def with_total(parts: dict[str, dict[str, int]]) -> dict[str, Any]:
        zero = {"participants": 0, "events": 0}
        cells = {key: parts.get(key, zero) for key in keys}
        return {
            "groups": cells,
            "total": {
                "participants": sum(c["participants"] for c in cells.values()),
                "events": sum(c["events"] for c in cells.values()),
            },
        }

    soc_rows = []
    for entry in socs.values():
        terms = [{"term": t["term"], **with_total(t["groups"])} for t in entry["terms"].values()]
        terms.sort(key=lambda t: (-t["total"]["participants"], t["term"].casefold()))
        soc_rows.append({"soc": entry["soc"], "coded": entry["coded"], **with_total(entry["groups"]), "terms": terms})
    soc_rows.sort(key=lambda s: (not s["coded"], -s["total"]["participants"], s["soc"].casefold()))

    cumulative = {key: 0 for key in keys}
    sae_timeline = []
    for day in sorted(timeline):
        for key, n in timeline[day].items():
            cumulative[key] = cumulative.get(key, 0) + n
        sae_timeline.append({"date": day, "groups": dict(cumulative), "total": sum(cumulative.values())})

    return {
        "format": SUMMARY_FORMAT,
        "trial": trial.code,
        "blinded": blinded,
        "grouping": "pooled" if pooled else ("cohort" if by_cohort else "arm"),
        "cutoff_at": cutoff_at.isoformat(),
        "cutoff_date": cutoff.isoformat(),
        "groups": [{k: v for k, v in g.items()} for g in ordered],
        "total": total,
        "soc": soc_rows,
        "sae_timeline": sae_timeline,
    }


# --- Stored summaries and their coalesced recomputation -------------------------------------------


def summary_store(trial: Trial, *, cutoff_at: datetime, blinded: bool) -> SafetySummary:
    """Compute one version of the trial's summary at `cutoff_at` and store it."""
    content = compute_summary(trial, cutoff_at=cutoff_at, blinded=blinded)
    return SafetySummary.objects.create(trial=trial, blinded=blinded, cutoff_at=cutoff_at, content=content)


def latest_summary(trial: Trial, *, blinded: bool) -> SafetySummary | None:
    """The newest stored summary of the trial in the given version."""
    return SafetySummary.objects.filter(trial=trial, blinded=blinded).order_by("-cutoff_at", "-pk").first()


def _locked_state(trial_id: int) -> SummaryState:
    """The trial's SummaryState row, created if missing, locked until the end of the transaction."""
    try:
        with transaction.atomic():
            state, _ = SummaryState.objects.select_for_update().get_or_create(trial_id=trial_id)
    except IntegrityError:  # created by a concurrent transaction between our get and create
        state = SummaryState.objects.select_for_update().get(trial_id=trial_id)
    return state


def _enqueue_refresh(trial_id: int) -> None:
    from trials.safety.tasks import safety_summary_refresh

    transaction.on_commit(lambda: safety_summary_refresh.delay(trial_id))


@transaction.atomic
def summary_request_recompute(trial_id: int) -> bool:
    """Mark the trial's summary out of date and enqueue one refresh unless one is already pending.

    Returns whether a refresh was enqueued. Called by the AE service after each save; requests
    while a refresh is queued or running only set `dirty`, and the running refresh starts one more
    run at its end (so an AE saved during a computation is never missed)."""
    state = _locked_state(trial_id)
    enqueue = not state.queued
    state.dirty = True
    state.queued = True
    state.save(update_fields=["dirty", "queued"])
    if enqueue:
        _enqueue_refresh(trial_id)
    return enqueue


def summary_refresh(trial_id: int) -> bool:
    """One run of the coalesced recomputation: both versions at cut-off now, then either release the
    queue or (when AEs changed meanwhile) enqueue the next run. Returns whether another run follows."""
    with transaction.atomic():
        state = _locked_state(trial_id)
        state.dirty = False
        state.save(update_fields=["dirty"])
    trial = Trial.objects.filter(pk=trial_id).first()
    if trial is not None:
        cutoff_at = timezone.now()
        with transaction.atomic():
            summary_store(trial, cutoff_at=cutoff_at, blinded=True)
            summary_store(trial, cutoff_at=cutoff_at, blinded=False)
    with transaction.atomic():
        state = _locked_state(trial_id)
        again = state.dirty and trial is not None
        state.queued = again
        state.runs += 1
        state.save(update_fields=["queued", "runs"])
        if again:
            _enqueue_refresh(trial_id)
    return again
