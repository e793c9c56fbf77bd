"""A coordinator fills CRFs in Chromium: a matrix scale, repeating rows, live branching, a fix, a save."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def participant(demo_users):
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), consent_date=today - timedelta(days=30), anchor_date=today - timedelta(days=7), user=system_user(),
    )


def test_cochin_and_digital_ulcers_with_branching_and_a_fix(page, live_server, participant):
    day0 = participant.visits.get(definition__code="D0")
    log_in(page, live_server, "coordinator.toulouse")
    go(page, "a[href='/trials/ASC-DU/sites/TLS/participants/']")
    go(page, f"text={participant.subject_number}")
    screenshot(page, "crf-dashboard")
    go(page, "[data-testid=chip-D0-COCHIN]")

    for item in range(1, 19):
        page.check(f"#id_crf-cochin_{item:02d}_{item % 6}")
    expect(page.locator("[data-testid=calc-cochin_total]")).to_have_text("45")  # live, computed on the server
    screenshot(page, "crf-cochin")
    go(page, "button[value=complete]")
    assert CrfEntry.objects.get(visit=day0, crf_code="COCHIN").answers["cochin_total"] == 45

    page.goto(f"{live_server.url}/visits/{day0.pk}/crf/DU_ASSESS/")
    page.fill("#id_crf-assessment_date", (timezone.localdate() - timedelta(days=40)).isoformat())  # before consent
    page.fill("#id_crf-number_active_du", "1")
    # The ulcer entered at screening (lesion-level eligibility) is carried forward as the first row.
    for _ in range(2 - page.locator("input[name$='-ulcer_id']").count()):
        go(page, "button[value='add_row:ulcers']")
    for row, (ulcer, healed) in enumerate((("U1", "false"), ("U2", "true"))):
        prefix = f"#id_ulcers-{row}-"
        page.fill(prefix + "ulcer_id", ulcer)
        page.check(prefix + "hand_0")
        page.select_option(prefix + "location", "distal_to_pip")
        page.check(prefix + "finger_1")
        for flag, value in (("beyond_pip", "true"), ("ischemic", "true"), ("over_calcinosis", "false"), ("active", "false" if healed == "true" else "true"),
                            ("due_to_other_condition", "false"), ("osteomyelitis_or_uncontrolled_infection", "false"),
                            ("infected_requiring_systemic_antibiotics", "false"), ("requires_urgent_surgery", "false")):
            page.check(f"{prefix}{flag}_{0 if value == 'true' else 1}")
        page.check(f"{prefix}healed_{0 if healed == 'true' else 1}")
    # Branching: the healing date appears for the healed ulcer only.
    expect(page.locator("#id_ulcers-1-healing_date")).to_be_visible()
    expect(page.locator("#id_ulcers-0-healing_date")).to_have_count(0)
    page.fill("#id_ulcers-1-healing_date", (timezone.localdate() - timedelta(days=2)).isoformat())
    go(page, "button[value=complete]")
    summary = page.locator("[data-testid=error-summary]")
    expect(summary).to_contain_text("before the participant's consent")
    screenshot(page, "crf-du-error")
    assert not CrfEntry.objects.filter(visit=day0, crf_code="DU_ASSESS").exists()

    page.fill("#id_crf-assessment_date", (timezone.localdate() - timedelta(days=1)).isoformat())
    go(page, "button[value=complete]")
    if page.locator("[data-testid=warnings]").count():
        page.check("#confirm_warnings")
        go(page, "button[value=complete]")
    expect(page.locator("[data-testid=saved]")).to_be_visible()
    screenshot(page, "crf-du-saved")
    entry = CrfEntry.objects.get(visit=day0, crf_code="DU_ASSESS")
    assert [row["ulcer_id"] for row in entry.answers["ulcers"]] == ["U1", "U2"]
    assert "healing_date" not in entry.answers["ulcers"][0] and entry.answers["ulcers"][1]["healing_date"]
    assert page.console_errors == []
