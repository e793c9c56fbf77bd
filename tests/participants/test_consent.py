"""Consent: no data and no enrolment before it; a newer version requiring re-consent stops data
entry until the participant consents to it; each version once; never in the future."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from edc.audit import audited_save, system_user
from tests.participants.conftest import (
    GRE,
    MEXICO,
    TLS,
    consent,
    consent_time,
    days_ago,
    enrolled,
    history_count,
    screen,
    site,
    user,
    vitals,
)
from trials.participants import services
from trials.participants.models import Consent, Participant
from trials.protocol.models import ConsentDocument
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db


def new_version(trial, version: str = "2.0", *, approved_on: date | None = None, requires_reconsent: bool = True) -> ConsentDocument:  # noqa: ANN001
    return audited_save(
        ConsentDocument(
            trial=trial, version=version, title="Amended information sheet",
            approved_on=approved_on or days_ago(3), requires_reconsent=requires_reconsent,
        ),
        user=system_user(), reason="Amendment approved by the ethics committee",
    )


def save_vitals(participant: Participant, visit_code: str = "SCREEN"):  # noqa: ANN201
    visit = participant.visits.get(definition__code=visit_code)
    return crf_entry_save_answers(user=system_user(), visit=visit, crf_code="VITALS", answers=vitals(), complete=True, reason="Vital signs")


def record_consent(participant: Participant, document: ConsentDocument, when: datetime, actor=None) -> Consent:  # noqa: ANN001
    return services.participant_consent(participant=participant, document=document, consented_at=when, user=actor or system_user())


def test_no_enrolment_without_consent(demo):
    participant = screen(MEXICO)
    before = history_count(participant)
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=participant, user=system_user())
    assert "not consented" in refused.value.messages[0]
    participant.refresh_from_db()
    assert (participant.status, participant.subject_number) == ("screening", "")
    assert history_count(participant) == before


def test_no_crf_data_before_consent(demo):
    participant = screen(MEXICO)
    with pytest.raises(PermissionDenied) as refused:
        save_vitals(participant)
    assert participant.screening_number in str(refused.value) and "consent" in str(refused.value)
    assert not CrfEntry.objects.filter(participant=participant).exists()
    consent(participant)
    assert save_vitals(participant).status == "complete"


def test_consent_is_recorded_with_its_version_and_the_site_date(demo):
    participant = screen(MEXICO)
    document = services.current_consent_document(participant.trial)
    # 23:30 in Mexico City is the next day in UTC: the consent date is the site's.
    when = datetime.combine(days_ago(5), time(23, 30), tzinfo=ZoneInfo("America/Mexico_City"))
    record_consent(participant, document, when)
    participant.refresh_from_db()
    assert (participant.consent_date, participant.consent_document) == (days_ago(5), document)
    row = Consent.objects.get(participant=participant)
    assert (row.document, row.consented_at, row.obtained_by) == (document, when, system_user())
    assert row.history.get().history_change_reason == "Consent to version 1.0"


def test_a_newer_version_blocks_data_entry_until_re_consent(demo):
    participant = enrolled(TLS, on=20)
    screening = consent(screen(TLS, on=20), on=20)
    assert save_vitals(participant, "LIPO").revision == 1
    first_consent = participant.consent_date
    amendment = new_version(participant.trial, approved_on=days_ago(3))
    assert services.current_consent_document(participant.trial) == amendment

    with pytest.raises(PermissionDenied) as refused:
        save_vitals(participant, "LIPO")
    assert "re-consent to version 2.0" in str(refused.value)
    assert CrfEntry.objects.get(visit__participant=participant, crf_code="VITALS").revision == 1

    # A participant still in screening is not enrolled on the old version either.
    with pytest.raises(ValidationError) as refused:
        services.participant_enrol(participant=screening, user=system_user())
    assert "2.0" in refused.value.messages[0]

    record_consent(participant, amendment, timezone.now() - timedelta(hours=1))
    participant.refresh_from_db()
    assert participant.consent_document == amendment
    assert participant.consents.count() == 2
    assert save_vitals(participant, "LIPO").revision == 2
    # The consent date stays the first consent: data collected since then remain valid.
    assert participant.consent_date == first_consent


def test_data_dated_between_consent_and_re_consent_can_still_be_entered(demo):
    participant = enrolled(TLS, on=20)
    amendment = new_version(participant.trial, approved_on=days_ago(3))
    record_consent(participant, amendment, timezone.now() - timedelta(hours=1))
    participant.refresh_from_db()
    visit = participant.visits.get(definition__code="D0")
    entry = crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code="DU_ASSESS", complete=True, reason="Late entry",
        answers={"assessment_date": days_ago(10), "number_active_du": 0, "ulcers": []},
    )
    assert entry.answers["assessment_date"] == days_ago(10).isoformat()


@pytest.mark.parametrize(("requires_reconsent", "is_active"), [(False, True), (True, False)])
def test_a_version_without_re_consent_or_inactive_does_not_block(demo, requires_reconsent, is_active):
    participant = enrolled(MEXICO)
    document = new_version(participant.trial, requires_reconsent=requires_reconsent)
    if not is_active:
        document.is_active = False
        audited_save(document, user=system_user(), reason="Withdrawn by the ethics committee")
    assert services.consent_problem(participant) is None
    assert save_vitals(participant, "SCREEN").revision == 1


def test_consenting_twice_to_the_same_version_is_refused(demo):
    participant = consent(screen(MEXICO))
    document = participant.consent_document
    before = (Consent.objects.count(), history_count(participant))
    with pytest.raises(ValidationError) as refused:
        record_consent(participant, document, timezone.now() - timedelta(hours=2))
    assert "already consented to version 1.0" in " ".join(refused.value.messages)
    assert (Consent.objects.count(), history_count(participant)) == before


def test_consent_in_the_future_is_refused(demo):
    participant = screen(MEXICO)
    document = services.current_consent_document(participant.trial)
    for when in (timezone.now() + timedelta(minutes=10), timezone.now() + timedelta(days=2)):
        with pytest.raises(ValidationError) as refused:
            record_consent(participant, document, when)
        assert "consented_at" in refused.value.message_dict
    assert not Consent.objects.filter(participant=participant).exists()
    participant.refresh_from_db()
    assert participant.consent_date is None


def test_consent_needs_an_aware_time_after_the_version_approval(demo):
    participant = screen(MEXICO)
    document = services.current_consent_document(participant.trial)
    with pytest.raises(ValidationError):
        record_consent(participant, document, datetime.combine(days_ago(3), datetime.min.time()))
    with pytest.raises(ValidationError) as refused:
        record_consent(participant, document, consent_time(participant, document.approved_on - timedelta(days=1)))
    assert "approved on" in refused.value.message_dict["consented_at"][0]
    assert not Consent.objects.filter(participant=participant).exists()


def test_consent_to_another_trials_version_or_by_another_site_is_refused(demo):
    participant = screen(TLS)
    other = services.current_consent_document(site(MEXICO).trial)
    with pytest.raises(ValidationError):
        record_consent(participant, other, timezone.now() - timedelta(hours=1))
    grenoble = screen(GRE)
    with pytest.raises(PermissionDenied):
        record_consent(grenoble, services.current_consent_document(grenoble.trial), timezone.now() - timedelta(hours=1), user("coordinator.toulouse"))
    assert not Consent.objects.exists()


def test_no_consent_after_a_screen_failure(demo):
    participant = screen(MEXICO)
    services.participant_screen_fail(participant=participant, user=system_user(), reason="Declined")
    with pytest.raises(ValidationError) as refused:
        record_consent(participant, services.current_consent_document(participant.trial), timezone.now() - timedelta(hours=1))
    assert "Screen failure" in refused.value.messages[0]
    assert not Consent.objects.exists()


def test_no_eligibility_assessment_while_re_consent_is_due(demo):
    participant = consent(screen(MEXICO, on=20), on=20)
    new_version(participant.trial, approved_on=days_ago(3))
    with pytest.raises(ValidationError) as refused:
        services.eligibility_record(participant=participant, answers={("I01", ""): ("met", "")}, user=system_user())
    assert "re-consent to version 2.0" in refused.value.messages[0]
    assert not participant.eligibility_answers.exists()
