"""Writes of adverse events and reporting clocks. Every save is validated and audited here; a
serious AE starts its reporting clocks, and every change asks for the safety summary to be
recomputed (coalesced, on Celery)."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.participants.models import ParticipantStatus
from trials.participants.services import user_acts_at
from trials.protocol.models import Role
from trials.safety.models import ActionTaken, AdverseEvent, Causality, ClockKind, Outcome, Procedure, ReportingClock, Seriousness

# Who assesses expectedness against the reference safety information: the sponsor (ICH E2A III.C,
# EU CT-3 7.2.3.3: "the expectedness ... is determined by the sponsor"), and the data manager who
# enters the sponsor's assessment where the sponsor's safety desk has no account.
EXPECTEDNESS_ASSESSORS = (Role.SPONSOR, Role.DATA_MANAGER)

# Expedited reporting (ICH E2A III.A; Regulation (EU) 536/2014 art. 42; EU CT-3 7.2.3.3): the
# investigator reports an SAE to the sponsor within 24 hours of becoming aware of it (ICH E6(R2)
# 4.11.1); a fatal or life-threatening SUSAR within 7 days, any other SUSAR within 15 days, day 0
# being the first awareness of the minimum criteria (here: of the seriousness).
CLOCK_DURATIONS = {
    ClockKind.SAE_24H: timedelta(hours=24),
    ClockKind.SUSAR_7D: timedelta(days=7),
    ClockKind.SUSAR_15D: timedelta(days=15),
}


def _validate(ae: AdverseEvent) -> None:
    """Rules across fields; each message on its field."""
    participant = ae.participant
    errors: dict[str, list[str]] = {}
    today = participant.site.today()

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if participant.status in (ParticipantStatus.SCREENING, ParticipantStatus.SCREEN_FAILURE) and participant.consent_date is None:
        add("__all__", _("%(number)s has not consented: no AE can be recorded.") % {"number": participant.number})
    if participant.consent_date and ae.onset_date and ae.onset_date < participant.consent_date:
        add("onset_date", _("The onset is before the consent (%(date)s): it is medical history, not an AE.") % {"date": participant.consent_date.isoformat()})
    if ae.onset_date and ae.onset_date > today:
        add("onset_date", _("The onset date is in the future."))
    if ae.end_date and ae.onset_date and ae.end_date < ae.onset_date:
        add("end_date", _("The end date is before the onset."))
    if ae.end_date and ae.end_date > today:
        add("end_date", _("The end date is in the future."))
    if ae.ongoing and ae.end_date:
        add("end_date", _("An ongoing AE has no end date: untick 'ongoing' or clear the date."))
    if not ae.ongoing and not ae.end_date and ae.outcome != Outcome.UNKNOWN:
        add("end_date", _("Give the end date of an AE that is no longer ongoing."))
    criteria = list(ae.seriousness or [])
    unknown = [c for c in criteria if c not in Seriousness.values]
    if unknown:
        add("seriousness", _("Unknown seriousness criteria: %(codes)s.") % {"codes": ", ".join(map(str, unknown))})
    if ae.grade == 5 and (ae.outcome != Outcome.FATAL or Seriousness.DEATH not in criteria):
        add("grade", _("Grade 5 is death: the outcome is fatal and the AE is serious (results in death)."))
    if ae.outcome == Outcome.FATAL and ae.grade != 5:
        add("outcome", _("A fatal outcome is grade 5."))
    if ae.outcome == Outcome.FATAL and ae.ongoing:
        add("ongoing", _("A fatal AE is not ongoing: give the date of death as the end date."))
    if ae.aware_at and ae.onset_date and timezone.localtime(ae.aware_at, ZoneInfo(participant.site.time_zone)).date() < ae.onset_date:
        add("aware_at", _("The site cannot have become aware before the onset."))
    if ae.aware_at and ae.aware_at > timezone.now() + timedelta(minutes=5):
        add("aware_at", _("The awareness time is in the future."))
    # Every answer is an explicit choice: nothing is pre-set (issue 13).
    for field, choices in (
        ("related_product", Causality.values), ("procedure", Procedure.values), ("related_procedure", Causality.values),
        ("action_taken", ActionTaken.values), ("outcome", Outcome.values),
    ):
        if getattr(ae, field) not in choices:
            add(field, _("Choose an answer."))
    if criteria and ae.serious_aware_at:
        if ae.aware_at and ae.serious_aware_at < ae.aware_at:
            add("serious_aware_at", _("The site cannot have learned of the seriousness before it learned of the AE."))
        if ae.serious_aware_at > timezone.now() + timedelta(minutes=5):
            add("serious_aware_at", _("The time the site learned of the seriousness is in the future."))
    if not criteria and ae.serious_aware_at:
        add("serious_aware_at", _("No seriousness criterion is ticked: tick the criteria that apply, or clear this time."))
    if ae.is_dlt:
        window = participant.trial.dlt_window_days
        if window is None:
            add("is_dlt", _("This trial has no DLT window."))
        elif participant.first_treatment_date is None or not (
            participant.first_treatment_date <= ae.onset_date <= participant.first_treatment_date + timedelta(days=window)
        ):
            add("is_dlt", _("A DLT has its onset within %(days)s days of the first treatment.") % {"days": window})
    if errors:
        raise ValidationError(errors)


def _clocks_wanted(ae: AdverseEvent) -> set[str]:
    if not ae.serious:
        return set()
    wanted = {ClockKind.SAE_24H}
    # A related SAE whose expectedness the sponsor has not assessed yet is reported as a SUSAR
    # until assessed "expected" (conservative: a pre-set "expected" hid SUSARs, issue 13).
    if ae.is_susar or ae.awaits_expectedness:
        fatal_or_lt = bool({Seriousness.DEATH, Seriousness.LIFE_THREATENING} & set(ae.seriousness))
        wanted.add(ClockKind.SUSAR_7D if fatal_or_lt else ClockKind.SUSAR_15D)
    return wanted


def _sync_clocks(ae: AdverseEvent, *, user, reason: str) -> None:  # noqa: ANN001
    """Start the clocks a serious AE needs (from the time the site learned of the seriousness);
    cancel, with the reason, the open clocks it no longer needs. A reported clock is never changed."""
    wanted = _clocks_wanted(ae)
    existing = {c.kind: c for c in ae.clocks.all()}
    start = ae.serious_aware_at
    for kind in wanted:
        clock = existing.get(kind)
        if clock is None:
            audited_save(
                ReportingClock(adverse_event=ae, kind=kind, started_at=start, due_at=start + CLOCK_DURATIONS[kind]),
                user=user, reason=reason,
            )
        elif clock.reported_at is None and (clock.cancelled or clock.started_at != start):
            clock.cancelled, clock.cancel_reason = False, ""
            clock.started_at, clock.due_at = start, start + CLOCK_DURATIONS[kind]
            audited_save(clock, user=user, reason=reason)
    for kind, clock in existing.items():
        if kind not in wanted and clock.reported_at is None and not clock.cancelled:
            clock.cancelled, clock.cancel_reason = True, reason[:500]
            audited_save(clock, user=user, reason=reason)


def _seriousness_awareness(ae: AdverseEvent, stored: AdverseEvent | None) -> None:
    """Fill in when the site learned of the seriousness if it was left empty: on a new AE, when the
    site learned of the AE (serious from the start: the earlier, conservative time); on an AE
    already serious, the time recorded before; on an AE that becomes serious now, now."""
    if not ae.seriousness:
        if stored is not None and ae.serious_aware_at == stored.serious_aware_at:
            ae.serious_aware_at = None  # no longer serious: the time shown on the form goes with it
        return
    if ae.serious_aware_at is None:
        if stored is None:
            ae.serious_aware_at = ae.aware_at
        elif stored.serious and stored.serious_aware_at:
            ae.serious_aware_at = stored.serious_aware_at
        else:  # to the minute, as typed on the form (a follow-up then shows and saves the same time)
            ae.serious_aware_at = timezone.now().replace(second=0, microsecond=0)


@transaction.atomic
def ae_save(ae: AdverseEvent, *, user, reason: str = "") -> AdverseEvent:  # noqa: ANN001
    """Create or change an AE (coordinators and investigators of the site). A change needs a reason.
    Refused under a lock or freeze of the participant or the trial; breaks the casebook signature."""
    from trials.records.locks import assert_writable
    from trials.records.services import data_changed

    participant = ae.participant
    if not user_acts_at(user, participant.site):
        raise PermissionDenied(_("You do not enter data at this site."))
    assert_writable(trial=participant.trial_id, participant=participant)
    reason = (reason or "").strip()
    if ae.pk and not reason:
        raise ValidationError({"reason": _("Give the reason for the change.")})
    # The stored AE, locked: an assessment of expectedness saved meanwhile is not overwritten.
    stored = AdverseEvent.objects.select_for_update(of=("self",)).filter(pk=ae.pk).first() if ae.pk else None
    if ae.expected != (stored.expected if stored else None):
        raise ValidationError({"expected": _("Expectedness is the sponsor's assessment: it is recorded on the list of AEs to assess.")})
    ae.seriousness = sorted(set(ae.seriousness or []))
    _seriousness_awareness(ae, stored)
    _validate(ae)
    ae.serious = bool(ae.seriousness)
    if ae.pk is None:
        # One AE number at a time per participant: her row is locked.
        type(participant).objects.select_for_update(of=("self",)).filter(pk=participant.pk).exists()
        ae.number = (AdverseEvent.objects.filter(participant=participant).aggregate(n=Max("number"))["n"] or 0) + 1
    ae = audited_save(ae, user=user, reason=reason or _("AE recorded"))
    _sync_clocks(ae, user=user, reason=reason or _("AE recorded"))
    data_changed(participant=participant, user=user, reason=_("AE%(n)s: %(why)s") % {"n": ae.number, "why": reason or _("AE recorded")})
    trial_id = participant.trial_id
    transaction.on_commit(lambda: _request_summary(trial_id))
    return ae


@transaction.atomic
def ae_expectedness_assess(ae: AdverseEvent, *, user, expected: bool, reason: str) -> AdverseEvent:  # noqa: ANN001
    """Record the sponsor's assessment of an AE against the reference safety information
    (expected or unexpected), with a reason. "Expected" closes the conservative SUSAR clock of a
    serious related AE (cancelled with the reason, kept); "unexpected" keeps or reopens it.

    Refused under a lock or freeze like any AE data. It breaks no signature: the investigator's
    signature covers the site's data, and expectedness is the sponsor's assessment."""
    from trials.records.locks import assert_writable

    ae = AdverseEvent.objects.select_for_update(of=("self",)).select_related("participant__site").get(pk=ae.pk)
    participant = ae.participant
    if not user_acts_at(user, participant.site, roles=EXPECTEDNESS_ASSESSORS):
        raise PermissionDenied(_("Only the sponsor (or the data manager for the sponsor) assesses expectedness."))
    assert_writable(trial=participant.trial_id, participant=participant)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the assessment (e.g. the reference safety information and its version).")})
    if expected not in (True, False):
        raise ValidationError({"expected": _("Choose expected or unexpected.")})
    if ae.expected is expected:
        raise ValidationError({"expected": _("This AE is already assessed so.")})
    ae.expected = expected
    ae.expectedness_assessed_at, ae.expectedness_assessed_by = timezone.now(), user
    label = _("expected") if expected else _("unexpected")
    why = _("Expectedness assessed %(label)s: %(reason)s") % {"label": label, "reason": reason}
    ae = audited_save(ae, user=user, reason=why)
    _sync_clocks(ae, user=user, reason=why)
    return ae


def _request_summary(trial_id: int) -> None:
    from trials.safety.summary import summary_request_recompute

    summary_request_recompute(trial_id)


@transaction.atomic
def clock_report(clock: ReportingClock, *, user, reported_at=None) -> ReportingClock:  # noqa: ANN001
    """Record that the report was sent to the sponsor: the clock stops.

    Not refused under a lock or freeze: reporting a serious AE is a regulatory obligation with a
    deadline, and the report time is a fact about the sponsor's notification, not participant
    data (it changes no signed data either)."""
    clock = ReportingClock.objects.select_for_update().select_related("adverse_event__participant__site").get(pk=clock.pk)
    if not user_acts_at(user, clock.adverse_event.participant.site):
        raise PermissionDenied(_("You do not enter data at this site."))
    if clock.reported_at is not None:
        raise ValidationError(_("This report was already recorded on %(when)s.") % {"when": f"{clock.reported_at:%Y-%m-%d %H:%M} UTC"})
    if clock.cancelled:
        raise ValidationError(_("This clock was cancelled: %(why)s") % {"why": clock.cancel_reason or _("the AE no longer needs it.")})
    reported_at = reported_at or timezone.now()
    if reported_at > timezone.now() + timedelta(minutes=5):
        raise ValidationError({"reported_at": _("The report time is in the future.")})
    if reported_at < clock.started_at:
        raise ValidationError({"reported_at": _("The report cannot precede the awareness.")})
    clock.reported_at, clock.reported_by = reported_at, user
    return audited_save(clock, user=user, reason=_("Report submitted: %(kind)s") % {"kind": clock.get_kind_display()})
