"""ePRO in Chromium: the coordinator hands the tablet over (768x1024), the participant answers HAQ-DI
and the pain VAS (touching the line), the coordinator takes it back with her password and sees the
computed HAQ-DI; a participant answers COCHIN through a personal link on a 390x844 phone."""

from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.utils.translation import gettext, override
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from tests.epro.conftest import PASSWORD, register
from tests.epro.test_epro import COCHIN, HAQ, HAQ_DI_BY_HAND
from trials.epro.models import ProResponse
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/epro")


def shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    screenshot(page, f"epro-{name}")


def no_overflow(page) -> None:  # noqa: ANN001
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def answer_screens(page, answers: dict, name: str) -> None:  # noqa: ANN001
    """Touch each answer on each screen, then Next, until the last screen's Send."""
    for number in range(40):
        for fieldset in page.locator("fieldset[data-testid^=q-]").all():
            item = fieldset.get_attribute("data-testid")[2:]
            value = answers[item]
            if value == "__declined__":
                page.click(f"label[for='{item}-decline']")
            else:
                radio = page.locator(f"input[name='{item}'][value='{value}']")
                page.click(f"label[for='{radio.get_attribute('id')}']")
        no_overflow(page)
        if number == 1:
            shot(page, f"{name}-screen")
        if page.locator("[data-testid=submit]").count():
            go(page, "[data-testid=submit]")
            return
        go(page, "[data-testid=next]")
    raise AssertionError("the questionnaire never ended")


@pytest.fixture
def w8(demo_users):
    return register().visits.get(definition__code="W8")


def test_tablet_handover_haq_di_and_pain_vas_then_taken_back(browser, live_server, w8):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="en-GB", has_touch=True)
    page = context.new_page()
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/participants/{w8.participant_id}/")
    go(page, "[data-testid=epro-W8]")
    shot(page, "tablet-visit-page")
    go(page, "[data-testid=handover]")
    expect(page.locator("[data-testid=tablet-HAQDI]")).to_be_visible()
    assert w8.participant.screening_number not in page.inner_text("body")
    shot(page, "tablet-home")
    # Staff pages are out of reach while she holds the tablet.
    page.goto(f"{live_server.url}/participants/{w8.participant_id}/")
    assert page.url == f"{live_server.url}/epro/tablet/"

    go(page, "[data-testid=tablet-HAQDI]")
    answer_screens(page, HAQ, "tablet-haq")
    go(page, "[data-testid=tablet-PAIN_VAS]")
    line = page.locator("[data-testid=vas-line-pain_vas]")
    box = line.bounding_box()
    assert 370 <= box["width"] <= 385  # 100 mm at 96 CSS px per inch
    # No preset mark: nothing recorded until the line is touched.
    expect(page.locator(".epro-vas-mark")).to_be_hidden()
    expect(page.locator("[data-testid=vas-value-pain_vas]")).to_have_value("")
    shot(page, "tablet-vas-untouched")
    page.mouse.click(box["x"] + box["width"] * 0.37, box["y"] + box["height"] / 2)
    expect(page.locator(".epro-vas-mark")).to_be_visible()
    touched = int(page.locator("[data-testid=vas-value-pain_vas]").input_value())
    assert 36 <= touched <= 38
    shot(page, "tablet-vas-touched")
    go(page, "[data-testid=submit]")
    expect(page.locator("[data-testid=tablet-PAIN_VAS]")).to_have_count(0)

    go(page, "[data-testid=tablet-exit]")
    page.fill("#password", "wrong-password")
    go(page, "[data-testid=exit-submit]")
    expect(page.locator("[data-testid=exit-error]")).to_be_visible()
    page.fill("#password", PASSWORD)
    go(page, "[data-testid=exit-submit]")
    assert page.url == f"{live_server.url}/epro/visits/{w8.pk}/"
    page.goto(f"{live_server.url}/visits/{w8.pk}/crf/HAQDI/")
    expect(page.locator("[data-testid=calc-haq_di]")).to_have_text(HAQ_DI_BY_HAND)
    expect(page.locator("[data-testid=participant-sourced]")).to_be_visible()
    shot(page, "tablet-haq-staff-view")
    assert CrfEntry.objects.get(visit=w8, crf_code="PAIN_VAS").answers["pain_vas"] == touched
    assert ProResponse.objects.filter(entry__visit=w8).count() == 2
    context.close()


def site_language(visit) -> str:  # noqa: ANN001
    """The `language:` the trial file gives the visit's site."""
    trial = yaml.safe_load((Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml").read_text(encoding="utf-8"))
    return next(s for s in trial["sites"] if s["code"] == visit.participant.site.code)["language"]


def test_cochin_on_a_phone_through_a_personal_link(browser, live_server, w8):
    staff = browser.new_context(viewport={"width": 768, "height": 1024}, locale="en-GB")
    page = staff.new_page()
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/epro/visits/{w8.pk}/")
    go(page, "[data-testid=link-COCHIN]")
    url = page.inner_text("[data-testid=link-url]").strip()
    expect(page.locator("[data-testid=link-qr] svg")).to_be_visible()
    shot(page, "link-created")
    staff.close()

    # The participant's phone (an English browser): her page opens in her site's language (Toulouse: `language:
    # fr` in the trial file), the language of a French participant.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB", has_touch=True, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(url)
    assert mobile.get_attribute("html", "lang") == site_language(w8) == "fr"
    shot(mobile, "phone-cochin-start")
    no_overflow(mobile)
    # Back keeps what was answered. The screen says which part of the scale it is, in her language.
    go(mobile, "[data-testid=next]")
    cochin = yaml.safe_load((Path(settings.BASE_DIR) / "seeds" / "crfs" / "cochin.yaml").read_text(encoding="utf-8"))
    kitchen = next(s for s in cochin["sections"] if s["name"]["en"] == "Kitchen")["name"]["fr"]
    expect(mobile.locator("[data-testid=section-title]")).to_have_text(kitchen)
    for item in ("cochin_01", "cochin_02", "cochin_03"):
        mobile.click(f"label[for='{item}-2']")
    go(mobile, "[data-testid=next]")
    with override("fr"):
        page_3 = gettext("Page %(number)s of %(count)s") % {"number": 3, "count": 9}
        answered = gettext("This questionnaire has already been answered. Thank you.")
    assert page_3 != "Page 3 of 9" and "already been answered" not in answered  # translated in the catalogue
    expect(mobile.locator("[data-testid=progress-text]")).to_have_text(page_3)
    go(mobile, "[data-testid=back]")
    expect(mobile.locator("#cochin_01-2")).to_be_checked()
    answer_screens(mobile, COCHIN, "phone-cochin")
    expect(mobile.locator("[data-testid=thanks]")).to_be_visible()
    shot(mobile, "phone-cochin-thanks")
    assert CrfEntry.objects.get(visit=w8, crf_code="COCHIN").answers["cochin_total"] == 45
    mobile.goto(url)
    expect(mobile.locator("[data-testid=gone-message]")).to_contain_text(answered)
    shot(mobile, "phone-link-used")
    phone.close()
