"""Electronic signatures: only an investigator of the site signs, re-entering her password; only
complete data are signed; a later change breaks the signatures covering it, visibly and in the
history; wrong passwords are recorded and, repeated, block signing for a while."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from lxml import etree
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user
from tests.monitoring.test_locks import lock, registered, save_vitals, today, visit_of
from tests.participants.conftest import PASSWORDS, _seeded, demo, user  # noqa: F401 - fixtures
from trials.monitoring.models import SignatureFailure
from trials.records.models import SIGNATURE_MEANING, LockKind, LockLevel, Signature, SignatureState
from trials.monitoring.signatures.services import signature_blockers, signature_sign
from trials.safety import services as safety
from trials.safety.models import AdverseEvent
from trials.visits import schedule
from trials.visits.models import Visit

pytestmark = pytest.mark.django_db
PASSWORD = PASSWORDS["investigator.toulouse"]


def signable(participant) -> Visit:  # noqa: ANN001
    """The liposuction visit, done in its window with its one required CRF (VITALS) complete."""
    visit = visit_of(participant, "LIPO")
    schedule.visit_record_date(visit, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=7))
    save_vitals(visit, user("coordinator.toulouse"))
    visit.refresh_from_db()
    return visit


def sign(participant, visit=None, password: str = PASSWORD, who: str = "investigator.toulouse") -> Signature:  # noqa: ANN001
    return signature_sign(participant=participant, visit=visit, user=user(who), password=password)


def closed_casebook(participant) -> None:  # noqa: ANN001
    """Every visit but the done ones marked 'not done' (nothing left to do in the casebook)."""
    for visit in participant.visits.filter(visit_date__isnull=True):
        schedule.visit_mark(visit, user=user("coordinator.toulouse"), status="not_done", reason="Withdrew consent")


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201
    return registered()


@pytest.mark.parametrize(
    "who", ["coordinator.toulouse", "monitor.du", "datamanager", "sponsor.toulouse", "investigator.madrid"]
)
def test_only_an_investigator_of_the_site_signs(participant, who):
    visit = signable(participant)
    with pytest.raises(PermissionDenied, match="Only an investigator of site TLS signs"):
        sign(participant, visit, password=PASSWORDS.get(who, "demo-Coord-Toulouse-26"), who=who)
    with pytest.raises(PermissionDenied):
        signature_sign(participant=participant, visit=visit, user=system_user(), password="")
    assert not Signature.objects.exists()


def test_the_signature_records_printed_name_time_and_meaning_and_is_audited(participant):
    visit = signable(participant)
    with time_machine.travel(timezone.now(), tick=False):
        signature = sign(participant, visit)
        assert signature.signed_at == timezone.now()
    assert (signature.printed_name, signature.meaning, signature.state) == (
        "Grégoire Dubois",
        str(SIGNATURE_MEANING),
        SignatureState.VALID,
    )
    assert signature.meaning == "I have reviewed and approve these data."
    record = signature.history.get()
    assert (
        record.history_user.username == "investigator.toulouse"
        and "I have reviewed and approve these data." in record.history_change_reason
    )
    with pytest.raises(ValidationError, match="Already signed by Grégoire Dubois"):
        sign(participant, visit)


def test_a_wrong_password_is_refused_recorded_and_three_block_signing(participant):
    visit = signable(participant)
    with pytest.raises(ValidationError) as refused:
        sign(participant, visit, password="not-my-password")
    assert refused.value.message_dict == {"password": ["The password is not correct."]}
    assert not Signature.objects.exists()
    failure = SignatureFailure.objects.get()
    assert (failure.user.username, failure.visit_id) == ("investigator.toulouse", visit.pk)
    assert failure.history.get().history_change_reason == "Signature refused: wrong password"
    for _attempt in range(2):
        with pytest.raises(ValidationError):
            sign(participant, visit, password="still wrong")
    with pytest.raises(ValidationError, match="Too many wrong passwords"):
        sign(participant, visit)  # the right password, too late
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert sign(participant, visit).state == SignatureState.VALID


def test_only_complete_data_are_signed(participant):
    visit = visit_of(participant, "LIPO")
    assert signature_blockers(participant, visit) == [
        f"{visit.label} has no visit date: only a visit that took place is signed."
    ]
    schedule.visit_record_date(visit, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=7))
    visit.refresh_from_db()
    assert signature_blockers(participant, visit) == [f"{visit.label}: VITALS not complete."]
    with pytest.raises(ValidationError, match="VITALS not complete"):
        sign(participant, visit)
    save_vitals(visit, user("coordinator.toulouse"))
    assert signature_blockers(participant, visit) == []
    casebook = signature_blockers(participant)
    assert any(problem.startswith("Visits still to do:") for problem in casebook)  # the rest of the schedule
    assert any(
        "SCREEN" in problem or "Screening" in problem for problem in casebook
    )  # its screening CRFs are incomplete


def test_a_later_change_breaks_the_visit_signature_visibly_and_in_the_history(participant):
    visit = signable(participant)
    visit_signature = sign(participant, visit)
    save_vitals(visit, user("coordinator.toulouse"), revision=1, reason="Transcription error", heart_rate="72")
    visit_signature.refresh_from_db()
    assert visit_signature.state == SignatureState.BROKEN and visit_signature.broken_at is not None
    assert visit_signature.broken_reason == f"VITALS at {visit.label} changed by Camille Martin: Transcription error"
    record = visit_signature.history.first()
    assert record.state == SignatureState.BROKEN and record.history_user.username == "coordinator.toulouse"
    assert (
        record.history_change_reason
        == f"Signature broken: VITALS at {visit.label} changed by Camille Martin: Transcription error"
    )
    # Signed again, then a visit date correction breaks it too.
    again = sign(participant, Visit.objects.get(pk=visit.pk))
    schedule.visit_record_date(
        visit, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=6), reason="Wrong day"
    )
    again.refresh_from_db()
    assert again.state == SignatureState.BROKEN and again.broken_reason.endswith("Wrong day")
    assert Signature.objects.filter(participant=participant).count() == 2  # both kept, neither valid


def consented_only():  # noqa: ANN201
    """A participant consented and not enrolled: her one visit (screening) can be marked not done."""
    from trials.demo.participants import participant_register
    from trials.protocol.models import Site

    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"),
        user=system_user(),
        consent_date=today() - timedelta(days=5),
        anchor_date=None,
    )


def test_the_casebook_signature_breaks_on_any_change_a_visit_signature_only_on_its_visit(demo):
    participant = consented_only()
    closed_casebook(participant)
    extra = schedule.visit_add_unscheduled(
        participant,
        user=user("coordinator.toulouse"),
        label="Skin check",
        planned_date=today() - timedelta(days=1),
        reason="Rash",
    )
    schedule.visit_record_date(extra, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=1))
    assert signature_blockers(participant) == []
    visit_signature = sign(participant, Visit.objects.get(pk=extra.pk))
    casebook = sign(participant)
    assert casebook.visit_id is None and casebook.state == SignatureState.VALID

    schedule.visit_add_unscheduled(
        participant,
        user=user("coordinator.toulouse"),
        label="AE follow-up",
        planned_date=today(),
        reason="Headache follow-up",
    )
    visit_signature.refresh_from_db()
    casebook.refresh_from_db()
    assert visit_signature.state == SignatureState.VALID  # its visit did not change
    assert casebook.state == SignatureState.BROKEN and casebook.broken_reason.endswith("Headache follow-up")


def test_an_ae_change_breaks_the_casebook_signature(demo):
    participant = consented_only()
    closed_casebook(participant)
    assert signature_blockers(participant) == []
    casebook = sign(participant)
    safety.ae_save(
        AdverseEvent(
            participant=participant,
            verbatim_term="Headache",
            onset_date=today() - timedelta(days=1),
            ongoing=True,
            grade=1,
            related_product="not_related",
            procedure="none",
            related_procedure="not_related",
            action_taken="none",
            outcome="not_recovered",
            aware_at=timezone.now() - timedelta(hours=3),
        ),
        user=user("coordinator.toulouse"),
    )
    casebook.refresh_from_db()
    assert casebook.state == SignatureState.BROKEN
    assert casebook.broken_reason == "participant data changed by Camille Martin: AE1: AE recorded"


def test_signing_under_a_lock_is_refused_under_a_freeze_allowed(participant):
    visit = signable(participant)
    freeze = lock(LockLevel.VISIT, visit, kind=LockKind.FREEZE)
    assert sign(participant, visit).state == SignatureState.VALID
    del freeze
    other = registered()
    other_visit = signable(other)
    lock(LockLevel.PARTICIPANT, other)
    with pytest.raises(ValidationError, match="locked by Sophie Laurent"):
        sign(other, other_visit)


def test_the_sign_page_shows_what_is_signed_and_signs_with_the_password(participant, client):
    visit = signable(participant)
    url = reverse("signature_visit", args=[visit.pk])
    client.force_login(user("coordinator.toulouse"))
    page = client.get(url).content.decode()
    assert "Only an investigator of site TLS signs." in page and 'name="password"' not in page
    response = client.post(url, {"password": "demo-Coord-Toulouse-26"})
    assert "Only an investigator of site TLS signs." in response.content.decode() and not Signature.objects.exists()

    client.force_login(user("investigator.toulouse"))
    page = client.get(url).content.decode()
    assert "I have reviewed and approve these data." in page and "Grégoire Dubois" in page and 'name="password"' in page
    assert "VITALS" in page
    response = client.post(url, {"username": "investigator.toulouse", "password": "wrong"})
    assert "The password is not correct." in response.content.decode() and not Signature.objects.exists()
    response = client.post(url, {"username": "investigator.toulouse", "password": PASSWORD}, follow=True)
    page = response.content.decode()
    assert 'data-testid="signature-current"' in page and "Grégoire Dubois" in page and "UTC" in page
    assert Signature.objects.get().state == SignatureState.VALID

    save_vitals(visit, user("coordinator.toulouse"), revision=1, reason="Transcription error", heart_rate="72")
    page = client.get(url).content.decode()
    assert 'data-testid="signature-broken"' in page and "Transcription error" in page
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert "signature broken" in dashboard


def test_the_crf_page_warns_that_a_change_breaks_the_signature(participant, client):
    visit = signable(participant)
    sign(participant, visit)
    client.force_login(user("coordinator.toulouse"))
    page = client.get(reverse("crf_entry", args=[visit.pk, "VITALS"])).content.decode()
    assert 'data-testid="signed-notice"' in page and "Grégoire Dubois" in page


def test_the_first_signing_of_a_session_asks_for_the_user_name_and_later_ones_the_password(participant, client):
    """21 CFR 11.200(a)(1)(i): the first signing of a session uses both components (user name and
    password), later signings of the same session at least the password. On main the first
    signing asked for the password only."""
    visit = signable(participant)
    url = reverse("signature_visit", args=[visit.pk])
    casebook_url = reverse("signature_casebook", args=[participant.pk])
    client.force_login(user("investigator.toulouse"))
    assert 'name="username"' in client.get(url).content.decode()
    response = client.post(url, {"password": PASSWORD})
    assert "This field is required." in response.content.decode() and not Signature.objects.exists()
    response = client.post(url, {"username": "coordinator.toulouse", "password": PASSWORD})
    assert "This is not your user name." in response.content.decode() and not Signature.objects.exists()
    client.post(url, {"username": "investigator.toulouse", "password": PASSWORD})
    assert Signature.objects.count() == 1
    # The same session: the password only.
    # (the casebook itself is not signable yet: its form is read from the page's context)
    assert set(client.get(casebook_url).context["form"].fields) == {"password"}
    # A new session: both again.
    client.logout()
    client.force_login(user("investigator.toulouse"))
    assert set(client.get(casebook_url).context["form"].fields) == {"username", "password"}


def test_odm_carries_each_valid_signature_with_its_definition(participant):
    """ODM 1.3.2 §3.1.3: a signed visit's StudyEventData carries a Signature (UserRef, LocationRef,
    SignatureRef, DateTimeStamp, in that order; checked against the official XSD by parse_valid),
    whose SignatureRef names a SignatureDef in AdminData (Methodology "Electronic", the Meaning
    signed and a LegalReason); the signer is a User of AdminData. A broken signature is not
    exported as valid."""
    from tests.exports.test_odm import NS, export_bytes, parse_valid, spec_for
    from trials.exports import odm

    visit = signable(participant)
    signature = sign(participant, visit)
    spec = spec_for("datamanager", participant.trial.code)
    document = parse_valid(export_bytes(odm, spec)[0])
    found = document.findall(".//odm:Signature", NS)
    assert len(found) == 1
    event = found[0].getparent()
    assert event.tag == f"{{{odm.NS}}}StudyEventData" and event.get("StudyEventOID") == f"SE.{visit.definition.code}"
    assert event.getparent().get("SubjectKey") == participant.screening_number
    assert [etree.QName(child).localname for child in found[0]] == ["UserRef", "LocationRef", "SignatureRef", "DateTimeStamp"]
    assert datetime.fromisoformat(found[0].findtext("odm:DateTimeStamp", namespaces=NS)) == signature.signed_at
    user_oid = found[0].find("odm:UserRef", NS).get("UserOID")
    assert document.findtext(f".//odm:AdminData/odm:User[@OID='{user_oid}']/odm:LoginName", namespaces=NS) == "investigator.toulouse"
    definition = document.find(f".//odm:AdminData/odm:SignatureDef[@OID='{found[0].find('odm:SignatureRef', NS).get('SignatureOID')}']", NS)
    assert definition.get("Methodology") == "Electronic"
    assert definition.findtext("odm:Meaning", namespaces=NS) == "I have reviewed and approve these data."
    assert "21 CFR Part 11" in definition.findtext("odm:LegalReason", namespaces=NS)
    assert found[0].find("odm:LocationRef", NS).get("LocationOID") == event.getparent().find("odm:SiteRef", NS).get("LocationOID")

    save_vitals(visit, user("coordinator.toulouse"), revision=1, reason="Transcription error", heart_rate="72")
    document = parse_valid(export_bytes(odm, spec)[0])
    assert document.findall(".//odm:Signature", NS) == []
