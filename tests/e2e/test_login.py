"""Each demo role logs in through the real login page and lands on its home page."""

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.translation import gettext, override

from edc.ops.services import user_language_set

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


def log_in(page, live_server, username: str, language: str | None = "en") -> None:  # noqa: ANN001
    """Log in through the login page. The seed sites declare their language (French sites `fr`,
    Mexican and Spanish ones `es`), which the login gives a user who never chose one; the browser
    tests read English pages, so their user has chosen `language` (kept on her account, as the
    language switcher keeps it). `language=None`: she never chose, and gets her sites' language."""
    if language:
        user_language_set(user=get_user_model().objects.get(username=username), language=language)
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


def _seed_site_languages() -> dict[tuple[str, str], str]:
    """(trial code, site code) -> the `language:` the trial files give the site."""
    found = {}
    for path in sorted((Path(settings.BASE_DIR) / "seeds").glob("0*.yaml")):
        trial = yaml.safe_load(path.read_text(encoding="utf-8"))
        for site in trial.get("sites") or []:
            if site.get("language"):
                found[(trial["code"], site["code"])] = site["language"]
    return found


def _expected_language(username: str) -> str:
    """Worked out from the demo users file and the trial files: the one language the sites of her
    site-scoped roles declare, else none (the browser's, English here)."""
    sites = _seed_site_languages()
    named = {sites.get((g["trial"], g["site"])) for g in DEMO[username].get("roles", []) if g.get("site")}
    named.discard(None)
    return named.pop() if len(named) == 1 else "en"


@pytest.mark.parametrize("username", ["coordinator.toulouse", "coordinator.mexico", "coordinator.madrid", "sponsor.toulouse"])
def test_a_user_who_never_chose_lands_in_her_sites_language(page, live_server, demo_users, username):
    expected = _expected_language(username)
    log_in(page, live_server, username, language=None)
    assert page.get_attribute("html", "lang") == expected
    with override(expected):
        assert gettext("My studies") in page.inner_text("body")
    screenshot(page, f"home-{username}-{expected}")
