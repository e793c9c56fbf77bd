"""The participant lifecycle: screening -> enrolled -> on treatment -> an end state, screen failure;
every change audited (user and reason), every refused change written nowhere."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from edc.audit import system_user
from tests.participants.conftest import (
    MEXICO,
    REGISTRY,
    consent,
    days_ago,
    enrolled,
    history_count,
    make_eligible,
    screen,
    user,
)
from trials.participants import services
from trials.participants.models import TRANSITIONS, Participant, ParticipantStatus

pytestmark = pytest.mark.django_db

S = ParticipantStatus
# The registry at Toulouse: no allocation step, and coordinator.toulouse works there.
TLS_REGISTRY = ("SSC-FATGRAFT-REG", "TLS")


def statuses(participant: Participant) -> list[str]:
    return list(participant.history.order_by("history_id").values_list("status", flat=True))


@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (S.COMPLETED, ""),
        (S.WITHDRAWN, "Withdrew consent for further visits"),
        (S.LOST_TO_FOLLOW_UP, "Last seen at week 4, three calls unanswered"),
        (S.DIED, "Cardiac arrest"),
    ],
)
def test_the_whole_path_is_audited_with_user_and_reason(demo, end, reason):
    coordinator = user("coordinator.toulouse")
    participant = screen(TLS_REGISTRY, coordinator, on=12)
    assert participant.status == S.SCREENING
    consent(participant, coordinator, on=12)
    make_eligible(participant, coordinator)
    participant = services.participant_enrol(participant=participant, user=coordinator, enrolment_date=days_ago(10))
    assert (participant.status, participant.status_date) == (S.ENROLLED, days_ago(10))
    participant = services.participant_start_treatment(participant=participant, user=coordinator, first_treatment_date=days_ago(8))
    assert participant.status == S.ON_TREATMENT
    participant = services.participant_transition(participant=participant, to=end, user=coordinator, reason=reason, on=days_ago(1))

    participant.refresh_from_db()
    assert (participant.status, participant.status_date, participant.status_reason) == (end, days_ago(1), reason)
    # One history row per change, in order, each with the acting user and a reason.
    assert statuses(participant) == [S.SCREENING, S.SCREENING, S.ENROLLED, S.ON_TREATMENT, end]
    rows = list(participant.history.order_by("history_id"))
    assert all(row.history_user == coordinator for row in rows)
    assert all(row.history_change_reason for row in rows)
    assert rows[-1].history_change_reason == (reason or "Status change")
    assert rows[2].history_change_reason == "Enrolled"


def test_lost_to_follow_up_can_still_be_reported_dead(demo):
    participant = enrolled(REGISTRY)
    services.participant_transition(participant=participant, to=S.LOST_TO_FOLLOW_UP, reason="No news since month 3", user=system_user())
    participant = services.participant_transition(participant=participant, to=S.DIED, reason="Registry of deaths", user=system_user())
    participant.refresh_from_db()
    assert (participant.status, participant.status_reason) == (S.DIED, "Registry of deaths")
    assert statuses(participant)[-2:] == [S.LOST_TO_FOLLOW_UP, S.DIED]


def test_screen_failure_needs_a_reason_and_is_final(demo):
    participant = screen(REGISTRY)
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_screen_fail(participant=participant, user=system_user(), reason="   ")
    assert "reason" in refused.value.message_dict
    assert history_count(participant) == before

    participant = services.participant_screen_fail(participant=participant, user=system_user(), reason="Declined to take part")
    participant.refresh_from_db()
    assert (participant.status, participant.status_reason, participant.subject_number) == (S.SCREEN_FAILURE, "Declined to take part", "")
    assert participant.history.latest("history_id").history_change_reason == "Declined to take part"


def test_withdrawal_needs_a_reason_and_nothing_is_written_without_one(demo):
    participant = enrolled(REGISTRY)
    before = history_count(participant)
    for blank in ("", "   "):
        with pytest.raises(ValidationError) as refused:
            services.participant_transition(participant=participant, to=S.WITHDRAWN, user=system_user(), reason=blank)
        assert "reason" in refused.value.message_dict
    participant.refresh_from_db()
    assert participant.status == S.ENROLLED
    assert history_count(participant) == before


# --- Out of order -----------------------------------------------------------------------------


def _to_status(participant: Participant, status: str) -> Participant:
    """Move an enrolled participant to an end state through the service."""
    if status == S.ON_TREATMENT:
        return services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(5))
    return services.participant_transition(participant=participant, to=status, user=system_user(), reason="End of participation")


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.COMPLETED, S.WITHDRAWN),
        (S.COMPLETED, S.LOST_TO_FOLLOW_UP),
        (S.WITHDRAWN, S.COMPLETED),
        (S.DIED, S.LOST_TO_FOLLOW_UP),
        (S.LOST_TO_FOLLOW_UP, S.COMPLETED),
        (S.LOST_TO_FOLLOW_UP, S.WITHDRAWN),
    ],
)
def test_end_states_follow_the_table(demo, current, target):
    assert target not in TRANSITIONS[current]  # the table itself, so the case means what it says
    participant = _to_status(enrolled(REGISTRY), current)
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_transition(participant=participant, to=target, user=system_user(), reason="Out of order")
    message = " ".join(refused.value.messages)
    assert participant.subject_number in message
    assert str(S(current).label) in message and str(S(target).label) in message
    participant.refresh_from_db()
    assert participant.status == current
    assert history_count(participant) == before


def test_screening_cannot_jump_to_an_end_state(demo):
    participant = consent(screen(REGISTRY))
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_transition(participant=participant, to=S.COMPLETED, user=system_user(), reason="")
    message = " ".join(refused.value.messages)
    assert participant.screening_number in message and "Completed" in message and "Enrolled" in message
    assert history_count(participant) == before


@pytest.mark.parametrize("current", [S.COMPLETED, S.WITHDRAWN])
def test_an_ended_participant_is_never_enrolled_again(demo, current):
    participant = _to_status(enrolled(REGISTRY), current)
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=participant, user=system_user())
    assert str(S(current).label) in " ".join(refused.value.messages)
    with pytest.raises(ValidationError):
        services.participant_transition(participant=participant, to=S.ENROLLED, user=system_user(), reason="Back")
    participant.refresh_from_db()
    assert participant.status == current
    assert history_count(participant) == before


def test_a_screen_failure_is_never_enrolled(demo):
    participant = consent(screen(REGISTRY))
    make_eligible(participant)
    services.participant_screen_fail(participant=participant, user=system_user(), reason="Moved abroad")
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=participant, user=system_user())
    assert "Screen failure" in " ".join(refused.value.messages)
    participant.refresh_from_db()
    assert (participant.status, participant.subject_number) == (S.SCREEN_FAILURE, "")
    assert history_count(participant) == before


@pytest.mark.parametrize("current", [S.WITHDRAWN, S.COMPLETED, S.ON_TREATMENT])
def test_treatment_does_not_start_out_of_order(demo, current):
    participant = _to_status(enrolled(REGISTRY), current)
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(1))
    message = " ".join(refused.value.messages)
    assert str(S(current).label) in message and "On treatment" in message
    participant.refresh_from_db()
    assert participant.status == current
    assert history_count(participant) == before


def test_an_unknown_status_is_a_validation_error(demo):
    participant = enrolled(REGISTRY)
    before = history_count(participant)
    with pytest.raises(ValidationError):
        services.participant_transition(participant=participant, to="archived", user=system_user(), reason="Archive")
    assert history_count(participant) == before


def test_status_dates_are_neither_in_the_future_nor_before_enrolment(demo):
    participant = enrolled(REGISTRY, on=10)  # enrolled 8 days ago
    before = history_count(participant)
    tomorrow = timezone.localdate() + timedelta(days=2)
    with pytest.raises(ValidationError) as refused:
        services.participant_transition(participant=participant, to=S.WITHDRAWN, user=system_user(), reason="Moved", on=tomorrow)
    assert "on" in refused.value.message_dict
    with pytest.raises(ValidationError) as refused:
        services.participant_transition(participant=participant, to=S.WITHDRAWN, user=system_user(), reason="Moved", on=days_ago(9))
    assert "on" in refused.value.message_dict
    assert history_count(participant) == before
    participant = services.participant_transition(participant=participant, to=S.WITHDRAWN, user=system_user(), reason="Moved", on=days_ago(8))
    assert participant.status_date == days_ago(8)


def test_only_staff_of_the_site_change_a_status(demo):
    participant = enrolled(MEXICO)
    before = history_count(participant)
    for outsider in ("coordinator.toulouse", "monitor.du", "datamanager", "sponsor.toulouse"):
        with pytest.raises(PermissionDenied):
            services.participant_transition(participant=participant, to=S.WITHDRAWN, user=user(outsider), reason="Moved")
    assert history_count(participant) == before
    services.participant_transition(participant=participant, to=S.WITHDRAWN, user=user("coordinator.mexico"), reason="Moved")
    participant.refresh_from_db()
    assert participant.status == S.WITHDRAWN
    assert participant.history.latest("history_id").history_user == user("coordinator.mexico")
