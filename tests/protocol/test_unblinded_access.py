"""Who may give (and take back) a role that sees the allocated arms of a blinded trial.

The rules (issue 13): a role that sees arms is granted only by someone who already sees them (or
an administrator), with a reason; the sponsor's safety desk, the sponsor users and the DSMB are
told; the grant is listed in the trial's "unblinded access" log. Nobody grants herself a role.
A role ended in the admin is ended at once: the holder's next request is refused.

ASC-DU (seeds/001) is quadruple-blind: only the DSMB / unblinded statistician role sees arms, and
its safety desk is vigilance@chu-toulouse.example.org. ADSVF-SSC-HANDS (seeds/000) is open-label.
"""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from edc.audit import system_user
from tests.participants.conftest import _seeded, demo  # noqa: F401 - module-scoped seeds and demo accounts
from trials.protocol import selectors
from trials.protocol.models import Role, Site, StudyRole, Trial
from trials.protocol.services import study_role_grant, study_role_revoke

pytestmark = pytest.mark.django_db

SAFETY_DESK = "vigilance@chu-toulouse.example.org"  # seeds/001_nct04356755_du.yaml safety_reporting.contacts


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def newcomer(username: str = "new.statistician"):  # noqa: ANN201
    return get_user_model().objects.create_user(username, email=f"{username}@example.org", password="x-long-password-1")


def admin_user():  # noqa: ANN201
    return get_user_model().objects.create_superuser("root", email="root@example.org", password="x-long-password-1")


def events():  # noqa: ANN201
    """The unblinded-access log rows (imported here so the rest of the module runs on older code)."""
    from trials.protocol.models import UnblindedAccessEvent

    return UnblindedAccessEvent.objects.all()


def du() -> Trial:
    return Trial.objects.get(code="ASC-DU")


def add_role(client, *, who, trial: Trial, role: str, reason: str = "DSMB member", site: Site | None = None):  # noqa: ANN001, ANN201
    form = {"user": who.pk, "trial": trial.pk, "site": site.pk if site else "", "role": role, "change_reason": reason}
    return client.post(reverse("admin:protocol_studyrole_add"), form)


def end_role(client, role: StudyRole, reason: str = "Left the study"):  # noqa: ANN001, ANN201
    """The admin change form as a data manager submits it with "active" unticked."""
    return client.post(reverse("admin:protocol_studyrole_change", args=[role.pk]), {"change_reason": reason})


# --- Granting a role that sees arms -----------------------------------------------------------


def test_a_blinded_data_manager_cannot_grant_herself_the_dsmb_role_in_the_admin(demo, client):  # noqa: ANN001, ARG001
    manager = user("datamanager")
    client.force_login(manager)
    response = add_role(client, who=manager, trial=du(), role=Role.DSMB, reason="I want to see the arms")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "You cannot grant yourself a role" in " ".join(errors["user"])
    assert not StudyRole.objects.filter(user=manager, role=Role.DSMB).exists()
    assert not selectors.user_sees_allocation(manager, du())


def test_a_blinded_data_manager_cannot_grant_anyone_the_dsmb_role(demo, client, mailoutbox):  # noqa: ANN001, ARG001
    client.force_login(user("datamanager"))
    statistician = newcomer()
    response = add_role(client, who=statistician, trial=du(), role=Role.DSMB)
    assert response.status_code == 200
    assert "sees the allocated arms" in " ".join(response.context["adminform"].form.errors["role"])
    assert not StudyRole.objects.filter(user=statistician).exists()
    # The rule is the service's, not only the admin form's.
    with pytest.raises(ValidationError) as refused:
        study_role_grant(user=statistician, trial=du(), role=Role.DSMB, granted_by=user("datamanager"), reason="DSMB")
    assert "role" in refused.value.message_dict
    assert not events().filter(study_role__user=statistician).exists() and mailoutbox == []


def test_nobody_grants_herself_a_role_not_even_an_administrator(demo):  # noqa: ANN001, ARG001
    root = admin_user()
    with pytest.raises(ValidationError) as refused:
        study_role_grant(user=root, trial=du(), role=Role.DSMB, granted_by=root, reason="curious")
    assert "user" in refused.value.message_dict
    manager = user("datamanager")
    with pytest.raises(ValidationError):
        study_role_grant(user=manager, trial=du(), role=Role.SPONSOR, granted_by=manager, reason="also sponsor")
    assert not StudyRole.objects.filter(user__in=[root, manager], role__in=[Role.DSMB, Role.SPONSOR]).exists()


def test_only_the_trials_data_manager_grants_roles_in_it(demo):  # noqa: ANN001, ARG001
    """A coordinator of ASC-DU (not its data manager) cannot hand out roles in it."""
    with pytest.raises(ValidationError) as refused:
        study_role_grant(user=newcomer(), trial=du(), role=Role.SPONSOR, granted_by=user("coordinator.toulouse"), reason="x")
    assert "trial" in refused.value.message_dict


def test_an_arm_seeing_grant_needs_a_reason(demo):  # noqa: ANN001, ARG001
    with pytest.raises(ValidationError) as refused:
        study_role_grant(user=newcomer(), trial=du(), role=Role.DSMB, granted_by=admin_user(), reason="  ")
    assert "reason" in refused.value.message_dict


def test_an_administrator_grants_the_dsmb_role_notified_and_logged(demo, client, mailoutbox, django_capture_on_commit_callbacks):  # noqa: ANN001, ARG001
    client.force_login(admin_user())
    statistician = newcomer()
    with django_capture_on_commit_callbacks(execute=True):
        response = add_role(client, who=statistician, trial=du(), role=Role.DSMB, reason="Second DSMB statistician")
    assert response.status_code == 302
    assert selectors.user_sees_allocation(statistician, du())
    event = events().get(study_role__user=statistician)
    assert (event.trial, event.study_role.user, event.action, event.changed_by.username, event.reason) == (
        du(), statistician, "granted", "root", "Second DSMB statistician",
    )
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    # The safety desk of the trial file, the sponsor user and the DSMB (including the new member).
    assert sorted(mail.to) == sorted([SAFETY_DESK, "sponsor@example.org", "dsmb@example.org", "new.statistician@example.org"])
    assert sorted(event.notified) == sorted(mail.to)
    text = f"{mail.subject}\n{mail.body}"
    assert "ASC-DU" in text and "new.statistician" in text and "root" in text and "Second DSMB statistician" in text


def test_someone_who_sees_arms_and_manages_the_trial_may_grant_them(demo):  # noqa: ANN001, ARG001
    manager = user("datamanager")
    study_role_grant(user=manager, trial=du(), role=Role.DSMB, granted_by=admin_user(), reason="Unblinded data manager")
    statistician = newcomer()
    study_role_grant(user=statistician, trial=du(), role=Role.DSMB, granted_by=manager, reason="DSMB member")
    assert selectors.user_sees_allocation(statistician, du())
    assert events().filter(trial=du(), action="granted", study_role__user__in=[manager, statistician]).count() == 2


def test_roles_that_see_no_arm_are_not_logged(demo, mailoutbox, django_capture_on_commit_callbacks):  # noqa: ANN001, ARG001
    before = events().count()  # load_demo's grant of the DSMB role is logged
    with django_capture_on_commit_callbacks(execute=True):
        study_role_grant(user=newcomer(), trial=du(), role=Role.SPONSOR, granted_by=user("datamanager"), reason="Sponsor")
        # Open-label: every role sees the arms, there is no unblinded access to log.
        hands = Trial.objects.get(code="ADSVF-SSC-HANDS")
        study_role_grant(user=newcomer("dsmb.hands"), trial=hands, role=Role.DSMB, granted_by=user("datamanager"), reason="DSMB")
    assert events().count() == before and mailoutbox == []


# --- Revocation -------------------------------------------------------------------------------


def test_ending_a_role_in_the_admin_ends_it_and_the_holders_next_request_is_refused(demo, client):  # noqa: ANN001
    from django.test import Client

    sponsor = Client()
    sponsor.force_login(user("sponsor.toulouse"))
    assert sponsor.get(reverse("trial_exports", args=["ASC-DU"])).status_code == 200

    client.force_login(user("datamanager"))
    role = StudyRole.objects.get(user__username="sponsor.toulouse", trial=du())
    response = end_role(client, role, reason="Left the sponsor")
    assert response.status_code == 302
    role.refresh_from_db()
    assert not role.is_active
    record = role.history.first()
    assert (record.is_active, record.history_user.username, record.history_change_reason) == (False, "datamanager", "Left the sponsor")
    # The same session, next request: no role, no page.
    assert sponsor.get(reverse("trial_exports", args=["ASC-DU"])).status_code == 404
    assert sponsor.get(reverse("trial_detail", args=["ASC-DU"])).status_code == 404


def test_ending_a_monitors_roles_in_the_admin_closes_the_admin_to_him(demo, client):  # noqa: ANN001
    from django.test import Client

    monitor = Client()
    monitor.force_login(user("monitor.du"))
    assert monitor.get(reverse("admin:index")).status_code == 200
    client.force_login(user("datamanager"))
    for role in StudyRole.objects.filter(user__username="monitor.du"):
        assert end_role(client, role, reason="Left the CRO").status_code == 302
    assert not StudyRole.objects.filter(user__username="monitor.du", is_active=True).exists()
    response = monitor.get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response.url


def test_ending_the_dsmb_role_in_the_admin_is_logged_and_notified(demo, client, mailoutbox, django_capture_on_commit_callbacks):  # noqa: ANN001
    from django.test import Client

    statistician = Client()
    statistician.force_login(user("dsmb.statistician"))
    client.force_login(user("datamanager"))  # a blinded data manager may withdraw access
    role = StudyRole.objects.get(user__username="dsmb.statistician", trial=du())
    with django_capture_on_commit_callbacks(execute=True):
        assert end_role(client, role, reason="DSMB mandate ended").status_code == 302
    assert not selectors.user_sees_allocation(user("dsmb.statistician"), du())
    event = events().get(action="revoked")
    assert (event.action, event.changed_by.username, event.reason) == ("revoked", "datamanager", "DSMB mandate ended")
    assert SAFETY_DESK in mailoutbox[0].to
    assert statistician.get(reverse("safety_summary", args=["ASC-DU"])).status_code in (403, 404)


def test_a_revoked_role_comes_back_only_by_a_new_grant_under_the_same_rules(demo, client):  # noqa: ANN001
    role = StudyRole.objects.get(user__username="dsmb.statistician", trial=du())
    study_role_revoke(study_role=role, revoked_by=user("datamanager"), reason="Mandate ended")
    client.force_login(user("datamanager"))
    response = client.post(
        reverse("admin:protocol_studyrole_change", args=[role.pk]), {"is_active": "on", "change_reason": "Back"}
    )
    assert response.status_code == 200
    role.refresh_from_db()
    assert not role.is_active


# --- The log ----------------------------------------------------------------------------------


def test_the_log_page_lists_grants_and_revocations_for_those_who_see_arms_and_the_data_manager(demo, client):  # noqa: ANN001
    role = StudyRole.objects.get(user__username="dsmb.statistician", trial=du())
    study_role_revoke(study_role=role, revoked_by=user("datamanager"), reason="Mandate ended")
    study_role_grant(user=newcomer(), trial=du(), role=Role.DSMB, granted_by=admin_user(), reason="Replacement statistician")
    url = reverse("unblinded_access_log", args=["ASC-DU"])
    for username in ("datamanager",):
        client.force_login(user(username))
        page = client.get(url)
        assert page.status_code == 200
        text = page.content.decode()
        assert "Mandate ended" in text and "Replacement statistician" in text and "new.statistician" in text
    for username in ("sponsor.toulouse", "coordinator.toulouse", "monitor.du"):
        client.force_login(user(username))
        assert client.get(url).status_code == 404
    client.force_login(user("datamanager"))
    admin_page = client.get(reverse("admin:protocol_unblindedaccessevent_changelist"))
    assert admin_page.status_code == 200 and "Replacement statistician" in admin_page.content.decode()
    client.force_login(user("monitor.du"))
    assert client.get(reverse("admin:protocol_unblindedaccessevent_changelist")).status_code == 403


def test_the_dsmb_sees_the_log(demo, client):  # noqa: ANN001
    study_role_grant(user=newcomer(), trial=du(), role=Role.DSMB, granted_by=system_user(), reason="Second statistician")
    client.force_login(user("dsmb.statistician"))
    page = client.get(reverse("unblinded_access_log", args=["ASC-DU"]))
    assert page.status_code == 200 and "Second statistician" in page.content.decode()
