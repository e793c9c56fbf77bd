"""Lockout (issue 16): wrong passwords in a row lock the user name and the address; the right
password is then refused too, until the cool-off passes or an administrator unlocks. Every step is
in the login audit. Before issue 16, 60 wrong passwords were answered normally and the 61st, right,
was accepted."""

from datetime import timedelta

import pytest
import time_machine
import yaml
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from trials.accounts.models import LoginEvent, LoginEventKind

DEMO = {u["username"]: u["password"] for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}
LOGIN = "/accounts/login/"


def attempt(client, username: str, password: str, ip: str = "10.0.0.7"):  # noqa: ANN001, ANN201
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip, HTTP_USER_AGENT="pytest-browser/1.0")


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=30)
    return 5


def test_the_right_password_is_refused_after_the_limit_of_wrong_ones(client, demo_users, limit):
    for _ in range(limit - 1):
        assert attempt(client, "coordinator.toulouse", "wrong-password").status_code == 200  # the form again
    response = attempt(client, "coordinator.toulouse", "wrong-password")
    assert response.status_code == 429
    assert "Login blocked" in response.content.decode()
    response = attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"])
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    kinds = list(LoginEvent.objects.filter(username="coordinator.toulouse").values_list("kind", flat=True))
    assert kinds.count(LoginEventKind.FAILED) >= limit
    assert LoginEventKind.LOCKED_OUT in kinds
    event = LoginEvent.objects.filter(kind=LoginEventKind.FAILED).first()
    assert event.ip_address == "10.0.0.7" and event.user_agent == "pytest-browser/1.0"
    assert event.user == get_user_model().objects.get(username="coordinator.toulouse")


def test_one_address_trying_many_user_names_is_locked_out(client, demo_users, limit):
    names = ["coordinator.toulouse", "investigator.toulouse", "sponsor.toulouse", "monitor.du", "datamanager"]
    for name in names:
        attempt(client, name, "wrong-password", ip="10.9.9.9")
    # Another user's right password from that address is refused; from another address it works.
    assert attempt(client, "coordinator.mexico", DEMO["coordinator.mexico"], ip="10.9.9.9").status_code == 429
    assert attempt(client, "coordinator.mexico", DEMO["coordinator.mexico"], ip="10.1.1.1").status_code == 302


def test_the_lock_ends_after_the_cool_off(client, demo_users, limit):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(limit):
            attempt(client, "coordinator.toulouse", "wrong-password")
        assert attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"]).status_code == 429
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        assert attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"]).status_code == 302


def test_an_administrator_unlocks_and_the_unlock_is_audited(client, demo_users, limit):
    for _ in range(limit):
        attempt(client, "coordinator.toulouse", "wrong-password")
    admin = get_user_model().objects.create_superuser("admin.unlock", "admin@example.org", "Xk39-very-long-secret")
    staff = client.__class__()
    staff.force_login(admin)
    locked = AccessAttempt.objects.get(username="coordinator.toulouse")
    response = staff.post(
        reverse("admin:axes_accessattempt_delete", args=[locked.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"]).status_code == 302
    unlock = LoginEvent.objects.get(kind=LoginEventKind.UNLOCKED)
    assert unlock.username == "coordinator.toulouse" and "admin.unlock" in unlock.detail


def test_a_success_before_the_limit_starts_the_count_again(client, demo_users, limit):
    for _ in range(limit - 1):
        attempt(client, "coordinator.toulouse", "wrong-password")
    assert attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"]).status_code == 302
    client.post(reverse("logout"))
    for _ in range(limit - 1):
        attempt(client, "coordinator.toulouse", "wrong-password")
    assert attempt(client, "coordinator.toulouse", DEMO["coordinator.toulouse"]).status_code == 302
