"""Accounts in a real browser (issue 16): the lockout page, second-factor enrolment and login with
a code computed by RFC 6238 from the device key, a password change refusing the user's name, and
the login audit a data manager reads."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from edc.ops.services import user_language_set
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import DEMO, go

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def password_login(page, live_server, username: str, password: str | None = None) -> None:  # noqa: ANN001
    """Through the login page, by a user who chose English (her seed site's language would give her
    French or Spanish pages: these tests read English ones; see test_login.log_in)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is not None:
        user_language_set(user=user, language="en")
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


def test_an_idle_session_warns_then_ends_and_the_login_says_why(page, live_server, demo_users, settings):  # noqa: ANN001, ARG001
    """Automatic logoff (21 CFR 11.300, EMA 2023 guideline): after SESSION_IDLE_MINUTES without a
    request the page warns two minutes before and the server ends the session. The page's clock is
    Playwright's (fast-forwarded) and the server's is time-machine's (shifted), so nothing sleeps."""
    settings.SESSION_IDLE_MINUTES = 30
    warning = page.locator("[data-testid=idle-warning]")
    with time_machine.travel(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), tick=True) as traveller:
        page.clock.install()
        password_login(page, live_server, "coordinator.toulouse")
        page.goto(f"{live_server.url}/")
        expect(page.locator("body")).to_have_attribute("data-edc-idle-seconds", "1800")
        page.clock.fast_forward("27:00")
        expect(warning).to_be_hidden()  # 3 minutes left: no warning yet
        page.clock.fast_forward("01:30")
        expect(warning).to_be_visible()  # 1.5 minutes left: the banner offers to stay
        screenshot(page, "accounts-idle-warning")
        page.locator("[data-testid=stay-logged-in]").click()  # a keep-alive request: the timer restarts
        expect(warning).to_be_hidden()

        traveller.shift(timedelta(minutes=31))  # the server: 31 minutes without a request
        page.goto(f"{live_server.url}/")
        expect(page).to_have_url(re.compile(r"/accounts/login/"))
        expect(page.locator("body")).to_contain_text("You were logged out after 30 minutes without activity.")
