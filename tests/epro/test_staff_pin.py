"""Staff PIN (issue 20): a coordinator sets a 4-8 digit PIN on her account page, confirmed by her
password; only its hash is kept; setting it and every wrong PIN are in the login audit; after
EDC_PIN_FAILURE_LIMIT wrong PINs in a row the PIN is locked for a while, with a message that says so,
and the password still works. Taking the tablet back from participant mode accepts either."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.hashers import identify_hasher
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from tests.epro.conftest import PASSWORD
from trials.accounts.models import LoginEvent, LoginEventKind, StaffPin

pytestmark = pytest.mark.django_db

PIN = "4817"


@pytest.fixture(autouse=True)
def clear_rate_limits():
    cache.clear()


def set_pin(client, pin: str = PIN, password: str = PASSWORD, again: str | None = None):  # noqa: ANN001, ANN201
    return client.post(reverse("account_pin"), {"action": "set", "pin": pin, "pin_again": pin if again is None else again, "password": password})


def test_a_pin_is_set_with_the_password_hashed_and_audited(client, coordinator):
    client.force_login(coordinator)
    assert 'data-testid="account-pin"' in client.get(reverse("account")).content.decode()
    response = set_pin(client)
    assert response.status_code == 302 and response["Location"] == reverse("account")
    stored = StaffPin.objects.get(user=coordinator)
    assert PIN not in stored.pin_hash and identify_hasher(stored.pin_hash).algorithm  # one of Django's hashers
    assert LoginEvent.objects.filter(user=coordinator, kind=LoginEventKind.PIN_SET).count() == 1
    assert 'data-testid="pin-is-set"' in client.get(reverse("account_pin")).content.decode()


@pytest.mark.parametrize(("pin", "again", "password", "message"), [
    ("123", None, PASSWORD, "4 to 8 digits"),
    ("12a45", None, PASSWORD, "4 to 8 digits"),
    ("123456789", None, PASSWORD, "at most 8 characters"),
    ("1111", None, PASSWORD, "too easy to guess"),
    ("3456", None, PASSWORD, "too easy to guess"),
    ("4817", "4818", PASSWORD, "The two PINs differ"),
    ("4817", None, "not-my-password", "The password is not correct"),
])
def test_a_bad_pin_or_password_is_refused_with_a_message(client, coordinator, pin, again, password, message):
    client.force_login(coordinator)
    response = set_pin(client, pin, password, again)
    assert response.status_code == 400 and message in response.content.decode()
    assert not StaffPin.objects.filter(user=coordinator).exists()


def test_removing_the_pin_is_audited(client, coordinator):
    client.force_login(coordinator)
    set_pin(client)
    client.post(reverse("account_pin"), {"action": "remove"})
    assert not StaffPin.objects.filter(user=coordinator).exists()
    assert LoginEvent.objects.filter(user=coordinator, kind=LoginEventKind.PIN_REMOVED).count() == 1


def handover(client, visit) -> None:  # noqa: ANN001
    response = client.post(reverse("epro_visit", args=[visit.pk]), {"action": "handover"})
    assert response["Location"] == reverse("epro_tablet")


def test_the_tablet_is_taken_back_with_the_pin(client, coordinator, w8):
    client.force_login(coordinator)
    set_pin(client)
    handover(client, w8)
    page = client.get(reverse("epro_tablet_exit")).content.decode()
    assert "Your PIN or your password" in page
    response = client.post(reverse("epro_tablet_exit"), {"password": PIN})
    assert response["Location"] == reverse("epro_visit", args=[w8.pk])
    assert client.get(reverse("participant_dashboard", args=[w8.participant_id])).status_code == 200


def test_wrong_pins_lock_the_pin_with_a_clear_message_and_the_password_still_works(client, coordinator, w8, settings):
    settings.EDC_PIN_FAILURE_LIMIT = 5
    settings.EDC_PIN_LOCKOUT_MINUTES = 15
    client.force_login(coordinator)
    set_pin(client)
    handover(client, w8)
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        for _ in range(4):
            wrong = client.post(reverse("epro_tablet_exit"), {"password": "9090"})
            assert wrong.status_code == 403 and "not the PIN or the password" in wrong.content.decode()
        fifth = client.post(reverse("epro_tablet_exit"), {"password": "9090"})
        until = (start + timedelta(minutes=15)).strftime("%H:%M")
        assert fifth.status_code == 403 and f"your PIN is locked until {until} UTC. Use your password instead." in fifth.content.decode()
        # Locked: the right PIN is refused too, the participant mode stays on.
        right = client.post(reverse("epro_tablet_exit"), {"password": PIN})
        assert right.status_code == 403 and "your PIN is locked" in right.content.decode()
        assert client.get(reverse("participant_dashboard", args=[w8.participant_id]))["Location"] == reverse("epro_tablet")
    events = LoginEvent.objects.filter(user=coordinator)
    assert events.filter(kind=LoginEventKind.PIN_FAILED).count() == 5
    assert events.filter(kind=LoginEventKind.PIN_LOCKED).count() == 1
    # After the lockout, the PIN works again.
    with time_machine.travel(start + timedelta(minutes=15, seconds=1), tick=False):
        client.force_login(coordinator)  # the idle limit would have ended the session meanwhile
        handover(client, w8)
        assert client.post(reverse("epro_tablet_exit"), {"password": PIN})["Location"] == reverse("epro_visit", args=[w8.pk])


def test_while_the_pin_is_locked_the_password_takes_the_tablet_back(client, coordinator, w8, settings):
    settings.EDC_PIN_FAILURE_LIMIT = 3
    client.force_login(coordinator)
    set_pin(client)
    handover(client, w8)
    for _ in range(3):
        client.post(reverse("epro_tablet_exit"), {"password": "9090"})
    assert StaffPin.objects.get(user=coordinator).locked_until > timezone.now()
    assert client.post(reverse("epro_tablet_exit"), {"password": PASSWORD})["Location"] == reverse("epro_visit", args=[w8.pk])


def test_without_a_pin_digits_are_not_accepted(client, coordinator, w8):
    client.force_login(coordinator)
    handover(client, w8)
    assert client.post(reverse("epro_tablet_exit"), {"password": PIN}).status_code == 403
    assert not LoginEvent.objects.filter(user=coordinator, kind=LoginEventKind.PIN_FAILED).exists()
