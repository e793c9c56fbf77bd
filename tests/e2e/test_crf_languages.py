"""CRF content in several languages in a real browser (issue 20): a Toulouse coordinator of a site
declared French reads the Cochin scale's CRF page in French with the staff-only badge; a
participant's phone in Spanish reads her personal link's HAQ-DI in Spanish, without the badge.
Screenshots: artifacts/e2e/crf-cochin-fr.png, artifacts/e2e/epro-haqdi-es.png."""

import pytest
from playwright.sync_api import expect

from edc.audit import audited_save, system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from tests.epro.conftest import register
from trials.protocol.models import Site


@pytest.fixture
def w8(demo_users):
    for site in Site.objects.filter(trial__code="ASC-DU", code="TLS"):
        site.language = "fr"
        audited_save(site, user=system_user(), reason="test: a French site")
    return register().visits.get(definition__code="W8")


def test_french_crf_page_for_staff_and_spanish_epro_for_the_participant(browser, live_server, w8):
    staff = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-GB")
    page = staff.new_page()
    log_in(page, live_server, "coordinator.toulouse", language=None)  # never chose a language: her site's, French
    page.goto(f"{live_server.url}/visits/{w8.pk}/crf/COCHIN/")
    expect(page.locator("h1")).to_contain_text("Échelle fonctionnelle de la main de Cochin")
    expect(page.get_by_text("1. Pouvez-vous tenir un bol ?")).to_be_visible()
    expect(page.locator("[data-testid=translation-to-be-validated]")).to_be_visible()
    screenshot(page, "crf-cochin-fr")
    page.goto(f"{live_server.url}/epro/visits/{w8.pk}/")
    go(page, "[data-testid=link-HAQDI]")
    url = page.inner_text("[data-testid=link-url]").strip()
    staff.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="es-ES", has_touch=True, is_mobile=True)
    mobile = phone.new_page()
    # The participant picks Spanish on the page (her site is French).
    mobile.goto(url)
    go(mobile, "button[name=language][value=es]")
    go(mobile, "[data-testid=next]")
    expect(mobile.get_by_text("¿Vestirse, incluido atarse los cordones y abotonarse?")).to_be_visible()
    expect(mobile.get_by_text("Sin ninguna dificultad").first).to_be_visible()
    assert mobile.locator("[data-testid=translation-to-be-validated]").count() == 0
    screenshot(mobile, "epro-haqdi-es")
    phone.close()
