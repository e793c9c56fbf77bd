"""In the browser: a coordinator records a serious AE; its reporting clock runs and stops when the
report is recorded; the safety summary counts it without anyone pressing a button."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.conftest import wait_for
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.safety.models import AdverseEvent, SafetySummary

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_serious_ae_starts_a_clock_and_reaches_the_safety_summary(page, browser, live_server, demo_users):
    today = timezone.localdate()
    participant = participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=30), anchor_date=today - timedelta(days=20),
    )
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/participants/{participant.pk}/")
    go(page, "text=Adverse events")
    go(page, "[data-testid=ae-new]")
    page.fill("#id_verbatim_term", "Cellulitis of the treated finger")
    page.fill("#id_onset_date", (today - timedelta(days=2)).isoformat())
    page.check("#id_grade_2")  # grade 3
    page.check("input[name=seriousness][value=hospitalisation]")
    page.select_option("#id_related_product", "possible")
    page.fill("#id_aware_at", f"{(today - timedelta(days=1)).isoformat()}T09:00")
    # A fatal outcome with grade 3 is refused, on the field, and nothing is written.
    page.select_option("#id_outcome", "fatal")
    go(page, "button:has-text('Save')")
    expect(page.locator("#id_outcome").locator("xpath=..").locator(".invalid-feedback, .text-danger").first).to_be_visible()
    assert not AdverseEvent.objects.filter(participant=participant).exists()
    page.select_option("#id_outcome", "not_recovered")
    go(page, "button:has-text('Save')")
    expect(page.locator(".alert-warning")).to_contain_text("reporting clock runs")
    screenshot(page, "safety-ae-log")
    saved = AdverseEvent.objects.get(participant=participant)
    assert saved.serious and saved.clocks.count() == 1

    go(page, "text=SAE clocks")
    row = page.locator(f"[data-clock='{saved.clocks.get().pk}']")
    expect(row).to_contain_text("Cellulitis")
    screenshot(page, "safety-clocks")
    go(page, f"[data-clock='{saved.clocks.get().pk}'] button")
    expect(page.locator(".alert-success")).to_contain_text("clock is stopped")
    assert saved.clocks.get().reported_at is not None

    # The summary was recomputed after the save (on Celery; eager in the demo): the sponsor sees it.
    wait_for(lambda: SafetySummary.objects.filter(trial=participant.trial, computed_at__gte=saved.created_at).exists(), timeout=60)
    sponsor = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB").new_page()
    log_in(sponsor, live_server, "sponsor.toulouse")
    sponsor.goto(f"{live_server.url}/trials/ASC-DU/safety/")
    overview = sponsor.locator("[data-testid=overview]")
    expect(overview).to_be_visible()
    text = overview.inner_text()
    assert re.search(r"\b1\b", text), text  # one participant with an AE / an SAE
    assert "AdMSC" not in sponsor.content() and "Placebo" not in sponsor.content().replace("AdMSC or placebo", "")
    screenshot(sponsor, "safety-summary-sponsor")
    assert page.console_errors == []
