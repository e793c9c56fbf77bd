"""In the browser: the monitor logs in, opens her dashboard, follows a number to the admin list,
opens a participant (visits, entries, AEs, queries inline; read-only), then her audit trail and an
entry's answers with the "Raise query" links; the CSV downloads. Screenshots in artifacts/screenshots/."""

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.test_login import go, log_in
from tests.visits.test_crf_entry import as_querydict, vitals_post
from trials.monitoring.queries.services import query_raise
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"


def shot(page, name: str) -> Path:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"monitor-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_monitor_reviews_a_participant_and_her_audit_trail(page, live_server, demo_users, django_user_model):
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    today = site.today()
    participant = participant_register(site=site, user=system_user(), consent_date=today - timedelta(days=30),
                                       anchor_date=today - timedelta(days=20))
    coordinator = django_user_model.objects.get(username="coordinator.toulouse")
    visit = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order").first()
    crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post()), expected_revision=0, complete=True)
    crf_entry_save(user=coordinator, visit=visit, crf_code="VITALS", data=as_querydict(vitals_post(**{"crf-heart_rate": "72", "revision": "1"})),
                   expected_revision=1, complete=True, reason="transcription error")
    entry = CrfEntry.objects.get(visit=visit, crf_code="VITALS")
    query_raise(user=django_user_model.objects.get(username="monitor.du"), entry=entry, item="heart_rate", text="Source says 74?")

    log_in(page, live_server, "monitor.du")
    assert page.url.endswith("/admin/")
    go(page, "[data-testid=monitoring-dashboard-link]")
    expect(page.locator("[data-testid=dashboard-title]")).to_have_text("Monitoring")
    tls = page.locator("[data-trial='ASC-DU'] tr[data-site='TLS']")
    expect(tls.locator("[data-count=queries]")).to_have_text("1")
    shot(page, "1-dashboard")

    go(page, "[data-trial='ASC-DU'] tr[data-site='TLS'] [data-count=overdue_visits] a")
    expect(page.locator("#result_list")).to_be_visible()
    shot(page, "2-overdue-visits")

    page.goto(f"{live_server.url}/admin/participants/participant/{participant.pk}/change/")
    expect(page.locator("h2", has_text="Visits")).to_be_visible()
    expect(page.locator("body")).to_contain_text("Source says 74?")  # the query inline
    expect(page.locator("#audit-latest")).to_contain_text("transcription error")
    assert page.locator("input[name=_save]").count() == 0  # read-only
    shot(page, "3-participant")

    go(page, "[data-testid=audit-link]")
    expect(page.locator("#audit-trail")).to_contain_text("Heart rate")
    row = page.locator("#audit-trail tr", has_text="transcription error").first
    expect(row).to_contain_text("Camille Martin")
    saved = entry.history.get(history_change_reason="transcription error").history_date
    expect(row).to_contain_text(saved.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S %Z"))  # local time beside UTC
    shot(page, "4-audit-trail")
    with page.expect_download() as download:
        page.click("[data-testid=audit-csv]")
    csv_text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert csv_text.startswith("time_utc,time_local,time_zone,user") and "transcription error" in csv_text

    page.goto(f"{live_server.url}/admin/visits/crfentry/{entry.pk}/change/")
    heart = page.locator("tr[data-item=heart_rate]")
    expect(heart).to_contain_text("Source says 74?")
    expect(heart.locator("a.edc-raise-query")).to_have_count(1)
    shot(page, "5-entry")
    assert not page.console_errors, page.console_errors
