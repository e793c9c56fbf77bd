"""In the browser: the investigator signs a visit with her password; the coordinator then corrects
a value of that visit; the signature shows as broken, with who changed what and why."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import DEMO, go, log_in
from trials.records.models import Signature, SignatureState
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.schedule import visit_record_date
from trials.visits.services import crf_entry_save_answers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_signed_visit_changed_later_shows_a_broken_signature(page, browser, live_server, demo_users):
    today = timezone.localdate()
    participant = participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"),
        user=system_user(),
        consent_date=today - timedelta(days=20),
        anchor_date=today - timedelta(days=10),
    )
    visit = participant.visits.get(definition__code="LIPO")
    visit_record_date(visit, user=system_user(), visit_date=today - timedelta(days=7))
    crf_entry_save_answers(
        user=system_user(),
        visit=visit,
        crf_code="VITALS",
        complete=True,
        reason="Source document",
        answers={"height_cm": 165, "weight_kg": 60, "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
    )

    # The investigator signs the visit from the participant's dashboard.
    log_in(page, live_server, "investigator.toulouse")
    page.goto(f"{live_server.url}/participants/{participant.pk}/")
    go(page, f"[data-testid=signature-{visit.pk}]")
    expect(page.locator("[data-testid=sign-meaning]")).to_contain_text("I have reviewed and approve these data.")
    page.fill("#id_username", "investigator.toulouse")  # the first signing of the session: both components
    page.fill("#id_password", "not my password")
    go(page, "[data-testid=sign-button]")
    expect(page.locator("#id_password").locator("xpath=..")).to_contain_text("The password is not correct.")
    page.fill("#id_password", DEMO["investigator.toulouse"]["password"])
    screenshot(page, "signature-sign-page")
    go(page, "[data-testid=sign-button]")
    expect(page.locator("[data-testid=signature-current]")).to_contain_text("Signed by Grégoire Dubois")
    expect(page.locator("[data-testid=signature-current]")).to_contain_text("UTC")
    assert Signature.objects.get().state == SignatureState.VALID

    # The coordinator corrects a value of the signed visit.
    coordinator = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB").new_page()
    log_in(coordinator, live_server, "coordinator.toulouse")
    coordinator.goto(f"{live_server.url}/visits/{visit.pk}/crf/VITALS/")
    expect(coordinator.locator("[data-testid=signed-notice]")).to_contain_text("a change will break the signature")
    coordinator.fill("#id_crf-heart_rate", "76")
    coordinator.fill("#reason", "Transcription error: 76 on the source")
    go(coordinator, "button[value=complete]")
    expect(coordinator.locator("[data-testid=saved]")).to_be_visible()
    coordinator.context.close()

    # The investigator sees the broken signature on the dashboard and on the signature page.
    page.goto(f"{live_server.url}/participants/{participant.pk}/")
    expect(page.locator(f"[data-testid=signature-{visit.pk}]")).to_contain_text("signature broken")
    screenshot(page, "signature-broken-dashboard")
    go(page, f"[data-testid=signature-{visit.pk}]")
    broken = page.locator("[data-testid=signature-broken]")
    expect(broken).to_contain_text("Signature broken")
    expect(broken).to_contain_text("VITALS at Liposuction")
    expect(broken).to_contain_text("Camille Martin")
    expect(broken).to_contain_text("Transcription error: 76 on the source")
    screenshot(page, "signature-broken-page")
    assert Signature.objects.get().state == SignatureState.BROKEN
    assert not page.console_errors, page.console_errors
