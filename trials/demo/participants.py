"""Synthetic participants for the demo and the tests, made through the real services.

A synthetic participant walks the same path as a real one: screened, consented to the current
consent version, screening CRFs answered (the lesion CRF from `screening_answers`), every criterion
the data do not answer marked as the eligible answer, enrolled, allocated as the trial allocates,
and treated when asked. Nothing here bypasses a rule; it only answers the questions for the user.
Refused in production (no synthetic data next to real participants).
"""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from trials.participants import eligibility, services
from trials.participants.models import AllocationList, CriterionAnswer, Participant
from trials.protocol.models import CriterionKind, CriterionLevel, Role, Site

# A digital ulcer that satisfies every lesion criterion of the digital-ulcer trial.
ELIGIBLE_ULCER = {
    "ulcer_id": "U1", "hand": "right", "location": "distal_to_pip", "finger": 2, "beyond_pip": True,
    "ischemic": True, "over_calcinosis": False, "active": True, "refractory": True, "due_to_other_condition": False,
    "osteomyelitis_or_uncontrolled_infection": False, "infected_requiring_systemic_antibiotics": False,
    "requires_urgent_surgery": False,
}


def _eligible_answer(kind: str) -> str:
    return CriterionAnswer.MET if kind == CriterionKind.INCLUSION else CriterionAnswer.NOT_MET


def participant_register(
    *,
    site: Site,
    user,  # noqa: ANN001 - acts as the site's staff
    consent_date: date,
    anchor_date: date | None,
    first_treatment_date: date | None = None,
    arm_code: str | None = None,
) -> Participant:
    """Screen, consent and (with `anchor_date`) enrol and allocate a synthetic participant."""
    if settings.IS_PRODUCTION:
        raise ImproperlyConfigured("Synthetic participants are not made in production.")
    trial = site.trial
    participant = services.participant_screen(site=site, user=user, screening_date=consent_date, reason="Synthetic participant")
    document = services.current_consent_document(trial)
    if document is None:
        raise ImproperlyConfigured(f"{trial.code} has no consent document version (consent_documents in its YAML).")
    zone = ZoneInfo(site.time_zone)
    services.participant_consent(
        participant=participant, document=document, user=user,
        consented_at=datetime.combine(consent_date, time(9, 0), tzinfo=zone),
    )
    participant.refresh_from_db()
    if anchor_date is None:
        return participant
    lesion = (trial.eligibility or {}).get("lesion")
    if lesion:
        from trials.visits.services import crf_entry_save_answers

        screening = participant.visits.filter(definition__visit_crfs__crf_code=lesion["crf"]).order_by("order").first()
        crf_entry_save_answers(
            user=user, visit=screening, crf_code=lesion["crf"], complete=True, reason="Synthetic participant",
            answers={"assessment_date": consent_date, "number_active_du": 1, lesion["group"]: [dict(ELIGIBLE_ULCER)]},
        )
    evaluation = eligibility.evaluate(participant)
    answers = {}
    for criterion in trial.criteria.filter(is_active=True):
        keys = [(criterion.code, row) for row in evaluation.lesions] if criterion.level == CriterionLevel.LESION else [(criterion.code, "")]
        for key in keys:
            if key not in evaluation.answers:
                answers[key] = (_eligible_answer(criterion.kind), "Synthetic participant")
    services.eligibility_record(participant=participant, answers=answers, user=user)
    if services.cohort_has_placebo(trial):  # the concealed list gives active or placebo at enrolment
        _ensure_list(trial)
    participant = services.participant_enrol(participant=participant, user=user, enrolment_date=max(anchor_date, consent_date))
    from trials.visits.schedule import visit_record_date

    for visit in participant.visits.filter(definition__kind="screening"):  # the screening took place
        visit_record_date(visit, user=user, visit_date=consent_date)
    if trial.design == "randomized":
        _ensure_list(trial)
        services.participant_randomize(participant=participant, user=user)
    elif trial.design == "open_label":
        arm = trial.arms.filter(is_active=True).order_by("code")
        arm = arm.get(code=arm_code) if arm_code else arm.first()
        services.participant_assign(participant=participant, arm=arm, user=user, reason="Synthetic participant")
    if first_treatment_date is not None:
        services.participant_start_treatment(participant=participant, user=user, first_treatment_date=first_treatment_date)
    participant.refresh_from_db()
    return participant


def _ensure_list(trial) -> None:  # noqa: ANN001
    if AllocationList.objects.filter(trial=trial).exists():
        return
    manager = trial.study_roles.filter(role=Role.DATA_MANAGER, is_active=True).select_related("user").first()
    if manager is None:
        raise ImproperlyConfigured(f"{trial.code} has no data manager to generate its allocation list.")
    services.allocation_list_generate(trial=trial, user=manager.user)
