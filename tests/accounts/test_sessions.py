"""Sessions (issue 16): an idle session ends after SESSION_IDLE_MINUTES (on main only the 8-hour
absolute limit existed), with the logoff in the login audit; the pages carry the seconds left for
the warning; one click ends all of one's other sessions."""

from datetime import timedelta

import pytest
import time_machine
import yaml
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from trials.accounts.models import LoginEvent, LoginEventKind

pytestmark = pytest.mark.django_db

DEMO = {u["username"]: u["password"] for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}


def logged_in(username: str = "coordinator.toulouse") -> Client:
    client = Client()
    assert client.post("/accounts/login/", {"username": username, "password": DEMO[username]}).status_code == 302
    return client


def test_an_idle_session_ends_after_the_timeout_and_activity_keeps_it(demo_users, settings):  # noqa: ARG001
    settings.SESSION_IDLE_MINUTES = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client = logged_in()
        page = client.get("/")
        assert 'data-edc-idle-remaining="1800"' in page.content.decode()
    with time_machine.travel(start + timedelta(minutes=29), tick=False):
        assert client.get("/").status_code == 200  # activity: the 30 minutes start again
    with time_machine.travel(start + timedelta(minutes=58), tick=False):
        assert client.get("/").status_code == 200
    with time_machine.travel(start + timedelta(minutes=58 + 31), tick=False):
        response = client.get("/participants/?q=x")
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        assert "next=/participants/%3Fq%3Dx" in response["Location"]
        assert client.get("/").status_code == 302  # logged out for good
    logoff = LoginEvent.objects.filter(kind=LoginEventKind.LOGOUT).get()
    assert logoff.detail == "idle" and logoff.username == "coordinator.toulouse"


def test_the_keepalive_counts_as_activity(demo_users, settings):  # noqa: ARG001
    settings.SESSION_IDLE_MINUTES = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        client = logged_in()
    with time_machine.travel(start + timedelta(minutes=28), tick=False):
        assert client.post(reverse("session_keepalive")).status_code == 204
    with time_machine.travel(start + timedelta(minutes=50), tick=False):
        assert client.get("/").status_code == 200


def test_end_all_my_other_sessions(demo_users):  # noqa: ARG001
    office, ward, laptop = logged_in(), logged_in(), logged_in()
    other_user = logged_in("coordinator.mexico")
    assert ward.post(reverse("account")).status_code == 302
    assert ward.get("/").status_code == 200  # this one goes on
    for ended in (office, laptop):
        response = ended.get("/")
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert other_user.get("/").status_code == 200  # another person's sessions are not touched
    # A new login works again.
    assert logged_in().get("/").status_code == 200
