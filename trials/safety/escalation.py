"""The dose-escalation rules over recorded dose-limiting toxicities: 3+3, and sentinel then expansion.

A participant of a cohort is DLT-evaluable once her DLT window (from the first treatment, length
in the trial YAML) has passed, or as soon as she has a DLT. With every participant of the cohort
evaluable:
- 3 participants: 0 with a DLT -> escalate; 1 -> expand the cohort to 6; 2 or more -> stop (the
  maximum tolerated dose is the previous dose);
- 6 participants: at most 1 with a DLT -> escalate; 2 or more -> stop;
- at the highest dose, "escalate" becomes "stop": escalation is complete, this dose is tolerated.
The recommendation is shown with its basis; the investigator's signed decision must match it
(services.cohort_decide). No override: a departure is a protocol deviation, recorded elsewhere.

Sentinel then expansion (`escalation.rule: sentinel_expansion`; EASC-RA: "expansion will start
after acute toxicity assessment of the first three patients of each cohort"). The protocol gives no
DLT thresholds, so the 3+3 ones are used (an assumption, said in the seed file):
- the sentinel (3): at most 1 with a DLT -> expand the cohort to its planned size; 2 or more -> stop;
- the expanded cohort: at most 1 in 6 with a DLT (the tolerated rate of 3+3) -> escalate (at the
  highest dose: stop, escalation complete); more -> stop.
With a placebo inside the cohort the review counts the whole cohort (the reviewers are blinded to
who received placebo), so a DLT on placebo counts against the dose: the safer reading.

Replacement: a participant who ends participation (withdrawn, lost to follow-up, died, completed)
before her DLT window has passed, without a DLT, or without ever being treated, is not
DLT-evaluable. She is replaced: she leaves the cohort's count (her place reopens for enrolment)
and is listed in the basis of the review. A DLT always counts, whatever happened afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext as _

from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import Arm, Trial
from trials.safety.models import AdverseEvent

ENDED = frozenset({
    ParticipantStatus.COMPLETED, ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED,
})


def _with_dlt_flag(participants: QuerySet[Participant]) -> QuerySet[Participant]:
    return participants.annotate(has_dlt=Exists(AdverseEvent.objects.filter(participant=OuterRef("pk"), is_dlt=True)))


def is_replaced(participant: Participant, *, window_days: int) -> bool:
    """Not DLT-evaluable for good (annotated `has_dlt`): ended without a DLT before her DLT window
    passed, or without treatment."""
    if participant.has_dlt or participant.status not in ENDED:
        return False
    if participant.first_treatment_date is None or participant.status_date is None:
        return True
    return participant.status_date <= participant.first_treatment_date + timedelta(days=window_days)


def replaced_by_cohort(trial: Trial) -> dict[int, list[Participant]]:
    """The replaced participants of each cohort (arm id -> participants); one query."""
    window = trial.dlt_window_days or 0
    ended = _with_dlt_flag(
        Participant.objects.filter(trial=trial, allocation__isnull=False, status__in=ENDED).select_related("allocation")
    )
    replaced: dict[int, list[Participant]] = {}
    for participant in ended:
        if is_replaced(participant, window_days=window):
            replaced.setdefault(participant.allocation.arm_id, []).append(participant)
    return replaced


@dataclass
class CohortReview:
    cohort: Arm
    enrolled: int
    evaluable: int
    with_dlt: int
    pending: list[str]  # numbers of participants still within (or before) their DLT window
    recommendation: str | None  # expand | escalate | stop; None while not every participant is evaluable
    basis: str


def cohort_review(cohort: Arm, *, expanded: bool, today: date | None = None) -> CohortReview:
    trial = cohort.trial
    window = trial.dlt_window_days or 0
    allocated = list(
        _with_dlt_flag(Participant.objects.filter(allocation__arm=cohort)).select_related("site").order_by("subject_number")
    )
    replaced = [p.number for p in allocated if is_replaced(p, window_days=window)]
    participants = [p for p in allocated if not is_replaced(p, window_days=window)]
    evaluable, with_dlt, pending = 0, 0, []
    for participant in participants:
        local_today = today or participant.site.today()
        if participant.has_dlt:
            evaluable += 1
            with_dlt += 1
        elif participant.first_treatment_date and participant.first_treatment_date + timedelta(days=window) < local_today:
            evaluable += 1
        else:
            pending.append(participant.number)
    size = len(participants)
    counts = _("%(dlt)s of %(n)s participants with a DLT") % {"dlt": with_dlt, "n": evaluable}
    if replaced:
        counts += " " + _("(replaced, not DLT-evaluable: %(who)s)") % {"who": ", ".join(replaced)}
    if pending:
        basis = _("%(counts)s so far; not yet DLT-evaluable (within %(days)s days of the first treatment, or untreated): %(who)s.") % {
            "counts": counts, "days": window, "who": ", ".join(pending)}
        return CohortReview(cohort, size, evaluable, with_dlt, pending, None, basis)
    highest = not trial.arms.filter(is_active=True, order__gt=cohort.order).exists()
    if (trial.escalation or {}).get("rule") == "sentinel_expansion":
        return _sentinel_expansion_review(cohort, size, evaluable, with_dlt, pending, counts, expanded=expanded, highest=highest)
    if with_dlt >= 2:
        recommendation = "stop"
        basis = _("%(counts)s: stop; the maximum tolerated dose is the previous dose.") % {"counts": counts}
    elif with_dlt == 1 and not expanded:
        recommendation = "expand"
        basis = _("%(counts)s: expand the cohort to 6.") % {"counts": counts}
    else:
        recommendation = "stop" if highest else "escalate"
        basis = (
            _("%(counts)s at the highest dose: escalation is complete, this dose is tolerated.") if highest
            else _("%(counts)s: escalate to the next dose.")
        ) % {"counts": counts}
    return CohortReview(cohort, size, evaluable, with_dlt, pending, recommendation, basis)


def _sentinel_expansion_review(
    cohort: Arm, size: int, evaluable: int, with_dlt: int, pending: list[str], counts: str, *, expanded: bool, highest: bool,
) -> CohortReview:
    if not expanded:
        if with_dlt >= 2:
            recommendation = "stop"
            basis = _("%(counts)s in the sentinel group: stop; the maximum tolerated dose is the previous dose.") % {"counts": counts}
        else:
            recommendation = "expand"
            basis = _("%(counts)s in the sentinel group: expand the cohort to %(size)s.") % {
                "counts": counts, "size": cohort.planned_size}
    elif with_dlt * 6 > evaluable:  # more than 1 in 6
        recommendation = "stop"
        basis = _("%(counts)s (more than 1 in 6): stop; the maximum tolerated dose is the previous dose.") % {"counts": counts}
    else:
        recommendation = "stop" if highest else "escalate"
        basis = (
            _("%(counts)s (at most 1 in 6) at the highest dose: escalation is complete, this dose is tolerated.") if highest
            else _("%(counts)s (at most 1 in 6): escalate to the next dose.")
        ) % {"counts": counts}
    return CohortReview(cohort, size, evaluable, with_dlt, pending, recommendation, basis)
