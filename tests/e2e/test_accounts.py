"""Accounts in a real browser (issue 16): the lockout page, second-factor enrolment and login with
a code computed by RFC 6238 from the device key, a password change refusing the user's name, and
the login audit a data manager reads."""

import pytest
from axes.models import AccessAttempt
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_login import DEMO, go

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def password_login(page, live_server, username: str, password: str | None = None) -> None:  # noqa: ANN001
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password or DEMO[username]["password"])
    go(page, "main button[type=submit]")


def test_lockout_page_after_the_limit(page, live_server, demo_users, settings):  # noqa: ANN001, ARG001
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        password_login(page, live_server, "coordinator.madrid", "not-the-password")
    expect(page.locator("[data-testid=locked-out]")).to_contain_text("Login blocked")
    screenshot(page, "accounts-locked-out")
    password_login(page, live_server, "coordinator.madrid")
    expect(page.locator("[data-testid=locked-out]")).to_be_visible()  # the right password too


def test_second_factor_enrolment_then_password_change(page, live_server, demo_users, settings):  # noqa: ANN001, ARG001
    settings.EDC_REQUIRE_2FA = True
    AccessAttempt.objects.all().delete()
    password_login(page, live_server, "investigator.toulouse")
    page.goto(f"{live_server.url}/")
    expect(page.locator("[data-testid=second-factor-setup]")).to_be_visible()
    expect(page.locator("[data-testid=qr] svg")).to_be_visible()
    screenshot(page, "accounts-2fa-setup")
    device = TOTPDevice.objects.get(user__username="investigator.toulouse", confirmed=False)
    page.fill("input[name=token]", f"{totp(device.bin_key, step=30, t0=0, digits=6):06d}")
    go(page, "main button[type=submit]")
    expect(page.locator("[data-testid=recovery-codes] li")).to_have_count(10)
    go(page, "text=Continue")
    expect(page.locator("body")).to_contain_text("My studies")

    go(page, "[data-testid=current-user]")
    go(page, "text=Change my password")
    page.fill("input[name=old_password]", DEMO["investigator.toulouse"]["password"])
    page.fill("input[name=new_password1]", "Gregoire-Dubois-2026")
    page.fill("input[name=new_password2]", "Gregoire-Dubois-2026")
    go(page, "main button[type=submit]")
    expect(page.locator("body")).to_contain_text("The password contains your name or user name.")
    screenshot(page, "accounts-password-name-refused")
    assert page.console_errors == []


def test_the_data_manager_reads_the_login_audit(page, live_server, demo_users):  # noqa: ANN001, ARG001
    password_login(page, live_server, "coordinator.toulouse", "wrong-once")
    password_login(page, live_server, "datamanager")
    page.goto(f"{live_server.url}/admin/accounts/loginevent/")
    rows = page.locator("#result_list tbody tr")
    expect(rows.first).to_contain_text("datamanager")
    expect(page.locator("#result_list")).to_contain_text("coordinator.toulouse")
    expect(page.locator("#result_list")).to_contain_text("Failed login")
    screenshot(page, "accounts-login-audit")
