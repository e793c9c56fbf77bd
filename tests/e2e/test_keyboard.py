"""A coordinator fills CRFs with the keyboard alone: Tab order, visible focus, the error summary, Enter to save.

After logging in and opening the CRF's address, nothing is clicked: Tab / Shift+Tab, typing, Space and
the arrow keys (radios, the VAS number), Enter (to submit, and to follow an error summary link).
`page.evaluate` of a plain expression or function string goes through the DevTools protocol, so the
page's CSP (no inline scripts, no eval) does not block it.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import log_in
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The focused element: a short name for it, whether it is inside the CRF form, where it is on the
# page, whether it shows a focus indicator (an outline, or Bootstrap's focus box-shadow; a
# transparent one is none) and that indicator's contrast on white. Motion is reduced (see
# `keyboard_page`), so no transition is caught half-way.
FOCUSED = r"""() => {
  const e = document.activeElement;
  if (!e || e === document.body) return {stop: "body", ring: false, inForm: false, top: 0};
  const s = getComputedStyle(e);
  const stop = e.tagName === "SUMMARY" ? "summary" : e.tagName === "BUTTON" ? "button:" + (e.value || e.innerText.trim())
    : e.tagName === "A" ? "link:" + e.innerText.trim() : e.name || e.id || e.tagName;
  // The indicator's colour, over the white page: the outline's, else the focus box-shadow's.
  const outline = s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0;
  const color = outline ? s.outlineColor : s.boxShadow !== "none" ? s.boxShadow.match(/rgba?\([^)]*\)/)[0] : null;
  let contrast = 1;
  if (color) {
    const [r, g, b, a = 1] = color.match(/[\d.]+/g).map(Number);
    const lin = (c) => { c = (255 - a * (255 - c)) / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    contrast = 1.05 / (0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b) + 0.05);
  }
  // A date input's calendar button is a stop of its own, inside the browser's shadow DOM: the input
  // then does not match :focus, and the button draws the browser's own focus ring.
  const picker = /^date/.test(e.type) && !e.matches(":focus");
  return {stop, id: e.id, ring: picker || contrast > 1.01, contrast: picker ? 21 : contrast, inForm: !!e.closest("form.edc-crf"),
          top: Math.round(e.getBoundingClientRect().top + window.scrollY)};
}"""

# Every control of the CRF form that a keyboard user must be able to reach by Tab alone (not hidden
# inputs, the VAS range slider, a mouse aid beside its number input, or the missing-data code and
# reason inside a closed "Cannot answer?", reached once it is opened).
CONTROLS = r"""() => [...document.querySelectorAll("form.edc-crf input, form.edc-crf select, form.edc-crf textarea")]
  .filter((e) => e.type !== "hidden" && e.tabIndex >= 0 && !e.disabled && e.checkVisibility()).map((e) => e.name)"""


@pytest.fixture
def participant(demo_users):
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), consent_date=today - timedelta(days=30), anchor_date=today - timedelta(days=7), user=system_user(),
    )


@pytest.fixture
def keyboard_page(page):
    """The page, with reduced motion (Bootstrap then drops its focus transitions), and a record of
    the answers 409 Conflict. Tabbing onto a save button makes htmx add that button's `action` to
    the live re-evaluations still queued; they must not save (test_a_live_re_evaluation_never_saves),
    so the keyboard's own save never meets a conflict."""
    page.emulate_media(reduced_motion="reduce")
    page.conflicts = []
    page.on("response", lambda r: page.conflicts.append(r.url) if r.status == 409 else None)
    return page


def press(page, key: str = "Tab") -> dict:
    """Press a key that moves the focus; where it lands must show it, in the form at 3:1 at least
    (WCAG 1.4.11; the navigation bar, on blue, only needs an indicator)."""
    page.keyboard.press(key)
    focused = page.evaluate(FOCUSED)
    assert focused["ring"], f"no visible focus on {focused['stop']} after {key}"
    assert focused["contrast"] >= 3 or not focused["inForm"], f"faint focus on {focused['stop']}: {focused['contrast']:.1f}:1"
    return focused


def tab_to(page, stop: str, key: str = "Tab", limit: int = 60) -> list[dict]:
    """Press Tab (or Shift+Tab) until `stop` has the focus; every stop on the way shows its focus."""
    seen = []
    for _ in range(limit):
        seen.append(press(page, key))
        if seen[-1]["stop"] == stop:
            return seen
    pytest.fail(f"{stop} not reached with {key}: {[s['stop'] for s in seen]}")


def save_as_complete(page) -> None:
    tab_to(page, "button:complete")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_vitals_by_keyboard_alone_with_an_error_fixed_from_the_summary(keyboard_page, live_server, participant):
    page = keyboard_page
    screening = participant.visits.get(definition__code="SCREEN")
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/visits/{screening.pk}/crf/VITALS/")
    assert page.evaluate("document.activeElement.tagName") == "BODY"  # a plain expression, past the CSP

    # --- Tab order: the page's links, then every control of the form in reading order, then the buttons.
    stops = tab_to(page, "button:complete_next")
    in_form = [s for s in stops if s["inForm"]]
    assert all(s["stop"].startswith(("link:", "button:")) for s in stops if not s["inForm"])  # navigation first
    assert [s["stop"] for s in in_form] == [
        "crf-height_cm", "summary", "crf-weight_kg", "summary",  # "Cannot answer?" after each required item
        "crf-systolic_bp", "summary", "crf-diastolic_bp", "summary", "crf-heart_rate", "summary", "crf-temperature_c",
        "button:save", "button:complete", "button:complete_next",
    ]
    assert set(page.evaluate(CONTROLS)) <= {s["stop"] for s in in_form}  # nothing out of reach
    assert [s["top"] for s in in_form] == sorted(s["top"] for s in in_form)  # focus moves down the page

    # "Cannot answer?" opens with Enter; its missing-data code and reason then come next.
    page.goto(page.url)
    tab_to(page, "crf-height_cm")
    assert press(page)["stop"] == "summary"
    page.keyboard.press("Enter")
    assert press(page)["stop"] == "crf-height_cm__missing" and press(page)["stop"] == "crf-height_cm__missing_reason"
    assert press(page, "Shift+Tab")["stop"] == "crf-height_cm__missing" and press(page, "Shift+Tab")["stop"] == "summary"
    page.keyboard.press("Enter")
    expect(page.locator("#item-crf-height_cm details")).not_to_have_attribute("open", "")

    # --- Fill it in, with a typo in the height and the heart rate forgotten; Enter in a field saves.
    assert press(page, "Shift+Tab")["stop"] == "crf-height_cm"
    page.keyboard.type("1750")  # cm: 10 times too much
    tab_to(page, "crf-weight_kg")
    page.keyboard.type("70.5")
    for name, value in (("crf-systolic_bp", "128"), ("crf-diastolic_bp", "82"), ("crf-temperature_c", "36.8")):
        tab_to(page, name)
        page.keyboard.type(value)
    screenshot(page, "keyboard-vitals-filled")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # --- The error summary has the focus, and its links, reachable by Tab, lead into the fields.
    summary = page.locator("[data-testid=error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Must be at most 230")
    assert page.evaluate(FOCUSED)["ring"]  # the browser's focus ring around the summary
    screenshot(page, "keyboard-vitals-error-summary")
    assert not CrfEntry.objects.filter(visit=screening, crf_code="VITALS").exists()
    height_link, heart_rate_link = summary.get_by_role("link", name="Height"), summary.get_by_role("link", name="Heart rate")
    assert press(page)["stop"] == "link:Height" and press(page)["stop"] == "link:Heart rate"
    expect(heart_rate_link).to_be_focused()
    press(page, "Shift+Tab")
    expect(height_link).to_be_focused()
    page.keyboard.press("Enter")
    height = page.locator("#id_crf-height_cm")
    expect(height).to_be_focused()
    expect(height).to_be_in_viewport()
    assert page.evaluate(FOCUSED)["ring"]
    screenshot(page, "keyboard-vitals-link-followed")

    # --- Fix both by keyboard; the live BMI follows (htmx) without taking the focus.
    page.keyboard.press("Control+A")
    page.keyboard.type("175")
    tab_to(page, "crf-heart_rate")
    expect(page.locator("[data-testid=calc-bmi]")).to_have_text("23.0 kg/m²")
    expect(page.locator("#id_crf-heart_rate")).to_be_focused()
    page.keyboard.type("72")
    save_as_complete(page)

    expect(page.locator("[data-testid=saved]")).to_be_visible()
    expect(page.locator("[data-testid=error-summary]")).to_have_count(0)
    screenshot(page, "keyboard-vitals-saved")
    entry = CrfEntry.objects.get(visit=screening, crf_code="VITALS")
    assert (entry.status, entry.revision) == ("complete", 1)  # saved once, by the keyboard's Enter
    assert entry.answers == {
        "height_cm": "175.0", "weight_kg": "70.5", "bmi": "23.0", "systolic_bp": 128, "diastolic_bp": 82, "heart_rate": 72, "temperature_c": "36.8",
    }
    assert page.conflicts == []
    assert page.console_errors == []


def test_vas_and_a_radio_scale_with_branching_by_keyboard_alone(keyboard_page, live_server, participant):
    page = keyboard_page
    day0 = participant.visits.get(definition__code="D0")
    log_in(page, live_server, "coordinator.toulouse")

    # --- Pain VAS: the number input is the keyboard's control (the range slider beside it is a mouse
    # aid, out of the Tab order); the arrow keys step it and the slider follows.
    page.goto(f"{live_server.url}/visits/{day0.pk}/crf/PAIN_VAS/")
    stops = tab_to(page, "crf-pain_vas")
    assert [s["stop"] for s in stops if s["inForm"]] == ["crf-pain_vas"]
    page.keyboard.type("40")
    for _ in range(2):
        page.keyboard.press("ArrowUp")
    expect(page.locator("#id_crf-pain_vas")).to_have_value("42")
    expect(page.locator("input[type=range][data-edc-slider-for='id_crf-pain_vas']")).to_have_value("42")
    screenshot(page, "keyboard-vas")
    save_as_complete(page)
    expect(page.locator("[data-testid=saved]")).to_be_visible()
    assert CrfEntry.objects.get(visit=day0, crf_code="PAIN_VAS").answers["pain_vas"] == 42

    # --- Raynaud Condition Score: Tab into the 0-10 radio group, Space picks, arrows move the pick.
    page.goto(f"{live_server.url}/visits/{day0.pk}/crf/RCS/")
    tab_to(page, "crf-raynaud_condition_score")
    expect(page.locator("#id_crf-raynaud_condition_score_0")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator("#id_crf-raynaud_condition_score_0")).to_be_checked()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#id_crf-raynaud_condition_score_3")).to_be_checked()
    expect(page.locator("#id_crf-raynaud_condition_score_3")).to_be_focused()
    assert page.evaluate(FOCUSED)["ring"]
    screenshot(page, "keyboard-rcs-radio")
    # One Tab leaves the group (not one per radio).
    assert press(page)["stop"] == "summary" and press(page)["stop"] == "crf-raynaud_attacks_per_day"

    # Branching: no attacks hides their duration (live, htmx). Tabbing on at once puts the focus in
    # the duration field just before it goes: the focus moves on, it is not dropped on the page.
    # The re-evaluation is held until the focus is in that field, so that the order is certain.
    held = []
    page.route("**/crf/RCS/", lambda route: held.append(route) if route.request.headers.get("hx-request") else route.fallback())
    page.keyboard.type("0")
    assert press(page)["stop"] == "summary" and press(page)["stop"] == "crf-raynaud_attack_duration_min"
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(20)  # lets Playwright deliver the route
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/crf/RCS/")
    expect(page.locator("#id_crf-raynaud_attack_duration_min")).to_have_count(0)
    expect(page.locator("button[value=save]:not(.visually-hidden)")).to_be_focused()
    assert page.evaluate(FOCUSED)["ring"]

    # Three attacks a day bring the duration back; it is answered by keyboard too.
    tab_to(page, "crf-raynaud_attacks_per_day", key="Shift+Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    assert press(page)["stop"] == "summary"
    duration = page.locator("#id_crf-raynaud_attack_duration_min")
    expect(duration).to_be_visible()
    expect(page.locator("summary").nth(1)).to_be_focused()  # the live update left the focus where it was
    assert press(page)["stop"] == "crf-raynaud_attack_duration_min"
    page.keyboard.type("15")
    screenshot(page, "keyboard-rcs-filled")
    save_as_complete(page)
    expect(page.locator("[data-testid=saved]")).to_be_visible()
    screenshot(page, "keyboard-rcs-saved")
    answers = CrfEntry.objects.get(visit=day0, crf_code="RCS").answers
    assert (answers["raynaud_condition_score"], answers["raynaud_attacks_per_day"], answers["raynaud_attack_duration_min"]) == (3, 3, 15)
    assert page.conflicts == []
    assert page.console_errors == []


def test_enter_in_a_field_saves_rather_than_adds_a_row(keyboard_page, live_server, participant):
    """On a CRF with a repeating group, the form's first submit button used to be "Add a row"."""
    page = keyboard_page
    day0 = participant.visits.get(definition__code="D0")
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/visits/{day0.pk}/crf/DU_ASSESS/")
    rows = page.locator("[data-testid=row]").count()
    tab_to(page, "crf-number_active_du")
    page.keyboard.type("1")
    with page.expect_request(lambda r: r.method == "POST" and r.headers.get("hx-request") is None) as request, page.expect_navigation():
        page.keyboard.press("Enter")
    # DU_ASSESS has a file item (a photo per ulcer), so the form is multipart/form-data.
    body = request.value.post_data
    assert re.search(r"(^|&)action=save(&|$)", body) or re.search(r'name="action"\r\n\r\nsave\r\n', body)
    expect(page.locator("[data-testid=row]")).to_have_count(rows)
    assert page.conflicts == []
    assert page.console_errors == []
