"""Writes of AEs, query answers and closes, and visit dates through the API: the pages' services
(audit, locks, reporting clocks, roles), with 400 naming the field, 403 for a role or a missing
consent, 404 outside the token's sites, 409 under a lock."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone

from edc.audit import audited_save, system_user
from trials.monitoring.models import Query
from trials.monitoring.queries.services import query_raise
from trials.participants.services import participant_screen
from trials.protocol.models import Site
from trials.records.locks import lock_apply
from trials.records.models import LockKind, LockLevel
from trials.safety.models import AdverseEvent, ReportingClock
from trials.visits.models import VisitStatus
from trials.visits.services import crf_entry_save_answers

# 10 November 2026, noon in Toulouse (Europe/Paris is UTC+1 after the last Sunday of October).
NOW = datetime(2026, 11, 10, 11, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def person(username: str):
    return get_user_model().objects.get(username=username)


def lock(target, level=LockLevel.PARTICIPANT):
    return lock_apply(level=level, target=target, kind=LockKind.LOCK, user=person("datamanager"), reason="Interim analysis")


AE = {
    "verbatim_term": "Headache", "onset_date": "2026-11-05", "ongoing": True, "grade": 1, "seriousness": [],
    "related_product": "not_related", "procedure": "none", "related_procedure": "not_related", "action_taken": "none",
    "outcome": "not_recovered", "aware_at": "2026-11-06T09:00",
}


def test_ae_record_follow_up_and_reason(client_for, tls):
    client = client_for("coordinator", scope="write")
    created = client.post("/api/v1/adverse-events/", {**AE, "participant": tls.pk}, format="json")
    assert created.status_code == 201, created.json()
    ae = created.json()
    assert ae["number"] == 1 and ae["verbatim_term"] == "Headache" and ae["serious"] is False
    # 09:00 without an offset is Toulouse time, as typed on the form: 08:00 UTC in November.
    assert AdverseEvent.objects.get(pk=ae["id"]).aware_at == datetime(2026, 11, 6, 8, 0, tzinfo=UTC)
    url = f"/api/v1/adverse-events/{ae['id']}/"
    follow_up = {"ongoing": False, "end_date": "2026-11-08", "outcome": "recovered"}
    no_reason = client.patch(url, follow_up, format="json")
    assert no_reason.status_code == 400 and list(no_reason.json()) == ["reason"]
    saved = client.patch(url, {**follow_up, "reason": "Resolved, seen at the visit"}, format="json")
    assert saved.status_code == 200, saved.json()
    assert saved.json()["outcome"] == "recovered" and saved.json()["end_date"] == "2026-11-08"
    stored = AdverseEvent.objects.get(pk=ae["id"])
    assert stored.history.latest().history_change_reason == "Resolved, seen at the visit"
    assert stored.history.latest().history_user.username == "coordinator.toulouse"
    # Serious from now on: the 24-hour clock starts (ICH E6(R2) 4.11.1), from the awareness time given.
    serious = client.put(url, {
        **AE, **follow_up, "grade": 3, "seriousness": ["hospitalisation"], "serious_aware_at": "2026-11-09T10:00",
        "reason": "Hospitalised on 9 November",
    }, format="json")
    assert serious.status_code == 200, serious.json()
    clock = ReportingClock.objects.get(adverse_event=stored)
    assert clock.kind == "sae_24h" and clock.due_at == datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # 10:00 Paris = 09:00 UTC, + 24 h


def test_ae_bad_values_are_400_naming_the_field(client_for, tls):
    client = client_for("coordinator", scope="write")
    cases = [
        ({"end_date": "2026-11-01", "ongoing": False}, "end_date"),  # before the onset
        ({"grade": 7}, "grade"),
        ({"onset_date": "2026-12-01"}, "onset_date"),  # in the future
        ({"onset_date": "1700-01-01"}, "onset_date"),
        ({"outcome": "fatal"}, "outcome"),  # fatal is grade 5
        ({"coded_term": "99999999"}, "coded_term"),
        ({"seriousness": ["bored"]}, "seriousness"),
    ]
    for change, field in cases:
        answer = client.post("/api/v1/adverse-events/", {**AE, **change, "participant": tls.pk}, format="json")
        assert answer.status_code == 400 and field in answer.json(), (change, answer.json())
    missing = client.post("/api/v1/adverse-events/", {"participant": tls.pk}, format="json")
    assert missing.status_code == 400 and {"verbatim_term", "onset_date", "grade", "aware_at", "outcome"} <= set(missing.json())
    assert client.post("/api/v1/adverse-events/", {**AE, "participant": "x"}, format="json").status_code == 400
    assert client.post("/api/v1/adverse-events/", [AE], format="json").status_code == 400
    assert not AdverseEvent.objects.exists()


def test_ae_roles_consent_scope_and_locks(client_for, tls, mrs):
    for role in ("monitor", "sponsor", "dsmb"):
        answer = client_for(role, scope="write").post("/api/v1/adverse-events/", {**AE, "participant": tls.pk}, format="json")
        assert answer.status_code in ({403} if role != "dsmb" else {403, 404}), (role, answer.status_code)
    assert client_for("coordinator").post("/api/v1/adverse-events/", {**AE, "participant": tls.pk}, format="json").status_code == 403  # a read token
    client = client_for("coordinator", scope="write")
    assert client.post("/api/v1/adverse-events/", {**AE, "participant": mrs.pk}, format="json").status_code == 404  # Marseille
    screened = participant_screen(site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(), screening_date=timezone.localdate())
    unconsented = client.post("/api/v1/adverse-events/", {**AE, "participant": screened.pk}, format="json")
    assert unconsented.status_code == 403 and "consent" in unconsented.json()["detail"]
    theirs = AdverseEvent.objects.get(pk=client_for("coordinator", scope="write").post(
        "/api/v1/adverse-events/", {**AE, "participant": tls.pk}, format="json").json()["id"])
    lock(tls)
    locked = client.patch(f"/api/v1/adverse-events/{theirs.pk}/", {"grade": 2, "reason": "Worse"}, format="json")
    assert locked.status_code == 409 and locked.json()["code"] == "locked"
    assert client.post("/api/v1/adverse-events/", {**AE, "participant": tls.pk}, format="json").status_code == 409
    assert AdverseEvent.objects.get(pk=theirs.pk).grade == 1 and AdverseEvent.objects.count() == 1
    other = audited_save(AdverseEvent(
        participant=mrs, number=1, verbatim_term="Rash", onset_date=timezone.localdate(), grade=1, related_product="not_related",
        procedure="none", related_procedure="not_related", action_taken="none", outcome="not_recovered", aware_at=timezone.now(),
    ), user=system_user(), reason="Marseille's AE")
    assert client.patch(f"/api/v1/adverse-events/{other.pk}/", {"grade": 2, "reason": "x"}, format="json").status_code == 404


def _vitals_entry(participant):
    visit = participant.visits.get(definition__code="SCREEN")
    return crf_entry_save_answers(
        user=person("coordinator.toulouse") if participant.site.code == "TLS" else system_user(), visit=visit, crf_code="VITALS",
        complete=True, reason="", answers={"height_cm": 170, "weight_kg": 70, "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
    )


def test_query_answer_and_close(client_for, tls):
    entry = _vitals_entry(tls)
    query = query_raise(user=person("monitor.du"), entry=entry, item="heart_rate", text="Heart rate 70: please confirm.")
    site, monitor = client_for("coordinator", scope="write"), client_for("monitor", scope="write")
    url = f"/api/v1/queries/{query.pk}/"
    empty = site.post(f"{url}answer/", {"text": "  "}, format="json")
    assert empty.status_code == 400 and list(empty.json()) == ["text"]
    assert monitor.post(f"{url}answer/", {"text": "Confirmed"}, format="json").status_code == 403
    assert client_for("coordinator").post(f"{url}answer/", {"text": "Confirmed"}, format="json").status_code == 403  # read token
    answered = site.post(f"{url}answer/", {"text": "Confirmed against the source."}, format="json")
    assert answered.status_code == 200 and answered.json()["state"] == "answered"
    assert [m["kind"] for m in answered.json()["messages"]] == ["raise", "answer"]
    again = site.post(f"{url}answer/", {"text": "Again"}, format="json")
    assert again.status_code == 400 and "non_field_errors" in again.json()
    assert site.post(f"{url}close/", {"justification": "ok"}, format="json").status_code == 403
    unchanged = monitor.post(f"{url}close/", {}, format="json")
    assert unchanged.status_code == 400 and list(unchanged.json()) == ["justification"]  # the value did not change
    closed = monitor.post(f"{url}close/", {"justification": "Source document verified."}, format="json")
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    stored = Query.objects.get(pk=query.pk)
    assert stored.state == "closed" and stored.closed_by.username == "monitor.du"
    assert stored.history.latest().history_user.username == "monitor.du"


def test_query_scope_and_lock(client_for, tls, mrs):
    theirs = query_raise(user=person("datamanager"), entry=_vitals_entry(mrs), item="", text="Check the entry.")
    site = client_for("coordinator", scope="write")
    assert site.post(f"/api/v1/queries/{theirs.pk}/answer/", {"text": "x"}, format="json").status_code == 404
    ours = query_raise(user=person("monitor.du"), entry=_vitals_entry(tls), item="", text="Check the entry.")
    lock(tls)
    locked = site.post(f"/api/v1/queries/{ours.pk}/answer/", {"text": "Checked."}, format="json")
    assert locked.status_code == 409 and locked.json()["code"] == "locked"
    assert Query.objects.get(pk=ours.pk).state == "open"


def test_visit_date_record_correct_and_refusals(client_for, tls, mrs):
    visit = tls.visits.filter(definition__isnull=False, visit_date__isnull=True, record_kind="visit").exclude(definition__code="SCREEN").order_by("order").first()
    client = client_for("coordinator", scope="write")
    url = f"/api/v1/visits/{visit.pk}/date/"
    day = timezone.localdate() - timedelta(days=1)
    recorded = client.post(url, {"visit_date": day.isoformat()}, format="json")
    assert recorded.status_code == 200, recorded.json()
    assert recorded.json()["visit_date"] == day.isoformat() and recorded.json()["status"] == VisitStatus.DONE
    earlier = (day - timedelta(days=1)).isoformat()
    no_reason = client.post(url, {"visit_date": earlier}, format="json")
    assert no_reason.status_code == 400 and list(no_reason.json()) == ["reason"]
    corrected = client.post(url, {"visit_date": earlier, "reason": "Typo: the visit was the day before"}, format="json")
    assert corrected.status_code == 200 and corrected.json()["visit_date"] == earlier
    visit.refresh_from_db()
    assert visit.history.latest().history_change_reason == "Typo: the visit was the day before"
    future = client.post(url, {"visit_date": (timezone.localdate() + timedelta(days=3)).isoformat(), "reason": "x"}, format="json")
    assert future.status_code == 400 and list(future.json()) == ["visit_date"]
    assert client.post(url, {"visit_date": "31/12/2026"}, format="json").status_code == 400
    assert client_for("monitor", scope="write").post(url, {"visit_date": earlier}, format="json").status_code == 403
    theirs = mrs.visits.filter(definition__isnull=False).first()
    assert client.post(f"/api/v1/visits/{theirs.pk}/date/", {"visit_date": earlier}, format="json").status_code == 404
    lock(visit, level=LockLevel.VISIT)
    locked = client.post(url, {"visit_date": day.isoformat(), "reason": "Back"}, format="json")
    assert locked.status_code == 409 and locked.json()["code"] == "locked"
    visit.refresh_from_db()
    assert visit.visit_date.isoformat() == earlier
