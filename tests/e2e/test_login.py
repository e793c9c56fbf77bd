"""Each demo role logs in through the real login page and lands on its home page."""

import pytest
import yaml
from django.conf import settings

from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DEMO = {u["username"]: u for u in yaml.safe_load(open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8"))["users"]}

# username -> (where the role lands, text that proves it is the right page)
LANDINGS = {
    "coordinator.toulouse": ("/", ["My studies", "ASC-DU", "TLS (Toulouse"]),
    "coordinator.mexico": ("/", ["My studies", "ADSVF-SSC-HANDS", "INCMNSZ"]),
    "investigator.toulouse": ("/", ["My studies", "Investigator"]),
    "sponsor.toulouse": ("/", ["My studies", "Sponsor", "GRE (Grenoble"]),
    "dsmb.statistician": ("/", ["My studies", "EASC-RA"]),
    "monitor.du": ("/admin/", ["Monitoring and configuration", "Trials"]),
    "datamanager": ("/admin/", ["Monitoring and configuration", "Study roles"]),
}


def go(page, selector: str) -> None:  # noqa: ANN001
    """Click something that loads a new page, and wait for that page."""
    with page.expect_navigation():
        page.click(selector)


def log_in(page, live_server, username: str) -> None:  # noqa: ANN001
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url  # anonymous users are sent to the login page
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO[username]["password"])
    go(page, "form:has(input[name=password]) button[type=submit]")


@pytest.mark.parametrize("username", sorted(LANDINGS))
def test_each_role_lands_on_its_home_page(page, live_server, demo_users, username):
    log_in(page, live_server, username)
    path, texts = LANDINGS[username]
    assert page.url == f"{live_server.url}{path}"
    body = page.inner_text("body")
    for text in texts:
        assert text in body, f"{username}: '{text}' missing on {page.url}"
    screenshot(page, f"home-{username}")
    assert page.console_errors == []  # e.g. a CSP violation or a missing static file


def test_coordinator_does_not_see_other_sites_and_can_open_the_protocol(page, live_server, demo_users):
    log_in(page, live_server, "coordinator.toulouse")
    body = page.inner_text("body")
    assert "Lille" not in body and "GRE" not in body
    go(page, "text=ASC-DU")
    assert "Visit schedule" in page.inner_text("body")
    assert "Week 16" in page.inner_text("body") or "W16" in page.inner_text("body")
    screenshot(page, "trial-ASC-DU-coordinator")


def test_wrong_password_shows_an_error_and_stays_on_login(page, live_server, demo_users):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "coordinator.toulouse")
    page.fill("input[name=password]", "wrong")
    go(page, "form:has(input[name=password]) button[type=submit]")
    assert "/accounts/login/" in page.url
    assert "enter a correct username and password" in page.inner_text("body")
    screenshot(page, "login-error")


def test_data_manager_changes_a_site_with_a_reason_and_sees_it_in_history(page, live_server, demo_users):
    log_in(page, live_server, "datamanager")
    go(page, "#content-main >> text=Sites")
    go(page, "a:text-is('GRE')")
    page.select_option("select[name=recruitment_status]", "recruiting")
    go(page, "input[name=_save]")
    assert "This field is required" in page.inner_text("body")  # no reason, nothing saved
    screenshot(page, "admin-site-reason-required")
    page.fill("input[name=change_reason]", "Site initiation visit done")
    go(page, "input[name=_save]")
    assert "was changed successfully" in page.inner_text("body")
    go(page, "a:text-is('GRE')")
    go(page, "text=History")
    body = page.inner_text("body")
    assert "Site initiation visit done" in body and "datamanager" in body
    screenshot(page, "admin-site-history")
