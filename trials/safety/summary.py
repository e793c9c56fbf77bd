"""Safety summaries of a trial at a data cut-off: who was at risk, who had adverse events, how
severe (worst CTCAE grade per participant), serious, related, leading to withdrawal, fatal, DLTs,
by system organ class and term, and the incidence per 100 participant-years.

Everything is counted in the database (grouped, conditional aggregates; the worst grade of each
participant is a correlated subquery), so the cost grows with the number of groups, not of AEs.
Two versions are stored per cut-off: by arm (or dose cohort) for the DSMB / unblinded statistician,
and pooled ("All participants") for everybody else. The pooled version never reads the allocation
table, so it cannot carry an arm label.

Recomputation is coalesced per trial through the `SummaryState` row: many AE saves in a short
time lead to at most one running and one pending computation (see `summary_request_recompute`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    Count,
    DateField,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from trials.participants.models import Participant, ParticipantStatus
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


def _at_risk(trial: Trial, cutoff: date) -> QuerySet[Participant]:
    return Participant.objects.filter(trial=trial, enrolment_date__lte=cutoff).exclude(status__in=NOT_AT_RISK)


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


def _days(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, timedelta):
        return value.days
    return int(value)


def compute_summary(trial: Trial, *, cutoff_at: datetime, blinded: bool) -> dict[str, Any]:
    """The safety summary of `trial` at `cutoff_at`, by arm / cohort, or pooled when `blinded`
    (a JSON-ready dict; see the module docstring for what it counts)."""
    cutoff = cutoff_date_of(cutoff_at)
    arms = list(trial.arms.order_by(F("order").asc(nulls_last=True), "code"))
    has_arms = bool(arms)
    by_cohort = trial.design == Design.DOSE_ESCALATION
    pooled = blinded or not has_arms
    at_risk = _at_risk(trial, cutoff)

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

    # 1. Participant level: worst grade (a subquery per participant), at risk, follow-up.
    worst = Subquery(
        AdverseEvent.objects.filter(participant=OuterRef("pk"), onset_date__lte=cutoff)
        .order_by().values("participant").annotate(worst=Max("grade")).values("worst")[:1]
    )
    followup_end = Case(
        When(status__in=ENDED, status_date__lt=cutoff, then=F("status_date")),
        default=Value(cutoff, output_field=DateField()), output_field=DateField(),
    )
    followup = ExpressionWrapper(followup_end - F("enrolment_date"), output_field=DurationField())
    # Deaths: an AE of grade 5 or with a fatal outcome before the cut-off, or the status "died"
    # (on or before the cut-off). Those without any AE are counted here, the others in step 2.
    died = Q(status=ParticipantStatus.DIED) & (Q(status_date__isnull=True) | Q(status_date__lte=cutoff))
    rows = (
        at_risk.annotate(group=_group_expression(pooled), worst=worst).order_by()
        .values("group", "worst").annotate(n=Count("pk"), followup=Sum(followup), died=Count("pk", filter=died))
    )
    for row in rows:
        counts = group(_key(row["group"], pooled, has_arms))["counts"]
        counts["at_risk"] += row["n"]
        if row["worst"] is None:
            counts["deaths"] += row["died"]
        counts["followup_days"] += _days(row["followup"])
        if row["worst"] is not None:
            counts["with_ae"] += row["n"]
            counts["grades"][str(row["worst"])] += row["n"]

    # 2. Participants with AEs of a kind, and events: AEs before the cut-off of the participants
    # at risk, grouped, with conditional distinct counts.
    aes = AdverseEvent.objects.filter(participant__in=at_risk.values("pk"), onset_date__lte=cutoff).annotate(
        group=_group_expression(pooled, "participant__"),
    ).order_by()

    def participants_with(condition: Q) -> Count:
        return Count("participant", distinct=True, filter=condition)

    rows = aes.values("group").annotate(
        with_sae=participants_with(Q(serious=True)),
        with_related=participants_with(Q(related_product__in=sorted(RELATED))),
        with_withdrawal=participants_with(Q(leads_to_withdrawal=True)),
        with_dlt=participants_with(Q(is_dlt=True)),
        deaths=participants_with(
            Q(grade=5) | Q(outcome=Outcome.FATAL)
            | Q(participant__status=ParticipantStatus.DIED)
            & (Q(participant__status_date__isnull=True) | Q(participant__status_date__lte=cutoff))
        ),
        events=Count("pk"),
        sae_events=Count("pk", filter=Q(serious=True)),
    )
    for row in rows:
        counts = group(_key(row["group"], pooled, has_arms))["counts"]
        for name in ("with_sae", "with_related", "with_withdrawal", "with_dlt", "deaths", "events", "sae_events"):
            counts[name] += row[name]

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
