"""Saving CRF data: validated, conflict-safe, audited, scoped — through the page and the service."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import QueryDict
from django.urls import reverse

from tests.visits.conftest import iso, visit_with
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save

pytestmark = pytest.mark.django_db


def vitals_post(**overrides) -> dict:
    data = {
        "crf-height_cm": "165", "crf-weight_kg": "60", "crf-systolic_bp": "120", "crf-diastolic_bp": "80",
        "crf-heart_rate": "70", "crf-temperature_c": "", "revision": "0", "action": "complete",
    }
    data.update(overrides)
    return data


def as_querydict(data: dict) -> QueryDict:
    qd = QueryDict(mutable=True)
    for key, value in data.items():
        qd.setlist(key, value if isinstance(value, list) else [value])
    return qd


def test_save_writes_one_audited_row_with_scores(participant, coordinator, client):
    visit = visit_with(participant, "VITALS")
    client.force_login(coordinator)
    url = reverse("crf_entry", args=[visit.pk, "VITALS"])
    response = client.post(url, vitals_post())
    assert response.status_code == 302
    entry = CrfEntry.objects.get(visit=visit, crf_code="VITALS")
    assert (entry.status, entry.revision, entry.answers["bmi"]) == ("complete", 1, "22.0")
    record = entry.history.get()
    assert record.history_user == coordinator and record.history_change_reason == "Data entry"
    assert entry.score_library_version


def test_invalid_submission_shows_messages_on_fields_and_writes_nothing(participant, coordinator, client):
    visit = visit_with(participant, "VITALS")
    client.force_login(coordinator)
    response = client.post(reverse("crf_entry", args=[visit.pk, "VITALS"]), vitals_post(**{"crf-weight_kg": "abc", "crf-diastolic_bp": "150"}))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Nothing was saved" in page and "Enter a number." in page and "lower than the systolic" in page
    assert not CrfEntry.objects.filter(visit=visit, crf_code="VITALS").exists()


def test_stale_revision_is_a_conflict_and_nothing_is_overwritten(participant, coordinator, client):
    visit = visit_with(participant, "VITALS")
    client.force_login(coordinator)
    url = reverse("crf_entry", args=[visit.pk, "VITALS"])
    client.post(url, vitals_post(action="save"))
    # A second coordinator's form was opened at revision 0 too.
    response = client.post(url, vitals_post(**{"crf-heart_rate": "99"}))
    assert response.status_code == 409
    assert "changed while you were editing" in response.content.decode()
    entry = CrfEntry.objects.get(visit=visit, crf_code="VITALS")
    assert entry.answers["heart_rate"] == 70 and entry.revision == 1


def test_changing_a_complete_entry_needs_a_reason(participant, coordinator):
    visit = visit_with(participant, "VITALS")
    crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post()), expected_revision=0, complete=True)
    changed = as_querydict(vitals_post(**{"crf-heart_rate": "72", "revision": "1"}))
    result = crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=changed, expected_revision=1, complete=True)
    assert not result.saved and "give a reason" in str(result.outcome.errors)
    result = crf_entry_save(
        user=coordinator, visit=visit, crf_code="VITALS", data=changed, expected_revision=1, complete=True, reason="transcription error"
    )
    assert result.saved
    record = CrfEntry.objects.get(visit=visit, crf_code="VITALS").history.first()
    assert record.history_change_reason == "transcription error"
    delta = record.diff_against(record.prev_record)
    assert [c.field for c in delta.changes] == ["answers", "revision"]


def test_soft_warning_needs_confirmation_and_is_kept(participant, coordinator):
    visit = visit_with(participant, "DU_ASSESS")
    data = {
        "crf-assessment_date": iso(1), "crf-number_active_du": "1", "revision": "0",
        "ulcers-TOTAL_FORMS": "1", "ulcers-INITIAL_FORMS": "0",
        "ulcers-0-ulcer_id": "U1", "ulcers-0-hand": "right", "ulcers-0-location": "palm",
        "ulcers-0-beyond_pip": "true", "ulcers-0-ischemic": "true", "ulcers-0-over_calcinosis": "false",
        "ulcers-0-active": "true", "ulcers-0-due_to_other_condition": "false",
        "ulcers-0-osteomyelitis_or_uncontrolled_infection": "false", "ulcers-0-infected_requiring_systemic_antibiotics": "false",
        "ulcers-0-requires_urgent_surgery": "false",
    }
    result = crf_entry_save(user=coordinator, visit=visit, crf_code="DU_ASSESS", data=as_querydict(data), expected_revision=0, complete=True)
    assert result.needs_confirmation and not result.saved and not CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").exists()
    result = crf_entry_save(
        user=coordinator, visit=visit, crf_code="DU_ASSESS", data=as_querydict(data), expected_revision=0, complete=True, confirm_warnings=True
    )
    assert result.saved
    entry = CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS")
    assert entry.warnings[0]["confirmed_by"] == "coordinator.toulouse"
    assert len(entry.answers["ulcers"]) == 1 and len(entry.answers["ulcers"][0]["_row_id"]) == 32


def test_other_sites_and_non_entry_roles_cannot_save(participant):
    User = get_user_model()
    visit = visit_with(participant, "VITALS")
    for username in ("coordinator.mexico", "monitor.du", "sponsor.toulouse"):
        with pytest.raises(PermissionDenied):
            crf_entry_save(user=User.objects.get(username=username), visit=visit, crf_code="VITALS", data=as_querydict(vitals_post()), expected_revision=0, complete=True)
    assert not CrfEntry.objects.filter(visit=visit, crf_code="VITALS").exists()


def test_pages_of_another_sites_participant_are_404(participant, client):
    client.force_login(get_user_model().objects.get(username="coordinator.mexico"))
    visit = visit_with(participant, "VITALS")
    assert client.get(reverse("participant_dashboard", args=[participant.pk])).status_code == 404
    assert client.get(reverse("crf_entry", args=[visit.pk, "VITALS"])).status_code == 404
    assert client.post(reverse("crf_entry", args=[visit.pk, "VITALS"]), vitals_post()).status_code == 404


def test_crf_not_due_at_the_visit_is_404(participant, coordinator, client):
    client.force_login(coordinator)
    visit = visit_with(participant, "VITALS")
    assert client.get(reverse("crf_entry", args=[visit.pk, "INFUSION"])).status_code == 404


def test_live_evaluation_returns_only_changed_items_and_saves_nothing(participant, coordinator, client):
    client.force_login(coordinator)
    visit = visit_with(participant, "DEMOG")
    url = reverse("crf_entry", args=[visit.pk, "DEMOG"])
    data = {"crf-smoking_status": "former", "crf-date_of_birth": "1960-01-01", "_shown": ["date_of_birth", "smoking_status"], "revision": "0"}
    response = client.post(url, data, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert 'id="w-smoking_stop_date" hx-swap-oob="true"' in page  # newly shown
    assert 'id="w-date_of_birth"' not in page  # untouched: what is being typed is never replaced
    assert 'data-testid="calc-age_years"' in page
    assert not CrfEntry.objects.filter(visit=visit, crf_code="DEMOG").exists()


def test_dashboard_query_count_does_not_grow_with_visits(participant, coordinator, client, django_assert_max_num_queries):
    from edc.audit import audited_save
    from trials.visits.models import Visit

    client.force_login(coordinator)
    url = reverse("participant_dashboard", args=[participant.pk])
    client.get(url)
    # The grid, the summary (roles, allocation, consent, next visit), open queries; and (issue 15) the
    # logs: the trial's log CRFs, the records, their entries.
    with django_assert_max_num_queries(18) as few:
        client.get(url)
    definition = participant.visits.first().definition
    for sequence in range(2, 43):
        audited_save(Visit(participant=participant, definition=definition, sequence=sequence, label="extra", order=99), user=coordinator, reason="t")
    with django_assert_max_num_queries(len(few.captured_queries)) :
        response = client.get(url)
    assert response.content.decode().count('data-testid="chip-') > 50


def test_ulcer_rows_are_carried_to_the_next_visit_with_their_identity(participant, coordinator, client):
    first, later = participant.visits.filter(definition__visit_crfs__crf_code="DU_ASSESS").exclude(crf_entries__crf_code="DU_ASSESS").order_by("order")[:2]
    row = {
        "ulcer_id": "U1", "hand": "left", "location": "periungual", "finger": "3", "beyond_pip": "true", "ischemic": "true",
        "over_calcinosis": "false", "active": "true", "due_to_other_condition": "false",
        "osteomyelitis_or_uncontrolled_infection": "false", "infected_requiring_systemic_antibiotics": "false",
        "requires_urgent_surgery": "false",
    }
    data = {"crf-assessment_date": iso(1), "crf-number_active_du": "1", "ulcers-TOTAL_FORMS": "1", "ulcers-INITIAL_FORMS": "0"}
    data.update({f"ulcers-0-{k}": v for k, v in row.items()})
    result = crf_entry_save(user=coordinator, visit=first, crf_code="DU_ASSESS", data=as_querydict(data), expected_revision=0, complete=True, confirm_warnings=True)
    assert result.saved, (result.outcome.errors, result.outcome.row_errors)
    row_id = CrfEntry.objects.get(visit=first).answers["ulcers"][0]["_row_id"]
    client.force_login(coordinator)
    page = client.get(reverse("crf_entry", args=[later.pk, "DU_ASSESS"])).content.decode()
    assert f'value="{row_id}"' in page and 'value="U1"' in page
    assert 'id="id_ulcers-0-ischemic_0" checked' not in page  # only identity and location are carried
