"""Login audit (issue 16; 21 CFR 11.300(d)): every login, logout and failed login is recorded with
who, when, address and browser; a data manager reads (and exports as CSV) the events of her trials'
users only, and lists only their accounts in the admin (on main: every account of the system)."""

import csv
import io

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from edc.audit import system_user
from trials.accounts.models import LoginEvent, LoginEventKind
from trials.protocol.models import Trial
from trials.protocol.services import study_role_grant

pytestmark = pytest.mark.django_db

DEMO = {u["username"]: u["password"] for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}
UA = "Mozilla/5.0 (audit test)"


def log_in_and_out(client, username: str, password: str, ip: str) -> None:  # noqa: ANN001
    client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, HTTP_USER_AGENT=UA)
    client.post(reverse("logout"), REMOTE_ADDR=ip, HTTP_USER_AGENT=UA)


@pytest.fixture
def ra_manager(demo_users):  # noqa: ANN001, ARG001
    """A data manager of EASC-RA only."""
    user = get_user_model().objects.create_user("dm.ra", "dm.ra@example.org", "Another-long-secret-26", is_active=True)
    study_role_grant(user=user, trial=Trial.objects.get(code="EASC-RA"), site=None, role="data_manager",
                     granted_by=system_user(), reason="Data manager of EASC-RA")
    return user


def test_login_logout_and_failure_are_recorded_with_address_and_browser(client, demo_users):  # noqa: ANN001, ARG001
    log_in_and_out(client, "coordinator.madrid", DEMO["coordinator.madrid"], "192.0.2.10")
    client.post("/accounts/login/", {"username": "coordinator.madrid", "password": "nope"}, REMOTE_ADDR="192.0.2.11", HTTP_USER_AGENT=UA)
    rows = list(LoginEvent.objects.filter(username="coordinator.madrid").order_by("at", "pk").values_list("kind", "ip_address", "user_agent"))
    assert rows == [
        (LoginEventKind.LOGIN, "192.0.2.10", UA),
        (LoginEventKind.LOGOUT, "192.0.2.10", UA),
        (LoginEventKind.FAILED, "192.0.2.11", UA),
    ]


def test_a_data_manager_sees_and_exports_only_her_trials_users_events(client, ra_manager):  # noqa: ANN001
    log_in_and_out(client, "coordinator.madrid", DEMO["coordinator.madrid"], "192.0.2.20")  # EASC-RA
    log_in_and_out(client, "coordinator.toulouse", DEMO["coordinator.toulouse"], "192.0.2.21")  # ASC-DU only
    client.force_login(ra_manager)
    page = client.get(reverse("admin:accounts_loginevent_changelist")).content.decode()
    assert "coordinator.madrid" in page and "coordinator.toulouse" not in page
    visible = LoginEvent.objects.filter(username="coordinator.madrid").values_list("pk", flat=True)
    response = client.post(
        reverse("admin:accounts_loginevent_changelist"),
        {"action": "export_csv", "_selected_action": [str(pk) for pk in visible], "index": "0"},
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["at", "kind", "username", "ip_address", "user_agent", "detail"]
    assert [(r[1], r[2], r[3]) for r in rows[1:]] == [("login", "coordinator.madrid", "192.0.2.20"), ("logout", "coordinator.madrid", "192.0.2.20")]
    # An event of another trial's user, posted by id, is not exported.
    other = LoginEvent.objects.filter(username="coordinator.toulouse").values_list("pk", flat=True)
    response = client.post(
        reverse("admin:accounts_loginevent_changelist"),
        {"action": "export_csv", "_selected_action": [str(pk) for pk in other], "index": "0"},
    )
    assert "coordinator.toulouse" not in response.content.decode()


def test_a_data_manager_lists_only_her_trials_users_accounts(client, ra_manager):  # noqa: ANN001
    client.force_login(ra_manager)
    page = client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert "coordinator.madrid" in page and "investigator.madrid" in page
    assert "coordinator.toulouse" not in page and "sponsor.toulouse" not in page
    toulouse = get_user_model().objects.get(username="coordinator.toulouse")
    response = client.get(reverse("admin:auth_user_change", args=[toulouse.pk]))
    assert response.status_code == 302  # the admin's answer for a row outside the queryset


def test_a_coordinator_cannot_read_the_login_audit(client, demo_users):  # noqa: ANN001, ARG001
    client.force_login(get_user_model().objects.get(username="coordinator.toulouse"))
    assert client.get(reverse("admin:accounts_loginevent_changelist")).status_code in (302, 403)
