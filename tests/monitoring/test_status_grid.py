"""The status grid (/trials/<code>/status-grid/, issue 21): participant × visit × CRF, each cell's
state derived from a scenario made through the services, the site scoping, blinding, links, and a
constant number of SQL queries whatever the number of participants.

Expected states come from the protocol (seeds/001_nct04356755_du.yaml): the LIPO visit is day 3
after enrolment with a window of -3/+4 days, so a participant enrolled 8 days ago has a LIPO window
that closed yesterday (3 + 4 = 7 < 8): overdue, per trials.visits.schedule's window rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.demo.synthetic import SynthParams, synth_trial_generate
from trials.monitoring.queries.services import query_raise
from trials.monitoring.sdv.services import sdv_verify
from trials.monitoring.status.selectors import status_grid
from trials.participants.models import Participant
from trials.protocol.models import Role, Site
from trials.protocol.services import study_role_grant
from trials.records.locks import lock_apply
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Toulouse and Grenoble: the same date as UTC
VITALS = {"height_cm": Decimal(165), "weight_kg": Decimal(60), "systolic_bp": 120, "diastolic_bp": 75, "heart_rate": 70}


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def site(code: str, trial: str = "ASC-DU") -> Site:
    return Site.objects.select_related("trial").get(trial__code=trial, code=code)


def register(where: Site, *, enrolled_days_ago: int) -> Participant:
    today = where.today()
    return participant_register(
        site=where, user=system_user(), consent_date=today - timedelta(days=enrolled_days_ago + 2),
        anchor_date=today - timedelta(days=enrolled_days_ago),
    )


def visit(participant: Participant, code: str) -> Visit:
    return Visit.objects.get(participant=participant, definition__code=code)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def scenario(frozen, demo_users):
    """TLS: `late` (enrolled 8 days ago: LIPO overdue, its VITALS complete and verified, an open
    query on its screening DU_ASSESS) and `fresh` (enrolled 2 days ago: LIPO window open, VITALS
    in progress); GRE: one participant, locked; LIL (not monitor.du's site): one participant."""
    late = register(site("TLS"), enrolled_days_ago=8)
    fresh = register(site("TLS"), enrolled_days_ago=2)
    gre = register(site("GRE"), enrolled_days_ago=8)
    lil = register(site("LIL"), enrolled_days_ago=8)
    crf_entry_save_answers(user=system_user(), visit=visit(late, "LIPO"), crf_code="VITALS", answers=VITALS, complete=True, reason="")
    crf_entry_save_answers(user=system_user(), visit=visit(fresh, "LIPO"), crf_code="VITALS", answers=VITALS, complete=False, reason="")
    sdv_verify(entry=CrfEntry.objects.get(visit=visit(late, "LIPO"), crf_code="VITALS"), user=user("monitor.du"))
    query_raise(user=user("monitor.du"), entry=CrfEntry.objects.get(visit=visit(late, "SCREEN"), crf_code="DU_ASSESS"),
                item="number_active_du", text="Please check against the source.")
    lock_apply(level="participant", target=gre, kind="lock", user=user("datamanager"), reason="Withdrawn: data final")
    return {"late": late, "fresh": fresh, "gre": gre, "lil": lil}


def cells(grid, participant: Participant) -> dict[str, tuple[str, ...]]:
    row = next(r for r in grid.rows if r.participant.pk == participant.pk)
    return {f"{c.column.visit_code}/{c.column.crf_code}": c.states for c in row.cells}


def test_cell_states_follow_the_scenario(scenario, frozen):
    trial = scenario["late"].trial
    grid = status_grid(user("monitor.du"), trial)
    late, fresh = cells(grid, scenario["late"]), cells(grid, scenario["fresh"])
    assert late["LIPO/VITALS"] == ("complete", "overdue", "sdv_done")
    assert late["LIPO/FATGRAFT"] == ("not_started", "overdue")
    assert late["SCREEN/DU_ASSESS"] == ("complete", "open_query")  # the screening visit has its date: not overdue
    assert late["SCREEN/VITALS"] == ("not_started",)
    assert late["D0/DU_INJECTION"] == ("not_started",)  # no first treatment yet: no window, never overdue
    assert fresh["LIPO/VITALS"] == ("in_progress",)  # window closes in 5 days
    assert fresh["LIPO/FATGRAFT"] == ("not_started",)
    row = next(r for r in grid.rows if r.participant.pk == scenario["late"].pk)
    assert row.counts["overdue"] == 2 and row.counts["complete"] == 2 and row.counts["open_query"] == 1
    column = next(c for c in grid.columns if (c.visit_code, c.crf_code) == ("LIPO", "VITALS"))
    # monitor.du sees TLS (late, fresh) and GRE: one complete, one in progress, one not started
    assert column.counts == {"complete": 1, "overdue": 2, "sdv_done": 1, "in_progress": 1, "not_started": 1, "locked": 1}
    gre = cells(grid, scenario["gre"])
    assert gre["LIPO/VITALS"] == ("not_started", "overdue", "locked")
    assert all("locked" in states for states in gre.values() if states)
    assert not any("locked" in states for states in late.values())
    # The window's last day is still in the window: one day earlier, the same visit is not overdue.
    frozen.move_to(NOW - timedelta(days=1))
    grid = status_grid(user("monitor.du"), trial)
    assert cells(grid, scenario["late"])["LIPO/VITALS"] == ("complete", "sdv_done")


def test_scoping_filters_links_and_blinding(scenario, client):
    trial = scenario["late"].trial
    shown = {r.participant.pk for r in status_grid(user("monitor.du"), trial).rows}
    assert shown == {scenario["late"].pk, scenario["fresh"].pk, scenario["gre"].pk}  # never Lille
    shown = {r.participant.pk for r in status_grid(user("coordinator.toulouse"), trial).rows}
    assert shown == {scenario["late"].pk, scenario["fresh"].pk}
    client.force_login(user("monitor.du"))
    page = client.get(reverse("status_grid", args=["ASC-DU"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert scenario["lil"].screening_number not in html
    assert scenario["late"].screening_number in html
    assert client.get(reverse("status_grid", args=["EASC-RA"])).status_code == 404  # not her trial

    # Filters: by site, by state (participants with at least one cell in that state).
    url = reverse("status_grid", args=["ASC-DU"])
    html = client.get(url, {"site": "GRE"}).content.decode()
    assert scenario["gre"].screening_number in html and scenario["late"].screening_number not in html
    html = client.get(url, {"state": "open_query"}).content.decode()
    assert scenario["late"].screening_number in html
    assert scenario["fresh"].screening_number not in html and scenario["gre"].screening_number not in html
    html = client.get(url, {"state": "overdue", "site": "TLS"}).content.decode()
    assert scenario["late"].screening_number in html and scenario["fresh"].screening_number not in html

    # Links: a monitor's cell opens the form-view review, a coordinator's the CRF page.
    late = scenario["late"]
    entry = CrfEntry.objects.get(visit=visit(late, "LIPO"), crf_code="VITALS")
    client.force_login(user("monitor.du"))
    html = client.get(reverse("status_grid", args=["ASC-DU"])).content.decode()
    assert reverse("form_review", args=[entry.pk]) in html
    assert reverse("crf_entry", args=[entry.visit_id, "VITALS"]) not in html
    client.force_login(user("coordinator.toulouse"))
    html = client.get(reverse("status_grid", args=["ASC-DU"])).content.decode()
    assert reverse("crf_entry", args=[entry.visit_id, "VITALS"]) in html
    assert reverse("form_review", args=[entry.pk]) not in html

    # Blinding: ASC-DU masks the care providers, investigators and outcomes assessors, so every
    # role but the DSMB is blinded and sees no arm; the DSMB statistician sees the arm column.
    from trials.participants.models import Allocation

    arms = set(Allocation.objects.filter(participant__trial__code="ASC-DU").values_list("arm__code", flat=True))
    assert arms  # randomized at enrolment
    for name in ("monitor.du", "coordinator.toulouse", "datamanager"):
        client.force_login(user(name))
        html = client.get(reverse("status_grid", args=["ASC-DU"])).content.decode()
        assert ">Arm<" not in html
        assert not any(f">{arm}<" in html for arm in arms), name
    dsmb = status_grid(user("dsmb.statistician"), scenario["late"].trial)
    assert dsmb.shows_arm
    assert {r.arm for r in dsmb.rows} <= arms and all(r.arm for r in dsmb.rows)


def _grid_queries(client, code: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("status_grid", args=[code]))
    assert response.status_code == 200
    return len(captured)


def test_constant_number_of_queries(client, db):
    """The same number of SQL queries for a trial of 20 participants and one of 200 (synthetic
    trials, every visit done and every CRF complete, made by trials.demo.synthetic)."""
    monitor = get_user_model().objects.create_user("grid.monitor", password="x")
    counts = []
    for code, n in (("GRID-20", 20), ("GRID-200", 200)):
        trial = synth_trial_generate(SynthParams(code=code, participants=n, visits=4, crfs=3, items=4, sites=2, aes_per_participant=0)).trial
        study_role_grant(user=monitor, trial=trial, role=Role.MONITOR, granted_by=system_user(), reason="test")
        client.force_login(monitor)
        first = client.get(reverse("status_grid", args=[code]))
        assert len(first.context["grid"].rows) == min(n, 100)
        counts.append(_grid_queries(client, code))
    assert counts[0] == counts[1]
