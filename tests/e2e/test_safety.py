"""In the browser: a coordinator records a serious related AE (nothing pre-selected on the form); its
24-hour clock runs and stops when the report is recorded; its expectedness is unassessed, so a
SUSAR clock runs until the sponsor assesses it on the to-assess list; the safety summary counts
the AE without anyone pressing a button."""

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
from trials.safety.models import AdverseEvent, ClockKind, SafetySummary

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_serious_ae_starts_a_clock_and_reaches_the_safety_summary(page, browser, live_server, demo_users):
    today = timezone.localdate()
    participant = participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=30), anchor_date=today - timedelta(days=20),
        first_treatment_date=today - timedelta(days=10),  # the summary counts treated participants' AEs from the dose
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
    # Nothing is pre-selected and expectedness is not the site's to answer.
    for name in ("procedure", "related_procedure", "action_taken", "outcome"):
        assert page.locator(f"#id_{name}").input_value() == "", name
    assert page.locator("[name=expected]").count() == 0
    page.select_option("#id_procedure", "injection")
    page.select_option("#id_related_procedure", "possible")
    page.select_option("#id_action_taken", "none")
    screenshot(page, "safety-ae-form")
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
    assert saved.serious and saved.expected is None
    assert set(saved.clocks.values_list("kind", flat=True)) == {ClockKind.SAE_24H, ClockKind.SUSAR_15D}
    sae = saved.clocks.get(kind=ClockKind.SAE_24H)

    go(page, "text=SAE clocks")
    row = page.locator(f"[data-clock='{sae.pk}']")
    expect(row).to_contain_text("Cellulitis")
    expect(page.locator(f"[data-clock='{saved.clocks.get(kind=ClockKind.SUSAR_15D).pk}']")).to_contain_text("expectedness not assessed yet")
    screenshot(page, "safety-clocks")
    go(page, f"[data-clock='{sae.pk}'] button")
    expect(page.locator(".alert-success")).to_contain_text("clock is stopped")
    sae.refresh_from_db()
    assert sae.reported_at is not None

    # The summary was recomputed after the save (on Celery; eager in the demo): the sponsor sees it.
    wait_for(lambda: SafetySummary.objects.filter(trial=participant.trial, computed_at__gte=saved.created_at).exists(), timeout=60)
    sponsor = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB").new_page()
    log_in(sponsor, live_server, "sponsor.toulouse")
    # The sponsor's to-assess list, from her landing page: no arm, and "expected" closes the SUSAR clock.
    go(sponsor, "[data-testid=to-assess-link]")
    form = sponsor.locator(f"[data-testid=assess-{saved.pk}]")
    expect(form).to_be_visible()
    assert "AdMSC" not in sponsor.content() and "Placebo" not in sponsor.content().replace("AdMSC or placebo", "")
    screenshot(sponsor, "safety-to-assess-sponsor")
    form.locator("input[value=expected]").check()
    form.locator("input[name=reason]").fill("Listed in the IB v3, section 6.2 (local infection)")
    go(sponsor, f"[data-testid=assess-{saved.pk}] button")
    expect(sponsor.locator(".alert-success")).to_contain_text("assessed expected")
    susar = saved.clocks.get(kind=ClockKind.SUSAR_15D)
    assert susar.cancelled and "IB v3" in susar.cancel_reason
    sponsor.goto(f"{live_server.url}/trials/ASC-DU/safety/")
    overview = sponsor.locator("[data-testid=overview]")
    expect(overview).to_be_visible()
    text = overview.inner_text()
    assert re.search(r"treatment-emergent AE\s+1 \(100.0 %\)\s+1", text), text  # one participant with a TEAE, one event
    assert "AdMSC" not in sponsor.content() and "Placebo" not in sponsor.content().replace("AdMSC or placebo", "")
    screenshot(sponsor, "safety-summary-sponsor")
    assert page.console_errors == []
