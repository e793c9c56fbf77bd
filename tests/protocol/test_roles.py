"""Study roles: a user sees only their trials and sites; blinded roles are known as such."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from edc.audit import system_user
from trials.protocol import selectors
from trials.protocol.models import Site, StudyRole, Trial
from trials.protocol.services import study_role_grant, study_role_revoke

pytestmark = pytest.mark.django_db


def user(username):
    return get_user_model().objects.get(username=username)


def test_coordinator_sees_only_her_sites(demo_users):
    coordinator = user("coordinator.toulouse")
    assert set(selectors.trials_for_user(coordinator).values_list("code", flat=True)) == {"ASC-DU", "SSC-FATGRAFT-REG"}
    sites = selectors.sites_for_user(coordinator)
    assert {(s.trial.code, s.code) for s in sites} == {("ASC-DU", "TLS"), ("SSC-FATGRAFT-REG", "TLS")}


def test_all_sites_role_sees_every_site_of_its_trials_only(demo_users):
    sponsor = user("sponsor.toulouse")
    assert selectors.sites_for_user(sponsor).count() == Site.objects.filter(trial__code="ASC-DU").count() == 7


def test_blinding_by_role(demo_users):
    du = Trial.objects.get(code="ASC-DU")
    assert not selectors.user_sees_allocation(user("coordinator.toulouse"), du)
    assert not selectors.user_sees_allocation(user("sponsor.toulouse"), du)
    assert not selectors.user_sees_allocation(user("datamanager"), du)
    assert selectors.user_sees_allocation(user("dsmb.statistician"), du)
    # Open-label: nothing to hide.
    assert selectors.user_sees_allocation(user("coordinator.mexico"), Trial.objects.get(code="ADSVF-SSC-HANDS"))


def test_site_must_belong_to_the_trial(demo_users):
    du = Trial.objects.get(code="ASC-DU")
    mexico = Site.objects.get(trial__code="ADSVF-SSC-HANDS")
    with pytest.raises(ValidationError, match="does not belong"):
        study_role_grant(user=user("coordinator.toulouse"), trial=du, site=mexico, role="coordinator", granted_by=system_user(), reason="x")


def test_grant_is_idempotent_and_revoke_keeps_history(demo_users):
    du = Trial.objects.get(code="ASC-DU")
    tls = Site.objects.get(trial=du, code="TLS")
    coordinator = user("coordinator.toulouse")
    before = StudyRole.history.count()
    role = study_role_grant(user=coordinator, trial=du, site=tls, role="coordinator", granted_by=system_user(), reason="again")
    assert StudyRole.history.count() == before
    study_role_revoke(study_role=role, revoked_by=system_user(), reason="left the site")
    assert not selectors.sites_for_user(coordinator).filter(trial=du).exists()
    assert role.history.first().history_change_reason == "left the site"


def test_monitor_gets_admin_and_sees_only_his_trials_there(demo_users, client):
    monitor = user("monitor.du")
    assert monitor.is_staff and selectors.user_home(monitor) == "admin"
    client.force_login(monitor)
    assert client.get(reverse("home")).url == reverse("admin:index")
    page = client.get(reverse("admin:protocol_trial_changelist"))
    assert page.status_code == 200
    assert "ASC-DU" in page.content.decode() and "EASC-RA" not in page.content.decode()
    sites = client.get(reverse("admin:protocol_site_changelist")).content.decode()
    assert "Toulouse" in sites and "Lille" not in sites
    # Monitors read; they do not edit the protocol.
    trial = Trial.objects.get(code="ASC-DU")
    response = client.post(reverse("admin:protocol_trial_change", args=[trial.pk]), {"title": "changed"})
    assert response.status_code == 403


def test_data_manager_edit_in_admin_needs_a_reason(demo_users, client):
    client.force_login(user("datamanager"))
    site = Site.objects.get(trial__code="ASC-DU", code="GRE")
    url = reverse("admin:protocol_site_change", args=[site.pk])
    form = {
        "trial": site.trial_id, "code": site.code, "name": site.name, "city": site.city, "country": site.country,
        "time_zone": site.time_zone, "recruitment_status": "recruiting", "principal_investigator": site.principal_investigator,
        "is_active": "on",
    }
    response = client.post(url, form)
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    site.refresh_from_db()
    assert site.recruitment_status == "not_yet_recruiting"
    response = client.post(url, {**form, "change_reason": "Initiation visit done"})
    assert response.status_code == 302
    record = Site.objects.get(pk=site.pk).history.first()
    assert (record.recruitment_status, record.history_user.username, record.history_change_reason) == (
        "recruiting", "datamanager", "Initiation visit done",
    )


def test_coordinator_home_lists_trials_and_sites(demo_users, client):
    client.force_login(user("coordinator.mexico"))
    page = client.get(reverse("home")).content.decode()
    assert "ADSVF-SSC-HANDS" in page and "SSC-FATGRAFT-REG" in page
    assert "INCMNSZ" in page and "ASC-DU" not in page


def test_trial_page_of_another_trial_is_404(demo_users, client):
    client.force_login(user("coordinator.mexico"))
    assert client.get(reverse("trial_detail", args=["ASC-DU"])).status_code == 404
    page = client.get(reverse("trial_detail", args=["ADSVF-SSC-HANDS"]))
    assert page.status_code == 200 and "Visit schedule" in page.content.decode()


def test_reloading_seeds_keeps_the_recruitment_status_set_in_the_admin(demo_users, client):
    from tests.conftest import SEEDS
    from trials.protocol.loader import protocol_load

    client.force_login(user("datamanager"))
    site = Site.objects.get(trial__code="ASC-DU", code="LIL")
    client.post(
        reverse("admin:protocol_site_change", args=[site.pk]),
        {"recruitment_status": "recruiting", "principal_investigator": site.principal_investigator, "change_reason": "SIV done"},
    )
    assert not protocol_load([SEEDS], user=system_user()).changed
    assert Site.objects.get(pk=site.pk).recruitment_status == "recruiting"


def test_protocol_definitions_are_read_only_in_the_admin(demo_users, client):
    client.force_login(user("datamanager"))
    site = Site.objects.get(trial__code="ASC-DU", code="LIL")
    client.post(
        reverse("admin:protocol_site_change", args=[site.pk]),
        {"time_zone": "Europe/London", "city": "Lyon", "recruitment_status": site.recruitment_status, "change_reason": "try"},
    )
    site.refresh_from_db()
    assert (site.time_zone, site.city) == ("Europe/Paris", "Lille")
    arm = Trial.objects.get(code="ASC-DU").arms.first()
    assert client.get(reverse("admin:protocol_arm_change", args=[arm.pk])).status_code == 200  # view only
    assert client.post(reverse("admin:protocol_arm_change", args=[arm.pk]), {"label": "x"}).status_code == 403
    assert client.get(reverse("admin:protocol_arm_add")).status_code == 403


def test_data_manager_grants_a_role_in_the_admin_through_the_service(demo_users, client):
    client.force_login(user("datamanager"))
    newcomer = get_user_model().objects.create_user("new.monitor", password="x-long-password-1")
    du = Trial.objects.get(code="ASC-DU")
    mexico = Site.objects.get(trial__code="ADSVF-SSC-HANDS")
    url = reverse("admin:protocol_studyrole_add")
    form = {"user": newcomer.pk, "trial": du.pk, "site": mexico.pk, "role": "monitor", "is_active": "on", "change_reason": "new CRA"}
    response = client.post(url, form)
    assert response.status_code == 200 and "This site belongs to trial ADSVF-SSC-HANDS" in response.content.decode()
    assert not StudyRole.objects.filter(user=newcomer).exists()
    tls = Site.objects.get(trial=du, code="TLS")
    assert client.post(url, {**form, "site": tls.pk}).status_code == 302
    role = StudyRole.objects.get(user=newcomer)
    assert (role.site, role.history.get().history_user.username) == (tls, "datamanager")
    newcomer.refresh_from_db()
    assert newcomer.is_staff and newcomer.groups.filter(name="Monitors").exists()


def test_monitor_cannot_read_history_or_sites_outside_his_scope(demo_users, client):
    client.force_login(user("monitor.du"))
    lille = Site.objects.get(trial__code="ASC-DU", code="LIL")
    ra = Trial.objects.get(code="EASC-RA")
    assert client.get(reverse("admin:protocol_site_history", args=[lille.pk])).status_code == 404
    assert client.get(reverse("admin:protocol_trial_history", args=[ra.pk])).status_code == 404
    tls = Site.objects.get(trial__code="ASC-DU", code="TLS")
    assert client.get(reverse("admin:protocol_site_history", args=[tls.pk])).status_code == 200
    trial_page = client.get(reverse("admin:protocol_trial_change", args=[tls.trial_id])).content.decode()
    assert "Toulouse" in trial_page and "Lille" not in trial_page
    roles = client.get(reverse("admin:protocol_studyrole_changelist")).content.decode()
    assert "monitor.du" in roles and "dsmb.statistician" not in roles and "sponsor.toulouse" not in roles


def test_ending_the_last_staff_role_takes_back_admin_access(demo_users):
    monitor = user("monitor.du")
    for role in StudyRole.objects.filter(user=monitor):
        study_role_revoke(study_role=role, revoked_by=system_user(), reason="left the CRO")
    monitor.refresh_from_db()
    assert not monitor.is_staff and not monitor.groups.exists()
