"""Two-factor authentication (issue 16): with REQUIRE_2FA, every role but the site coordinator
passes a TOTP code after the password; a new user enrols (QR code / key, one code to confirm,
recovery codes shown once); a recovery code works once; an administrator resets a lost device,
audited. Codes are computed here with RFC 6238's algorithm (django_otp.oath.totp) from the device
key, never read from the application's pages. On main there was no second factor."""

import time

import pytest
import time_machine
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from edc.ops.services import user_language_set
from trials.accounts.models import LoginEvent

pytestmark = pytest.mark.django_db

DEMO = {u["username"]: u["password"] for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}


@pytest.fixture(autouse=True)
def require_2fa(settings):
    settings.EDC_REQUIRE_2FA = True


def code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """RFC 6238: HMAC-SHA1 over the 30-second step count since the epoch, 6 digits."""
    return f"{totp(device.bin_key, step=30, t0=0, digits=6, drift=steps_ahead):06d}"


def test_rfc_6238_reference_vector():
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) for the ASCII key "12345678901234567890".
    key = b"12345678901234567890"
    from django_otp.oath import TOTP

    generator = TOTP(key, step=30, t0=0, digits=8)
    generator.time = 59
    assert generator.token() == 94287082


def unthrottle() -> None:
    """django-otp delays the next try after a wrong code (1 s, then 2, 4 …): the test does not wait."""
    for model in (TOTPDevice, StaticDevice):
        for device in model.objects.all():
            device.throttle_reset()


def password_login(username: str) -> Client:
    """A login through the page by a user who chose English (the seed sites' languages would give
    investigator.toulouse French pages: these tests read English ones)."""
    user_language_set(user=get_user_model().objects.get(username=username), language="en")
    client = Client()
    assert client.post("/accounts/login/", {"username": username, "password": DEMO[username]}).status_code == 302
    return client


def test_enrol_then_log_in_with_a_code(demo_users):  # noqa: ARG001
    client = password_login("investigator.toulouse")
    response = client.get("/?stay=1")
    assert response.status_code == 302 and response["Location"].startswith(reverse("second_factor"))
    response = client.get(response["Location"], follow=True)
    page = response.content.decode()
    assert "Set up your second factor" in page and "<svg" in page and "otpauth://totp/" in page
    device = TOTPDevice.objects.get(user__username="investigator.toulouse", confirmed=False)
    response = client.post(reverse("second_factor_setup"), {"token": "000000" if code(device) != "000000" else "111111", "next": "/"})
    assert "This code is not valid" in response.content.decode()
    unthrottle()
    response = client.post(reverse("second_factor_setup"), {"token": code(device), "next": "/?stay=1"})
    page = response.content.decode()
    assert "Keep these recovery codes" in page
    recovery = [line.split("<li>")[1].split("</li>")[0] for line in page.split("\n") if "<li>" in line][0].split("</li><li>")[0]
    assert client.get("/?stay=1").status_code == 200

    # A later login (the next 30-second step: a code is never accepted twice, RFC 6238 §5.2):
    # the code page, a wrong code refused, the right one passes.
    with time_machine.travel(time.time() + 60, tick=True):
        client = password_login("investigator.toulouse")
        assert client.get("/").status_code == 302
        response = client.post(reverse("second_factor"), {"token": "12345", "next": "/"})
        assert "This code is not valid" in response.content.decode()
        unthrottle()
        device.refresh_from_db()
        response = client.post(reverse("second_factor"), {"token": code(device), "next": "/?stay=1"})
        assert response.status_code == 302 and response["Location"] == "/?stay=1"
        assert client.get("/?stay=1").status_code == 200

        # A recovery code works once.
        client = password_login("investigator.toulouse")
        unthrottle()
        assert client.post(reverse("second_factor"), {"token": recovery, "next": "/"}).status_code == 302
        assert client.get("/").status_code == 200
        client = password_login("investigator.toulouse")
        assert "This code is not valid" in client.post(reverse("second_factor"), {"token": recovery, "next": "/"}).content.decode()


def test_a_site_coordinator_works_with_her_password_alone(demo_users):  # noqa: ARG001
    client = password_login("coordinator.toulouse")
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("username", ["monitor.du", "datamanager", "sponsor.toulouse", "dsmb.statistician", "investigator.madrid"])
def test_every_other_role_needs_the_second_factor(demo_users, username):  # noqa: ARG001
    client = password_login(username)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("second_factor"))
    assert client.get("/admin/").status_code == 302


def test_an_administrator_resets_a_lost_device_and_it_is_audited(demo_users):  # noqa: ARG001
    investigator = get_user_model().objects.get(username="investigator.toulouse")
    device = TOTPDevice.objects.create(user=investigator, name="phone", confirmed=True)
    root = get_user_model().objects.create_superuser("root.2fa", "root@example.org", "Xk39-very-long-secret")
    admin_client = Client()
    admin_client.force_login(root)
    from django_otp import login as otp_login  # noqa: F401 - the administrator's own session

    root_device = TOTPDevice.objects.create(user=root, name="root phone", confirmed=True)
    admin_client.post(reverse("second_factor"), {"token": code(root_device), "next": "/"})
    response = admin_client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "reset_second_factor", "_selected_action": [str(investigator.pk)], "index": "0"},
    )
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    event = LoginEvent.objects.get(user=investigator, detail__startswith="second factor reset")
    assert event.detail == "second factor reset by root.2fa"
    # She enrols again at her next login.
    client = password_login("investigator.toulouse")
    assert client.get(reverse("second_factor"), follow=True).redirect_chain[-1][0].startswith(reverse("second_factor_setup"))
