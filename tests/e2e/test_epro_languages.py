"""Issue 20's done-when, in Chromium: a coordinator in Mexico, with Spanish set, opens a visit, hands
the tablet over, the participant answers HAQ-DI and the pain VAS in Spanish in participant mode, the
coordinator takes it back with her PIN and sees the computed HAQ-DI; a French participant answers
COCHIN on a personal link on a 390x844 phone.

Interface strings are asserted as the catalogues translate them (gettext under the language, and
checked to differ from the English), plus the pages' `lang`; CRF label text is not asserted (per-language
CRF content is another piece of work)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils.translation import gettext, override
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_epro import answer_screens, no_overflow
from tests.e2e.test_login import DEMO, go, log_in
from tests.epro.conftest import register
from tests.epro.test_epro import COCHIN
from trials.demo.participants import participant_register
from trials.epro.models import Mode, ProResponse
from trials.epro.services import link_create
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/epro")
PIN = "2580"

# HAQ-DI answers for the hand calculation (Bruce B, Fries JF. The Stanford Health Assessment
# Questionnaire: dimensions and practical applications. Health Qual Life Outcomes 2003;1:20): a
# category scores its hardest item (0-3); an aid/device or help from another person for it raises
# a 0 or 1 to 2; the HAQ-DI is the mean of the category scores (at least 6 of 8 answered).
HAQ_ES = {
    "haq_dressing_1": "2", "haq_dressing_2": "1",                            # 2
    "haq_arising_1": "1", "haq_arising_2": "1",                              # 1, help -> 2
    "haq_eating_1": "0", "haq_eating_2": "0", "haq_eating_3": "1",           # 1
    "haq_walking_1": "1", "haq_walking_2": "2",                              # 2
    "haq_hygiene_1": "0", "haq_hygiene_2": "0", "haq_hygiene_3": "0",        # 0, aid -> 2
    "haq_reach_1": "1", "haq_reach_2": "0",                                  # 1
    "haq_grip_1": "0", "haq_grip_2": "1", "haq_grip_3": "0",                 # 1
    "haq_activities_1": "0", "haq_activities_2": "0", "haq_activities_3": "0",  # 0
    **{f"haq_{c}_aid": "false" for c in ("dressing", "arising", "eating", "walking", "reach", "grip", "activities")},
    "haq_hygiene_aid": "true",
    **{f"haq_{c}_help": "false" for c in ("dressing", "eating", "walking", "hygiene", "reach", "grip", "activities")},
    "haq_arising_help": "true",
}
# (2 + 2 + 1 + 2 + 2 + 1 + 1 + 0) / 8 categories = 11 / 8 = 1.375, stored "1.375"; a Spanish reader
# sees it with her decimal comma (CLDR es: decimal separator ","): "1,375".
HAQ_DI_ES_BY_HAND = "1.375"
HAQ_DI_ES_SHOWN = "1,375"


def shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    screenshot(page, f"epro-{name}")


def translated(language: str, message: str, **values) -> str:  # noqa: ANN003
    """The catalogue's translation of an interface string (and proof that it is translated)."""
    with override(language):
        text = gettext(message)
    assert text != message, f"{message!r} has no {language} translation in the catalogue"
    return text % values if values else text


@pytest.fixture
def d0_mexico(demo_users):
    """A participant of ADSVF-SSC-HANDS at INCMNSZ (Mexico City), enrolled today: D0 is today."""
    site = Site.objects.get(trial__code="ADSVF-SSC-HANDS", code="INCMNSZ")
    today = site.today()  # Mexico City's date, which the D0 window is in (not the server's UTC date)
    participant = participant_register(site=site, consent_date=today - timedelta(days=3), anchor_date=today, user=system_user())
    return participant.visits.get(definition__code="D0")


def test_mexico_in_spanish_hands_over_the_tablet_and_takes_it_back_with_her_pin(browser, live_server, d0_mexico):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, locale="es-MX", has_touch=True)
    page = context.new_page()
    log_in(page, live_server, "coordinator.mexico")
    # Spanish set with the top bar's switcher (kept on her account).
    page.goto(f"{live_server.url}/accounts/")
    page.get_by_test_id("topbar-toggler").click()  # on a tablet the top bar is collapsed behind its menu button
    go(page, "button[name=language][value=es]")
    assert page.get_attribute("html", "lang") == "es"
    expect(page.locator("h1")).to_have_text(translated("es", "My account"))
    # Her PIN, set on her account page, confirmed by her password.
    go(page, "[data-testid=account-pin]")
    page.fill("input[name=pin]", PIN)
    page.fill("input[name=pin_again]", PIN)
    page.fill("input[name=password]", DEMO["coordinator.mexico"]["password"])
    shot(page, "es-pin-set")
    go(page, "[data-testid=pin-submit]")

    page.goto(f"{live_server.url}/participants/{d0_mexico.participant_id}/")
    go(page, "[data-testid=epro-D0]")
    expect(page.locator("[data-testid=handover]")).to_have_text(translated("es", "Hand over the tablet (participant mode)"))
    go(page, "[data-testid=handover]")
    assert page.get_attribute("html", "lang") == "es"
    expect(page.locator("h1")).to_have_text(translated("es", "Your questionnaires"))
    expect(page.locator("[data-testid=tablet-exit]")).to_have_text(translated("es", "Study staff: end participant mode"))
    assert d0_mexico.participant.number not in page.inner_text("body") and "INCMNSZ" not in page.inner_text("body")
    no_overflow(page)
    shot(page, "es-tablet-home")

    go(page, "[data-testid=tablet-HAQDI]")
    assert page.get_attribute("html", "lang") == "es"
    expect(page.locator("[data-testid=next]")).to_contain_text(translated("es", "Next"))
    pages = translated("es", "Page %(number)s of %(count)s", number=1, count="COUNT")
    expect(page.locator("[data-testid=progress-text]")).to_have_text(re.compile("^" + re.escape(pages).replace("COUNT", r"\d+") + "$"))
    shot(page, "es-haq-first-screen")
    answer_screens(page, HAQ_ES, "es-tablet-haq")
    expect(page.locator("[role=status]")).to_have_text(translated("es", "Thank you. Your answers have been saved."))

    go(page, "[data-testid=tablet-PAIN_VAS]")
    line = page.locator("[data-testid=vas-line-pain_vas]")
    expect(page.locator(".epro-vas-mark")).to_be_hidden()
    box = line.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.62, box["y"] + box["height"] / 2)
    touched = int(page.locator("[data-testid=vas-value-pain_vas]").input_value())
    assert 61 <= touched <= 63
    shot(page, "es-tablet-vas")
    go(page, "[data-testid=submit]")

    # Taken back with her PIN: first a wrong one, then hers.
    go(page, "[data-testid=tablet-exit]")
    expect(page.locator("h1")).to_have_text(translated("es", "Study staff: take the tablet back"))
    page.fill("#password", "1397")
    go(page, "[data-testid=exit-submit]")
    expect(page.locator("[data-testid=exit-error]")).to_be_visible()
    shot(page, "es-pin-screen")
    page.fill("#password", PIN)
    go(page, "[data-testid=exit-submit]")
    assert page.url == f"{live_server.url}/epro/visits/{d0_mexico.pk}/"
    page.goto(f"{live_server.url}/visits/{d0_mexico.pk}/crf/HAQDI/")
    assert page.get_attribute("html", "lang") == "es"
    expect(page.locator("[data-testid=calc-haq_di]")).to_have_text(HAQ_DI_ES_SHOWN)
    assert str(CrfEntry.objects.get(visit=d0_mexico, crf_code="HAQDI").answers["haq_di"]) == HAQ_DI_ES_BY_HAND
    expect(page.locator("[data-testid=participant-sourced]")).to_be_visible()
    shot(page, "es-haq-staff-view")
    assert CrfEntry.objects.get(visit=d0_mexico, crf_code="PAIN_VAS").answers["pain_vas"] == touched
    responses = ProResponse.objects.filter(entry__visit=d0_mexico)
    assert sorted(r.mode for r in responses) == [Mode.TABLET, Mode.TABLET]
    assert {r.handed_over_by.username for r in responses} == {"coordinator.mexico"}
    context.close()


def test_a_french_participant_answers_cochin_on_a_phone(browser, live_server, demo_users):
    from django.contrib.auth import get_user_model

    w8 = register().visits.get(definition__code="W8")  # Toulouse, W8 due today
    _link, token = link_create(
        user=get_user_model().objects.get(username="coordinator.toulouse"), visit=w8, crf_code="COCHIN", base_url=live_server.url,
    )
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="fr-FR", has_touch=True, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(f"{live_server.url}/epro/q/{token}/")
    assert mobile.get_attribute("html", "lang") == "fr"
    expect(mobile.locator("[data-testid=progress-text]")).to_have_text(translated("fr", "Page %(number)s of %(count)s", number=1, count=9))
    expect(mobile.locator("[data-testid=next]")).to_contain_text(translated("fr", "Next"))
    no_overflow(mobile)
    shot(mobile, "fr-phone-cochin-start")
    answer_screens(mobile, COCHIN, "fr-phone-cochin")
    expect(mobile.locator("[data-testid=thanks]")).to_have_text(translated("fr", "Thank you. Your answers have been saved."))
    assert mobile.get_attribute("html", "lang") == "fr"
    no_overflow(mobile)
    shot(mobile, "fr-phone-cochin-thanks")
    # Cochin total: the sum of the 18 items (Duruoz 1996): 1+2+3+4+5+0 three times = 45.
    assert CrfEntry.objects.get(visit=w8, crf_code="COCHIN").answers["cochin_total"] == 45
    assert ProResponse.objects.get(entry__visit=w8, entry__crf_code="COCHIN").mode == Mode.LINK
    phone.close()
