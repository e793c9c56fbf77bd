"""The audit trail page (admin: a participant's, a CRF entry's) paged and filterable by record, CRF,
item, user, site date range and reason (issue 21). Expected rows come from the scenario: one
participant registered by the system user, VITALS entered by the coordinator, then its heart rate
corrected "transcription error" (tests/monitoring/test_audit_trail.py's helpers)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from tests.monitoring.test_audit_trail import toulouse_participant, user, vitals_entry
from trials.monitoring.audit.trail import participant_trail
from trials.monitoring.audit.views import AUDIT_PAGE_SIZE

pytestmark = pytest.mark.django_db


def saves(html: str) -> set[str]:
    """The saves shown on the page (their `data-history` ids)."""
    return set(re.findall(r'data-history="([^"]+)"', html))


def test_paging_and_filters(demo_users, client):
    participant = toulouse_participant()
    entry = vitals_entry(participant)
    correction = entry.history.get(history_change_reason="transcription error")
    client.force_login(user("monitor.du"))
    url = reverse("admin:participants_participant_audit", args=[participant.pk])
    total = len(participant_trail(user("monitor.du"), participant))
    assert total > AUDIT_PAGE_SIZE  # a registration and a CRF already make more than a page

    first = client.get(url).content.decode()
    assert len(saves(first)) == AUDIT_PAGE_SIZE and 'data-testid="audit-older"' in first
    assert f"visits.crfentry:{correction.history_id}" in saves(first)  # newest first
    last_page = -(-total // AUDIT_PAGE_SIZE)
    last = client.get(url, {"page": last_page}).content.decode()
    assert len(saves(last)) == total - AUDIT_PAGE_SIZE * (last_page - 1)
    assert saves(first).isdisjoint(saves(last))

    # by item: the two VITALS saves (created with heart rate 70, corrected to 72)
    by_item = saves(client.get(url, {"item": "heart_rate"}).content.decode())
    assert by_item == {f"visits.crfentry:{h.history_id}" for h in entry.history.all()}
    # by reason words, case-insensitive
    assert saves(client.get(url, {"reason": "Transcription"}).content.decode()) == {f"visits.crfentry:{correction.history_id}"}
    # by CRF and user: the coordinator's saves of VITALS only
    by_user = saves(client.get(url, {"user": "coordinator.toulouse", "crf": "vitals"}).content.decode())
    assert by_user == {f"visits.crfentry:{h.history_id}" for h in entry.history.all()}
    # by the site's dates: nothing tomorrow, everything up to today; a malformed date is ignored
    today = participant.site.today()
    assert saves(client.get(url, {"from": (today + timedelta(days=1)).isoformat()}).content.decode()) == set()
    page = client.get(url, {"to": today.isoformat(), "from": "not-a-date"})
    assert page.status_code == 200 and f"{total} saves" in page.content.decode()
    # the entry's own trail takes the same filters
    entry_url = reverse("admin:visits_crfentry_audit", args=[entry.pk])
    assert saves(client.get(entry_url, {"reason": "transcription"}).content.decode()) == {f"visits.crfentry:{correction.history_id}"}
