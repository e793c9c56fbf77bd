"""The CRF page on a ward tablet (768 × 1024) and desktop: matrix headings in view while scrolling,
a VAS with no preset value and at least 100 mm long, and typed answers that survive an expired
session or a dropped connection (issue 13, "entry on the ward")."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import DEMO, log_in
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TABLET = {"width": 768, "height": 1024}


@pytest.fixture
def ra_participant(demo_users):
    """A consented EASC-RA participant at La Princesa, at screening (DAS28, HAQ-DI and the pain VAS are due)."""
    today = timezone.localdate()
    return participant_register(site=Site.objects.get(trial__code="EASC-RA", code="MAD-LP"), consent_date=today - timedelta(days=3), anchor_date=None, user=system_user())


@pytest.fixture
def tablet(page):
    page.set_viewport_size(TABLET)
    return page


def in_viewport(page, locator) -> bool:  # noqa: ANN001
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= page.viewport_size["height"]


def test_das28_column_headings_stay_in_view_at_the_last_row_on_a_tablet(tablet, live_server, ra_participant):
    page = tablet
    screening = ra_participant.visits.get(definition__code="SCREEN")
    log_in(page, live_server, "coordinator.madrid")
    page.goto(f"{live_server.url}/visits/{screening.pk}/crf/DAS28/")
    swollen = page.locator("table.edc-matrix").nth(1)
    last_row = swollen.locator("#item-crf-swollen_knee_l")
    last_row.scroll_into_view_if_needed()
    page.mouse.wheel(0, 200)  # and a little further, as a finger would
    expect(last_row).to_be_in_viewport()
    heading = swollen.locator("thead th[scope=col]", has_text="Yes")
    expect(heading).to_be_visible()
    assert in_viewport(page, heading), "the Yes/No headings scrolled away with the rows"
    # The heading is on top: what is drawn at its centre is the heading, not a row passing under it.
    box = heading.bounding_box()
    assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).textContent.trim()", [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]) == "Yes"
    screenshot(page, "ward-das28-tablet-scrolled")
    # Tapping a radio of the last row answers that joint, named by section, row and column.
    radio = page.get_by_role("radio", name="Swollen joints Knee, left Yes", exact=True)
    radio.check()
    expect(page.locator("#id_crf-swollen_knee_l_0")).to_be_checked()
    assert page.console_errors == []


# 100 mm in CSS pixels: CSS Values 4 fixes 1in = 96px and 1in = 25.4mm, so 100 mm = 377.95 px.
HUNDRED_MM_PX = 100 / 25.4 * 96


@pytest.mark.parametrize("viewport", [TABLET, {"width": 1280, "height": 900}], ids=["tablet", "desktop"])
def test_an_untouched_vas_has_no_value_and_a_tap_anywhere_on_the_line_answers(page, live_server, ra_participant, viewport):
    page.set_viewport_size(viewport)
    screening = ra_participant.visits.get(definition__code="SCREEN")
    log_in(page, live_server, "coordinator.madrid")
    page.goto(f"{live_server.url}/visits/{screening.pk}/crf/PAIN_VAS/")
    line = page.locator("input[type=range][data-edc-slider-for='id_crf-pain_vas']")
    box = line.bounding_box()
    assert box["width"] >= HUNDRED_MM_PX, f"the VAS line is {box['width']:.0f} CSS px, under 100 mm"
    # Untouched: no thumb, "Not answered", and a save posts no value (the required item is unanswered).
    expect(page.get_by_test_id("vas-unanswered-pain_vas")).to_be_visible()
    expect(line).to_have_class(re.compile(r"\bedc-vas-unset\b"))
    expect(page.locator("#id_crf-pain_vas")).to_have_value("")
    screenshot(page, f"ward-vas-untouched-{viewport['width']}")
    with page.expect_navigation():
        page.click("button[type=submit][value=save]:not(.visually-hidden)")
    expect(page.get_by_test_id("error-pain_vas")).to_contain_text("This item is required")
    assert not CrfEntry.objects.filter(visit=screening, crf_code="PAIN_VAS").exists()
    expect(page.get_by_test_id("vas-unanswered-pain_vas")).to_be_visible()
    # A tap at the middle of the line, where a native range draws its thumb before any answer, answers 50.
    box = line.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#id_crf-pain_vas")).to_have_value("50")
    expect(page.get_by_test_id("vas-unanswered-pain_vas")).to_be_hidden()
    expect(line).not_to_have_class(re.compile(r"\bedc-vas-unset\b"))
    screenshot(page, f"ward-vas-answered-{viewport['width']}")
    with page.expect_navigation():
        page.click("button[type=submit][value=save]:not(.visually-hidden)")
    assert CrfEntry.objects.get(visit=screening, crf_code="PAIN_VAS").answers["pain_vas"] == 50
    assert page.console_errors == []


# --- Typed answers survive an expired session and a dropped connection -----------------------------

VITALS = {"height_cm": "162.5", "weight_kg": "58.5", "systolic_bp": "128", "diastolic_bp": "82", "heart_rate": "74"}


def type_vitals(page) -> None:  # noqa: ANN001
    for name, value in VITALS.items():
        page.fill(f"#id_crf-{name}", value)


def expect_vitals(page) -> None:  # noqa: ANN001
    for name, value in VITALS.items():
        expect(page.locator(f"#id_crf-{name}")).to_have_value(value)


def drafts(page) -> list[str]:  # noqa: ANN001
    return page.evaluate("Object.keys(sessionStorage).filter((k) => k.startsWith('edc-draft:'))")


def save_button(page):  # noqa: ANN001, ANN201
    return page.locator("button[type=submit][value=save]:not(.visually-hidden)")


def test_answers_typed_when_the_session_expired_come_back_after_logging_in_and_are_saved_and_audited(tablet, live_server, ra_participant):
    from trials.accounts.models import UserSession as Session

    page = tablet
    screening = ra_participant.visits.get(definition__code="SCREEN")
    url = f"{live_server.url}/visits/{screening.pk}/crf/VITALS/"
    log_in(page, live_server, "coordinator.madrid")
    page.goto(url)
    type_vitals(page)
    Session.objects.all().delete()  # the session expires on the server while she types
    with page.expect_navigation():
        save_button(page).click()
    assert "/accounts/login/" in page.url and f"next=/visits/{screening.pk}/crf/VITALS/" in page.url.replace("%2F", "/")
    assert not CrfEntry.objects.filter(visit=screening, crf_code="VITALS").exists()

    page.fill("input[name=username]", "coordinator.madrid")
    page.fill("input[name=password]", DEMO["coordinator.madrid"]["password"])
    page.click("form:has(input[name=password]) button[type=submit]")
    expect(page.get_by_test_id("draft-restored")).to_contain_text("Your unsaved answers were restored — review and save")
    assert page.url.endswith(f"/visits/{screening.pk}/crf/VITALS/")
    expect_vitals(page)
    screenshot(page, "ward-draft-restored-768")

    with page.expect_navigation():
        save_button(page).click()
    expect(page.get_by_test_id("saved")).to_be_visible()
    entry = CrfEntry.objects.get(visit=screening, crf_code="VITALS")
    assert {name: str(entry.answers[name]) for name in VITALS} == VITALS
    record = entry.history.latest()
    assert record.history_user.username == "coordinator.madrid" and record.history_change_reason == "Data entry"
    assert drafts(page) == []  # nothing typed stays in the browser after the save
    page.reload()
    expect(page.get_by_test_id("draft-restored")).to_have_count(0)
    assert page.console_errors == []


def test_answers_typed_when_the_connection_dropped_are_kept_until_discarded_or_logged_out(tablet, live_server, ra_participant):
    page = tablet
    screening = ra_participant.visits.get(definition__code="SCREEN")
    url = f"{live_server.url}/visits/{screening.pk}/crf/VITALS/"
    log_in(page, live_server, "coordinator.madrid")
    page.goto(url)
    type_vitals(page)

    # The connection drops: every request of the page fails as the network would. (Routed, not
    # context.set_offline: Chromium applies the offline emulation to a form's navigation late,
    # so a save made just after going offline sometimes still reached the server.)
    def dropped(route) -> None:  # noqa: ANN001
        route.abort("internetdisconnected")

    page.route("**/*", dropped)
    with page.expect_event("requestfailed", predicate=lambda r: r.method == "POST" and r.is_navigation_request()) as failed:
        save_button(page).click(no_wait_after=True)  # the save never reaches the server
    assert "ERR_INTERNET_DISCONNECTED" in failed.value.failure
    page.unroute("**/*", dropped)
    assert not CrfEntry.objects.filter(visit=screening, crf_code="VITALS").exists()

    page.goto(url)
    expect(page.get_by_test_id("draft-restored")).to_be_visible()
    expect_vitals(page)
    # Discard: the page as stored (nothing), and the draft forgotten.
    with page.expect_navigation():
        page.get_by_role("button", name="Discard them").click()
    expect(page.get_by_test_id("draft-restored")).to_have_count(0)
    expect(page.locator("#id_crf-height_cm")).to_have_value("")
    assert drafts(page) == []

    # An explicit logout forgets every draft of the tab (a shared ward computer).
    type_vitals(page)
    assert len(drafts(page)) == 1
    toggler = page.get_by_test_id("topbar-toggler")
    if toggler.is_visible():  # on a tablet the top bar is collapsed: Log out is behind the menu button
        toggler.click()
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert drafts(page) == []
    log_in(page, live_server, "coordinator.madrid")
    page.goto(url)
    expect(page.locator("#id_crf-height_cm")).to_have_value("")
    expect(page.get_by_test_id("draft-restored")).to_have_count(0)
