"""In the browser: the data manager uploads a changed ASC-DU file (tests/build/amended.py: Week 2's
window widened, LI01 excludes a thumb ulcer, DU_ASSESS loses the "Palm" location, consent 2.0),
sees its impact on the participants, applies it with a version, a date and a reason, and finds
it in the amendment history."""

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.build.amended import amended_files
from tests.build.conftest import TODAY, du_participants, frozen  # noqa: F401 - fixtures
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from trials.build.models import Amendment
from trials.protocol.models import VisitDefinition

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_data_manager_previews_and_applies_an_amendment(page, live_server, du_participants):  # noqa: F811
    a, c, b = du_participants.treated_w2_done, du_participants.treated_w2_ahead, du_participants.thumb_ulcer
    log_in(page, live_server, "datamanager")
    page.goto(f"{live_server.url}/?stay=1")
    go(page, "[data-testid=nav-build]")
    go(page, "[data-testid=build-trial] >> nth=1")  # ASC-DU (the list is by code: ADSVF-SSC-HANDS first)
    expect(page.locator("h1")).to_contain_text("Amend ASC-DU")
    page.set_input_files("[data-testid=build-files]", [
        {"name": name.split("/")[-1], "mimeType": "application/yaml", "buffer": data} for name, data in amended_files().items()
    ])
    go(page, "[data-testid=build-preview]")
    expect(page.locator("h1")).to_contain_text("Impact of the amendment on ASC-DU")
    expect(page.locator("[data-testid=impact-crf]")).to_contain_text("DU_ASSESS v1 → v2")
    expect(page.locator("[data-testid=impact-crf]")).to_contain_text("removed: palm")
    moved = page.locator("[data-testid=impact-visit-moved]")
    expect(moved).to_have_count(1)
    expect(moved).to_contain_text(c.subject_number)
    expect(page.locator("[data-testid=impact-ineligible]")).to_contain_text(b.subject_number)
    expect(page.locator("[data-testid=impact-ineligible]")).not_to_contain_text(a.subject_number)
    expect(page.locator("[data-testid=impact-consent]")).to_contain_text("2.0")
    screenshot(page, "build-impact-preview")
    assert not Amendment.objects.exists()
    assert VisitDefinition.objects.get(trial__code="ASC-DU", code="W2").window_before_days == 3

    page.fill("#id_version", "2.0")
    page.fill("#id_reason", "Amendment 1: Week 2 window, thumb ulcers, consent 2.0")
    go(page, "[data-testid=apply-submit]")
    expect(page.locator(".alert-success")).to_contain_text("Amendment 1 (version 2.0) of ASC-DU applied")
    expect(page.locator("[data-testid=amendment-row]")).to_contain_text("Amendment 1: Week 2 window")
    screenshot(page, "build-amendment-history")
    amendment = Amendment.objects.get()
    assert (amendment.version, amendment.effective_date, amendment.applied_by.username) == ("2.0", TODAY, "datamanager")
    planned = TODAY - timedelta(days=10) + timedelta(days=14)
    w2 = c.visits.get(definition__code="W2")
    assert (w2.window_start, w2.window_end) == (planned - timedelta(days=5), planned + timedelta(days=5))
    assert page.console_errors == []
    # The annotated CRF of the new version, beside the items: names, types, codes, branching, checks.
    page.goto(f"{live_server.url}/trials/ASC-DU/crfs/DU_ASSESS/v2/?annotated=1")
    expect(page.locator("[data-testid=crf-print]")).to_contain_text("finger · single_choice")
    expect(page.locator("[data-testid=crf-print]")).not_to_contain_text("Palm")
    screenshot(page, "build-annotated-crf")
    assert page.console_errors == []
