"""In the browser: the monitor raises a query in the admin on an item of a repeating-group row, the
coordinator sees the badges and answers on the CRF page, the monitor closes it with a justification."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.test_login import go, log_in
from trials.monitoring.models import Query, QueryState
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"


def shot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_monitor_raises_coordinator_answers_monitor_closes(page, browser, live_server, demo_users):
    today = timezone.localdate()
    participant = participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=10),
    )
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")

    # The monitor reviews the entry from the SDV worklist and raises a query on the row's finger.
    log_in(page, live_server, "monitor.du")
    page.goto(f"{live_server.url}/admin/records/sdvmark/worklist/")
    expect(page.locator(f"tr[data-entry='{entry.pk}']")).to_be_visible()
    go(page, f"tr[data-entry='{entry.pk}'] >> text=review")
    shot(page, "query-1-monitor-review")
    go(page, "[data-testid=raise-finger]")
    expect(page.locator("[data-testid=raise-target]")).to_have_text("DU_ASSESS · Digital ulcers, row 1 · Finger")
    page.fill("textarea[name=text]", "The source notes finger 3 (middle), not 2. Please check.")
    shot(page, "query-2-monitor-raise")
    go(page, "[data-testid=raise-submit]")
    expect(page.locator(".messagelist")).to_contain_text("Query raised")
    query = Query.objects.get(entry=entry)
    assert (query.item, query.row_id, query.state) == ("finger", entry.answers["ulcers"][0]["_row_id"], QueryState.OPEN)
    assert page.console_errors == []

    # The coordinator sees the badge on the dashboard and the chip, then the thread on the item.
    site_page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB").new_page()
    errors: list[str] = []
    site_page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    log_in(site_page, live_server, "coordinator.toulouse")
    site_page.goto(f"{live_server.url}/participants/{participant.pk}/")
    expect(site_page.locator("[data-testid=participant-queries]")).to_have_text("1 open query")
    expect(site_page.locator("[data-testid^=query-chip-][data-testid$=-DU_ASSESS]")).to_have_text("1 query open")
    shot(site_page, "query-3-coordinator-dashboard")
    go(site_page, "[data-testid^=query-chip-][data-testid$=-DU_ASSESS]")
    thread = site_page.locator(f"[data-testid=query-{query.pk}]")
    expect(site_page.locator("[data-testid=query-badge-finger]")).to_be_visible()
    expect(thread).to_contain_text("finger 3 (middle)")
    site_page.locator(f"[data-testid=query-{query.pk}]").scroll_into_view_if_needed()
    site_page.fill(f"[data-testid=answer-{query.pk}]", "Checked the clinic note: it is the index finger (2); the 3 was a typo in the note.")
    shot(site_page, "query-4-coordinator-answer")
    site_page.click(f"[data-testid=query-{query.pk}] button:has-text('Send the answer')")
    expect(thread).to_have_attribute("data-state", "answered")  # replaced in place (htmx)
    expect(thread).to_contain_text("waiting for the monitor")
    assert Query.objects.get(pk=query.pk).state == QueryState.ANSWERED
    assert CrfEntry.objects.get(pk=entry.pk).revision == entry.revision  # answering saved no CRF data
    shot(site_page, "query-5-coordinator-answered")
    # No close button anywhere for the site.
    assert site_page.locator("text=Close the query").count() == 0
    assert errors == []

    # The monitor closes it: refused without a justification (the value did not change), then closed.
    page.goto(f"{live_server.url}/admin/monitoring/query/{query.pk}/change/")
    expect(page.locator("body")).to_contain_text("Checked the clinic note")
    go(page, "[data-testid=query-close]")
    expect(page.locator(".messagelist")).to_contain_text("has not changed")
    page.fill("#id_act_text", "Source re-read with the site: index finger confirmed.")
    go(page, "[data-testid=query-close]")
    expect(page.locator(".messagelist")).to_contain_text("Query closed")
    shot(page, "query-6-monitor-closed")
    closed = Query.objects.get(pk=query.pk)
    assert (closed.state, closed.closed_by.username) == (QueryState.CLOSED, "monitor.du")
    assert [m.kind for m in closed.messages.all()] == ["raise", "answer", "close"]
    assert page.console_errors == []
