"""Emergency unblinding (ASC-DU): an investigator of the participant's site, with her password and
a medical reason, gets the arm; it is recorded, marked on the participant and e-mailed (without
the arm) to the trial's sponsor and DSMB contacts once the transaction commits."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from edc.audit import system_user
from tests.participants.conftest import GRE, MEXICO, PASSWORDS, TLS, days_ago, site, user
from trials.participants import services
from trials.demo.participants import participant_register
from trials.participants.models import Participant, Unblinding
from trials.protocol.services import study_role_revoke

pytestmark = pytest.mark.django_db

INVESTIGATOR = "investigator.toulouse"
REASON = "Anaphylactic reaction in the emergency department; treatment depends on the product."


def randomized(key=TLS) -> Participant:  # noqa: ANN001
    """Enrolled and allocated through the whole path (the data manager generates the list)."""
    return participant_register(site=site(key), user=system_user(), consent_date=days_ago(20), anchor_date=days_ago(10))


def unblind(participant: Participant, *, username: str = INVESTIGATOR, password: str | None = None, reason: str = REASON):  # noqa: ANN201
    return services.participant_unblind(
        participant=participant, user=user(username), password=PASSWORDS.get(username, "") if password is None else password,
        reason=reason,
    )


def nothing_written(participant: Participant) -> None:
    participant.refresh_from_db()
    assert participant.unblinded_at is None
    assert not Unblinding.objects.exists() and not Unblinding.history.exists()


def test_unblinding_returns_the_arm_records_it_and_notifies_without_the_arm(demo, mailoutbox, django_capture_on_commit_callbacks):
    participant = randomized()
    history = participant.history.count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        arm = unblind(participant)
    assert arm == participant.allocation.arm
    event = Unblinding.objects.get()
    assert (event.participant, event.requested_by, event.reason) == (participant, user(INVESTIGATOR), REASON)
    assert event.notified == ["dsmb@example.org", "sponsor@example.org"]
    assert event.history.get().history_user == user(INVESTIGATOR)
    participant.refresh_from_db()
    assert participant.unblinded_at == event.unblinded_at
    assert participant.history.count() == history + 1
    assert participant.history.latest("history_id").history_user == user(INVESTIGATOR)

    assert len(callbacks) == 1 and len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["dsmb@example.org", "sponsor@example.org"]
    text = f"{mail.subject}\n{mail.body}"
    assert participant.subject_number in text and REASON in text and "ASC-DU" in text
    for arm_ in participant.trial.arms.all():
        assert arm_.code.lower() not in text.lower() and arm_.label.lower() not in text.lower()
    assert participant.allocation.kit_code not in text


def test_the_mail_leaves_only_when_the_transaction_commits(demo, mailoutbox, django_capture_on_commit_callbacks):
    participant = randomized()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        unblind(participant)
    assert len(callbacks) == 1
    assert mailoutbox == []


def test_only_contacts_with_an_active_role_are_notified(demo, mailoutbox, django_capture_on_commit_callbacks):
    participant = randomized()
    role = user("dsmb.statistician").study_roles.get(trial=participant.trial)
    study_role_revoke(study_role=role, revoked_by=system_user(), reason="Left the DSMB")
    with django_capture_on_commit_callbacks(execute=True):
        unblind(participant)
    assert Unblinding.objects.get().notified == ["sponsor@example.org"]
    assert mailoutbox[0].to == ["sponsor@example.org"]


@pytest.mark.parametrize("username", ["coordinator.toulouse", "datamanager", "monitor.du", "sponsor.toulouse", "dsmb.statistician"])
def test_only_an_investigator_unblinds(demo, mailoutbox, django_capture_on_commit_callbacks, username):
    participant = randomized()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(PermissionDenied):
        unblind(participant, username=username, password="demo-Coord-Toulouse-26")
    nothing_written(participant)
    assert mailoutbox == []


def test_an_investigator_of_another_site_does_not_unblind(demo, mailoutbox):
    participant = randomized(GRE)
    with pytest.raises(PermissionDenied):
        unblind(participant)
    nothing_written(participant)


@pytest.mark.parametrize("password", ["", "demo-invest-toulouse-26", "demo-Coord-Toulouse-26"])
def test_a_wrong_password_is_refused(demo, mailoutbox, django_capture_on_commit_callbacks, password):
    participant = randomized()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as refused:
        unblind(participant, password=password)
    assert "password" in refused.value.message_dict
    nothing_written(participant)
    assert mailoutbox == []


def test_the_reason_is_a_sentence(demo):
    participant = randomized()
    with pytest.raises(ValidationError) as refused:
        unblind(participant, reason="  urgent  ")
    assert "reason" in refused.value.message_dict
    nothing_written(participant)


# EASC-RA (single blind, staff know the cohort) conceals its placebo inside the cohorts from the staff
# since issue 15, so it has emergency unblinding: tests/participants/test_easc_ra_end_to_end.py.
@pytest.mark.parametrize(("key", "username", "password"), [
    (MEXICO, "investigator.mexico", "demo-Invest-Mexico-26"),  # open label
])
def test_a_trial_whose_staff_are_not_blinded_has_no_unblinding(demo, key, username, password):
    participant = randomized(key)
    assert participant.allocation  # allocated, so only the design refuses
    with pytest.raises(ValidationError) as refused:
        unblind(participant, username=username, password=password)
    assert "not blinded" in refused.value.messages[0]
    nothing_written(participant)


def test_nothing_to_unblind_before_allocation(demo):
    participant = participant_register(site=site(TLS), user=system_user(), consent_date=days_ago(20), anchor_date=None)
    with pytest.raises(ValidationError) as refused:
        unblind(participant)
    assert "not allocated" in refused.value.messages[0]
    nothing_written(participant)
