"""Dose escalation by the 3+3 rule: cohorts fill in dose order, enrolment pauses after the sentinel
participants until an investigator's review decision (expand, escalate or stop).

EASC-RA runs sentinel then expansion with a placebo inside its cohorts (tests/participants/
test_sentinel_expansion.py); here its trial row declares the 3+3 rule without placebo, as a trial
file with `escalation: {rule: "3+3"}` does, to keep the 3+3 rule tested."""

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from edc.audit import audited_save, system_user
from tests.participants.conftest import MADRID, PASSWORDS, consent, enrolled, history_count, make_eligible, screen, site, user
from trials.participants import services
from trials.participants.models import Allocation, CohortDecision, NumberKind, NumberSequence

pytestmark = pytest.mark.django_db

INVESTIGATOR = "investigator.madrid"


@pytest.fixture
def trial(demo):
    trial = site(MADRID).trial
    trial.escalation = {"rule": "3+3", "sentinel_size": 3, "dlt_window_days": 28, "dose_tolerance_percent": "10"}
    audited_save(trial, user=system_user(), reason="A trial declaring the 3+3 rule")
    return trial


def cohort(trial, code: str):  # noqa: ANN001, ANN201
    return trial.arms.get(code=code)


_CLOCK: list = []


@pytest.fixture(autouse=True)
def clock():
    """The clock moves 60 days on after each signed decision: the participants `fill` enrols next
    (dated 58 days back, treated 55 days back) then come after the decision that opened their places,
    as the service requires."""
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        _CLOCK.append(traveller)
        yield traveller
        _CLOCK.pop()


def decide(trial, code: str, decision: str, *, username: str = INVESTIGATOR, password: str | None = None, rationale: str = "No DLT", dlt_count=0):  # noqa: ANN001, ANN201
    made = services.cohort_decide(
        cohort=cohort(trial, code), decision=decision, user=user(username),
        password=PASSWORDS.get(username, "") if password is None else password, rationale=rationale, dlt_count=dlt_count,
    )
    _CLOCK[-1].shift(timedelta(days=60))
    return made


def states(trial) -> dict[str, tuple[str, int, int]]:  # noqa: ANN001
    return {s.cohort.code: (s.state, s.enrolled, s.capacity) for s in services.cohort_states(trial)}


def enrol_refused(key=MADRID, actor=None) -> tuple:  # noqa: ANN001
    """A consented, eligible participant whose enrolment is refused: the error and what was written."""
    participant = make_eligible(consent(screen(key)))
    before = (history_count(participant), Allocation.objects.count())
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=participant, user=actor or user("coordinator.madrid"))
    participant.refresh_from_db()
    assert (participant.status, participant.subject_number) == ("screening", "")
    assert (history_count(participant), Allocation.objects.count()) == before
    return participant, " ".join(refused.value.messages)


def fill(n: int, *, dlts: int = 0) -> list:
    """`n` participants enrolled into the open cohort, treated long enough ago to be DLT-evaluable;
    the first `dlts` of them with a dose-limiting toxicity recorded as an AE."""
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from tests.participants.conftest import days_ago
    from trials.safety.models import AdverseEvent
    from trials.safety.services import ae_save

    made = []
    for index in range(n):
        participant = enrolled(MADRID, user("coordinator.madrid"), on=60)
        participant = services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(55))
        if index < dlts:
            ae_save(AdverseEvent(
                participant=participant, verbatim_term="Infusion reaction", onset_date=days_ago(50), ongoing=False,
                end_date=days_ago(48), grade=3, related_product="probable", outcome="recovered", is_dlt=True,
                procedure="infusion", related_procedure="not_related", action_taken="none",
                aware_at=datetime.combine(days_ago(50), time(10), tzinfo=ZoneInfo(participant.site.time_zone)),
            ), user=system_user())
        made.append(participant)
    return made


def test_the_first_three_enter_the_first_cohort_then_enrolment_pauses(trial):
    participants = fill(3)
    assert [p.allocation.arm.code for p in participants] == ["COHORT1"] * 3
    assert all(p.allocation.method == "cohort" for p in participants)
    assert states(trial) == {"COHORT1": ("review", 3, 3), "COHORT2": ("not_open", 0, 3), "COHORT3": ("not_open", 0, 3)}
    _participant, message = enrol_refused()
    assert "paused" in message and "awaiting the cohort review" in message
    # The refused enrolment took no subject number.
    assert NumberSequence.objects.get(site=site(MADRID), kind=NumberKind.SUBJECT).last == 3


def test_expanding_reopens_the_cohort_up_to_six(trial):
    fill(3, dlts=1)
    waiting, _message = enrol_refused()
    decision = decide(trial, "COHORT1", "expand", dlt_count=1, rationale="One DLT among three: expand")
    assert (decision.participants_reviewed, decision.dlt_count, decision.decided_by) == (3, 1, user(INVESTIGATOR))
    assert decision.history.get().history_user == user(INVESTIGATOR)
    assert states(trial)["COHORT1"] == ("open", 3, 6)

    waiting = services.participant_enrol(participant=waiting, user=user("coordinator.madrid"))
    assert (waiting.subject_number, waiting.allocation.arm.code) == ("MAD-LP-004", "COHORT1")
    more = fill(2)
    assert [p.allocation.arm.code for p in more] == ["COHORT1"] * 2
    assert states(trial)["COHORT1"] == ("review", 6, 6)
    _participant, message = enrol_refused()
    assert "paused" in message
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT1", "expand")
    assert "already expanded" in " ".join(refused.value.messages)


def test_escalating_opens_the_next_cohort(trial):
    fill(3)
    decide(trial, "COHORT1", "escalate", rationale="No DLT among three: escalate")
    assert states(trial)["COHORT1"] == ("closed", 3, 3)
    assert states(trial)["COHORT2"] == ("open", 0, 3)
    nxt = fill(3)
    assert [p.allocation.arm.code for p in nxt] == ["COHORT2"] * 3
    assert states(trial)["COHORT2"] == ("review", 3, 3) and states(trial)["COHORT3"] == ("not_open", 0, 3)
    # A participant at another site of the trial counts in the same cohort.
    _participant, message = enrol_refused(("EASC-RA", "MAD-CSC"), system_user())
    assert "Second cohort" in message


def test_escalation_ends_at_the_highest_dose(trial):
    for code in ("COHORT1", "COHORT2"):
        fill(3)
        decide(trial, code, "escalate")
    fill(3)
    assert states(trial)["COHORT3"] == ("review", 3, 3)
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT3", "escalate")
    assert "highest dose" in " ".join(refused.value.messages)
    assert CohortDecision.objects.count() == 2


def test_stop_stops_enrolment(trial):
    fill(3, dlts=2)
    decide(trial, "COHORT1", "stop", dlt_count=2, rationale="Two DLTs among three")
    assert {state for state, _n, _c in states(trial).values()} == {"stopped"}
    _participant, message = enrol_refused()
    assert "Escalation stopped" in message
    for decision in ("expand", "escalate", "stop"):
        with pytest.raises(ValidationError):
            decide(trial, "COHORT1", decision)
    assert CohortDecision.objects.count() == 1


def test_a_wrong_password_is_refused(trial):
    fill(3)
    for password in ("", "demo-Invest-Toulouse-26", PASSWORDS[INVESTIGATOR] + " "):
        with pytest.raises(ValidationError) as refused:
            decide(trial, "COHORT1", "escalate", password=password)
        assert "password" in refused.value.message_dict
    assert not CohortDecision.objects.exists()
    assert states(trial)["COHORT1"] == ("review", 3, 3)


def test_a_decision_is_taken_only_on_a_cohort_awaiting_review(trial):
    fill(2)
    for code in ("COHORT1", "COHORT2"):
        with pytest.raises(ValidationError) as refused:
            decide(trial, code, "escalate")
        assert "not awaiting a review" in refused.value.messages[0]
    assert not CohortDecision.objects.exists()
    assert enrolled(MADRID).allocation.arm.code == "COHORT1"  # still open


@pytest.mark.parametrize("username", ["coordinator.madrid", "datamanager", "dsmb.statistician", "investigator.toulouse"])
def test_only_an_investigator_of_the_trial_decides(trial, username):
    fill(3)
    with pytest.raises(PermissionDenied):
        decide(trial, "COHORT1", "escalate", username=username, password="demo")
    assert not CohortDecision.objects.exists()


def test_a_decision_needs_a_rationale_a_known_kind_and_a_plausible_dlt_count(trial):
    fill(3)
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT1", "escalate", rationale="  ")
    assert "rationale" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT1", "double")
    assert "decision" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT1", "expand", dlt_count=4)
    assert "dlt_count" in refused.value.message_dict
    assert not CohortDecision.objects.exists()


def test_no_cohort_decision_in_a_trial_without_cohorts(demo):
    arm = site(("ASC-DU", "TLS")).trial.arms.get(code="ADMSC")
    with pytest.raises(ValidationError):
        services.cohort_decide(cohort=arm, decision="escalate", user=user("investigator.toulouse"),
                               password=PASSWORDS["investigator.toulouse"], rationale="No")
    assert not CohortDecision.objects.exists()


@pytest.mark.parametrize(
    ("dlts", "supported"), [(0, "escalate"), (1, "expand"), (2, "stop"), (3, "stop")],
)
def test_the_first_three_decide_by_their_dlts(trial, dlts, supported):
    fill(3, dlts=dlts)
    for other in {"expand", "escalate", "stop"} - {supported}:
        with pytest.raises(ValidationError) as refused:
            decide(trial, "COHORT1", other, dlt_count=dlts)
        assert "support" in " ".join(refused.value.messages)
    decision = decide(trial, "COHORT1", supported, dlt_count=dlts)
    assert (decision.participants_reviewed, decision.dlt_count) == (3, dlts)


@pytest.mark.parametrize(("second_dlts", "supported"), [(0, "escalate"), (1, "stop")])
def test_an_expanded_cohort_of_six_escalates_with_at_most_one_dlt(trial, second_dlts, supported):
    fill(3, dlts=1)
    decide(trial, "COHORT1", "expand", dlt_count=1)
    fill(3, dlts=second_dlts)
    wrong = "stop" if supported == "escalate" else "escalate"
    with pytest.raises(ValidationError):
        decide(trial, "COHORT1", wrong, dlt_count=1 + second_dlts)
    assert decide(trial, "COHORT1", supported, dlt_count=1 + second_dlts).participants_reviewed == 6


def test_no_decision_while_a_participant_is_within_her_dlt_window(trial):
    fill(2)
    recent = enrolled(MADRID, user("coordinator.madrid"), on=20)
    services.participant_start_treatment(participant=recent, user=system_user(), first_treatment_date=recent.enrolment_date)
    with pytest.raises(ValidationError) as refused:
        decide(trial, "COHORT1", "escalate")
    assert "not yet DLT-evaluable" in " ".join(refused.value.messages) and recent.subject_number in " ".join(refused.value.messages)
    assert not CohortDecision.objects.exists()


def test_the_highest_dose_tolerated_ends_escalation_with_stop(trial):
    for code in ("COHORT1", "COHORT2"):
        fill(3)
        decide(trial, code, "escalate")
    fill(3)
    assert decide(trial, "COHORT3", "stop").decision == "stop"


def end_participation(participant, status: str, on):  # noqa: ANN001, ANN201
    return services.participant_transition(participant=participant, to=status, user=system_user(), reason="Withdrew consent", on=on)


def test_a_participant_withdrawn_before_treatment_is_replaced(trial):
    from tests.participants.conftest import days_ago

    treated = fill(2)
    untreated = enrolled(MADRID, user("coordinator.madrid"), on=40)
    assert states(trial)["COHORT1"] == ("review", 3, 3)
    end_participation(untreated, "withdrawn", days_ago(30))
    # Her place reopens; the next participant enters the same cohort.
    assert states(trial)["COHORT1"] == ("open", 2, 3)
    third = fill(1)[0]
    assert third.allocation.arm.code == "COHORT1"
    assert states(trial)["COHORT1"] == ("review", 3, 3)
    # The review counts the three evaluable participants and names the replaced one.
    decision = decide(trial, "COHORT1", "escalate")
    assert decision.participants_reviewed == 3
    from trials.safety.escalation import cohort_review

    basis = cohort_review(trial.arms.get(code="COHORT1"), expanded=False).basis
    assert untreated.subject_number in basis and "replaced" in basis
    assert {p.pk for p in treated} | {third.pk} == set(
        trial.participants.filter(allocation__arm__code="COHORT1").exclude(pk=untreated.pk).values_list("pk", flat=True))


def test_a_participant_ending_early_without_a_dlt_is_replaced_but_a_dlt_always_counts(trial):
    from tests.participants.conftest import days_ago

    fill(1)
    (with_dlt,) = fill(1, dlts=1)
    (early,) = fill(1)
    assert states(trial)["COHORT1"] == ("review", 3, 3)
    # Treated 55 days ago; both leave within the DLT window: the one without a DLT is replaced,
    # the one with a DLT still counts.
    end_participation(early, "withdrawn", days_ago(53))
    end_participation(with_dlt, "withdrawn", days_ago(53))
    assert states(trial)["COHORT1"] == ("open", 2, 3)
    (fourth,) = fill(1)
    assert fourth.allocation.arm.code == "COHORT1"
    assert states(trial)["COHORT1"] == ("review", 3, 3)
    decision = decide(trial, "COHORT1", "expand", dlt_count=1)
    assert (decision.participants_reviewed, decision.dlt_count) == (3, 1)


def test_leaving_after_the_dlt_window_is_not_a_replacement(trial):
    from tests.participants.conftest import days_ago

    _first, _second, third = fill(3)
    end_participation(third, "withdrawn", days_ago(1))  # treated 55 days ago: window passed
    assert states(trial)["COHORT1"] == ("review", 3, 3)
    assert decide(trial, "COHORT1", "escalate").participants_reviewed == 3


def test_three_wrong_passwords_block_the_cohort_decision_as_they_block_unblinding(trial):
    """Issue 16: the cohort decision's password re-entry was unlimited. The third wrong password
    blocks it (EDC_REENTRY_FAILURE_LIMIT = 3), even with the right one next, as for unblinding."""
    from trials.accounts.models import PasswordReentryFailure

    fill(3)
    for _ in range(3):
        with pytest.raises(ValidationError) as refused:
            decide(trial, "COHORT1", "escalate", password="not-my-password")
        assert refused.value.message_dict["password"] == ["The password is not correct."]
    assert PasswordReentryFailure.objects.filter(user=user(INVESTIGATOR), purpose="cohort_decision").count() == 3
    with pytest.raises(ValidationError) as blocked:
        decide(trial, "COHORT1", "escalate")
    assert "Too many wrong passwords" in blocked.value.message_dict["password"][0]
    assert not CohortDecision.objects.exists()
