"""Issue 20, "On a tablet and a phone": every page a coordinator and a participant uses fits a
768x1024 tablet and a 390x844 phone (no horizontal scrolling of the page: wide tables scroll inside
themselves), and axe-core finds no serious or critical accessibility violation on the login,
participant list, CRF, AE, monitor dashboard, export and participant-mode pages."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from tests.epro.conftest import PASSWORD, register
from trials.epro import services as epro_services
from trials.monitoring.queries.services import query_raise
from trials.safety import services as safety_services
from trials.safety.models import AdverseEvent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
SIZES = {"tablet": {"width": 768, "height": 1024}, "phone": {"width": 390, "height": 844}}

OVERFLOW = """(width) => {
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !el.closest('.table-responsive, .edc-grid-wrap, .visually-hidden')) {
      wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') + ' ' + Math.round(box.right));
    }
  }
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, wide: wide.slice(0, 6)};
}"""


def overflow(page) -> str | None:  # noqa: ANN001
    """None when the page is no wider than the window, else what sticks out. The screen's width, not
    innerWidth alone: a phone browser (is_mobile) zooms out to show a page wider than the screen, and
    its innerWidth then grows with the page."""
    width = page.viewport_size["width"]
    found = page.evaluate(OVERFLOW, width)
    if found["scroll"] <= width and found["inner"] <= width:
        return None
    return f"{page.url}: {found['scroll']} px wide in {width} ({', '.join(found['wide'])})"


def axe_serious(page) -> list[str]:  # noqa: ANN001
    """axe-core's serious and critical violations on the page (WCAG 2.1 A and AA rules and best practices)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                           ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                           ".map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))")
    return [f"{page.url} {line}" for line in result]


@pytest.fixture
def study(demo_users):
    """A Toulouse participant at Week 8 with a completed Day 0 COCHIN (a matrix), a serious AE whose
    24-hour clock runs, and an open query: every coordinator page has something to show."""
    coordinator = get_user_model().objects.get(username="coordinator.toulouse")
    participant = register()
    today = timezone.localdate()
    ae = AdverseEvent(
        participant=participant, verbatim_term="Cellulitis of the treated finger with a long verbatim term",
        onset_date=today - timedelta(days=2), ongoing=True, grade=3, seriousness=["hospitalisation"],
        related_product="possible", procedure="injection", related_procedure="possible", action_taken="none",
        outcome="not_recovered", aware_at=timezone.now() - timedelta(hours=3),
    )
    safety_services.ae_save(ae, user=coordinator)
    w8 = participant.visits.get(definition__code="W8")
    day0 = participant.visits.get(definition__code="D0")
    monitor = get_user_model().objects.get(username="monitor.du")
    query_raise(user=monitor, adverse_event=ae, text="Please give the date of hospital admission from the discharge letter.")
    return {"participant": participant, "w8": w8, "day0": day0, "ae": ae}


def coordinator_pages(study) -> list[str]:  # noqa: ANN001
    p, w8, day0 = study["participant"].pk, study["w8"].pk, study["day0"].pk
    return [
        "/", "/trials/ASC-DU/", "/trials/ASC-DU/sites/TLS/participants/", f"/participants/{p}/",
        f"/participants/{p}/consent/", f"/visits/{w8}/date/", f"/visits/{day0}/crf/COCHIN/",
        f"/visits/{w8}/crf/HAQDI/", f"/visits/{day0}/crf/VITALS/", f"/participants/{p}/adverse-events/",
        f"/participants/{p}/adverse-events/new/", f"/participants/{p}/adverse-events/{study['ae'].number}/",
        "/trials/ASC-DU/sites/TLS/adverse-events/", "/safety/clocks/", "/trials/ASC-DU/sites/TLS/queries/",
        "/trials/ASC-DU/status-grid/", "/trials/ASC-DU/reports/", f"/epro/visits/{w8}/", "/calendar/",
        "/accounts/", "/accounts/password/change/",
    ]


@pytest.mark.parametrize("size", sorted(SIZES))
def test_no_coordinator_page_is_wider_than_the_screen(browser, live_server, study, size):
    context = browser.new_context(viewport=SIZES[size], locale="en-GB", has_touch=True, is_mobile=size == "phone", bypass_csp=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    problems = [overflow(page)]
    log_in(page, live_server, "coordinator.toulouse")
    for path in coordinator_pages(study):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, f"{path}: {response.status}"
        problems.append(overflow(page))
    context.close()
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_participant_mode_and_a_personal_link_fit_the_screen_and_pass_axe(browser, live_server, study, size):
    context = browser.new_context(viewport=SIZES[size], locale="en-GB", has_touch=True, is_mobile=size == "phone", bypass_csp=True)
    page = context.new_page()
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/epro/visits/{study['w8'].pk}/")
    go(page, "[data-testid=handover]")
    problems, violations = [overflow(page)], axe_serious(page)
    go(page, "[data-testid=tablet-HAQDI]")
    problems.append(overflow(page))
    violations += axe_serious(page)
    page.goto(f"{live_server.url}/epro/tablet/")
    go(page, "[data-testid=tablet-exit]")
    problems.append(overflow(page))
    violations += axe_serious(page)
    page.fill("#password", PASSWORD)
    go(page, "[data-testid=exit-submit]")
    context.close()

    coordinator = get_user_model().objects.get(username="coordinator.toulouse")
    _, token = epro_services.link_create(user=coordinator, visit=study["w8"], crf_code="COCHIN")
    phone = browser.new_context(viewport=SIZES[size], locale="en-GB", has_touch=True, is_mobile=size == "phone", bypass_csp=True)
    mobile = phone.new_page()
    mobile.goto(f"{live_server.url}{epro_services.link_path(token)}")
    problems.append(overflow(mobile))
    violations += axe_serious(mobile)
    go(mobile, "[data-testid=next]")
    problems.append(overflow(mobile))
    violations += axe_serious(mobile)
    phone.close()
    problems = [p for p in problems if p]
    assert not problems, "\n".join(problems)
    assert not violations, "\n".join(violations)


def test_axe_finds_no_serious_violation_on_the_staff_pages(browser, live_server, study):
    # bypass_csp: the page's Content-Security-Policy (script-src 'self') would refuse the injected axe script.
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", bypass_csp=True).new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    violations = axe_serious(page)
    # The login form's error summary (a wrong password).
    page.fill("input[name=username]", "coordinator.toulouse")
    page.fill("input[name=password]", "not-the-password")
    go(page, "form:has(input[name=password]) button[type=submit]")
    violations += axe_serious(page)
    log_in(page, live_server, "coordinator.toulouse")
    p, day0 = study["participant"].pk, study["day0"].pk
    for path in ("/trials/ASC-DU/sites/TLS/participants/", f"/participants/{p}/", f"/visits/{day0}/crf/COCHIN/",
                 f"/participants/{p}/adverse-events/", f"/participants/{p}/adverse-events/new/", "/safety/clocks/"):
        page.goto(f"{live_server.url}{path}")
        violations += axe_serious(page)
    # A CRF with errors: the error summary's links.
    page.goto(f"{live_server.url}/visits/{day0}/crf/VITALS/")
    page.fill("#id_crf-heart_rate", "999") if page.locator("#id_crf-heart_rate").count() else None
    go(page, "button[value=complete]")
    violations += axe_serious(page)
    # The AE form with errors.
    page.goto(f"{live_server.url}/participants/{p}/adverse-events/new/")
    go(page, "button:has-text('Save')")
    violations += axe_serious(page)
    for username, paths in (("monitor.du", ["/monitoring/"]), ("datamanager", ["/exports/", "/trials/ASC-DU/exports/"])):
        page.context.clear_cookies()
        log_in(page, live_server, username)
        for path in paths:
            page.goto(f"{live_server.url}{path}")
            violations += axe_serious(page)
    page.context.close()
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshots_of_the_small_screens(browser, live_server, study, size):
    """Screenshots to look at (artifacts/e2e/mobile-*): the participant page, a matrix CRF, the SAE
    clocks, and the top bar collapsed then opened; the matrix radios are 44 px touch targets."""
    context = browser.new_context(viewport=SIZES[size], locale="en-GB", has_touch=True, is_mobile=size == "phone", bypass_csp=True)
    page = context.new_page()
    log_in(page, live_server, "coordinator.toulouse")
    toggler = page.locator("nav .navbar-toggler")
    expect(toggler).to_be_visible()
    expect(page.locator("[data-testid=current-user]")).to_be_hidden()
    screenshot(page, f"mobile-{size}-topbar-collapsed")
    toggler.click()
    page.wait_for_selector("#edc-topbar-menu.collapse.show")  # opened, the animation over
    expect(page.locator("[data-testid=current-user]")).to_be_visible()
    screenshot(page, f"mobile-{size}-topbar-open")
    page.goto(f"{live_server.url}/participants/{study['participant'].pk}/")
    screenshot(page, f"mobile-{size}-participant")
    page.goto(f"{live_server.url}/visits/{study['day0'].pk}/crf/COCHIN/")
    target = page.locator("#id_crf-cochin_01_2").locator("xpath=ancestor::label[1]")
    box = target.bounding_box()
    assert box["width"] >= 44 and box["height"] >= 44, box
    target.click(position={"x": box["width"] - 3, "y": box["height"] - 3})  # the edge of the target, not the radio
    expect(page.locator("#id_crf-cochin_01_2")).to_be_checked()
    # The column heading is in sight of the radio: the header row on a tablet, beside each option on a phone.
    heading = target.locator("xpath=ancestor::table[1]/thead//th").nth(3) if size == "tablet" else target.locator(".edc-matrix-col")
    expect(heading).to_be_visible()
    screenshot(page, f"mobile-{size}-crf-matrix")
    page.goto(f"{live_server.url}/safety/clocks/")
    report = page.locator("[data-clock] button:has-text('Report sent')").first.bounding_box()
    assert 0 <= report["x"] and report["x"] + report["width"] <= SIZES[size]["width"], report  # not off-screen
    screenshot(page, f"mobile-{size}-sae-clocks")
    context.close()
