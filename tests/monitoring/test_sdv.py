"""Source data verification: monitors mark complete entries verified at a revision; a later edit
resets the mark and says so; each trial's SDV plan decides what is in the backlog."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from edc.audit import system_user
from tests.monitoring.test_queries import registered, save_vitals
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.monitoring.models import SdvScope
from trials.records.models import SdvMark, SdvState
from trials.monitoring.sdv.services import sdv_backlog, sdv_plan_save, sdv_status_text, sdv_verify
from trials.protocol.models import Trial
from trials.visits.models import CrfEntry, EntryStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201, ARG001
    return registered()


@pytest.fixture
def vitals(participant):  # noqa: ANN001, ANN201
    return save_vitals(participant, user("coordinator.toulouse"))


def test_a_monitor_verifies_a_complete_entry_at_its_revision(vitals):
    monitor = user("monitor.du")
    mark = sdv_verify(entry=vitals, user=monitor)
    assert (mark.state, mark.entry_revision, mark.verified_by) == (SdvState.VERIFIED, 1, monitor)
    record = mark.history.get()
    assert record.history_user == monitor and "Source data verified" in record.history_change_reason
    assert "Source data verified on" in sdv_status_text(mark, vitals)


@pytest.mark.parametrize("username", ["coordinator.toulouse", "datamanager", "investigator.toulouse"])
def test_only_monitors_verify(vitals, username):
    with pytest.raises(PermissionDenied):
        sdv_verify(entry=vitals, user=user(username))
    assert not SdvMark.objects.exists()


def test_an_entry_in_progress_cannot_be_verified(participant):
    from tests.monitoring.test_queries import vitals_data
    from trials.visits.services import crf_entry_save

    visit = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order").first()
    result = crf_entry_save(user=user("coordinator.toulouse"), visit=visit, crf_code="VITALS", data=vitals_data(),
                            expected_revision=0, complete=False)
    assert result.entry.status == EntryStatus.IN_PROGRESS
    with pytest.raises(ValidationError, match="complete"):
        sdv_verify(entry=result.entry, user=user("monitor.du"))


def test_a_later_edit_resets_the_mark_and_says_by_whom_and_when(client, vitals, participant):
    monitor, coordinator = user("monitor.du"), user("coordinator.toulouse")
    sdv_verify(entry=vitals, user=monitor)
    assert not sdv_backlog(monitor).filter(pk=vitals.pk).exists()
    save_vitals(participant, coordinator, revision=1, reason="typo in the weight", weight_kg="61")
    mark = SdvMark.objects.get(entry=vitals)
    assert (mark.state, mark.reset_by, mark.entry_revision) == (SdvState.RESET, coordinator, 1)
    assert mark.reset_at is not None
    assert mark.history.first().history_user == coordinator
    assert "revision 1 → 2" in mark.history.first().history_change_reason
    text = sdv_status_text(mark, CrfEntry.objects.get(pk=vitals.pk))
    assert text.startswith("SDV reset by the change on ") and text.endswith("by Camille Martin")
    assert sdv_backlog(monitor).filter(pk=vitals.pk).exists()
    client.force_login(coordinator)
    page = client.get(reverse("crf_entry", args=[vitals.visit_id, "VITALS"])).content.decode()
    assert "SDV reset by the change on" in page
    # A second edit does not reset again (nothing left to reset); verifying again restores it.
    save_vitals(participant, coordinator, revision=2, reason="height", height_cm="166")
    assert SdvMark.objects.get(entry=vitals).history.count() == 2
    sdv_verify(entry=CrfEntry.objects.get(pk=vitals.pk), user=monitor)
    mark = SdvMark.objects.get(entry=vitals)
    assert (mark.state, mark.entry_revision, mark.reset_at, mark.reset_by) == (SdvState.VERIFIED, 3, None, None)


def test_the_default_plan_puts_every_complete_entry_in_the_backlog(vitals, participant):
    monitor = user("monitor.du")
    screening = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    assert set(sdv_backlog(monitor)) == {vitals, screening}
    sdv_verify(entry=screening, user=monitor)
    assert list(sdv_backlog(monitor)) == [vitals]
    # Other trials' monitors see nothing of it; the data manager of all sites sees it.
    assert not sdv_backlog(user("coordinator.toulouse")).exists()
    assert list(sdv_backlog(user("datamanager"), participant.trial)) == [vitals]


def test_a_critical_crfs_plan_keeps_only_those_crfs(vitals, participant):
    sdv_plan_save(trial=participant.trial, user=user("datamanager"), scope=SdvScope.CRITICAL, critical_crfs=["DU_ASSESS"],
                  reason="risk-based monitoring plan v2")
    assert [e.crf_code for e in sdv_backlog(user("monitor.du"))] == ["DU_ASSESS"]


def test_a_first_n_plan_keeps_the_first_participants_enrolled_at_each_site(demo):  # noqa: ARG001
    # registered(days=d) consents d days ago and enrols 10 days later: TLS enrolled 20, 30 and 25 days
    # ago (the first two by date are the 2nd and 3rd made), GRE 22 days ago.
    tls = [registered("TLS", days=d) for d in (30, 40, 35)]
    gre = registered("GRE", days=32)
    trial = gre.trial
    sdv_plan_save(trial=trial, user=user("datamanager"), scope=SdvScope.FIRST_N, first_n=2, reason="first two per site")
    participants = {e.participant_id for e in sdv_backlog(user("monitor.du"), trial)}
    assert participants == {tls[1].pk, tls[2].pk, gre.pk}


def test_the_backlog_is_one_query_whatever_its_size(demo, django_assert_num_queries):  # noqa: ARG001
    for days in (30, 40, 35):
        registered("TLS", days=days)
    trial = Trial.objects.get(code="ASC-DU")
    sdv_plan_save(trial=trial, user=user("datamanager"), scope=SdvScope.FIRST_N, first_n=2, reason="first two")
    monitor = user("monitor.du")
    backlog = sdv_backlog(monitor)  # reads the user's trials and their plans
    with django_assert_num_queries(1):
        assert len(list(backlog)) == 2


def test_critical_items_are_verified_one_by_one(vitals, participant):
    sdv_plan_save(trial=participant.trial, user=user("datamanager"), scope=SdvScope.ALL,
                  critical_items={"VITALS": ["systolic_bp", "diastolic_bp"]}, reason="BP is the safety endpoint")
    monitor = user("monitor.du")
    with pytest.raises(ValidationError, match="diastolic_bp"):
        sdv_verify(entry=vitals, user=monitor, items=["systolic_bp"])
    mark = sdv_verify(entry=vitals, user=monitor, items=["systolic_bp", "diastolic_bp"])
    assert mark.items == ["systolic_bp", "diastolic_bp"]


def test_only_data_managers_set_the_plan_and_it_is_checked(participant):
    trial = participant.trial
    with pytest.raises(PermissionDenied):
        sdv_plan_save(trial=trial, user=user("monitor.du"), scope=SdvScope.ALL, reason="x")
    with pytest.raises(ValidationError) as error:
        sdv_plan_save(trial=trial, user=user("datamanager"), scope=SdvScope.CRITICAL, critical_crfs=["NOPE"], reason="x")
    assert "critical_crfs" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        sdv_plan_save(trial=trial, user=user("datamanager"), scope=SdvScope.FIRST_N, reason="x")
    assert "first_n" in error.value.message_dict
    plan = sdv_plan_save(trial=trial, user=user("datamanager"), scope=SdvScope.FIRST_N, first_n=3, reason="plan v1")
    assert plan.history.get().history_change_reason == "plan v1"


def test_the_worklist_marks_selected_entries_verified_in_the_admin(client, vitals, participant):
    screening = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    client.force_login(user("monitor.du"))
    url = reverse("admin:monitoring_sdv_worklist")
    page = client.get(url).content.decode()
    assert f'data-entry="{vitals.pk}"' in page and "2 entries to verify" in page
    client.post(url, {"entry": [vitals.pk]})
    assert SdvMark.objects.get(entry=vitals).state == SdvState.VERIFIED
    assert not SdvMark.objects.filter(entry=screening).exists()
    verify = client.get(reverse("admin:monitoring_sdv_verify", args=[screening.pk])).content.decode()
    assert "raise a query" in verify and "Finger" in verify
    client.post(reverse("admin:monitoring_sdv_verify", args=[screening.pk]))
    assert SdvMark.objects.get(entry=screening).entry_revision == screening.revision


def test_a_coordinator_gets_no_admin_and_no_worklist(client, vitals):  # noqa: ARG001
    client.force_login(user("coordinator.toulouse"))
    response = client.get(reverse("admin:monitoring_sdv_worklist"))
    assert response.status_code in (302, 403)


def test_entries_of_another_site_are_404_in_the_verify_view(client, demo):  # noqa: ARG001
    from django.contrib.auth import get_user_model

    from trials.protocol.models import Site
    from trials.protocol.services import study_role_grant

    grenoble = registered("GRE")
    entry = CrfEntry.objects.get(participant=grenoble, crf_code="DU_ASSESS")
    monitor = get_user_model().objects.create_user("monitor.tls3", password="x")
    study_role_grant(user=monitor, trial=grenoble.trial, role="monitor", site=Site.objects.get(trial=grenoble.trial, code="TLS"),
                     granted_by=system_user(), reason="test")
    client.force_login(monitor)
    assert client.get(reverse("admin:monitoring_sdv_verify", args=[entry.pk])).status_code == 404
    assert not sdv_backlog(monitor).filter(pk=entry.pk).exists()
    with pytest.raises(PermissionDenied):
        sdv_verify(entry=entry, user=monitor)


def test_the_data_manager_sets_the_plan_in_the_admin_with_a_reason(client, participant):
    from trials.monitoring.models import SdvPlan

    client.force_login(user("datamanager"))
    url = reverse("admin:monitoring_sdvplan_add")
    data = {"trial": participant.trial_id, "scope": "critical", "critical_crfs": '["NOPE"]', "critical_items": "{}",
            "first_n": "", "change_reason": "monitoring plan v1"}
    response = client.post(url, data)
    assert response.status_code == 200 and "Not CRFs of this trial: NOPE" in response.content.decode()
    response = client.post(url, {**data, "critical_crfs": '["DU_ASSESS"]'})
    assert response.status_code == 302
    plan = SdvPlan.objects.get(trial=participant.trial)
    assert (plan.scope, plan.critical_crfs, plan.history.get().history_change_reason) == ("critical", ["DU_ASSESS"], "monitoring plan v1")
    client.force_login(user("monitor.du"))
    assert client.post(url, data).status_code == 403


def test_the_crf_entry_list_marks_selected_entries_verified(client, vitals):
    client.force_login(user("monitor.du"))
    url = reverse("admin:visits_crfentry_changelist")
    assert "sdv_mark_verified" in client.get(url).content.decode()
    client.post(url, {"action": "sdv_mark_verified", "_selected_action": [vitals.pk]})
    mark = SdvMark.objects.get(entry=vitals)
    assert (mark.state, mark.verified_by) == (SdvState.VERIFIED, user("monitor.du"))
