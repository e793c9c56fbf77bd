"""Writes to participants: screening, consent, eligibility, enrolment, allocation, dose cohorts,
emergency unblinding and the end of participation.

Every rule is enforced here, whatever the page or import calling: a refused action raises
ValidationError (or PermissionDenied) with a message for the user and writes nothing (each
service is one transaction). Numbers and allocation slots are taken under row locks so concurrent
enrolments and randomizations on PostgreSQL get unique, gap-free values.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from edc import timefmt
from edc.audit import SYSTEM_USERNAME, audited_bulk_create, audited_save
from trials.accounts.services import password_reentry_check
from trials.participants import allocation_import, eligibility, hooks
from trials.participants.models import (
    REASON_REQUIRED,
    TRANSITIONS,
    Allocation,
    AllocationList,
    AllocationMethod,
    AllocationSlot,
    CohortDecision,
    CohortDecisionKind,
    Consent,
    CriterionAnswer,
    EligibilityAnswer,
    NumberKind,
    NumberSequence,
    Participant,
    ParticipantStatus,
    Unblinding,
)
from trials.protocol.allocation_rules import allocation_ratio, block_size_message, uneven_block_sizes
from trials.protocol.models import STAFF_MASKED_ROLES, UNBLINDED_ROLES, Arm, ConsentDocument, CriterionLevel, Role, Site, Trial, VisitKind
from trials.protocol.selectors import study_roles_for_user, user_holds_role

S = ParticipantStatus
SITE_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR})
# Kit codes: no 0/O, 1/I/L look-alikes.
KIT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
# AllocationList.algorithm: v2 = secret seed, kit codes drawn apart from the arms (v1, before it,
# took a typed seed and drew kit codes from it: a blinded user could predict every arm).
GENERATED_ALGORITHM = "permuted-blocks/v2"
IMPORTED_ALGORITHM = "imported-csv"


# --- Access --------------------------------------------------------------------------------


def user_acts_at(user, site: Site, roles: Iterable[str] = SITE_ROLES) -> bool:  # noqa: ANN001
    """Whether the user holds one of `roles` at the site (or at all sites of its trial).

    The system user (Celery tasks, load_demo) acts everywhere; its writes are audited as its own."""
    if user.username == SYSTEM_USERNAME:
        return True
    return user_holds_role(user, trial_id=site.trial_id, site_id=site.pk, roles=roles)


def _require(user, site: Site, roles: Iterable[str] = SITE_ROLES) -> None:  # noqa: ANN001
    if not user_acts_at(user, site, roles):
        raise PermissionDenied(_("You do not have a role at site %(site)s that allows this.") % {"site": site.code})


def _locked(participant: Participant) -> Participant:
    """The participant re-read under a row lock: decisions are made on current data."""
    # of=("self",): lock the participant's row only. PostgreSQL refuses FOR UPDATE on the nullable
    # side of an outer join (consent_document), and the trial and site rows must stay unlocked here.
    return (
        Participant.objects.select_for_update(of=("self",))
        .select_related("trial", "site", "consent_document")
        .get(pk=participant.pk)
    )



def _writable(participant: Participant) -> Participant:
    """`_locked`, refused when a lock or freeze covers the participant or her trial
    (trials.records.locks): locked data cannot be changed through any path."""
    from trials.records.locks import assert_writable

    participant = _locked(participant)
    assert_writable(trial=participant.trial_id, participant=participant)
    return participant


def _changed(participant: Participant, *, user, reason: str) -> None:  # noqa: ANN001
    """After a change of the participant's data: the casebook signature breaks (trials.monitoring)."""
    from trials.records.services import data_changed

    data_changed(participant=participant, user=user, reason=reason)


def _not_future(value: date, site: Site, field: str) -> None:
    if value > site.today():
        raise ValidationError({field: _("This date is in the future (today at site %(site)s is %(today)s).") % {
            "site": site.code, "today": timefmt.date_text(site.today())}})


# Without a start date in its file, a trial screens no one more than this long ago (a typo in the year).
SCREENING_LOOKBACK_YEARS = 10


def _not_before_trial(value: date, site: Site, field: str) -> None:
    """A screening, consent or visit date on or after the trial's start, and never more than
    SCREENING_LOOKBACK_YEARS ago (issue 16: 1900-01-01 was accepted). Public to the layers above
    as `date_not_before_trial` (the visits' dates)."""
    start = site.trial.start_date
    if start is not None and value < start:
        raise ValidationError({field: _("This date is before the start of %(trial)s (%(start)s).") % {
            "trial": site.trial.code, "start": timefmt.date_text(start)}})
    today = site.today()
    floor = today.replace(year=today.year - SCREENING_LOOKBACK_YEARS, day=min(today.day, 28))
    if value < floor:
        raise ValidationError({field: _("This date is more than %(years)s years ago: check the year.") % {
            "years": SCREENING_LOOKBACK_YEARS}})


date_not_before_trial = _not_before_trial


# --- Numbers -------------------------------------------------------------------------------


def _next_number(site: Site, kind: str) -> str:
    """The next screening or subject number of the site, from the trial's pattern.

    The site row is locked for the rest of the transaction, so two enrolments at one site take
    turns; the counter rolls back with a failed enrolment, so numbers have no gaps.
    """
    # of=("self",): the site's row only, not its trial's (other sites number independently).
    site = Site.objects.select_for_update(of=("self",)).select_related("trial").get(pk=site.pk)
    sequence, _created = NumberSequence.objects.get_or_create(site=site, kind=kind)
    sequence.last += 1
    sequence.save(update_fields=["last"])
    pattern = (site.trial.numbering or {}).get(kind, "{site}-S{seq:03d}" if kind == NumberKind.SCREENING else "{site}-{seq:03d}")
    return pattern.format(trial=site.trial.code, site=site.code, seq=sequence.last)


# --- Lifecycle -----------------------------------------------------------------------------


def _transition(participant: Participant, to: str, *, user, reason: str, on: date | None = None) -> Participant:  # noqa: ANN001
    if to not in TRANSITIONS[participant.status]:
        allowed = ", ".join(str(S(s).label) for s in sorted(TRANSITIONS[participant.status])) or _("none (final status)")
        raise ValidationError(
            _("%(number)s is %(current)s: it cannot become %(new)s. Allowed next: %(allowed)s.")
            % {"number": participant.number, "current": S(participant.status).label, "new": S(to).label, "allowed": allowed}
        )
    participant.status = to
    participant.status_date = on or participant.site.today()
    if to in REASON_REQUIRED:
        participant.status_reason = reason
    return audited_save(participant, user=user, reason=reason)


@transaction.atomic
def participant_transition(*, participant: Participant, to: str, user, reason: str, on: date | None = None) -> Participant:  # noqa: ANN001
    """Withdrawal, loss to follow-up, death, completion: the end states of a participant."""
    _require(user, participant.site)
    participant = _writable(participant)
    if to not in S.values:
        raise ValidationError({"to": _("'%(status)s' is not a participant status.") % {"status": to}})
    reason = (reason or "").strip()
    if to in REASON_REQUIRED and not reason:
        raise ValidationError({"reason": _("Give the reason (it is kept with the participant's status).")})
    if to in (S.ENROLLED, S.SCREEN_FAILURE, S.ON_TREATMENT):
        raise ValidationError(_("Use the screening, eligibility or treatment pages for this change."))
    if on is not None:
        _not_future(on, participant.site, "on")
        if participant.enrolment_date and on < participant.enrolment_date:
            raise ValidationError({"on": _("This date is before the enrolment (%(date)s).") % {
                "date": timefmt.date_text(participant.enrolment_date)}})
    participant = _transition(participant, to, user=user, reason=reason or _("Status change"), on=on)
    _changed(participant, user=user, reason=reason or _("Status change"))
    return participant


@transaction.atomic
def participant_screen(*, site: Site, user, screening_date: date | None = None, reason: str = "") -> Participant:  # noqa: ANN001
    """Start screening a participant at a site: a screening number and the screening visit(s)."""
    _require(user, site)
    from trials.records.locks import assert_writable

    assert_writable(trial=site.trial_id)  # a database lock or freeze: no new participant either
    if not site.is_active:
        raise ValidationError(_("Site %(site)s is closed.") % {"site": site.code})
    screening_date = screening_date or site.today()
    _not_future(screening_date, site, "screening_date")
    _not_before_trial(screening_date, site, "screening_date")
    participant = audited_save(
        Participant(
            trial=site.trial, site=site, screening_number=_next_number(site, NumberKind.SCREENING),
            screening_date=screening_date, status=S.SCREENING, status_date=screening_date,
        ),
        user=user,
        reason=reason or _("Screening started"),
    )
    _schedule(participant, user=user, kinds={VisitKind.SCREENING}, reason=_("Screening visit"))
    return participant


def _schedule(participant: Participant, *, user, kinds: set[str] | None, reason: str) -> None:  # noqa: ANN001
    """The participant's visits, created in the same transaction as the screening or enrolment
    that calls for them (trials.visits.schedule, through participants.hooks; the beat scan
    repairs any that are missing)."""
    hooks.schedule_generate(participant, user=user, reason=reason, kinds=kinds)


# --- Consent -------------------------------------------------------------------------------


def current_consent_document(trial: Trial) -> ConsentDocument | None:
    return trial.consent_documents.filter(is_active=True).order_by("-approved_on", "-pk").first()


def consent_problem(participant: Participant) -> str | None:
    """Why CRF data cannot be entered for this participant now (None: it can)."""
    if participant.consent_date is None:
        return _("%(number)s has not consented: no data can be entered before consent.") % {"number": participant.number}
    # The dashboard reads whether a newer version asks her to re-consent with her row
    # (casebook.dashboard: `_newer_consent`); only then is that version read, for its number.
    if participant.consent_document_id is not None and getattr(participant, "_newer_consent", True):
        # Her version's approval date inside the same query (one query, not two), unless already read.
        if "consent_document" in participant._state.fields_cache:
            approved_on = participant.consent_document.approved_on
        else:
            approved_on = ConsentDocument.objects.filter(pk=participant.consent_document_id).values("approved_on")[:1]
        newer = ConsentDocument.objects.filter(
            trial=participant.trial_id, is_active=True, requires_reconsent=True, approved_on__gt=approved_on,
        ).order_by("-approved_on").first()
        if newer is not None:
            return _("%(number)s must re-consent to version %(version)s before further data entry.") % {
                "number": participant.number, "version": newer.version}
    return None


@transaction.atomic
def participant_consent(*, participant: Participant, document: ConsentDocument, consented_at: datetime, user) -> Consent:  # noqa: ANN001
    """Record a consent (or re-consent) to a version of the consent document."""
    _require(user, participant.site)
    participant = _writable(participant)
    if document.trial_id != participant.trial_id or not document.is_active:
        raise ValidationError({"document": _("This consent version is not an active version of the trial's consent.")})
    if participant.status in (S.SCREEN_FAILURE, S.COMPLETED, S.WITHDRAWN, S.DIED):
        raise ValidationError(_("%(number)s is %(status)s: no consent can be recorded.") % {
            "number": participant.number, "status": S(participant.status).label})
    if timezone.is_naive(consented_at):
        raise ValidationError({"consented_at": _("Give the time with its time zone.")})
    if consented_at > timezone.now():
        raise ValidationError({"consented_at": _("The consent time is in the future.")})
    if consented_at.date() < document.approved_on:
        raise ValidationError({"consented_at": _("Version %(version)s was approved on %(date)s, after this consent time.") % {
            "version": document.version, "date": timefmt.date_text(document.approved_on)}})
    _not_before_trial(timezone.localtime(consented_at, ZoneInfo(participant.site.time_zone)).date(), participant.site, "consented_at")
    if participant.consent_document_id and document.approved_on <= participant.consent_document.approved_on:
        raise ValidationError({"document": _("%(number)s already consented to version %(version)s.") % {
            "number": participant.number, "version": participant.consent_document.version}})
    consent = audited_save(
        Consent(participant=participant, document=document, consented_at=consented_at, obtained_by=user),
        user=user,
        reason=_("Consent to version %(version)s") % {"version": document.version},
    )

    if participant.consent_date is None:
        # The date of the first consent: CRF dates are checked against it, and data collected
        # under an earlier version stay valid after a re-consent.
        participant.consent_date = timezone.localtime(consented_at, ZoneInfo(participant.site.time_zone)).date()
    participant.consent_document = document
    audited_save(participant, user=user, reason=_("Consent to version %(version)s") % {"version": document.version})
    _changed(participant, user=user, reason=_("Consent to version %(version)s") % {"version": document.version})
    return consent


# --- Eligibility ---------------------------------------------------------------------------


@transaction.atomic
def eligibility_record(
    *,
    participant: Participant,
    answers: dict[tuple[str, str], tuple[str, str]],
    user,  # noqa: ANN001
    confirm_screen_failure: bool = False,
) -> eligibility.Assessment:
    """Save the checklist: `answers` maps (criterion code, lesion row id or "") to (answer, note).

    Criteria the screening data answer are taken from the data (re-evaluated here) and cannot be
    answered otherwise: a wrong value is corrected in its CRF. If the answers make the participant
    ineligible, the save needs `confirm_screen_failure` and turns her into a screen failure with
    the failed criteria as the reason.
    """
    _require(user, participant.site)
    participant = _writable(participant)
    if participant.status != S.SCREENING:
        raise ValidationError(_("%(number)s is %(status)s: eligibility is assessed during screening.") % {
            "number": participant.number, "status": S(participant.status).label})
    if participant.consent_date is None:
        raise ValidationError(_("%(number)s has not consented: screening assessments come after consent.") % {
            "number": participant.number})
    problem = consent_problem(participant)  # a newer consent version awaiting re-consent
    if problem:
        raise ValidationError(problem)
    automatic = eligibility.evaluate(participant)
    criteria = {c.code: c for c in participant.trial.criteria.filter(is_active=True)}
    problems = []
    final: dict[tuple[str, str], tuple[str, str, bool]] = {}
    for (code, lesion), (answer, note) in answers.items():
        criterion = criteria.get(code)
        if criterion is None:
            problems.append(_("%(code)s is not a criterion of this trial.") % {"code": code})
            continue
        if (criterion.level == CriterionLevel.LESION) != bool(lesion):
            # Such an answer would be stored and never judged.
            problems.append(
                _("%(code)s is answered for each lesion.") % {"code": code} if criterion.level == CriterionLevel.LESION
                else _("%(code)s is answered for the participant, not for a lesion.") % {"code": code}
            )
            continue
        if lesion and lesion not in automatic.lesions:
            problems.append(_("%(code)s: lesion %(lesion)s is not in the screening CRF.") % {"code": code, "lesion": lesion})
            continue
        if answer not in CriterionAnswer.values:
            problems.append(_("%(code)s: '%(answer)s' is not an answer (met, not met, unknown, not applicable).") % {"code": code, "answer": answer})
            continue
        if answer == CriterionAnswer.NOT_APPLICABLE and (not criterion.applies_when or automatic.applies.get((code, lesion))):
            problems.append(
                _("%(code)s applies to %(number)s: it cannot be answered 'not applicable'.") % {"code": code, "number": participant.number}
            )
            continue
        auto = automatic.answers.get((code, lesion))
        if auto is not None and auto.answer != answer:
            problems.append(
                _("%(code)s: the screening data say '%(auto)s' (%(basis)s); correct the CRF if the data are wrong.")
                % {"code": code, "auto": eligibility.answer_label(criterion.kind, auto.answer), "basis": auto.basis}
            )
            continue
        final[(code, lesion)] = (answer, (note or "").strip()[:500], False)
    if problems:
        raise ValidationError(problems)
    for key, auto in automatic.answers.items():
        final[key] = (auto.answer, auto.basis[:500], True)
    existing = {(a.criterion.code, a.lesion): a for a in participant.eligibility_answers.select_related("criterion")}
    for (code, lesion), (answer, note, is_auto) in final.items():
        row = existing.get((code, lesion)) or EligibilityAnswer(participant=participant, criterion=criteria[code], lesion=lesion)
        if row.pk and (row.answer, row.note, row.automatic) == (answer, note, is_auto):
            continue
        row.answer, row.note, row.automatic = answer, note, is_auto
        audited_save(row, user=user, reason=_("Eligibility checklist"))
    assessment = eligibility.assess(participant, automatic)
    # Not eligible: a criterion failed, or (lesion-level criteria) no lesion is eligible.
    if assessment.eligible is False:
        if not confirm_screen_failure:
            transaction.set_rollback(True)
            raise ValidationError(
                _("These answers make %(number)s ineligible (%(failed)s). Confirm to record the screen failure.")
                % {"number": participant.number, "failed": assessment.failed_summary()},
                code="confirm_screen_failure",
            )
        _transition(participant, S.SCREEN_FAILURE, user=user, reason=_("Not eligible: %(failed)s") % {"failed": assessment.failed_summary()})
    _changed(participant, user=user, reason=_("Eligibility checklist"))
    return assessment


@transaction.atomic
def participant_screen_fail(*, participant: Participant, user, reason: str) -> Participant:  # noqa: ANN001
    """End screening for a reason other than a criterion (declined consent, no longer interested …)."""
    _require(user, participant.site)
    participant = _writable(participant)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the screen failure.")})
    participant = _transition(participant, S.SCREEN_FAILURE, user=user, reason=reason)
    _changed(participant, user=user, reason=reason)
    return participant


# --- Enrolment and allocation --------------------------------------------------------------


@transaction.atomic
def participant_enrol(*, participant: Participant, user, enrolment_date: date | None = None) -> Participant:  # noqa: ANN001
    """Enrol an eligible, consented participant: subject number, visits, and for a dose-escalation
    trial her place in the open cohort."""
    _require(user, participant.site)
    participant = _writable(participant)
    trial = participant.trial
    if participant.status != S.SCREENING:
        raise ValidationError(_("%(number)s is %(status)s: only a participant in screening can be enrolled.") % {
            "number": participant.number, "status": S(participant.status).label})
    problem = consent_problem(participant)
    if problem:
        raise ValidationError(problem)
    assessment = eligibility.assess(participant)
    if not assessment.eligible:
        raise ValidationError(_("%(number)s cannot be enrolled: %(why)s") % {"number": participant.number, "why": assessment.summary()})
    enrolment_date = enrolment_date or participant.site.today()
    _not_future(enrolment_date, participant.site, "enrolment_date")
    if enrolment_date < participant.consent_date:
        raise ValidationError({"enrolment_date": _("Enrolment cannot precede consent (%(date)s).") % {"date": timefmt.date_text(participant.consent_date)}})
    cohort, opened_by, slot = None, None, None
    if trial.design == "dose_escalation":
        Trial.objects.select_for_update().filter(pk=trial.pk).exists()  # one cohort decision at a time
        state = cohort_open_state(trial)
        cohort, opened_by = state.cohort, state.opened_by
        _not_before_opening(opened_by, participant.site, enrolment_date, "enrolment_date", _("The enrolment"))
        if cohort_has_placebo(trial):
            slot = _cohort_slot(trial, cohort)
    participant.subject_number = _next_number(participant.site, NumberKind.SUBJECT)
    participant.enrolment_date = enrolment_date
    _transition(participant, S.ENROLLED, user=user, reason=_("Enrolled"), on=enrolment_date)
    if cohort is not None:
        # With a placebo inside the cohort the slot says active or placebo; the reason names the kit only.
        audited_save(
            Allocation(participant=participant, arm=cohort, method=AllocationMethod.COHORT, allocated_by=user, opened_by=opened_by,
                       slot=slot, kit_code=slot.kit_code if slot else "", stratum=slot.stratum if slot else ""),
            user=user,
            reason=_("Entered cohort %(cohort)s") % {"cohort": cohort.code} + (f" (kit {slot.kit_code})" if slot else ""),
        )
    _schedule(participant, user=user, kinds=None, reason=_("Visit schedule at enrolment"))
    _changed(participant, user=user, reason=_("Enrolled"))
    return participant


def _allocation_checks(participant: Participant) -> None:
    if participant.status not in (S.ENROLLED, S.ON_TREATMENT):
        raise ValidationError(_("%(number)s is %(status)s: only an enrolled participant is allocated.") % {
            "number": participant.number, "status": S(participant.status).label})
    if Allocation.objects.filter(participant=participant).exists():
        raise ValidationError(_("%(number)s is already allocated: an allocation is never repeated or changed.") % {
            "number": participant.number})


def stratum_key(participant: Participant, strata: dict[str, str] | None = None) -> str:
    """The participant's stratum: her site and the levels of the trial's stratum factors."""
    settings_ = participant.trial.randomization or {}
    parts = []
    if settings_.get("stratify_by_site", True):
        parts.append(f"site={participant.site.code}")
    strata = strata or {}
    for factor in settings_.get("strata", []):
        level = strata.get(factor["name"])
        if level not in factor["levels"]:
            raise ValidationError({factor["name"]: _("Choose the %(factor)s level (one of %(levels)s).") % {
                "factor": factor["name"], "levels": ", ".join(factor["levels"])}})
        parts.append(f"{factor['name']}={level}")
    return "|".join(parts) or "all"


@transaction.atomic
def participant_randomize(*, participant: Participant, user, strata: dict[str, str] | None = None) -> Allocation:  # noqa: ANN001
    """Allocate the next free slot of the participant's stratum in the allocation list."""
    _require(user, participant.site)
    participant = _writable(participant)
    try:
        allocation_list = AllocationList.objects.select_for_update().get(trial=participant.trial_id)
    except AllocationList.DoesNotExist:
        raise ValidationError(_("The data manager has not generated the allocation list of %(trial)s yet.") % {
            "trial": participant.trial.code}) from None
    _allocation_checks(participant)
    stratum = stratum_key(participant, strata)
    slot = (
        AllocationSlot.objects.filter(allocation_list=allocation_list, stratum=stratum, allocation__isnull=True)
        .order_by("sequence").first()
    )
    if slot is None:
        if not allocation_list.slots.filter(stratum=stratum).exists():
            raise ValidationError(_("The allocation list has no stratum %(stratum)s.") % {"stratum": stratum})
        raise ValidationError(
            _("The allocation list is exhausted for stratum %(stratum)s: no participant can be randomized in it. Tell the data manager.") % {"stratum": stratum}
        )
    allocation = audited_save(
        Allocation(
            participant=participant, arm_id=slot.arm_id, method=AllocationMethod.RANDOMIZATION, slot=slot,
            kit_code=slot.kit_code, stratum=stratum, allocated_by=user,
        ),
        user=user,
        reason=_("Randomized (kit %(kit)s)") % {"kit": slot.kit_code},
    )
    _changed(participant, user=user, reason=_("Randomized (kit %(kit)s)") % {"kit": slot.kit_code})
    return allocation


@transaction.atomic
def participant_assign(*, participant: Participant, arm: Arm, user, reason: str) -> Allocation:  # noqa: ANN001
    """Open-label allocation by the investigator (a trial without an allocation list)."""
    _require(user, participant.site, {Role.INVESTIGATOR})
    participant = _writable(participant)
    trial = participant.trial
    if trial.design != "open_label":
        raise ValidationError(_("%(trial)s does not allocate by assignment.") % {"trial": trial.code})
    if AllocationList.objects.filter(trial=trial).exists():
        raise ValidationError(_("%(trial)s has an allocation list: allocate by the list.") % {"trial": trial.code})
    if arm.trial_id != trial.pk or not arm.is_active:
        raise ValidationError({"arm": _("This arm is not an active arm of the trial.")})
    _allocation_checks(participant)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the basis for the assignment.")})
    allocation = audited_save(
        Allocation(participant=participant, arm=arm, method=AllocationMethod.ASSIGNMENT, allocated_by=user),
        user=user,
        reason=reason,
    )
    _changed(participant, user=user, reason=reason)
    return allocation


# --- Allocation list -----------------------------------------------------------------------


def _ratio(arms: list[Arm]) -> list[int]:
    return allocation_ratio([a.planned_size or 1 for a in arms])


def permuted_blocks(*, seed: str, stratum: str, arms: list[str], ratio: list[int], block_sizes: list[int], count: int) -> list[tuple[int, int, str]]:
    """(block number, block size, arm code) for `count` slots: blocks of sizes drawn from
    `block_sizes`, each holding the arms in `ratio`, shuffled. The same seed and stratum always
    give the same list; each stratum has its own stream."""
    rng = random.Random(f"{seed}/{stratum}")
    unit = sum(ratio)
    slots: list[tuple[int, int, str]] = []
    block = 0
    while len(slots) < count:
        size = rng.choice(block_sizes)
        block += 1
        content = [code for code, share in zip(arms, ratio, strict=True) for _ in range(share * size // unit)]
        rng.shuffle(content)
        slots.extend((block, size, code) for code in content)
    return slots  # the last block is kept whole: a list ends on a complete block


def _strata(trial: Trial) -> list[str]:
    settings_ = trial.randomization or {}
    keys = [[f"site={s.code}" for s in trial.sites.filter(is_active=True).order_by("code")]] if settings_.get("stratify_by_site", True) else []
    for factor in settings_.get("strata", []):
        keys.append([f"{factor['name']}={level}" for level in factor["levels"]])
    combos = [""]
    for levels in keys:
        combos = [f"{c}|{level}" if c else level for c in combos for level in levels]
    return [c or "all" for c in combos]


def _kit_codes(count: int) -> list[str]:
    """`count` distinct kit codes drawn from the operating system's CSPRNG, independently of the
    arm sequence and of the seed: a kit code says nothing about the arm or the position of its slot."""
    codes: list[str] = []
    used: set[str] = set()
    while len(codes) < count:
        kit = "K" + "".join(secrets.choice(KIT_ALPHABET) for _ in range(6))
        if kit not in used:
            used.add(kit)
            codes.append(kit)
    return codes


def _list_maker_checks(trial: Trial, *, cohorts: bool = False) -> Trial:
    trial = Trial.objects.select_for_update().get(pk=trial.pk)
    if cohorts and cohort_has_placebo(trial):
        pass  # a placebo inside each dose cohort: one stratum per cohort
    elif trial.design != "randomized":
        raise ValidationError(_("%(trial)s is not randomized: it has no allocation list.") % {"trial": trial.code})
    if AllocationList.objects.filter(trial=trial).exists():
        raise ValidationError(_("%(trial)s already has its allocation list; it is never regenerated.") % {"trial": trial.code})
    return trial


def _list_design(trial: Trial) -> tuple[list[Arm], list[int], list[int]]:
    """The trial's active arms, their ratio and the block sizes of its protocol."""
    arms = list(trial.arms.filter(is_active=True).order_by("code"))
    ratio = _ratio(arms)
    block_sizes = list((trial.randomization or {}).get("block_sizes") or [2 * sum(ratio)])
    if block_size_message(ratio, block_sizes):  # the loader's rule (trials.protocol.allocation_rules)
        raise ValidationError(_("Block size(s) %(sizes)s cannot hold the arms in the ratio %(ratio)s: use multiples of %(unit)s.") % {
            "sizes": uneven_block_sizes(ratio, block_sizes), "ratio": ":".join(map(str, ratio)), "unit": sum(ratio)})
    return arms, ratio, block_sizes


def _cohort_list_positions(trial: Trial, seed: str) -> list[tuple[str, int, int, int, Arm, bool]]:
    """(stratum, sequence, block, block size, cohort, placebo) of a dose-escalation trial's list:
    one stratum per cohort holding its planned size, active and placebo in permuted blocks."""
    placebo = trial.escalation["placebo"]
    positions = []
    for cohort in trial.arms.filter(is_active=True).order_by("order"):
        n_placebo = placebo["per_cohort"][cohort.code]
        ratio = allocation_ratio([cohort.planned_size - n_placebo, n_placebo])
        block_sizes = list(placebo.get("block_sizes") or [cohort.planned_size])
        if block_size_message(ratio, block_sizes):
            raise ValidationError(_("Block size(s) %(sizes)s cannot hold %(cohort)s's ratio %(ratio)s (active:placebo).") % {
                "sizes": uneven_block_sizes(ratio, block_sizes), "cohort": cohort.code, "ratio": ":".join(map(str, ratio))})
        stratum = cohort_stratum(cohort)
        drawn = permuted_blocks(seed=seed, stratum=stratum, arms=["active", "placebo"], ratio=ratio, block_sizes=block_sizes,
                                count=cohort.planned_size)
        positions += [(stratum, sequence, block, size, cohort, kind == "placebo")
                      for sequence, (block, size, kind) in enumerate(drawn, start=1)]
    return positions


@transaction.atomic
def allocation_list_generate(*, trial: Trial, user, slots_per_stratum: int | None = None) -> AllocationList:  # noqa: ANN001
    """Generate the trial's allocation list (data manager, before the first randomization).

    The seed is 256 bits from `secrets`, stored for reproduction and never shown or accepted from
    anyone: the data manager who generates the list is blinded, and a seed she chose (or saw)
    would give her every arm through the public algorithm. Kit codes are drawn apart from it."""
    if not study_roles_for_user(user).filter(trial=trial, role=Role.DATA_MANAGER).exists():
        raise PermissionDenied(_("Only a data manager of the trial generates its allocation list."))
    trial = _list_maker_checks(trial, cohorts=True)
    if cohort_has_placebo(trial):
        return _cohort_list_generate(trial, user=user)
    arms, ratio, block_sizes = _list_design(trial)
    count = slots_per_stratum or trial.target_enrolment
    if count < 1 or count > 10000:
        raise ValidationError({"slots_per_stratum": _("Give between 1 and 10000 slots per stratum.")})
    seed = secrets.token_hex(32)
    strata = _strata(trial)
    allocation_list = audited_save(
        AllocationList(trial=trial, seed=seed, block_sizes=block_sizes, slots_per_stratum=count, strata=strata, generated_by=user,
                       algorithm=GENERATED_ALGORITHM),
        user=user,
        reason=_("Allocation list generated"),
    )
    by_code = {a.code: a for a in arms}
    positions = [
        (stratum, sequence, block, size, code)
        for stratum in strata
        for sequence, (block, size, code) in enumerate(
            permuted_blocks(seed=seed, stratum=stratum, arms=[a.code for a in arms], ratio=ratio, block_sizes=block_sizes, count=count), start=1
        )
    ]
    rows = [
        AllocationSlot(allocation_list=allocation_list, stratum=stratum, sequence=sequence, block=block, block_size=size,
                       arm=by_code[code], kit_code=kit)
        for (stratum, sequence, block, size, code), kit in zip(positions, _kit_codes(len(positions)), strict=True)
    ]
    audited_bulk_create(AllocationSlot, rows, user=user, reason=_("Allocation list generated"))
    return allocation_list


def _cohort_list_generate(trial: Trial, *, user) -> AllocationList:  # noqa: ANN001
    seed = secrets.token_hex(32)
    positions = _cohort_list_positions(trial, seed)
    strata = sorted({p[0] for p in positions})
    allocation_list = audited_save(
        AllocationList(trial=trial, seed=seed, block_sizes=(trial.escalation["placebo"].get("block_sizes") or []),
                       slots_per_stratum=min(sum(1 for p in positions if p[0] == s) for s in strata), strata=strata,
                       generated_by=user, algorithm=GENERATED_ALGORITHM),
        user=user,
        reason=_("Allocation list generated (placebo within the dose cohorts)"),
    )
    rows = [
        AllocationSlot(allocation_list=allocation_list, stratum=stratum, sequence=sequence, block=block, block_size=size,
                       arm=cohort, kit_code=kit, placebo=is_placebo)
        for (stratum, sequence, block, size, cohort, is_placebo), kit in zip(positions, _kit_codes(len(positions)), strict=True)
    ]
    audited_bulk_create(AllocationSlot, rows, user=user, reason=_("Allocation list generated"))
    return allocation_list


def user_imports_allocation_list(user, trial: Trial) -> bool:  # noqa: ANN001
    """An unblinded statistician of the trial (or a superuser) may import a list made elsewhere."""
    return bool(user.is_superuser) or study_roles_for_user(user).filter(trial=trial, role__in=list(UNBLINDED_ROLES)).exists()


@transaction.atomic
def allocation_list_import(*, trial: Trial, user, content: bytes, file_name: str, reason: str) -> AllocationList:  # noqa: ANN001
    """Import the trial's allocation list made elsewhere by an unblinded statistician (CSV with the
    header `stratum,sequence,arm,kit_code`), checked line by line; nothing is written if any line is
    wrong. The file's SHA-256 goes into the audit trail with the reason."""
    if not user_imports_allocation_list(user, trial):
        raise PermissionDenied(_("Only an unblinded statistician of the trial imports an allocation list."))
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for importing this list (e.g. where and how it was made).")})
    trial = _list_maker_checks(trial)
    arms, ratio, block_sizes = _list_design(trial)
    strata = _strata(trial)
    parsed = allocation_import.parse(
        content, strata=strata, arms=[a.code for a in arms], ratio=ratio, block_sizes=block_sizes,
    )
    if parsed.errors:
        raise ValidationError({"file": [f"{file_name}: {error}" for error in parsed.errors]})
    digest = hashlib.sha256(content).hexdigest()
    why = _("Allocation list imported from %(file)s (SHA-256 %(digest)s): %(reason)s") % {
        "file": file_name, "digest": digest, "reason": reason}
    allocation_list = audited_save(
        AllocationList(trial=trial, seed="", block_sizes=block_sizes, slots_per_stratum=min(parsed.counts.values()), strata=strata,
                       generated_by=user, algorithm=IMPORTED_ALGORITHM, source_sha256=digest),
        user=user,
        reason=why,
    )
    by_code = {a.code: a for a in arms}
    rows = [
        AllocationSlot(allocation_list=allocation_list, stratum=row.stratum, sequence=row.sequence, block=row.block,
                       block_size=row.block_size, arm=by_code[row.arm], kit_code=row.kit_code)
        for row in parsed.rows
    ]
    audited_bulk_create(AllocationSlot, rows, user=user, reason=why)
    return allocation_list


# --- Dose cohorts (3+3, or sentinel then expansion) -----------------------------------------


def escalation_rule(trial: Trial) -> str:
    """`3+3` or `sentinel_expansion` (docs/seed-format.md, `escalation.rule`)."""
    return (trial.escalation or {}).get("rule", "3+3")


def sentinel_size(trial: Trial) -> int:
    return (trial.escalation or {}).get("sentinel_size", 3)


def cohort_capacity(trial: Trial, cohort: Arm, *, expanded: bool) -> int:
    """How many participants a cohort holds: its sentinel until an `expand` decision, then twice the
    sentinel (3+3) or the cohort's planned size (sentinel then expansion)."""
    sentinel = sentinel_size(trial)
    if not expanded:
        return sentinel
    if escalation_rule(trial) == "sentinel_expansion":
        return cohort.planned_size or sentinel
    return 2 * sentinel


@dataclass
class CohortState:
    cohort: Arm
    enrolled: int
    capacity: int
    state: str  # open | review | closed | not_open | stopped
    decisions: list[CohortDecision]
    replaced: int = 0  # participants not DLT-evaluable (ended early or untreated): not counted
    # The decision that opened the cohort's next place (None: a sentinel place of the first cohort).
    opened_by: CohortDecision | None = None

    @property
    def label(self) -> str:
        return {
            "open": _("Open"), "review": _("Paused: awaiting the cohort review"), "closed": _("Closed (escalated)"),
            "not_open": _("Not open yet"), "stopped": _("Escalation stopped"),
        }[self.state]

    @property
    def expanded(self) -> bool:
        return any(d.decision == CohortDecisionKind.EXPAND for d in self.decisions)

    @property
    def phase(self) -> str:
        """Sentinel or expansion, as said on the cohort page."""
        return _("Expansion") if self.expanded else _("Sentinel")


def cohort_states(trial: Trial) -> list[CohortState]:
    """Each cohort in dose order with its enrolment, capacity and state under the trial's rule.
    Replaced participants (trials.safety.escalation.is_replaced, through participants.hooks) do
    not count towards the capacity."""
    cohorts = list(trial.arms.filter(is_active=True).order_by("order").annotate(
        enrolled=Count("allocations")).prefetch_related("decisions"))
    replaced = hooks.dlt_replaced_by_cohort(trial)
    stopped = any(d.decision == CohortDecisionKind.STOP for c in cohorts for d in c.decisions.all())
    states = []
    previous_escalation: CohortDecision | None = None
    previous_escalated = True
    for cohort in cohorts:
        decisions = list(cohort.decisions.all())
        by_kind = {d.decision: d for d in decisions}
        n_replaced = len(replaced.get(cohort.pk, ()))
        enrolled = cohort.enrolled - n_replaced
        expanded = CohortDecisionKind.EXPAND in by_kind
        capacity = cohort_capacity(trial, cohort, expanded=expanded)
        if CohortDecisionKind.ESCALATE in by_kind:
            state = "closed"
        elif stopped:
            state = "stopped"
        elif not previous_escalated:
            state = "not_open"
        elif enrolled >= capacity:
            state = "review"
        else:
            state = "open"
        opened_by = by_kind[CohortDecisionKind.EXPAND] if expanded and enrolled >= sentinel_size(trial) else previous_escalation
        states.append(CohortState(cohort, enrolled, capacity, state, decisions, n_replaced, opened_by))
        previous_escalated = CohortDecisionKind.ESCALATE in by_kind
        previous_escalation = by_kind.get(CohortDecisionKind.ESCALATE)
    return states


def cohort_open_state(trial: Trial) -> CohortState:
    """The state of the cohort a new participant enters, or a ValidationError saying why enrolment is paused."""
    for state in cohort_states(trial):
        if state.state == "open":
            return state
        if state.state in ("review", "stopped"):
            raise ValidationError(
                _("Enrolment into %(cohort)s is paused: %(state)s.") % {"cohort": state.cohort.label, "state": state.label}
            )
    raise ValidationError(_("No cohort of %(trial)s is open for enrolment.") % {"trial": trial.code})


def cohort_open_for_enrolment(trial: Trial) -> Arm:
    """The cohort a new participant enters, or a ValidationError saying why enrolment is paused."""
    return cohort_open_state(trial).cohort


def decision_local_date(decision: CohortDecision, site: Site) -> date:
    """The day a cohort decision was signed, at the participant's site."""
    return timezone.localtime(decision.decided_at, ZoneInfo(site.time_zone)).date()


def _not_before_opening(decision: CohortDecision | None, site: Site, value: date, field: str, what: str) -> None:
    """Refuse a date of a cohort participant before the signed decision that opened her place."""
    if decision is None:
        return
    opened_on = decision_local_date(decision, site)
    if value < opened_on:
        raise ValidationError({field: _(
            "%(what)s cannot be dated %(date)s: %(cohort)s was opened for this place by the decision '%(decision)s' signed on %(opened)s."
        ) % {"what": what, "date": timefmt.date_text(value), "cohort": decision.cohort.label if decision.decision == CohortDecisionKind.EXPAND
             else _("the next cohort"), "decision": CohortDecisionKind(decision.decision).label, "opened": timefmt.date_text(opened_on)}})


def cohort_has_placebo(trial: Trial) -> bool:
    """Whether the trial randomises a placebo inside its dose cohorts (`escalation.placebo`)."""
    return trial.design == "dose_escalation" and bool((trial.escalation or {}).get("placebo"))


def cohort_placebo_is_masked(trial: Trial) -> bool:
    """A placebo inside the cohorts concealed from the site's staff: emergency unblinding applies."""
    placebo = (trial.escalation or {}).get("placebo") if cohort_has_placebo(trial) else None
    return bool(placebo and set(placebo.get("masked") or ()) & STAFF_MASKED_ROLES)


def _cohort_slot(trial: Trial, cohort: Arm) -> AllocationSlot:
    """The next free slot of the cohort's stratum in the concealed list (active or placebo)."""
    try:
        allocation_list = AllocationList.objects.select_for_update().get(trial=trial.pk)
    except AllocationList.DoesNotExist:
        raise ValidationError(_("The data manager has not generated the allocation list of %(trial)s yet.") % {
            "trial": trial.code}) from None
    # The list's row lock (above) serialises the enrolments that take slots, as in participant_randomize.
    slot = (
        AllocationSlot.objects.filter(allocation_list=allocation_list, stratum=cohort_stratum(cohort), allocation__isnull=True)
        .order_by("sequence").first()
    )
    if slot is None:
        raise ValidationError(_("The allocation list is exhausted for %(cohort)s. Tell the data manager.") % {"cohort": cohort.label})
    return slot


def cohort_stratum(cohort: Arm) -> str:
    return f"cohort={cohort.code}"


def cohort_decide(*, cohort: Arm, decision: str, user, password: str, rationale: str, dlt_count: int | None = None) -> CohortDecision:  # noqa: ANN001
    """Record the safety review of a cohort (an investigator, re-entering her password). The
    password is checked before the transaction, as for emergency unblinding: a wrong one is
    recorded and the third in the window blocks the decision (`password_reentry_check`)."""
    trial = Trial.objects.get(pk=cohort.trial_id)
    if trial.design != "dose_escalation":
        raise ValidationError(_("%(trial)s has no dose cohorts.") % {"trial": trial.code})
    if not study_roles_for_user(user).filter(trial=trial, role=Role.INVESTIGATOR).exists():
        raise PermissionDenied(_("Only an investigator of the trial records a cohort decision."))
    password_reentry_check(user=user, password=password, purpose="cohort_decision")
    return _cohort_decide(cohort=cohort, decision=decision, user=user, rationale=rationale, dlt_count=dlt_count)


@transaction.atomic
def _cohort_decide(*, cohort: Arm, decision: str, user, rationale: str, dlt_count: int | None) -> CohortDecision:  # noqa: ANN001
    trial = Trial.objects.select_for_update().get(pk=cohort.trial_id)
    if decision not in CohortDecisionKind.values:
        raise ValidationError({"decision": _("Choose expand, escalate or stop.")})
    rationale = (rationale or "").strip()
    if not rationale:
        raise ValidationError({"rationale": _("Give the basis of the decision.")})
    state = next((s for s in cohort_states(trial) if s.cohort.pk == cohort.pk), None)
    if state is None or state.state != "review":
        raise ValidationError(_("%(cohort)s is not awaiting a review (%(state)s): a decision is recorded once its participants are assessed.") % {
            "cohort": cohort.label, "state": state.label if state else "-"})
    if decision == CohortDecisionKind.EXPAND and state.expanded:
        raise ValidationError({"decision": _("The cohort is already expanded: escalate or stop.")})
    if decision == CohortDecisionKind.ESCALATE and not trial.arms.filter(is_active=True, order__gt=cohort.order).exists():
        raise ValidationError({"decision": _("%(cohort)s is the highest dose: there is no cohort to escalate to.") % {"cohort": cohort.label}})
    if dlt_count is not None and dlt_count > state.enrolled:
        raise ValidationError({"dlt_count": _("More participants with a DLT than in the cohort.")})
    # The decision the recorded DLTs support (the trial's rule, trials.safety.escalation through
    # participants.hooks); the investigator signs it, she cannot override it.
    review = hooks.cohort_review(cohort, expanded=state.expanded)
    if dlt_count is not None and dlt_count != review.with_dlt:
        raise ValidationError({"dlt_count": _("The adverse events record %(n)s participant(s) with a DLT in this cohort.") % {"n": review.with_dlt}})
    if review.recommendation is None:
        raise ValidationError(_("No decision yet: %(basis)s") % {"basis": review.basis})
    if decision != review.recommendation:
        raise ValidationError({"decision": _("The recorded DLTs support '%(supported)s': %(basis)s") % {
            "supported": CohortDecisionKind(review.recommendation).label, "basis": review.basis}})
    return audited_save(
        CohortDecision(cohort=cohort, decision=decision, participants_reviewed=review.evaluable, dlt_count=review.with_dlt,
                       rationale=rationale, decided_by=user),
        user=user,
        reason=_("Cohort review: %(decision)s") % {"decision": CohortDecisionKind(decision).label},
    )


# --- Treatment -----------------------------------------------------------------------------


def _opening_decision(participant: Participant) -> CohortDecision | None:
    allocation = Allocation.objects.filter(participant=participant).select_related("opened_by__cohort").first()
    return allocation.opened_by if allocation else None


@transaction.atomic
def participant_start_treatment(*, participant: Participant, user, first_treatment_date: date) -> Participant:  # noqa: ANN001
    """Record the first treatment: the participant is on treatment and the visits anchored at it
    get their planned dates."""
    _require(user, participant.site)
    participant = _writable(participant)
    _not_future(first_treatment_date, participant.site, "first_treatment_date")
    if participant.trial.design in ("randomized", "open_label", "dose_escalation") and not Allocation.objects.filter(participant=participant).exists():
        raise ValidationError(_("%(number)s is not allocated yet: allocate before the first treatment.") % {"number": participant.number})
    if participant.enrolment_date and first_treatment_date < participant.enrolment_date:
        raise ValidationError({"first_treatment_date": _("The first treatment cannot precede enrolment.")})
    if participant.consent_date and first_treatment_date < participant.consent_date:
        raise ValidationError({"first_treatment_date": _("The first treatment cannot precede the consent (%(date)s).") % {
            "date": participant.consent_date.isoformat()}})
    _not_before_opening(_opening_decision(participant), participant.site, first_treatment_date, "first_treatment_date", _("The first dose"))
    participant.first_treatment_date = first_treatment_date
    _transition(participant, S.ON_TREATMENT, user=user, reason=_("First treatment"), on=first_treatment_date)
    hooks.schedule_recompute(participant, user=user, reason=_("First treatment recorded"))
    _changed(participant, user=user, reason=_("First treatment recorded"))
    return participant


@transaction.atomic
def participant_anchor_change(*, participant: Participant, user, anchor: str, new_date: date, reason: str) -> int:  # noqa: ANN001
    """Correct the enrolment or first-treatment date: the visits not done yet are re-planned
    (audited, with the reason). Returns the number of visits moved."""
    _require(user, participant.site)
    participant = _writable(participant)
    fields = {"enrolment": "enrolment_date", "first_treatment": "first_treatment_date"}
    if anchor not in fields:
        raise ValidationError({"anchor": _("Choose the enrolment or the first treatment date.")})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for the correction.")})
    if getattr(participant, fields[anchor]) is None:
        raise ValidationError({"anchor": _("This date is not recorded yet: record it first.")})
    _not_future(new_date, participant.site, "new_date")
    if participant.consent_date and new_date < participant.consent_date:
        raise ValidationError({"new_date": _("The date cannot precede the consent (%(date)s).") % {"date": timefmt.date_text(participant.consent_date)}})
    if anchor == "first_treatment" and participant.enrolment_date and new_date < participant.enrolment_date:
        raise ValidationError({"new_date": _("The first treatment cannot precede enrolment.")})
    if anchor == "enrolment" and participant.first_treatment_date and new_date > participant.first_treatment_date:
        raise ValidationError({"new_date": _("Enrolment cannot follow the first treatment.")})
    _not_before_opening(_opening_decision(participant), participant.site, new_date, "new_date",
                        _("The enrolment") if anchor == "enrolment" else _("The first dose"))
    setattr(participant, fields[anchor], new_date)
    audited_save(participant, user=user, reason=reason)
    moved = hooks.schedule_recompute(participant, user=user, reason=reason)
    _changed(participant, user=user, reason=reason)
    return moved


# --- Emergency unblinding ------------------------------------------------------------------


def participant_unblind(*, participant: Participant, user, password: str, reason: str) -> Arm:  # noqa: ANN001
    """Emergency unblinding of one participant by an investigator of her site: audited, e-mailed
    to the trial's sponsor and DSMB contacts, and marked on the participant. Returns the arm.
    Never refused by a lock or freeze: the participant's safety comes first. The password is
    checked before the transaction, so a wrong one is recorded and the third blocks unblinding."""
    _require(user, participant.site, {Role.INVESTIGATOR})
    password_reentry_check(user=user, password=password, purpose="unblind")
    return _unblind(participant=participant, user=user, reason=reason)


@transaction.atomic
def _unblind(*, participant: Participant, user, reason: str) -> Arm:  # noqa: ANN001
    participant = _locked(participant)
    if not participant.trial.is_blinded and not cohort_placebo_is_masked(participant.trial):
        raise ValidationError(_("%(trial)s is not blinded.") % {"trial": participant.trial.code})
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ValidationError({"reason": _("Give the medical reason for the unblinding (at least a sentence).")})
    allocation = Allocation.objects.filter(participant=participant).select_related("arm").first()
    if allocation is None:
        raise ValidationError(_("%(number)s is not allocated: there is nothing to unblind.") % {"number": participant.number})
    recipients = sorted(set(
        get_user_model().objects.filter(
            is_active=True, study_roles__trial=participant.trial, study_roles__is_active=True,
            study_roles__role__in=[Role.SPONSOR, Role.DSMB],
        ).exclude(email="").values_list("email", flat=True)
    ))
    event = audited_save(
        Unblinding(participant=participant, requested_by=user, reason=reason, notified=recipients),
        user=user,
        reason=reason,
    )
    participant.unblinded_at = event.unblinded_at
    audited_save(participant, user=user, reason=_("Emergency unblinding"))
    if recipients:
        # The message says who, when and why, never the arm: the sponsor's contacts may be blinded.
        subject = _("[%(trial)s] Emergency unblinding of %(number)s") % {"trial": participant.trial.code, "number": participant.number}
        body = _(
            "Participant %(number)s (site %(site)s) of %(trial)s was unblinded by %(who)s at %(when)s UTC.\n\nReason: %(reason)s\n"
        ) % {
            "number": participant.number, "site": participant.site.code, "trial": participant.trial.code,
            "who": user.get_full_name() or user.username, "when": f"{event.unblinded_at:%Y-%m-%d %H:%M}", "reason": reason,
        }
        transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients))
    return allocation.arm
