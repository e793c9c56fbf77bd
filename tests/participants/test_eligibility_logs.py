"""Criteria that apply to some participants only (`applies_when`, a "not applicable" answer) and
criteria read from the medication log (issue 15). Expected answers come from the protocol texts in
../shared/seeds/ (ASC-DU I04 and E03-E05, EASC-RA I02/I03, ADSVF I04)."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from django.core.exceptions import ValidationError

from tests.participants.conftest import (
    MADRID,
    MEXICO,
    TLS,
    checklist,
    consent,
    demog,
    enter,
    enter_ulcers,
    screen,
    ssc_screen,
    ulcer,
    user,
)
from trials.participants import eligibility, services
from trials.participants.models import Participant, ParticipantStatus
from trials.visits.services import crf_entry_save_answers, log_record_add

pytestmark = pytest.mark.django_db

MET, NOT_MET, NA = "met", "not_met", "na"
# Noon in Paris and in Madrid, morning in Mexico City: every site's date is 16 March 2026, the
# screening date the criteria are judged at (no screening visit date is recorded in these tests).
NOW = "2026-03-16T11:00:00+00:00"


@pytest.fixture(autouse=True)
def noon():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def coordinator(demo):  # noqa: ANN001, ANN201, ARG001
    return user("coordinator.toulouse")


@pytest.fixture
def toulousain(coordinator) -> Participant:
    """A consented participant in screening at Toulouse (ASC-DU)."""
    return consent(screen(TLS, coordinator), coordinator)


def medication(participant: Participant, actor, name: str, drug_class: str, start: date, stop: date | None = None,
               stop_reason: str | None = None) -> None:  # noqa: ANN001
    """One record of the medication log, entered through the services as a coordinator does."""
    record = log_record_add(user=actor, participant=participant, crf_code="CONMED")
    answers = {"medication": name, "drug_class": drug_class, "indication": "as prescribed", "start_date": start, "ongoing": stop is None}
    if stop is not None:
        answers.update(stop_date=stop, stop_reason=stop_reason or "completed")
    crf_entry_save_answers(user=actor, visit=record, crf_code="CONMED", answers=answers, complete=True, reason="")


def auto(participant: Participant, code: str) -> str | None:
    found = eligibility.evaluate(participant).answers.get((code, ""))
    return found.answer if found else None


# --- ASC-DU I04: non-childbearing potential applies to women ------------------------------------


def test_a_man_is_recorded_not_applicable_for_i04_and_can_be_eligible(toulousain, coordinator):
    enter(toulousain, "DEMOG", demog(age=45, sex="M"), coordinator)
    evaluation = eligibility.evaluate(toulousain)
    assert evaluation.answers[("I04", "")].answer == NA
    assert "sex = M" in evaluation.answers[("I04", "")].basis
    enter_ulcers(toulousain, [ulcer()], coordinator)
    assessment = services.eligibility_record(participant=toulousain, answers=checklist(toulousain), user=coordinator)
    assert assessment.eligible is True
    stored = toulousain.eligibility_answers.get(criterion__code="I04")
    assert (stored.answer, stored.automatic) == (NA, True)
    assert eligibility.answer_label("inclusion", NA) == "Not applicable"


def test_a_woman_of_45_is_not_applicable_for_i04_and_one_of_60_cannot_answer_it_not_applicable(coordinator, demo):  # noqa: ARG001
    # I04: "Age > 50 years … amenorrhea … may be used to exclude childbearing potential".
    younger = consent(screen(TLS, coordinator), coordinator)
    enter(younger, "DEMOG", demog(age=45, sex="F"), coordinator)
    assert auto(younger, "I04") == NA
    older = consent(screen(TLS, coordinator), coordinator)
    enter(older, "DEMOG", demog(age=60, sex="F"), coordinator)
    assert auto(older, "I04") is None  # amenorrhoea, HRT and FSH are the investigator's
    answers = checklist(older)
    answers[("I04", "")] = (NA, "")
    with pytest.raises(ValidationError, match="I04 applies to"):
        services.eligibility_record(participant=older, answers=answers, user=coordinator)
    answers[("I04", "")] = (MET, "amenorrhoea since 2019, FSH 62 IU/L")
    assert services.eligibility_record(participant=older, answers=answers, user=coordinator).eligible is not False


def test_not_applicable_is_refused_for_a_criterion_that_applies_to_everyone(toulousain, coordinator):
    enter(toulousain, "DEMOG", demog(age=45, sex="M"), coordinator)
    answers = checklist(toulousain)
    answers[("I05", "")] = (NA, "")
    with pytest.raises(ValidationError, match="I05 applies to"):
        services.eligibility_record(participant=toulousain, answers=answers, user=coordinator)


# --- ASC-DU E03-E05 from the medication log ----------------------------------------------------


def test_an_empty_medication_log_leaves_the_medication_criteria_to_the_investigator(toulousain):
    assert [auto(toulousain, code) for code in ("E03", "E05")] == [None, None]


@pytest.mark.parametrize(("stopped", "expected"), [
    # E05: DMARDs "should be stop at least 1 month prior study entry" (1 month = 30 days).
    (date(2026, 3, 2), MET),  # stopped 14 days before screening: excluded
    (date(2026, 1, 15), NOT_MET),  # stopped 60 days before
    (None, MET),  # still taken
])
def test_methotrexate_on_the_log_decides_e05(toulousain, coordinator, stopped, expected):
    medication(toulousain, coordinator, "methotrexate", "csdmard", date(2024, 5, 1), stopped)
    assert auto(toulousain, "E05") == expected


@pytest.mark.parametrize(("started", "expected"), [
    # E03: statins "received … for less than 3 months prior to Screening" (3 months = 90 days).
    (date(2026, 2, 14), MET),  # 30 days
    (date(2025, 6, 1), NOT_MET),  # 288 days
])
def test_a_statin_on_the_log_decides_e03(toulousain, coordinator, started, expected):
    medication(toulousain, coordinator, "atorvastatin", "statin", started)
    assert auto(toulousain, "E03") == expected


def test_a_vasodilator_whose_dose_changed_last_month_excludes(toulousain, coordinator):
    # E04: vasodilators "whose treatment has not been stable for at least 1 month prior to inclusion".
    enter(toulousain, "SSC_SCREEN", ssc_screen(), coordinator)
    medication(toulousain, coordinator, "nifedipine 30 mg", "calcium_channel_blocker", date(2025, 6, 1), date(2026, 2, 28), "dose_change")
    assert auto(toulousain, "E04") == NOT_MET  # a course stopped 16 days ago, nothing taken now
    medication(toulousain, coordinator, "nifedipine 60 mg", "calcium_channel_blocker", date(2026, 3, 1))
    assert auto(toulousain, "E04") == MET  # the current dose for 15 days


def test_a_medication_on_the_log_makes_the_participant_ineligible(toulousain, coordinator):
    enter(toulousain, "DEMOG", demog(age=45, sex="M"), coordinator)
    enter_ulcers(toulousain, [ulcer()], coordinator)
    medication(toulousain, coordinator, "mycophenolate mofetil", "immunosuppressant", date(2023, 1, 10), date(2026, 3, 6), "intolerance")
    with pytest.raises(ValidationError, match="E05"):
        services.eligibility_record(participant=toulousain, answers=checklist(toulousain), user=coordinator)
    services.eligibility_record(participant=toulousain, answers=checklist(toulousain), user=coordinator, confirm_screen_failure=True)
    toulousain.refresh_from_db()
    assert toulousain.status == ParticipantStatus.SCREEN_FAILURE and "E05" in toulousain.status_reason


# --- EASC-RA I02/I03 and ADSVF I04 -------------------------------------------------------------


def test_easc_ra_reads_the_dmard_and_the_failed_biologics_from_the_log(demo):  # noqa: ARG001
    actor = user("coordinator.madrid")
    patient = consent(screen(MADRID, actor), actor)
    # RA_SCREEN says otherwise: once the log holds a record, the log decides.
    enter(patient, "RA_SCREEN", {
        "acr_eular_2010_ra": True, "disease_duration_years": "6", "failed_biologics_count": 0, "on_non_biologic_dmard": False,
        "tb_igra_result": "negative", "active_tuberculosis": False, "latent_tuberculosis_untreated": False,
        "active_serious_infection": False, "hbv_hcv_hiv_positive": False,
    }, actor)
    assert (auto(patient, "I02"), auto(patient, "I03")) == (NOT_MET, NOT_MET)
    medication(patient, actor, "methotrexate", "csdmard", date(2022, 4, 1))
    medication(patient, actor, "adalimumab", "biologic_dmard", date(2022, 9, 1), date(2023, 6, 1), "inadequate_response")
    # I02: "under treatment with at least one non-biologic DMARD"; I03: "failed … at least two biologics".
    assert (auto(patient, "I02"), auto(patient, "I03")) == (MET, NOT_MET)
    medication(patient, actor, "tocilizumab", "biologic_dmard", date(2023, 7, 1), date(2025, 1, 15), "intolerance")
    assert auto(patient, "I03") == MET


def test_adsvf_stable_therapy_is_not_met_when_the_log_shows_a_change_last_month(demo):  # noqa: ARG001
    actor = user("coordinator.mexico")
    patient = consent(screen(MEXICO, actor), actor)
    enter(patient, "SSC_SCREEN", ssc_screen(), actor)
    medication(patient, actor, "sildenafil", "pde5_inhibitor", date(2025, 1, 10))
    assert auto(patient, "I04") == MET
    # I04: "stable vasoactive and immunosuppressive therapies, for at least 1 month before".
    medication(patient, actor, "azathioprine", "immunosuppressant", date(2026, 3, 1))
    assert auto(patient, "I04") == NOT_MET
