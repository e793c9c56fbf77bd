"""Eligibility: criteria answered from the screening CRFs (CEL expressions), lesion-level criteria
on the digital-ulcer rows, the coordinator's answers for the rest, and screen failure."""

import pytest
from django.core.exceptions import ValidationError

from edc.audit import system_user
from tests.participants.conftest import (
    MEXICO,
    TLS,
    checklist,
    consent,
    demog,
    enter,
    enter_ulcers,
    history_count,
    screen,
    ssc_screen,
    ulcer,
    user,
    vitals,
)
from trials.participants import eligibility, services
from trials.participants.models import EligibilityAnswer, Participant

pytestmark = pytest.mark.django_db

MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"


def answers_written() -> int:
    return EligibilityAnswer.objects.count() + EligibilityAnswer.history.count()


@pytest.fixture
def coordinator_mexico(demo):
    return user("coordinator.mexico")


@pytest.fixture
def mexican(coordinator_mexico) -> Participant:
    """A consented participant in screening at the Mexico City site (ADSVF-SSC-HANDS)."""
    return consent(screen(MEXICO, coordinator_mexico), coordinator_mexico)


@pytest.fixture
def toulousain(demo) -> Participant:
    """A consented participant in screening at Toulouse (ASC-DU)."""
    return consent(screen(TLS, user("coordinator.toulouse")), user("coordinator.toulouse"))


def record(participant, answers=None, *, actor=None, confirm=False):  # noqa: ANN001, ANN201
    return services.eligibility_record(
        participant=participant, answers=answers if answers is not None else checklist(participant),
        user=actor or system_user(), confirm_screen_failure=confirm,
    )


def stored(participant: Participant) -> dict:
    return {(a.criterion.code, a.lesion): (a.answer, a.automatic) for a in participant.eligibility_answers.select_related("criterion")}


# --- Criteria answered from the data ----------------------------------------------------------


@pytest.mark.parametrize(("age", "expected"), [(17, NOT_MET), (18, MET), (45, MET)])
def test_age_is_answered_from_demographics(mexican, coordinator_mexico, age, expected):
    enter(mexican, "DEMOG", demog(age=age), coordinator_mexico)
    auto = eligibility.evaluate(mexican).answers[("I02", "")]
    assert auto.answer == expected
    assert f"age_years = {age}" in auto.basis


@pytest.mark.parametrize(("weight", "height", "expected"), [("50", "175", NOT_MET), ("70", "170", MET)])
def test_bmi_is_answered_from_vital_signs(mexican, coordinator_mexico, weight, height, expected):
    enter(mexican, "VITALS", vitals(weight=weight, height=height), coordinator_mexico)
    assert eligibility.evaluate(mexican).answers[("I03", "")].answer == expected


def test_a_criterion_the_data_answer_cannot_be_answered_otherwise(mexican, coordinator_mexico):
    enter(mexican, "DEMOG", demog(age=16), coordinator_mexico)
    before = answers_written()
    for answer in (MET, UNKNOWN):
        with pytest.raises(ValidationError) as refused:
            record(mexican, {("I02", ""): (answer, "She told me she is 18")}, actor=coordinator_mexico)
        assert "I02" in " ".join(refused.value.messages) and "age_years = 16" in " ".join(refused.value.messages)
    assert answers_written() == before


def test_under_age_data_make_a_screen_failure_automatically_on_confirmation(mexican, coordinator_mexico):
    enter(mexican, "DEMOG", demog(age=16), coordinator_mexico)
    before = (answers_written(), history_count(mexican))
    with pytest.raises(ValidationError) as refused:
        record(mexican, {}, actor=coordinator_mexico)
    assert refused.value.error_list[0].code == "confirm_screen_failure"
    assert "I02" in refused.value.messages[0]
    assert (answers_written(), history_count(mexican)) == before
    mexican.refresh_from_db()
    assert mexican.status == "screening"

    assessment = record(mexican, {}, actor=coordinator_mexico, confirm=True)
    assert assessment.eligible is False
    mexican.refresh_from_db()
    assert mexican.status == "screen_failure"
    assert "I02" in mexican.status_reason
    assert stored(mexican)[("I02", "")] == (NOT_MET, True)
    assert mexican.history.latest("history_id").history_user == coordinator_mexico


def test_complete_screening_data_answer_the_whole_checklist(mexican, coordinator_mexico):
    enter(mexican, "DEMOG", demog(age=40), coordinator_mexico)
    enter(mexican, "VITALS", vitals(), coordinator_mexico)
    enter(mexican, "SSC_SCREEN", ssc_screen(), coordinator_mexico)
    assert checklist(mexican) == {}  # nothing left for the coordinator
    assessment = record(mexican, {}, actor=coordinator_mexico)
    assert assessment.eligible is True
    codes = set(mexican.trial.criteria.filter(is_active=True).values_list("code", flat=True))
    assert {code for code, _lesion in stored(mexican)} == codes
    assert all(automatic for _answer, automatic in stored(mexican).values())
    enrolled = services.participant_enrol(participant=mexican, user=coordinator_mexico)
    assert enrolled.status == "enrolled"


def test_an_exclusion_in_the_data_fails_screening(mexican, coordinator_mexico):
    enter(mexican, "DEMOG", demog(age=40, alcohol_use_disorder=True), coordinator_mexico)
    with pytest.raises(ValidationError) as refused:
        record(mexican, {}, actor=coordinator_mexico)
    assert "E03" in refused.value.messages[0]


def test_data_corrected_after_the_checklist_are_judged_again_at_enrolment(mexican, coordinator_mexico):
    """The checklist was answered on an age of 40; the date of birth is then corrected to an age of
    16: the participant is no longer eligible and is not enrolled on the old answer."""
    enter(mexican, "DEMOG", demog(age=40), coordinator_mexico)
    enter(mexican, "VITALS", vitals(), coordinator_mexico)
    enter(mexican, "SSC_SCREEN", ssc_screen(), coordinator_mexico)
    assert record(mexican, {}, actor=coordinator_mexico).eligible is True
    enter(mexican, "DEMOG", demog(age=16), coordinator_mexico)
    before = history_count(mexican)
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=mexican, user=coordinator_mexico)
    assert "I02" in " ".join(refused.value.messages)
    assert history_count(mexican) == before
    mexican.refresh_from_db()
    assert (mexican.status, mexican.subject_number) == ("screening", "")


def test_unknown_answers_hold_up_enrolment_naming_the_open_criteria(mexican, coordinator_mexico):
    answers = checklist(mexican)
    answers[("I03", "")] = (UNKNOWN, "Not weighed yet")
    del answers[("E05", "")]
    assessment = record(mexican, answers, actor=coordinator_mexico)
    assert assessment.eligible is None
    assert [c.code for c, _lesion in assessment.unanswered] == ["I03", "E05"]
    before = history_count(mexican)
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=mexican, user=coordinator_mexico)
    message = " ".join(refused.value.messages)
    assert "I03" in message and "E05" in message and "I01" not in message
    assert history_count(mexican) == before

    answers = {("I03", ""): (MET, "BMI 22"), ("E05", ""): (NOT_MET, "No family history")}
    assert record(mexican, answers, actor=coordinator_mexico).eligible is True
    assert services.participant_enrol(participant=mexican, user=coordinator_mexico).status == "enrolled"


def test_ineligible_answers_need_confirmation_and_name_the_failed_criteria(mexican, coordinator_mexico):
    answers = checklist(mexican, {"E03": MET, "I04": NOT_MET})
    before = (answers_written(), history_count(mexican))
    with pytest.raises(ValidationError) as refused:
        record(mexican, answers, actor=coordinator_mexico)
    assert "I04 not met" in refused.value.messages[0] and "E03 excluded" in refused.value.messages[0]
    assert (answers_written(), history_count(mexican)) == before

    record(mexican, answers, actor=coordinator_mexico, confirm=True)
    mexican.refresh_from_db()
    assert mexican.status == "screen_failure"
    assert "I04 not met" in mexican.status_reason and "E03 excluded" in mexican.status_reason
    assert "I01" not in mexican.status_reason
    assert stored(mexican)[("E03", "")] == (MET, False)
    with pytest.raises(ValidationError):
        services.participant_enrol(participant=mexican, user=coordinator_mexico)


def test_the_checklist_refuses_what_is_not_a_criterion(mexican):
    before = answers_written()
    for answers in (
        {("X99", ""): (MET, "")},
        {("I01", ""): ("maybe", "")},
        {("I01", "no-such-row"): (MET, "")},
    ):
        with pytest.raises(ValidationError):
            record(mexican, answers)
    assert answers_written() == before


def test_eligibility_comes_after_consent(demo):
    participant = screen(MEXICO)
    with pytest.raises(ValidationError) as refused:
        record(participant, {("I01", ""): (MET, "")})
    assert "consent" in refused.value.messages[0]
    assert not EligibilityAnswer.objects.filter(participant=participant).exists()


# --- Lesion-level criteria (digital ulcers) ---------------------------------------------------


def test_one_eligible_ulcer_among_ineligible_ones_is_enough(toulousain):
    entry = enter_ulcers(toulousain, [
        ulcer(ulcer_id="U1", ischemic=False),  # non-ischemic: LI02 not met, LE02 met
        ulcer(ulcer_id="U2"),
        ulcer(ulcer_id="U3", active=False, requires_urgent_surgery=True),
    ])
    rows = {row["ulcer_id"]: row["_row_id"] for row in entry.answers["ulcers"]}
    evaluation = eligibility.evaluate(toulousain)
    assert evaluation.lesions == {rows["U1"]: "U1", rows["U2"]: "U2", rows["U3"]: "U3"}
    assert evaluation.answers[("LI02", rows["U1"])].answer == NOT_MET
    assert evaluation.answers[("LE05", rows["U3"])].answer == MET

    assessment = record(toulousain)
    assert assessment.eligible is True
    assert assessment.eligible_lesions == [rows["U2"]]
    assert stored(toulousain)[("LI04", rows["U3"])] == (NOT_MET, True)
    participant = services.participant_enrol(participant=toulousain, user=user("coordinator.toulouse"))
    assert participant.status == "enrolled"


def test_no_eligible_ulcer_is_not_eligible(toulousain):
    enter_ulcers(toulousain, [ulcer(ulcer_id="U1", beyond_pip=False, location="palm", finger=None), ulcer(ulcer_id="U2", refractory=False)])
    assert eligibility.assess(toulousain, eligibility.evaluate(toulousain)).eligible is False
    before = (answers_written(), history_count(toulousain))
    with pytest.raises(ValidationError) as refused:
        record(toulousain)
    assert refused.value.error_list[0].code == "confirm_screen_failure"
    assert "no eligible lesion" in refused.value.messages[0]
    assert (answers_written(), history_count(toulousain)) == before
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=toulousain, user=user("coordinator.toulouse"))
    assert "no eligible lesion" in refused.value.messages[0]

    record(toulousain, confirm=True)
    toulousain.refresh_from_db()
    assert toulousain.status == "screen_failure"
    assert "no eligible lesion" in toulousain.status_reason


def test_without_an_ulcer_in_the_screening_crf_eligibility_is_not_established(toulousain):
    assessment = record(toulousain)
    assert assessment.eligible is None and assessment.no_lesion_recorded
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=toulousain, user=user("coordinator.toulouse"))
    assert "no lesion is recorded" in refused.value.messages[0]


def test_an_ulcer_answered_unknown_is_not_eligible_yet(toulousain):
    """A lesion criterion the data do not answer (refractory left empty) is the coordinator's."""
    entry = enter_ulcers(toulousain, [ulcer(refractory=None)])
    row = entry.answers["ulcers"][0]["_row_id"]
    answers = checklist(toulousain)
    assert answers[("LI05", row)] == (MET, "checked")
    answers[("LI05", row)] = (UNKNOWN, "Ask the referring physician")
    assessment = record(toulousain, answers)
    assert assessment.eligible is None
    assert [(c.code, lesion) for c, lesion in assessment.unanswered] == [("LI05", row)]
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=toulousain, user=user("coordinator.toulouse"))
    assert "LI05 (U1)" in refused.value.messages[0]
    assert record(toulousain, {("LI05", row): (MET, "Refractory for 12 weeks")}).eligible is True


def test_lesion_criteria_are_answered_per_lesion_and_the_others_per_participant(toulousain):
    entry = enter_ulcers(toulousain, [ulcer(refractory=None)])
    row = entry.answers["ulcers"][0]["_row_id"]
    before = answers_written()
    for answers in ({("LI05", ""): (MET, "")}, {("I05", row): (MET, "")}):
        with pytest.raises(ValidationError) as refused:
            record(toulousain, answers)
        code = next(iter(answers))[0]
        assert code in refused.value.messages[0]
    assert answers_written() == before


# --- Criteria whose basis is a screening CRF (issue 13) ---------------------------------------


def test_botulinum_toxin_in_the_screening_crf_excludes_and_cannot_be_answered_otherwise(toulousain):
    """ASC-DU E09 (botulinum toxin in an affected finger within 4 weeks): SSC_SCREEN says toxin in the
    hands in the last month; an investigator answered "Not met" by hand and the participant was
    enrolled. The data now answer E09, and a hand answer that disagrees is refused."""
    coordinator = user("coordinator.toulouse")
    enter_ulcers(toulousain, [ulcer()], coordinator)
    enter(toulousain, "SSC_SCREEN", ssc_screen(botulinum_last_month=True), coordinator)
    auto = eligibility.evaluate(toulousain).answers[("E09", "")]
    assert (auto.answer, auto.basis) == (MET, "botulinum_last_month = yes")
    before = answers_written()
    with pytest.raises(ValidationError) as refused:
        record(toulousain, {**checklist(toulousain), ("E09", ""): (NOT_MET, "no injection")}, actor=coordinator)
    assert refused.value.messages == [
        "E09: the screening data say 'Excluded: yes' (botulinum_last_month = yes); correct the CRF if the data are wrong."
    ]
    assert answers_written() == before
    with pytest.raises(ValidationError) as refused:
        record(toulousain, actor=coordinator)
    assert "E09 excluded" in refused.value.messages[0]
    with pytest.raises(ValidationError):
        services.participant_enrol(participant=toulousain, user=coordinator)


@pytest.mark.parametrize(("crf", "answers", "code", "expected"), [
    ("SSC_SCREEN", {"botulinum_last_month": False}, "E09", NOT_MET),
    ("SSC_SCREEN", {"hyperbaric_last_month": True}, "E08", MET),
    ("SSC_SCREEN", {"hyperbaric_last_month": False}, "E08", None),  # topical growth factors: by hand
    ("SSC_SCREEN", {"stable_vasoactive_1m": False}, "E04", MET),
    ("SSC_SCREEN", {"stable_vasoactive_1m": True}, "E04", None),  # treated under 3 months: by hand
    ("SSC_SCREEN", {"pregnant_or_breastfeeding": True}, "E19", MET),
    ("SSC_SCREEN", {"pregnant_or_breastfeeding": False}, "E19", None),  # plans to: by hand
    ("DEMOG", {"smoking_status": "current"}, "E01", MET),
    ("DEMOG", {"smoking_status": "never"}, "E01", NOT_MET),
    ("DEMOG", {"smoking_status": "former"}, "E01", None),  # stopped under 3 months: by hand
])
def test_asc_du_exclusions_are_decided_by_the_screening_data_where_they_can_be(toulousain, crf, answers, code, expected):
    data = ssc_screen(**answers) if crf == "SSC_SCREEN" else demog(age=50, **answers)
    if answers.get("smoking_status") == "former":
        data["smoking_stop_date"] = data["date_of_birth"].replace(year=data["date_of_birth"].year + 30)
    enter(toulousain, crf, data, user("coordinator.toulouse"))
    auto = eligibility.evaluate(toulousain).answers.get((code, ""))
    assert (auto.answer if auto else None) == expected
    if expected is None:  # undecided by the data: the investigator's answer counts
        enter_ulcers(toulousain, [ulcer()])
        answers_ = {**checklist(toulousain), (code, ""): (MET, "by hand")}
        with pytest.raises(ValidationError) as refused:
            record(toulousain, answers_)
        assert f"{code} excluded" in refused.value.messages[0]


def test_the_checklist_reads_exclusion_criteria_as_excluded_yes_or_no(toulousain, client):
    client.force_login(user("coordinator.toulouse"))
    enter(toulousain, "SSC_SCREEN", ssc_screen(), user("coordinator.toulouse"))
    page = client.get(f"/participants/{toulousain.pk}/eligibility/").content.decode()
    e02 = page.split('data-criterion="E02"')[1].split("</tr>")[0]  # answered by hand
    assert 'value="met"' in e02 and ">Excluded: yes</label>" in e02 and ">Excluded: no</label>" in e02
    assert "Not met" not in e02
    e09 = page.split('data-criterion="E09"')[1].split("</tr>")[0]  # from the data
    assert "<strong>Excluded: no</strong>" in e09
    i05 = page.split('data-criterion="I05"')[1].split("</tr>")[0]  # inclusion criteria keep Met / Not met
    assert ">Met</label>" in i05 and ">Not met</label>" in i05
