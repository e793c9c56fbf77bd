"""The monitor's form-view review (/monitoring/entries/<pk>/review/, issue 21): the CRF as the site
sees it, read-only; SDV ticks only on the plan's items, "verified" once every planned item is
ticked; a query per item through the query service; the item's history from the audit trail;
scoped to the reviewer's sites (another site's entry is a 404)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.monitoring.models import Query, QueryState
from trials.monitoring.sdv.services import sdv_plan_save
from trials.protocol.models import Site, Trial
from trials.records.models import SdvItemTick, SdvMark, SdvState
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
VITALS = {"height_cm": Decimal(165), "weight_kg": Decimal(60), "systolic_bp": 120, "diastolic_bp": 75, "heart_rate": 70}


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def vitals_at_lipo(site_code: str) -> CrfEntry:
    where = Site.objects.select_related("trial").get(trial__code="ASC-DU", code=site_code)
    today = where.today()
    participant = participant_register(site=where, user=system_user(), consent_date=today - timedelta(days=10), anchor_date=today - timedelta(days=8))
    lipo = Visit.objects.get(participant=participant, definition__code="LIPO")
    crf_entry_save_answers(user=system_user(), visit=lipo, crf_code="VITALS", answers=VITALS, complete=True, reason="")
    entry = CrfEntry.objects.get(visit=lipo, crf_code="VITALS")
    # a correction, so the item's history has an old and a new value
    crf_entry_save_answers(user=system_user(), visit=lipo, crf_code="VITALS", answers={**VITALS, "weight_kg": Decimal("61.5")},
                           complete=True, reason="Transcription error")
    return CrfEntry.objects.get(pk=entry.pk)


@pytest.fixture
def entries(demo_users):
    with time_machine.travel(NOW, tick=False):
        yield {"tls": vitals_at_lipo("TLS"), "lil": vitals_at_lipo("LIL")}


def enabled_inputs(html: str) -> list[str]:
    """Names of the CRF's inputs that are not disabled (the review posts no CRF data)."""
    return [m.group(0) for m in re.finditer(r"<(input|select|textarea)\b[^>]*name=\"crf-[^>]*>", html) if "disabled" not in m.group(0)]


def test_review_page_plan_ticks_verified_and_queries(entries, client):
    entry = entries["tls"]
    trial = Trial.objects.get(code="ASC-DU")
    sdv_plan_save(trial=trial, user=user("datamanager"), scope="all", critical_items={"VITALS": ["systolic_bp", "diastolic_bp"]},
                  reason="Critical items only for vitals")
    url = reverse("form_review", args=[entry.pk])
    client.force_login(user("monitor.du"))
    html = client.get(url).content.decode()
    # the form as the site sees it (labels, values), read-only
    assert "Systolic" in html and 'value="120"' in html and 'value="61.5"' in html
    assert enabled_inputs(html) == []
    # ticks only on the plan's items (a partial plan: critical items only)
    assert 'data-testid="sdv-tick-systolic_bp"' in html and 'data-testid="sdv-tick-diastolic_bp"' in html
    assert 'data-testid="sdv-tick-weight_kg"' not in html and 'data-testid="sdv-tick-heart_rate"' not in html
    # the item's history from the audit trail: old → new with who and why
    history = re.search(r'data-testid="history-weight_kg".*?</details>', html, re.DOTALL).group(0)
    assert "60" in history and "61.5" in history and "Transcription error" in history

    # One tick of two, posted as a plain form (no JavaScript): saved at once, audited, not yet verified.
    response = client.post(url, {"action": "tick", "item": "systolic_bp", "ticked": ["0", "1"]})
    assert response.status_code == 302 and response["Location"].endswith("#sdv-systolic_bp")
    tick = SdvItemTick.objects.get(entry=entry, item="systolic_bp")
    assert tick.ticked and tick.ticked_by == user("monitor.du") and tick.history.get().history_user == user("monitor.du")
    assert not SdvMark.objects.filter(entry=entry).exists()
    # A tick on an item outside the plan: refused, nothing written.
    response = client.post(url, {"action": "tick", "item": "weight_kg", "ticked": "1"})
    assert response.status_code == 400 and not SdvItemTick.objects.filter(item="weight_kg").exists()
    # The second planned item ticked (htmx): the fragment comes back, the form is verified at its revision.
    response = client.post(url, {"action": "tick", "item": "diastolic_bp", "ticked": ["0", "1"]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-testid="sdv-tick-diastolic_bp"' in body and "checked" in body and 'data-testid="form-verified"' in body
    mark = SdvMark.objects.get(entry=entry)
    assert (mark.state, mark.entry_revision, sorted(mark.items)) == (SdvState.VERIFIED, entry.revision, ["diastolic_bp", "systolic_bp"])
    assert mark.history.get().history_user == user("monitor.du")
    html = client.get(url).content.decode()
    assert 'data-testid="form-verified"' in html
    assert re.search(r'data-testid="sdv-tick-systolic_bp" checked', html)  # still ticked after a reload

    # A query on a third item, through the query service (audited, with its thread).
    response = client.post(url, {"action": "query", "item": "weight_kg", "text": "The source says 60 kg."})
    assert response.status_code == 302
    query = Query.objects.get(entry=entry)
    assert (query.item, query.state, query.raised_by, query.text) == ("weight_kg", QueryState.OPEN, user("monitor.du"), "The source says 60 kg.")
    assert query.messages.count() == 1 and query.history.get().history_change_reason == "Query raised"
    # An empty question: the field says so, nothing written.
    response = client.post(url, {"action": "query", "item": "heart_rate", "text": "  "})
    assert response.status_code == 400 and "Write the message." in response.content.decode()
    assert Query.objects.filter(entry=entry).count() == 1
    # An item the CRF does not have: a clear error, not a 500.
    response = client.post(url, {"action": "query", "item": "nope", "text": "?"})
    assert response.status_code == 400 and Query.objects.filter(entry=entry).count() == 1


def test_without_critical_items_every_required_item_is_planned(entries, client):
    entry = entries["tls"]
    client.force_login(user("monitor.du"))
    url = reverse("form_review", args=[entry.pk])
    html = client.get(url).content.decode()
    required = ["height_cm", "weight_kg", "systolic_bp", "diastolic_bp", "heart_rate"]  # seeds/crfs/vitals.yaml: required: true
    for name in required:
        assert f'data-testid="sdv-tick-{name}"' in html
    assert 'data-testid="sdv-tick-temperature_c"' not in html  # optional in the CRF
    assert client.post(url, {"action": "sdv", "sdv_item": required[:4]}).status_code == 400
    assert client.post(url, {"action": "sdv", "sdv_item": required}).status_code == 302
    assert SdvMark.objects.get(entry=entry).state == SdvState.VERIFIED


def test_scoping(entries, client):
    client.force_login(user("monitor.du"))
    lille = reverse("form_review", args=[entries["lil"].pk])
    assert client.get(lille).status_code == 404  # Lille is not her site
    assert client.post(lille, {"action": "query", "item": "weight_kg", "text": "x"}).status_code == 404
    assert client.get(reverse("form_review", args=[999999])).status_code == 404
    # the site's coordinator has the CRF page, not the review: refused, nothing written
    client.force_login(user("coordinator.toulouse"))
    own = reverse("form_review", args=[entries["tls"].pk])
    assert client.get(own).status_code == 403
    assert client.post(own, {"action": "query", "item": "weight_kg", "text": "x"}).status_code == 403
    assert client.post(own, {"action": "sdv", "sdv_item": ["weight_kg"]}).status_code == 403
    assert not Query.objects.exists() and not SdvMark.objects.exists()
