"""Protocol deviations: a log per participant (category, minor or major, when it happened and when
it was identified, what happened, the corrective and preventive action).

Coordinators, investigators and monitors of the site record them. The system proposes one when a
visit is done outside its window (`deviation_propose_window`, called by
trials.visits.schedule.visit_record_date); a person of the site confirms or dismisses it. A
deviation is review data, like a query: a freeze allows recording one, a lock does not.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import SYSTEM_USERNAME, audited_save
from trials.records.locks import assert_queries_allowed
from trials.monitoring.models import DeviationCategory, DeviationSeverity, DeviationState, ProtocolDeviation
from trials.participants.models import Participant
from trials.protocol.models import Role
from trials.protocol.selectors import study_roles_for_user
from trials.visits.models import Visit

DEVIATION_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR, Role.MONITOR})
# A consent deviation (a procedure before consent) can predate screening, by weeks, not by years.
PLAUSIBLE_BEFORE_SCREENING = timedelta(days=90)


def user_logs_deviations(user, participant: Participant) -> bool:  # noqa: ANN001
    """Coordinators, investigators and monitors of the participant's site (or of all sites)."""
    if user.username == SYSTEM_USERNAME:
        return True
    return (
        study_roles_for_user(user)
        .filter(
            Q(site__isnull=True) | Q(site=participant.site_id), trial=participant.trial_id, role__in=DEVIATION_ROLES
        )
        .exists()
    )


# Dismissing a proposed deviation says the protocol was kept: a reviewer decides, not the site
# whose visit it is (issue 16: a coordinator dismissed the deviation about her own late visit).
DISMISSING_ROLES = frozenset({Role.MONITOR, Role.DATA_MANAGER})


def user_dismisses_deviations(user, participant: Participant) -> bool:  # noqa: ANN001
    """Monitors of the participant's site and data managers of the trial."""
    if user.username == SYSTEM_USERNAME:
        return True
    return (
        study_roles_for_user(user)
        .filter(Q(site__isnull=True) | Q(site=participant.site_id), trial=participant.trial_id, role__in=DISMISSING_ROLES)
        .exists()
    )


def _require(user, participant: Participant) -> None:  # noqa: ANN001
    if not user_logs_deviations(user, participant):
        raise PermissionDenied(
            _("Only the coordinators, investigators and monitors of site %(site)s log its deviations.")
            % {"site": participant.site.code}
        )


def _validate(deviation: ProtocolDeviation) -> None:
    participant = deviation.participant
    today = participant.site.today()
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if deviation.category not in DeviationCategory.values:
        add("category", _("Choose a category."))
    if deviation.severity not in DeviationSeverity.values:
        add("severity", _("Choose minor or major."))
    if deviation.occurred_on and deviation.occurred_on > today:
        add(
            "occurred_on",
            _("This date is in the future (today at the site is %(today)s).") % {"today": timefmt.date_text(today)},
        )
    if deviation.identified_on and deviation.identified_on > today:
        add(
            "identified_on",
            _("This date is in the future (today at the site is %(today)s).") % {"today": timefmt.date_text(today)},
        )
    consent = participant.consent_date
    if deviation.occurred_on and consent and deviation.occurred_on < consent and deviation.category != DeviationCategory.CONSENT:
        # Before consent the participant is not in the trial: only a consent deviation (a procedure
        # done before consent) can predate it.
        add(
            "occurred_on",
            _("This date is before the consent (%(date)s): only an informed-consent deviation can precede it.")
            % {"date": timefmt.date_text(consent)},
        )
    first_contact = min(d for d in (participant.screening_date, consent, today) if d)
    if deviation.occurred_on and deviation.occurred_on < first_contact - PLAUSIBLE_BEFORE_SCREENING:
        add(
            "occurred_on",
            _("This date is more than %(days)s days before the screening (%(date)s): check the year.")
            % {"days": PLAUSIBLE_BEFORE_SCREENING.days, "date": timefmt.date_text(first_contact)},
        )
    if deviation.occurred_on and deviation.identified_on and deviation.identified_on < deviation.occurred_on:
        add("identified_on", _("A deviation is identified on or after the day it happened."))
    if not (deviation.description or "").strip():
        add("description", _("Describe what happened."))
    if deviation.visit_id and deviation.visit.participant_id != participant.pk:
        add("visit", _("This visit is not one of the participant's visits."))
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def deviation_record(
    *,
    participant: Participant,
    user,  # noqa: ANN001
    category: str,
    severity: str,
    occurred_on: date,
    description: str,
    corrective_action: str = "",
    identified_on: date | None = None,
    visit: Visit | None = None,
) -> ProtocolDeviation:
    """Log a protocol deviation of a participant (confirmed: a person of the site records it)."""
    _require(user, participant)
    assert_queries_allowed(trial=participant.trial_id, participant=participant, visit=visit)
    deviation = ProtocolDeviation(
        participant=participant,
        visit=visit,
        category=category,
        severity=severity,
        state=DeviationState.CONFIRMED,
        occurred_on=occurred_on,
        identified_on=identified_on or participant.site.today(),
        description=(description or "").strip(),
        corrective_action=(corrective_action or "").strip(),
        reported_by=user,
    )
    _validate(deviation)
    try:
        with transaction.atomic():
            return audited_save(deviation, user=user, reason=_("Protocol deviation recorded"))
    except IntegrityError:
        raise ValidationError(
            _("The out-of-window deviation of this visit is already in the log: confirm it there.")
        ) from None


def _proposed(deviation: ProtocolDeviation) -> ProtocolDeviation:
    deviation = (
        ProtocolDeviation.objects.select_for_update(of=("self",))
        .select_related("participant__site")
        .get(pk=deviation.pk)
    )
    if deviation.state != DeviationState.PROPOSED:
        raise ValidationError(
            _("This deviation is already %(state)s.") % {"state": deviation.get_state_display().lower()}
        )
    return deviation


@transaction.atomic
def deviation_confirm(
    *,
    deviation: ProtocolDeviation,
    user,
    severity: str | None = None,
    corrective_action: str = "",
    reason: str = "",  # noqa: ANN001
) -> ProtocolDeviation:
    """Confirm a proposed deviation (it happened), optionally grading it and giving the action."""
    deviation = _proposed(deviation)
    _require(user, deviation.participant)
    assert_queries_allowed(
        trial=deviation.participant.trial_id, participant=deviation.participant, visit=deviation.visit_id
    )
    if severity:
        deviation.severity = severity
    if (corrective_action or "").strip():
        deviation.corrective_action = corrective_action.strip()
    deviation.state = DeviationState.CONFIRMED
    _validate(deviation)
    return audited_save(deviation, user=user, reason=(reason or "").strip() or _("Protocol deviation confirmed"))


@transaction.atomic
def deviation_dismiss(*, deviation: ProtocolDeviation, user, reason: str) -> ProtocolDeviation:  # noqa: ANN001
    """Dismiss a proposed deviation (it is not one), with the reason: a monitor or data manager."""
    deviation = _proposed(deviation)
    if not user_dismisses_deviations(user, deviation.participant):
        raise PermissionDenied(_("Only a monitor or the data manager dismisses a proposed deviation."))
    assert_queries_allowed(
        trial=deviation.participant.trial_id, participant=deviation.participant, visit=deviation.visit_id
    )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason why this is not a deviation.")})
    deviation.state = DeviationState.DISMISSED
    return audited_save(deviation, user=user, reason=_("Dismissed: %(reason)s") % {"reason": reason})


def deviation_propose_window(*, visit: Visit, user) -> ProtocolDeviation | None:  # noqa: ANN001
    """After a visit date is recorded: propose the visit's out-of-window deviation, once.

    Idempotent by the unique (visit, category) of window deviations: recording the same date
    again changes nothing. A corrected date moves a proposal still open (or dismisses it when the
    visit is now within its window); what a person confirmed or dismissed stays as decided, except
    that a dismissed one is proposed again for a new out-of-window date."""
    existing = (
        ProtocolDeviation.objects.select_for_update()
        .filter(visit=visit, category=DeviationCategory.VISIT_WINDOW)
        .first()
    )
    participant = visit.participant
    if not visit.out_of_window:
        if existing is not None and existing.state == DeviationState.PROPOSED:
            existing.state = DeviationState.DISMISSED
            audited_save(existing, user=user, reason=_("Visit date corrected: the visit is within its window"))
        return existing
    description = _("%(visit)s done on %(date)s, outside its window (%(start)s – %(end)s).") % {
        "visit": visit.label,
        "date": visit.visit_date.isoformat(),
        "start": visit.window_start.isoformat(),
        "end": visit.window_end.isoformat(),
    }
    if existing is None:
        deviation = ProtocolDeviation(
            participant=participant,
            visit=visit,
            category=DeviationCategory.VISIT_WINDOW,
            severity=DeviationSeverity.MINOR,
            state=DeviationState.PROPOSED,
            occurred_on=visit.visit_date,
            identified_on=participant.site.today(),
            description=description,
            reported_by=user,
        )
        try:
            with transaction.atomic():
                return audited_save(deviation, user=user, reason=_("Proposed: visit done outside its window"))
        except IntegrityError:  # a concurrent save proposed it first
            return ProtocolDeviation.objects.filter(visit=visit, category=DeviationCategory.VISIT_WINDOW).first()
    if existing.occurred_on == visit.visit_date or existing.state == DeviationState.CONFIRMED:
        return existing
    existing.occurred_on, existing.description, existing.state = visit.visit_date, description, DeviationState.PROPOSED
    return audited_save(existing, user=user, reason=_("Proposed: visit date corrected, still outside its window"))


def participant_deviations(participant: Participant):  # noqa: ANN201
    """A participant's deviation log, proposed ones first, then the newest."""
    from django.db.models import Case, IntegerField, Value, When

    return (
        ProtocolDeviation.objects.filter(participant=participant)
        .select_related("visit", "reported_by")
        .annotate(
            _open=Case(
                When(state=DeviationState.PROPOSED, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("_open", "-occurred_on", "-pk")
    )
