"""The visit schedule: planned dates and windows from the trial's visit definitions, states that
move with the calendar, and what coordinators record (visit dates, missed visits, unscheduled
visits).

The database is the source of truth: visits are rows with a unique (participant, definition,
sequence), so generating a schedule twice (a Celery task delivered twice, a scan after a lost
message) creates nothing the second time. "Today" is always the site's local date.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, Exists, OuterRef, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_bulk_create, audited_save
from trials.participants.models import Participant, ParticipantStatus
from trials.participants.services import date_not_before_trial
from trials.protocol.models import Site, VisitAnchor, VisitDefinition, VisitKind
from trials.visits import hooks
from trials.visits.models import CALENDAR_STATES, CrfEntry, RecordKind, Visit, VisitStatus

# Participants whose visits still move with the calendar.
SCHEDULED_STATUSES = (ParticipantStatus.SCREENING, ParticipantStatus.ENROLLED, ParticipantStatus.ON_TREATMENT)



def calendar_state(start: date | None, end: date | None, today: date) -> str:
    """upcoming / open / overdue for a window on a given (site-local) day."""
    if start is None or end is None or today < start:
        return VisitStatus.UPCOMING
    return VisitStatus.OPEN if today <= end else VisitStatus.OVERDUE


def plan(definition: VisitDefinition, participant: Participant) -> tuple[date | None, date | None, date | None]:
    """(planned date, window start, window end) of a definition for the participant, or Nones
    while its anchor (enrolment, first treatment) is not known. Screening visits are planned on
    the screening date."""
    if definition.kind == VisitKind.SCREENING:
        planned = participant.screening_date
    else:
        anchor = participant.first_treatment_date if definition.anchor == VisitAnchor.FIRST_TREATMENT else participant.enrolment_date
        planned = anchor + timedelta(days=definition.day_offset) if anchor else None
    if planned is None:
        return None, None, None
    return planned, planned - timedelta(days=definition.window_before_days), planned + timedelta(days=definition.window_after_days)


def schedule_generate(participant: Participant, *, user, reason: str, kinds: Iterable[str] | None = None) -> int:  # noqa: ANN001
    """Create the participant's missing visits (of `kinds`, else all but screening ones), in a
    constant number of queries. Idempotent: a visit that exists is never created again, and a
    concurrent run loses on the unique constraint and changes nothing."""
    from trials.records.locks import covering_lock_exists

    wanted = set(kinds) if kinds is not None else None
    existing = set(Visit.objects.filter(participant=participant, definition__isnull=False).values_list("definition_id", flat=True))
    today = participant.site.today()
    rows = []
    # The lock check rides on the definitions' query (constant query count, tests/visits).
    definitions = VisitDefinition.objects.filter(trial=participant.trial_id, is_active=True).annotate(
        locked=covering_lock_exists(trial=participant.trial_id, participant=participant)
    ).order_by("order")
    for definition in definitions:
        if definition.locked:
            return 0  # locked or frozen: no new visits (the scan finds her again once released)
        if definition.pk in existing:
            continue
        if wanted is not None and definition.kind not in wanted:
            continue
        if wanted is None and definition.kind == VisitKind.SCREENING:
            continue
        planned, start, end = plan(definition, participant)
        rows.append(Visit(
            participant=participant, definition=definition, label=definition.label, order=definition.order,
            planned_date=planned, window_start=start, window_end=end, status=calendar_state(start, end, today),
        ))
    if not rows:
        return 0
    try:
        with transaction.atomic():
            audited_bulk_create(Visit, rows, user=user, reason=reason)
    except IntegrityError:
        return 0  # another run created them first: nothing to do
    return len(rows)


def schedule_recompute(participant: Participant, *, user, reason: str) -> int:  # noqa: ANN001
    """After an anchor date changed: re-plan the visits not done yet (audited, one row each).

    A visit under a lock or freeze refuses the re-plan, and with it the anchor change (the
    calling service's transaction rolls back). Re-planned visits have no visit date, so no
    signature of theirs can break (signing needs a visit date); the anchor change itself breaks
    the casebook signature."""
    from trials.records.locks import assert_writable

    today = participant.site.today()
    moved = 0
    for visit in participant.visits.filter(definition__isnull=False, visit_date__isnull=True, status__in=CALENDAR_STATES).select_related("definition"):
        planned, start, end = plan(visit.definition, participant)
        if (planned, start, end) == (visit.planned_date, visit.window_start, visit.window_end):
            continue
        assert_writable(trial=participant.trial_id, participant=participant, visit=visit)
        visit.planned_date, visit.window_start, visit.window_end = planned, start, end
        visit.status = calendar_state(start, end, today)
        audited_save(visit, user=user, reason=reason)
        moved += 1
    return moved


def visit_states_refresh() -> int:
    """Move visits between upcoming, open and overdue by each site's local date; returns the
    number of visits whose state changed.

    One guarded UPDATE per time zone (the new state is a CASE over the window): only rows whose
    state changes are touched, and the statement count depends on the number of time zones, not
    of participants or visits.
    """
    changed = 0
    zones = Site.objects.values_list("time_zone", flat=True).distinct().order_by()
    for zone in zones:
        today = timezone.localdate(timezone=ZoneInfo(zone))
        state = Case(
            When(window_start__gt=today, then=Value(VisitStatus.UPCOMING)),
            When(window_end__lt=today, then=Value(VisitStatus.OVERDUE)),
            default=Value(VisitStatus.OPEN),
            output_field=CharField(),
        )
        # participant_id IN (subquery), not a join: the UPDATE then needs no self-join on visits.
        in_zone = Participant.objects.filter(site__time_zone=zone, status__in=SCHEDULED_STATUSES).values("pk")
        changed += (
            Visit.objects.filter(participant_id__in=in_zone, status__in=CALENDAR_STATES, window_start__isnull=False)
            .exclude(status=state).derived_update(status=state)
        )
    return changed


@transaction.atomic
def visit_record_date(visit: Visit, *, user, visit_date: date, reason: str = "") -> Visit:  # noqa: ANN001
    """The visit took place on `visit_date`: done, flagged when outside its window (which proposes
    a protocol deviation, once per visit)."""
    from trials.records.locks import assert_writable
    from trials.records.services import data_changed

    visit = Visit.objects.select_for_update().select_related("participant__site").get(pk=visit.pk)
    _refuse_log_record(visit)
    assert_writable(trial=visit.participant.trial_id, participant=visit.participant, visit=visit)
    today = visit.participant.site.today()
    if visit_date > today:
        raise ValidationError({"visit_date": _("The visit date is in the future (today at the site is %(today)s).") % {"today": today.isoformat()}})
    date_not_before_trial(visit_date, visit.participant.site, "visit_date")  # a screening visit on 1900-01-01 (issue 16)
    consent = visit.participant.consent_date
    if consent and visit_date < consent and (visit.definition is None or visit.definition.kind != VisitKind.SCREENING):
        raise ValidationError({"visit_date": _("The visit date is before the consent (%(date)s).") % {"date": consent.isoformat()}})
    if visit.visit_date is not None and visit.visit_date != visit_date and not reason.strip():
        raise ValidationError({"reason": _("The visit date was already recorded: give a reason for the change.")})
    previous = visit.visit_date
    visit.visit_date = visit_date
    visit.status = VisitStatus.DONE
    visit.out_of_window = bool(visit.window_start and visit.window_end and not (visit.window_start <= visit_date <= visit.window_end))
    changed = visit.visit_date != previous
    audited_save(visit, user=user, reason=reason.strip() or _("Visit date recorded"))
    if changed:
        data_changed(participant=visit.participant, visit=visit, user=user, reason=reason.strip() or _("Visit date recorded"))
    if visit.out_of_window or previous is not None:
        hooks.visit_dated(visit=visit, user=user)  # proposes the out-of-window deviation (trials.monitoring)
    return visit


def _refuse_log_record(visit: Visit) -> None:
    """A record of a participant's log is not a visit: it has no visit date and is never missed."""
    if visit.record_kind == RecordKind.LOG:
        raise ValidationError(_("A log record has no visit date and cannot be missed."))


@transaction.atomic
def visit_mark(visit: Visit, *, user, status: str, reason: str) -> Visit:  # noqa: ANN001
    """Confirm that a visit was missed, or will not be done, with the reason."""
    from trials.records.locks import assert_writable
    from trials.records.services import data_changed

    visit = Visit.objects.select_for_update().select_related("participant").get(pk=visit.pk)
    _refuse_log_record(visit)
    assert_writable(trial=visit.participant.trial_id, participant=visit.participant, visit=visit)
    if status not in (VisitStatus.MISSED, VisitStatus.NOT_DONE):
        raise ValidationError({"status": _("Choose missed or not done.")})
    if visit.visit_date is not None or CrfEntry.objects.filter(visit=visit).exists():
        raise ValidationError(_("This visit has data or a visit date: it was not missed."))
    if status == VisitStatus.MISSED and visit.status != VisitStatus.OVERDUE:
        raise ValidationError({"status": _("Only an overdue visit (its window has passed) is confirmed as missed.")})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason.")})
    visit.status, visit.status_reason = status, reason
    audited_save(visit, user=user, reason=reason)
    data_changed(participant=visit.participant, visit=visit, user=user, reason=reason)
    return visit


@transaction.atomic
def visit_add_unscheduled(participant: Participant, *, user, label: str, planned_date: date, reason: str) -> Visit:  # noqa: ANN001
    """An unscheduled visit (AE follow-up, extra assessment), at any time after consent."""
    from trials.records.locks import assert_writable
    from trials.records.services import data_changed

    assert_writable(trial=participant.trial_id, participant=participant)
    label, reason = (label or "").strip(), (reason or "").strip()
    if not label:
        raise ValidationError({"label": _("Name the visit (e.g. AE follow-up).")})
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the unscheduled visit.")})
    if participant.consent_date is None:
        raise ValidationError(_("No visit before consent."))
    sequence = Visit.objects.filter(participant=participant, definition__isnull=True, record_kind=RecordKind.VISIT).count() + 1
    today = participant.site.today()
    visit = audited_save(
        Visit(
            participant=participant, definition=None, sequence=sequence, label=label, planned_date=planned_date,
            window_start=planned_date, window_end=planned_date, status=calendar_state(planned_date, planned_date, today),
            status_reason=reason, order=10_000 + sequence,
        ),
        user=user,
        reason=reason,
    )
    data_changed(participant=participant, user=user, reason=reason)  # a new visit changes the casebook
    return visit


def participants_missing_visits() -> Iterable[int]:
    """Participants in follow-up who lack a visit of an active definition (an amendment added one,
    or a schedule task was lost): the scan re-enqueues them."""
    missing = VisitDefinition.objects.filter(trial=OuterRef("trial"), is_active=True).exclude(kind=VisitKind.SCREENING).exclude(
        Exists(Visit.objects.filter(participant=OuterRef(OuterRef("pk")), definition=OuterRef("pk")))
    )
    return (
        Participant.objects.filter(status__in=(ParticipantStatus.ENROLLED, ParticipantStatus.ON_TREATMENT))
        .filter(Exists(missing)).values_list("pk", flat=True)
    )


def visits_due(visits, today: date, *, days: int = 7) -> dict[str, list[Visit]]:  # noqa: ANN001
    """A coordinator's calendar: overdue, this week and the next weeks (from `visits`)."""
    horizon = today + timedelta(days=days)
    overdue = [v for v in visits if v.status == VisitStatus.OVERDUE]
    open_now = [v for v in visits if v.status == VisitStatus.OPEN]
    coming = [v for v in visits if v.status == VisitStatus.UPCOMING and v.window_start and today < v.window_start <= horizon]
    return {"overdue": overdue, "open": open_now, "coming": coming}
