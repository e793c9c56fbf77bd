"""Safety summaries of a trial at a data cut-off, by the conventions of a published safety table
(ICH E3 §12.2, ICH E9; CDISC ADaM ADSL.SAFFL / ADAE.TRTEMFL):

- The **safety population** is every enrolled participant who received at least one dose of the study
  treatment on or before the cut-off (`Participant.first_treatment_date`, recorded by
  `participants.services.participant_start_treatment`). A participant enrolled but not treated is
  counted as enrolled, not as at risk.
- A **treatment-emergent AE** (TEAE) has its onset on or after the first dose (ADaM TRTEMFL) and on
  or before the cut-off. Only TEAEs are in the main counts, the grades, the organ classes and the
  serious-AE chart.
- **Pre-treatment AEs** (onset after consent and before the first dose, or in a participant not
  treated by the cut-off) are counted apart, over the enrolled participants.
- Every participant count has its **event count** beside it (participants by worst grade and
  events of each grade, grade ≥ 3 included), as published AE tables give both.
- Trials without a treatment for some participants: in a **no-intervention arm** (the control group
  of ADSVF-SSC-HANDS) nobody is ever dosed, so its participants are in the safety population from
  enrolment, and their AEs are treatment-emergent from the enrolment date (the day the groups'
  common schedule starts). In the **registry** the "treatment" is the recorded procedure (the
  grafting date is its first treatment date, the anchor of its follow-up visits); a registry
  participant without one is not in the safety population yet.

Everything is counted in the database (each participant's AEs aggregated once, then grouped by arm;
grouped counts by organ class and term), so the Python side grows with the number of groups, not
of AEs or participants, and the number of statements is constant.
Two versions are stored per cut-off: by arm (or dose cohort) for the DSMB / unblinded statistician,
and pooled ("All participants") for everybody else. The pooled version never groups by the
allocation; it reads the allocation table only in a trial with a no-intervention arm, to know whose
observation starts at enrolment (such an arm cannot be blinded), and still carries no arm label.

A dose-escalation trial with a placebo inside its cohorts (EASC-RA, `escalation.placebo`): the
cohort is known to the site, active vs placebo is not. Its unblinded version is by cohort x
(active, placebo); its blinded version is by cohort, active and placebo pooled, and never reads
the allocation slot (where active vs placebo is kept).

Recomputation is coalesced per trial through the `SummaryState` row: many AE saves in a short
time lead to at most one running and one pending computation (see `summary_request_recompute`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Case, Count, DateField, F, IntegerField, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from edc.coalesce import coalesced_request, coalesced_run, locked_state
from edc.db_router import reading_alias, replica_reads
from trials.participants.models import Allocation, AllocationSlot, Participant, ParticipantStatus
from trials.protocol.models import ArmType, Design, Trial
from trials.safety.models import RELATED, AdverseEvent, Outcome, SafetySummary, SummaryState

# 2: safety population and treatment-emergent AEs, pre-treatment AEs apart, event counts per row.
SUMMARY_FORMAT = 2
GRADES = (1, 2, 3, 4, 5)
SEVERE = 3  # "grade ≥ 3" rows (CTCAE: severe or worse)
# Enrolled: every status after screening, enrolled on or before the cut-off.
NOT_ENROLLED = (ParticipantStatus.SCREENING, ParticipantStatus.SCREEN_FAILURE)
# Statuses after which a participant is no longer followed: follow-up ends at their status date.
ENDED = (ParticipantStatus.COMPLETED, ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED)
DAYS_PER_YEAR = 365.25
# Group keys of the stored content (labels are translated when shown, arm labels are protocol data).
POOLED = "all"
UNALLOCATED = "unallocated"
UNCODED_SOC = ""  # AEs not coded yet: grouped under "Not coded", by verbatim term

# The definitions the numbers follow, said on the page and in the CSV (one wording for both).
DEFINITIONS = (
    (_("Safety population"), _(
        "Enrolled participants who received at least one dose of the study treatment on or before the cut-off "
        "(their first treatment date). In a no-intervention arm every enrolled participant, from enrolment. "
        "In a registry the first treatment is the recorded procedure.")),
    (_("Treatment-emergent AE"), _(
        "Onset on or after the first dose (or enrolment in a no-intervention arm) and on or before the cut-off "
        "(ICH E9; CDISC ADaM TRTEMFL). Only treatment-emergent AEs are in the main table, the grades, the organ "
        "classes and the chart; percentages are of the safety population.")),
    (_("Pre-treatment AE"), _(
        "Onset after consent and before the first dose, or in a participant not treated by the cut-off: reported "
        "separately; percentages are of the enrolled participants.")),
    (_("Participants and events"), _(
        "Each row gives participants (each counted once) and events (every AE). By grade: participants at their "
        "worst CTCAE grade, and all events of that grade.")),
)


def cutoff_date_of(cutoff_at: datetime) -> date:
    """The calendar day of the cut-off (in the server's time zone, where dates are stored)."""
    return timezone.localdate(cutoff_at)


def _group_expression(blinded: bool, prefix: str = "", split_placebo: bool = False) -> Any:
    """The column participants are grouped by: the allocated arm, or a constant when pooled; with
    `split_placebo`, arm id x 2 + 1 for a placebo inside the cohort (decoded by `_key`)."""
    if blinded:
        return Value(POOLED)
    if split_placebo:
        return F(f"{prefix}allocation__arm_id") * 2 + Case(
            When(**{f"{prefix}allocation__slot__placebo": True}, then=Value(1)), default=Value(0), output_field=IntegerField(),
        )
    return F(f"{prefix}allocation__arm_id")


def _key(value: Any, blinded: bool, has_arms: bool, split_placebo: bool = False) -> str:
    if blinded or not has_arms:
        return POOLED
    if value is None:
        return UNALLOCATED
    if split_placebo:
        return f"arm-{int(value) // 2}-{'placebo' if int(value) % 2 else 'active'}"
    return f"arm-{value}"


def _pct(n: int, of: int) -> float | None:
    return round(100.0 * n / of, 1) if of else None


# Participant counts and the event count beside each (`None`: the row has no event count).
PAIRS = (
    ("with_ae", "events"), ("with_sae", "sae_events"), ("with_related", "related_events"),
    ("with_withdrawal", "withdrawal_events"), ("deaths", "fatal_events"), ("with_dlt", "dlt_events"),
    ("with_severe", "severe_events"),
)
PRE_PAIRS = (("pre_with_ae", "pre_events"), ("pre_with_sae", "pre_sae_events"), ("pre_with_severe", "pre_severe_events"))


def _empty_counts() -> dict[str, Any]:
    counts: dict[str, Any] = {"enrolled": 0, "safety_population": 0, "followup_days": 0}
    for participants, events in PAIRS + PRE_PAIRS:
        counts[participants] = 0
        counts[events] = 0
    counts["grades"] = {str(g): 0 for g in GRADES}
    counts["grade_events"] = {str(g): 0 for g in GRADES}
    return counts


def _finish(counts: dict[str, Any]) -> dict[str, Any]:
    """Percentages (of the safety population; pre-treatment: of the enrolled), follow-up in years and
    the incidence rate of treatment-emergent AEs."""
    population, enrolled = counts["safety_population"], counts["enrolled"]
    counts["not_treated"] = enrolled - population
    for name, _events in PAIRS:
        counts[f"{name}_pct"] = _pct(counts[name], population)
    for name, _events in PRE_PAIRS:
        counts[f"{name}_pct"] = _pct(counts[name], enrolled)
    counts["grades_pct"] = {g: _pct(n, population) for g, n in counts["grades"].items()}
    years = counts["followup_days"] / DAYS_PER_YEAR
    counts["followup_years"] = round(years, 2)
    counts["incidence_per_100py"] = round(100.0 * counts["events"] / years, 1) if years > 0 else None
    return counts


def _sql_codes(values) -> str:  # noqa: ANN001
    """A list of the models' fixed choice codes as SQL literals (never user input)."""
    return ", ".join(f"'{value}'" for value in sorted(values))


def _days(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


# Columns of `_participant_rows` after (group, in the safety population, worst grade of a TEAE).
ROW_COLUMNS = (
    "n", "followup_days", "events", "sae_events", "with_sae", "related_events", "with_related", "withdrawal_events",
    "with_withdrawal", "dlt_events", "with_dlt", "fatal_events", "deaths", *(f"g{g}" for g in GRADES),
    "pre_with_ae", "pre_events", "pre_with_sae", "pre_sae_events", "pre_with_severe", "pre_severe_events",
)


def _participant_rows(trial: Trial, cutoff: date, pooled: bool, observed_from_enrolment: list[int], split_placebo: bool = False) -> list[tuple]:
    """Per arm, membership of the safety population and worst grade of a treatment-emergent AE:
    the columns of ROW_COLUMNS.

    Hand-written SQL, because the ORM cannot group over a per-participant pre-aggregate: the
    enrolled participants with their observation start (first dose; enrolment in a no-intervention
    arm, `observed_from_enrolment`), joined to their AEs' aggregates split into treatment-emergent
    and pre-treatment (one pass over the AE index), grouped by arm. Deaths (safety population): a
    TEAE of grade 5 or with a fatal outcome before the cut-off, or the status "died" on or before it.
    The pooled version does not group by the allocation, and reads it only when the trial has a
    no-intervention arm."""
    participant, ae = Participant._meta.db_table, AdverseEvent._meta.db_table
    join = f"LEFT JOIN {Allocation._meta.db_table} al ON al.participant_id = p.id"
    group = "NULL" if pooled else "al.arm_id"
    if split_placebo:  # the unblinded version only: arm id x 2 + 1 for a placebo inside the cohort
        join += f" LEFT JOIN {AllocationSlot._meta.db_table} sl ON sl.id = al.slot_id"
        group = "al.arm_id * 2 + CASE WHEN sl.placebo THEN 1 ELSE 0 END"
    if pooled and not observed_from_enrolment:
        join = ""
    start = "p.first_treatment_date"
    if observed_from_enrolment:
        ids = ", ".join(str(int(pk)) for pk in observed_from_enrolment)
        start = f"COALESCE(p.first_treatment_date, CASE WHEN al.arm_id IN ({ids}) THEN p.enrolment_date END)"
    end = f"CASE WHEN status IN ({_sql_codes(ENDED)}) AND status_date < %(cut)s THEN status_date ELSE %(cut)s END"
    te = "(r.start IS NOT NULL AND e.onset_date >= r.start)"
    pre = f"(NOT {te})"
    fatal = f"(e.grade = 5 OR e.outcome = '{Outcome.FATAL.value}')"
    related = f"e.related_product IN ({_sql_codes(RELATED)})"

    def both(name: str, condition: str) -> str:  # events and "has one" of the TEAEs meeting `condition`
        return (f"SUM(CASE WHEN {te} AND {condition} THEN 1 ELSE 0 END) AS {name}_events, "
                f"MAX(CASE WHEN {te} AND {condition} THEN 1 ELSE 0 END) AS {name}")

    grade_events = ", ".join(f"SUM(CASE WHEN {te} AND e.grade = {g} THEN 1 ELSE 0 END) AS g{g}" for g in GRADES)
    sql = f"""
        WITH enrolled AS (
            SELECT p.id, {group} AS grp, p.status, p.status_date,
                   CASE WHEN {start} <= %(cut)s THEN {start} END AS start
            FROM {participant} p {join}
            WHERE p.trial_id = %(trial)s AND p.enrolment_date <= %(cut)s AND p.status NOT IN ({_sql_codes(NOT_ENROLLED)})
        ), r AS (
            SELECT id, grp, start,
                   CASE WHEN start IS NULL OR {end} < start THEN 0 ELSE {_days(end, "start")} END AS days,
                   CASE WHEN status = '{ParticipantStatus.DIED.value}' AND (status_date IS NULL OR status_date <= %(cut)s)
                        THEN 1 ELSE 0 END AS died
            FROM enrolled
        ), per AS (
            SELECT e.participant_id,
                   MAX(CASE WHEN {te} THEN e.grade END) AS worst,
                   SUM(CASE WHEN {te} THEN 1 ELSE 0 END) AS events,
                   {both("sae", "e.serious")}, {both("related", related)}, {both("withdrawal", "e.leads_to_withdrawal")},
                   {both("dlt", "e.is_dlt")}, {both("fatal", fatal)}, {grade_events},
                   MAX(CASE WHEN {pre} THEN 1 ELSE 0 END) AS pre,
                   SUM(CASE WHEN {pre} THEN 1 ELSE 0 END) AS pre_events,
                   MAX(CASE WHEN {pre} AND e.serious THEN 1 ELSE 0 END) AS pre_sae,
                   SUM(CASE WHEN {pre} AND e.serious THEN 1 ELSE 0 END) AS pre_sae_events,
                   MAX(CASE WHEN {pre} AND e.grade >= {SEVERE} THEN 1 ELSE 0 END) AS pre_severe,
                   SUM(CASE WHEN {pre} AND e.grade >= {SEVERE} THEN 1 ELSE 0 END) AS pre_severe_events
            FROM {ae} e JOIN r ON r.id = e.participant_id
            WHERE e.onset_date <= %(cut)s
            GROUP BY e.participant_id
        )
        SELECT r.grp, CASE WHEN r.start IS NULL THEN 0 ELSE 1 END AS safety, per.worst, COUNT(*), SUM(r.days),
               SUM(per.events), SUM(per.sae_events), SUM(per.sae), SUM(per.related_events), SUM(per.related),
               SUM(per.withdrawal_events), SUM(per.withdrawal), SUM(per.dlt_events), SUM(per.dlt), SUM(per.fatal_events),
               SUM(CASE WHEN r.start IS NOT NULL AND (per.fatal = 1 OR r.died = 1) THEN 1 ELSE 0 END),
               {", ".join(f"SUM(per.g{g})" for g in GRADES)},
               SUM(per.pre), SUM(per.pre_events), SUM(per.pre_sae), SUM(per.pre_sae_events), SUM(per.pre_severe),
               SUM(per.pre_severe_events)
        FROM r LEFT JOIN per ON per.participant_id = r.id
        GROUP BY r.grp, CASE WHEN r.start IS NULL THEN 0 ELSE 1 END, per.worst
    """
    with connections[reading_alias()].cursor() as cursor:  # the replica inside summary_refresh's block
        cursor.execute(sql, {"trial": trial.pk, "cut": cutoff})
        return cursor.fetchall()


def _add_row(counts: dict[str, Any], in_safety: bool, worst: int | None, numbers: dict[str, int]) -> None:
    """Add one (group, safety population, worst grade) row of `_participant_rows` to a group's counts."""
    n = numbers["n"]
    counts["enrolled"] += n
    for name in ("pre_with_ae", "pre_events", "pre_with_sae", "pre_sae_events", "pre_with_severe", "pre_severe_events"):
        counts[name] += numbers[name]
    if not in_safety:
        return
    counts["safety_population"] += n
    counts["followup_days"] += numbers["followup_days"]
    counts["deaths"] += numbers["deaths"]
    counts["fatal_events"] += numbers["fatal_events"]
    if worst is None:
        return
    counts["with_ae"] += n
    counts["grades"][str(worst)] += n
    if worst >= SEVERE:
        counts["with_severe"] += n
    for g in GRADES:
        counts["grade_events"][str(g)] += numbers[f"g{g}"]
        if g >= SEVERE:
            counts["severe_events"] += numbers[f"g{g}"]
    for name in ("events", "sae_events", "with_sae", "related_events", "with_related", "withdrawal_events",
                 "with_withdrawal", "dlt_events", "with_dlt"):
        counts[name] += numbers[name]


def compute_summary(trial: Trial, *, cutoff_at: datetime, blinded: bool) -> dict[str, Any]:
    """The safety summary of `trial` at `cutoff_at`, by arm / cohort, or pooled when `blinded`
    (a JSON-ready dict; see the module docstring for what it counts)."""
    cutoff = cutoff_date_of(cutoff_at)
    arms = list(trial.arms.order_by(F("order").asc(nulls_last=True), "code"))
    has_arms = bool(arms)
    by_cohort = trial.design == Design.DOSE_ESCALATION
    # A placebo inside the cohorts: the cohort is not concealed (blinded: by cohort), active vs placebo is.
    cohort_placebo = by_cohort and bool((trial.escalation or {}).get("placebo"))
    split = cohort_placebo and not blinded
    pooled = (blinded and not cohort_placebo) or not has_arms
    # Arms whose participants are never dosed: observed (and at risk) from enrolment.
    observed_from_enrolment = [arm.pk for arm in arms if arm.arm_type == ArmType.NO_INTERVENTION]

    groups: dict[str, dict[str, Any]] = {}
    if not pooled:
        for arm in arms:
            dose = f"{arm.dose.normalize():f} {arm.dose_unit}" if arm.dose is not None else ""
            base = {"kind": "cohort" if by_cohort else "arm", "code": arm.code, "label": arm.label, "dose": dose}
            if split:
                for treatment in ("active", "placebo"):
                    key = f"arm-{arm.pk}-{treatment}"
                    groups[key] = {**base, "key": key, "treatment": treatment, "counts": _empty_counts()}
            else:
                groups[f"arm-{arm.pk}"] = {**base, "key": f"arm-{arm.pk}", "counts": _empty_counts()}
    else:
        groups[POOLED] = {"key": POOLED, "kind": "pooled", "code": "", "label": "", "dose": "", "counts": _empty_counts()}

    def group(key: str) -> dict[str, Any]:
        if key not in groups:  # participants without an allocation (unblinded view only)
            groups[key] = {"key": key, "kind": "unallocated", "code": "", "label": "", "dose": "", "counts": _empty_counts()}
        return groups[key]

    # 1. Participant level, in one statement: each enrolled participant with the aggregates of her
    # treatment-emergent and pre-treatment AEs before the cut-off, grouped by arm and worst grade.
    for group_value, in_safety, worst, *values in _participant_rows(trial, cutoff, pooled, observed_from_enrolment, split):
        # SUM() is numeric on PostgreSQL (Decimal) and NULL over participants without AEs.
        numbers = {name: int(value or 0) for name, value in zip(ROW_COLUMNS, values, strict=True)}
        _add_row(group(_key(group_value, pooled, has_arms, split))["counts"], bool(in_safety), worst, numbers)

    # 2. Treatment-emergent AEs before the cut-off of the enrolled participants (grouped queries).
    start: Any = F("participant__first_treatment_date")
    if observed_from_enrolment:
        start = Coalesce(start, Case(
            When(participant__allocation__arm_id__in=observed_from_enrolment, then=F("participant__enrolment_date")),
            default=None, output_field=DateField(),
        ))
    aes = (
        AdverseEvent.objects.filter(
            participant__trial=trial, participant__enrolment_date__lte=cutoff, onset_date__lte=cutoff,
        )
        .exclude(participant__status__in=NOT_ENROLLED)
        .alias(observation_start=start)
        .filter(onset_date__gte=F("observation_start"))
        .annotate(group=_group_expression(pooled, "participant__", split))
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
        entry["groups"][_key(row["group"], pooled, has_arms, split)] = {"participants": row["participants"], "events": row["events"]}
    for row in coded.values("group", "soc", "term").annotate(participants=Count("participant", distinct=True), events=Count("pk")):
        terms = socs[row["soc"]]["terms"]
        entry = terms.setdefault(row["term"], {"term": row["term"], "groups": {}})
        entry["groups"][_key(row["group"], pooled, has_arms, split)] = {"participants": row["participants"], "events": row["events"]}

    # 4. Serious AEs by onset date, cumulated for the chart.
    daily = (
        aes.filter(serious=True).values("group", "onset_date").annotate(n=Count("pk")).order_by("onset_date")
    )
    timeline: dict[str, dict[str, int]] = {}
    for row in daily:
        per_day = timeline.setdefault(row["onset_date"].isoformat(), {})
        key = _key(row["group"], pooled, has_arms, split)
        per_day[key] = per_day.get(key, 0) + row["n"]

    ordered = [g for g in groups.values() if g["kind"] != "unallocated"] + [g for g in groups.values() if g["kind"] == "unallocated"]
    keys = [g["key"] for g in ordered]
    total = _empty_counts()
    for g in ordered:
        for name, value in g["counts"].items():
            if isinstance(value, dict):  # by grade
                for grade, n in value.items():
                    total[name][grade] += n
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
        "placebo_within_cohorts": split,
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
    """The newest stored summary of the trial in the given version, in the current format (one stored
    under older conventions is not shown: the caller computes a new one)."""
    return SafetySummary.objects.filter(trial=trial, blinded=blinded, content__format=SUMMARY_FORMAT).order_by("-cutoff_at", "-pk").first()


def _enqueue_refresh(trial_id: int) -> None:
    from trials.safety.tasks import safety_summary_refresh

    safety_summary_refresh.delay(trial_id)


def _stale_after() -> timedelta:
    return timedelta(minutes=settings.SAFETY_SUMMARY_STALE_MINUTES)


def summary_request_recompute(trial_id: int) -> bool:
    """Mark the trial's summary out of date and enqueue one refresh unless one is already pending.

    Returns whether a refresh was enqueued. Called by the AE service after each save; requests
    while a refresh is queued or running only set `dirty`, and the running refresh starts one more
    run at its end (so an AE saved during a computation is never missed): edc.coalesce. A refresh
    queued longer than settings.SAFETY_SUMMARY_STALE_MINUTES lost its worker (a killed node: its
    message comes back only after Redis's visibility timeout): the request enqueues a new one."""
    return coalesced_request(SummaryState, trial_id, _enqueue_refresh, stale_after=_stale_after())


@transaction.atomic
def summary_request_nightly(trial_id: int, night: date) -> bool:
    """The nightly refresh of one trial, requested once per night whatever the number of times the
    nightly tick is delivered (at-least-once: a worker killed after the tick ran is given it
    again). Returns whether this call requested it."""
    state = locked_state(SummaryState, trial_id)
    if state.nightly_on == night:
        return False
    state.nightly_on = night
    state.save(update_fields=["nightly_on"])
    summary_request_recompute(trial_id)
    return True


def summaries_stale_requeue(*, now: datetime | None = None) -> int:
    """Enqueue again the refreshes queued longer than settings.SAFETY_SUMMARY_STALE_MINUTES (their
    worker was killed mid-run, or their message lost with Redis): the scan beat runs every few
    minutes, so a lost refresh is re-found without waiting for an AE save or the night. Each goes
    through `summary_request_recompute` under the trial's state lock (a second scan finds it
    queued afresh). Returns how many were enqueued."""
    now = now or timezone.now()
    stale = SummaryState.objects.filter(queued=True).filter(
        Q(queued_at__isnull=True) | Q(queued_at__lte=now - _stale_after())
    )
    return sum(summary_request_recompute(trial_id) for trial_id in stale.values_list("trial_id", flat=True))


def summary_refresh(trial_id: int) -> bool:
    """One run of the coalesced recomputation: both versions at cut-off now, then either release the
    queue or (when AEs changed meanwhile) enqueue the next run. Returns whether another run follows.
    A message delivered again after its run released the queue (Redis gives a killed worker's
    message back after the visibility timeout, when the stale scan has long had it run) does
    nothing: no second pair of summaries for one request."""
    with transaction.atomic():
        state = SummaryState.objects.select_for_update().filter(trial_id=trial_id).first()
        if state is not None and not state.queued:
            return False

    def run() -> bool | None:
        trial = Trial.objects.filter(pk=trial_id).first()
        if trial is None:
            return None
        cutoff_at = timezone.now()
        # Issue 22: the counts are read from the streaming replica once it has replayed every
        # transaction committed before this point (so the AE whose save asked for this run is in
        # it, as on the primary); both versions are then stored on the primary in one transaction.
        with replica_reads(caught_up=True):
            contents = {blinded: compute_summary(trial, cutoff_at=cutoff_at, blinded=blinded) for blinded in (True, False)}
        with transaction.atomic():
            for blinded, content in contents.items():
                SafetySummary.objects.create(trial=trial, blinded=blinded, cutoff_at=cutoff_at, content=content)
        return True

    return coalesced_run(SummaryState, trial_id, run, _enqueue_refresh)
