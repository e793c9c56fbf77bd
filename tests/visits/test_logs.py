"""Logs outside visits (issue 15): concomitant medications and medical history kept with the
participant, each record a CRF entry with the same audit, checks, locks, queries, SDV and
signatures as a visit's; and CRFs the trial allows at unscheduled visits."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.demo.participants import participant_register
from trials.monitoring.queries import services as q
from trials.monitoring.models import Query
from trials.monitoring.sdv.services import sdv_verify
from trials.protocol.models import Site
from trials.records.locks import lock_apply
from trials.records.models import LockKind, LockLevel, SdvState
from trials.visits import schedule
from trials.visits.models import CrfEntry, EntryStatus, RecordKind, Visit
from trials.visits.services import crf_entry_for, crf_entry_save, crf_entry_save_answers, log_record_add

pytestmark = pytest.mark.django_db

# Noon in Toulouse: the site's date and the UTC date agree (docs/architecture.md, "Tests").
NOW = "2026-03-16T11:00:00+00:00"


@pytest.fixture(autouse=True)
def noon():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def coordinator(demo):  # noqa: ANN001, ANN201, ARG001
    return user("coordinator.toulouse")


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201, ARG001
    """A consented, enrolled participant of ASC-DU at Toulouse."""
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=10),
    )


def nifedipine(**overrides) -> dict:  # noqa: ANN003
    return {
        "medication": "nifedipine", "drug_class": "calcium_channel_blocker", "indication": "Raynaud's phenomenon",
        "dose": "30", "dose_unit": "mg", "route": "oral", "frequency": "QD", "start_date": date(2025, 6, 1),
        "ongoing": True, **overrides,
    }


def add_medication(participant, actor, answers: dict):  # noqa: ANN001, ANN201
    record = log_record_add(user=actor, participant=participant, crf_code="CONMED")
    return crf_entry_save_answers(user=actor, visit=record, crf_code="CONMED", answers=answers, complete=True, reason="")


def form_data(answers: dict[str, str], *, revision: int = 0) -> QueryDict:
    data = QueryDict(mutable=True)
    data.update({f"crf-{name}": value for name, value in answers.items()})
    data.update({"revision": str(revision), "action": "complete"})
    return data


# --- Records of the log -----------------------------------------------------------------------


def test_a_medication_is_added_to_the_log_and_changed_with_an_audited_reason(participant, coordinator):
    entry = add_medication(participant, coordinator, nifedipine())
    record = entry.visit
    assert (record.record_kind, record.log_crf_code, record.sequence, record.definition_id) == (RecordKind.LOG, "CONMED", 1, None)
    assert entry.answers["medication"] == "nifedipine" and entry.status == EntryStatus.COMPLETE
    # The log record is not a visit of the plan: no calendar, not in the visit grid.
    assert not participant.visits.filter(record_kind=RecordKind.VISIT, pk=record.pk).exists()

    with pytest.raises(ValidationError, match="give a reason"):
        crf_entry_save_answers(user=coordinator, visit=record, crf_code="CONMED", answers=nifedipine(dose="60"), complete=True, reason="")
    crf_entry_save_answers(
        user=coordinator, visit=record, crf_code="CONMED",
        answers=nifedipine(ongoing=False, stop_date=date(2026, 3, 1), stop_reason="dose_change"), complete=True,
        reason="Dose doubled on 1 March: a new record follows",
    )
    history = list(CrfEntry.history.filter(id=entry.pk).order_by("history_date", "history_id"))  # ties: the save order
    assert [h.history_change_reason for h in history] == ["Data entry", "Dose doubled on 1 March: a new record follows"]
    assert [h.history_user.username for h in history] == ["coordinator.toulouse"] * 2
    assert Visit.history.filter(id=record.pk).first().history_change_reason == "Prior and concomitant medications record 1 added"

    second = add_medication(participant, coordinator, nifedipine(dose="60", start_date=date(2026, 3, 1)))
    assert second.visit.sequence == 2


@pytest.mark.parametrize(("answers", "item", "message"), [
    # CDASH CM: an end date is not before the start date; an ongoing medication has no end date.
    (nifedipine(ongoing=False, stop_date=date(2025, 5, 1)), "stop_date", "The stop date cannot be before the start date."),
    (nifedipine(ongoing=False), "stop_date", "A medication that is not ongoing needs its stop date."),
])
def test_dates_of_a_medication_are_checked_and_nothing_is_written(participant, coordinator, answers, item, message):
    record = log_record_add(user=coordinator, participant=participant, crf_code="CONMED")
    with pytest.raises(ValidationError) as error:
        crf_entry_save_answers(user=coordinator, visit=record, crf_code="CONMED", answers=answers, complete=True, reason="")
    assert message in error.value.message_dict[item]
    assert not CrfEntry.objects.filter(visit=record).exists()


def test_an_ongoing_medication_keeps_no_stop_date(participant, coordinator):
    """Ongoing xor a stop date: the stop date is asked only when the medication is not ongoing."""
    entry = add_medication(participant, coordinator, nifedipine(ongoing=True, stop_date=date(2025, 7, 1)))
    assert entry.answers.get("stop_date") is None


def test_a_log_crf_is_only_entered_in_its_own_record(participant, coordinator):
    record = log_record_add(user=coordinator, participant=participant, crf_code="CONMED")
    with pytest.raises(ValidationError, match="not part of this visit"):
        crf_entry_for(record, "MEDHIST")
    with pytest.raises(ValidationError, match="not a log of this trial"):
        log_record_add(user=coordinator, participant=participant, crf_code="VITALS")


def test_a_log_record_takes_no_visit_date_and_is_never_missed(participant, coordinator):
    record = log_record_add(user=coordinator, participant=participant, crf_code="MEDHIST")
    with pytest.raises(ValidationError, match="log record has no visit date"):
        schedule.visit_record_date(record, user=coordinator, visit_date=timezone.localdate(), reason="")
    with pytest.raises(ValidationError, match="log record has no visit date"):
        schedule.visit_mark(record, user=coordinator, status="not_done", reason="no")


def test_only_the_sites_data_entry_staff_add_to_the_log(participant):
    for username in ("coordinator.mexico", "monitor.du", "sponsor.toulouse"):  # another trial, a reviewer, a sponsor
        with pytest.raises(PermissionDenied):
            log_record_add(user=user(username), participant=participant, crf_code="MEDHIST")
    assert not participant.visits.filter(record_kind=RecordKind.LOG).exists()


def test_a_locked_participant_refuses_new_records_and_edits(participant, coordinator):
    entry = add_medication(participant, coordinator, nifedipine())
    lock_apply(level=LockLevel.PARTICIPANT, target=participant, kind=LockKind.LOCK, user=user("datamanager"), reason="Database lock")
    with pytest.raises(ValidationError, match="locked"):
        log_record_add(user=coordinator, participant=participant, crf_code="CONMED")
    with pytest.raises(ValidationError, match="locked"):
        crf_entry_save_answers(user=coordinator, visit=entry.visit, crf_code="CONMED", answers=nifedipine(dose="10"), complete=True, reason="typo")
    with pytest.raises(ValidationError, match="locked"):
        crf_entry_save(
            user=coordinator, visit=entry.visit, crf_code="CONMED", expected_revision=1, complete=True, reason="typo",
            data=form_data({"medication": "nifedipine", "drug_class": "calcium_channel_blocker", "indication": "Raynaud",
                            "start_date": "2025-06-01", "ongoing": "true"}, revision=1),
        )
    entry.refresh_from_db()
    assert entry.revision == 1 and entry.answers["dose"] == "30"


def test_a_monitor_queries_a_log_entry_and_an_edit_resets_its_sdv(participant, coordinator):
    entry = add_medication(participant, coordinator, nifedipine())
    query = q.query_raise(user=user("monitor.du"), entry=entry, item="dose", text="The prescription says 20 mg.")
    assert Query.objects.get(pk=query.pk).entry_id == entry.pk
    mark = sdv_verify(entry=entry, user=user("monitor.du"))
    crf_entry_save_answers(user=coordinator, visit=entry.visit, crf_code="CONMED", answers=nifedipine(dose="20"), complete=True, reason="Query: prescription")
    mark.refresh_from_db()
    assert mark.state == SdvState.RESET


def test_the_log_is_entered_through_its_page(participant, coordinator, client):
    client.force_login(coordinator)
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk]))
    assert b'data-testid="log-CONMED"' in dashboard.content and b"Add a record" in dashboard.content
    response = client.post(reverse("log_record_add", args=[participant.pk, "CONMED"]))
    record = participant.visits.get(record_kind=RecordKind.LOG, log_crf_code="CONMED")
    assert response.status_code == 302 and response["Location"] == reverse("crf_entry", args=[record.pk, "CONMED"])
    url = reverse("crf_entry", args=[record.pk, "CONMED"])
    answers = {"medication": "atorvastatin", "drug_class": "statin", "indication": "Dyslipidaemia", "start_date": "2025-01-10",
               "ongoing": "false", "stop_date": "2024-12-01"}
    page = client.post(url, {**{f"crf-{k}": v for k, v in answers.items()}, "revision": "0", "action": "complete"})
    assert page.status_code == 200 and "The stop date cannot be before the start date." in page.content.decode()
    assert not CrfEntry.objects.filter(visit=record).exists()
    answers["stop_date"] = "2025-12-01"
    page = client.post(url, {**{f"crf-{k}": v for k, v in answers.items()}, "revision": "0", "action": "complete"})
    assert page.status_code == 302, page.content.decode()[:2000]
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk]))
    assert b"atorvastatin" in dashboard.content and b"Statin" in dashboard.content


# --- CRFs at unscheduled visits ---------------------------------------------------------------


def test_a_coordinator_fills_a_crf_the_trial_allows_at_an_unscheduled_visit(participant, coordinator, client):
    visit = schedule.visit_add_unscheduled(
        participant, user=coordinator, label="Ulcer check", planned_date=timezone.localdate(), reason="New ulcer reported by phone",
    )
    result = crf_entry_save(
        user=coordinator, visit=visit, crf_code="VITALS", expected_revision=0, complete=True,
        data=form_data({"height_cm": "165", "weight_kg": "60", "systolic_bp": "120", "diastolic_bp": "80", "heart_rate": "70"}),
    )
    assert result.saved, result.outcome.errors
    entry = CrfEntry.objects.get(visit=visit, crf_code="VITALS")
    assert CrfEntry.history.get(id=entry.pk).history_user.username == "coordinator.toulouse"
    # ASC-DU allows DU_ASSESS, VITALS and LABS there (seeds/001…yaml `unscheduled`); not DEMOG.
    with pytest.raises(ValidationError, match="not part of this visit"):
        crf_entry_save(user=coordinator, visit=visit, crf_code="DEMOG", data=form_data({}), expected_revision=0, complete=True)
    client.force_login(coordinator)
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    for code in ("DU_ASSESS", "VITALS", "LABS"):
        assert reverse("crf_entry", args=[visit.pk, code]) in dashboard
