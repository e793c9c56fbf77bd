"""Done-when of issue 21's review workspace, in a browser: a monitor goes from the status grid to an
overdue cell, opens the form view, ticks SDV on the two items the SDV plan names and raises a query
on a third, without the admin. Screenshots at 1280 px and 768 × 1024 under /tmp/grid/ (looked at).

The overdue cell: a participant enrolled 8 days ago at Toulouse; ASC-DU's LIPO visit is day 3 with a
window of +4 days (seeds/001_nct04356755_du.yaml), so its window closed yesterday, with no visit date.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.test_login import go, log_in
from trials.demo.participants import participant_register
from trials.monitoring.models import Query
from trials.monitoring.sdv.services import sdv_plan_save
from trials.protocol.models import Site, Trial
from trials.records.models import SdvMark, SdvState
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/grid")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
VITALS = {"height_cm": Decimal(165), "weight_kg": Decimal(60), "systolic_bp": 120, "diastolic_bp": 75, "heart_rate": 70}


def shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_monitor_from_grid_to_overdue_cell_sdv_and_query(page, live_server, demo_users, django_user_model):
    tls = Site.objects.select_related("trial").get(trial__code="ASC-DU", code="TLS")
    today = tls.today()
    sdv_plan_save(trial=Trial.objects.get(code="ASC-DU"), user=django_user_model.objects.get(username="datamanager"), scope="all",
                  critical_items={"VITALS": ["systolic_bp", "diastolic_bp"]}, reason="Critical items of vitals")
    late = participant_register(site=tls, user=system_user(), consent_date=today - timedelta(days=10), anchor_date=today - timedelta(days=8))
    participant_register(site=tls, user=system_user(), consent_date=today - timedelta(days=4), anchor_date=today - timedelta(days=2))
    lipo = Visit.objects.get(participant=late, definition__code="LIPO")
    crf_entry_save_answers(user=system_user(), visit=lipo, crf_code="VITALS", answers=VITALS, complete=True, reason="")
    entry = CrfEntry.objects.get(visit=lipo, crf_code="VITALS")

    log_in(page, live_server, "monitor.du")
    assert page.url.endswith("/admin/")  # monitors land in the admin; the dashboard is linked from there
    go(page, "[data-testid=monitoring-dashboard-link]")
    go(page, "[data-trial='ASC-DU'] [data-testid=status-grid-link]")
    expect(page.locator("[data-testid=status-grid]")).to_be_visible()
    shot(page, "grid-desktop")
    page.select_option("#grid-state", "overdue")
    go(page, "[data-testid=grid-filters] button[type=submit]")
    rows = page.locator("[data-testid=grid-row]")
    expect(rows).to_have_count(1)  # only the participant with an overdue visit
    cell = page.locator(f"[data-testid=grid-row][data-participant='{late.screening_number}'] [data-testid=cell-LIPO-VITALS]")
    expect(cell).to_have_attribute("data-states", "complete overdue")
    expect(cell.locator("a")).to_have_attribute("aria-label", "LIPO VITALS: Complete, Overdue visit")
    go(page, f"[data-testid=grid-row][data-participant='{late.screening_number}'] [data-testid=cell-LIPO-VITALS] a")
    assert "/admin/" not in page.url and page.url.endswith(f"/monitoring/entries/{entry.pk}/review/")

    # The form as the site sees it, read-only; ticks only beside the plan's two items.
    expect(page.locator("input[name='crf-systolic_bp']")).to_be_disabled()
    expect(page.locator("[data-testid^=sdv-tick-]")).to_have_count(2)
    page.locator("[data-testid=history-weight_kg] summary").click()
    expect(page.locator("[data-testid=history-weight_kg] table")).to_contain_text("60")
    shot(page, "review-desktop")
    # Each tick is saved the moment it is ticked (htmx), no button to press.
    page.check("[data-testid=sdv-tick-systolic_bp]")
    expect(page.locator("[data-testid=sdv-count]")).to_have_text("1 of 2 ticked.")
    expect(page.locator("[data-testid=sdv-who-systolic_bp]")).to_contain_text("ticked by")
    page.check("[data-testid=sdv-tick-diastolic_bp]")
    expect(page.locator("[data-testid=form-verified]")).to_be_visible()
    mark = SdvMark.objects.get(entry=entry)
    assert mark.state == SdvState.VERIFIED and sorted(mark.items) == ["diastolic_bp", "systolic_bp"]
    page.reload()  # the ticks survive a reload
    expect(page.locator("[data-testid=sdv-tick-systolic_bp]")).to_be_checked()
    expect(page.locator("[data-testid=sdv-tick-diastolic_bp]")).to_be_checked()
    expect(page.locator("[data-testid=form-verified]")).to_be_visible()

    page.locator("[data-testid=query-open-weight_kg]").click()
    page.fill("#query-text-weight_kg", "The source document says 62 kg.")
    go(page, "[data-testid=query-raise-weight_kg]")
    expect(page.locator("[data-testid=query-badge-weight_kg]")).to_be_visible()
    query = Query.objects.get(entry=entry)
    assert (query.item, query.raised_by.username) == ("weight_kg", "monitor.du")
    assert "/admin/" not in page.url
    shot(page, "review-after-desktop")
    page.locator("[data-testid=review-form]").screenshot(path=str(DOCS_IMG / "monitor-review-sdv.png"))

    # The same pages on a tablet.
    page.set_viewport_size({"width": 768, "height": 1024})
    page.goto(f"{live_server.url}/trials/ASC-DU/status-grid/")
    shot(page, "grid-tablet")
    page.goto(f"{live_server.url}/monitoring/entries/{entry.pk}/review/")
    shot(page, "review-tablet")
    # No CSP report: htmx 2 settles the "style" attribute of a swapped element with setAttribute, which
    # the site's style-src 'self' refuses; base.html's htmx-config leaves "style" out of attributesToSettle.
    assert page.console_errors == []


def test_reports_chart_and_the_dsmb_pair_with_the_closed_one_refused_to_the_sponsor(page, live_server, demo_users):
    """The reports page's enrolment chart (an inline SVG), then the DSMB open/closed pair of ASC-DU:
    produced by the DSMB statistician, listed as stored; the sponsor gets the open one and a 404
    for the closed one (the page does not even link it)."""
    tls = Site.objects.select_related("trial").get(trial__code="ASC-DU", code="TLS")
    today = tls.today()
    for days in (40, 20, 8):
        participant_register(site=tls, user=system_user(), consent_date=today - timedelta(days=days + 2), anchor_date=today - timedelta(days=days))
    log_in(page, live_server, "monitor.du")
    page.goto(f"{live_server.url}/trials/ASC-DU/reports/")
    assert page.console_errors == []  # no inline style: the chart's size comes from edc.css (CSP)
    chart = page.locator("[data-testid=enrolment-chart] svg")
    expect(chart).to_be_visible()
    expect(chart.locator("title")).to_contain_text("Cumulative enrolment")
    page.locator("[data-testid=report-enrolment_by_month]").screenshot(path=str(DOCS_IMG / "monitor-reports-chart.png"))

    page.context.clear_cookies()
    log_in(page, live_server, "dsmb.statistician")
    page.goto(f"{live_server.url}/trials/ASC-DU/dsmb/")
    for kind in ("open", "closed"):
        with page.expect_download() as download:
            page.click(f"[data-testid=dsmb-{kind}-pdf]")
        assert download.value.suggested_filename == f"ASC-DU_dsmb_{kind}_{today.isoformat()}.pdf"
    page.reload()
    expect(page.locator(f"[data-testid=dsmb-stored-closed-pdf-{today.isoformat()}]")).to_be_visible()
    shot(page, "dsmb-statistician")

    page.context.clear_cookies()
    log_in(page, live_server, "sponsor.toulouse")
    page.goto(f"{live_server.url}/trials/ASC-DU/dsmb/")
    expect(page.locator("[data-testid=dsmb-open-pdf]")).to_be_visible()
    expect(page.locator("[data-testid=dsmb-closed-pdf]")).to_have_count(0)
    expect(page.locator(f"[data-testid=dsmb-stored-closed-pdf-{today.isoformat()}]")).to_have_count(0)
    response = page.request.get(f"{live_server.url}/trials/ASC-DU/dsmb/closed.pdf?cutoff={today.isoformat()}")
    assert response.status == 404
    response = page.request.get(f"{live_server.url}/trials/ASC-DU/dsmb/open.pdf?cutoff={today.isoformat()}")
    assert response.status == 200 and response.body()[:5] == b"%PDF-"
