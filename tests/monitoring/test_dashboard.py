"""The monitor's dashboard at /monitoring/: per trial and site the user reviews, open queries by age,
SDV backlog, overdue visits, unsigned casebooks and SAEs awaiting report; each number opens the
admin list of exactly those rows; a fixed number of SQL queries whatever the number of participants."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user
from trials.monitoring.audit.dashboard import COUNTS, monitor_dashboard
from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.monitoring.queries.services import query_answer, query_close, query_raise
from trials.monitoring.sdv.services import sdv_verify
from trials.participants import services as participant_services
from trials.demo.participants import participant_register
from trials.participants.models import Participant
from trials.protocol.models import Site
from trials.safety.models import AdverseEvent, ReportingClock
from trials.safety.services import ae_save, clock_report
from trials.visits.models import CrfEntry, EntryStatus, Visit

pytestmark = pytest.mark.django_db


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def site(code: str, trial: str = "ASC-DU") -> Site:
    return Site.objects.select_related("trial").get(trial__code=trial, code=code)


def register(where: Site, days: int = 30) -> Participant:
    today = where.today()
    return participant_register(site=where, user=system_user(), consent_date=today - timedelta(days=days), anchor_date=today - timedelta(days=days - 10))


def serious(participant: Participant) -> AdverseEvent:
    today = participant.site.today()
    return ae_save(AdverseEvent(
        participant=participant, verbatim_term="Pneumonia", onset_date=today - timedelta(days=2), ongoing=True, grade=3,
        related_product="not_related", seriousness=["hospitalisation"], procedure="none", related_procedure="not_related",
        action_taken="none", outcome="not_recovered",
        aware_at=datetime.combine(today - timedelta(days=2), time(9), tzinfo=ZoneInfo(participant.site.time_zone)),
    ), user=system_user())


def entry_of(participant: Participant) -> CrfEntry:
    return CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")


@pytest.fixture
def activity(demo_users):
    """Two participants at Toulouse, one at Grenoble, one at Lille (not monitor.du's), with queries of
    several ages and states, an SDV mark, a finished casebook, serious AEs (one reported)."""
    tls = [register(site("TLS")), register(site("TLS"), days=35)]
    gre = register(site("GRE"))
    lil = register(site("LIL"))
    manager, monitor = user("datamanager"), user("monitor.du")
    with time_machine.travel(timezone.now() - timedelta(days=40)):
        query_raise(user=manager, entry=entry_of(tls[0]), item="assessment_date", text="Old query: check the date.")
    with time_machine.travel(timezone.now() - timedelta(days=12)):
        answered = query_raise(user=monitor, entry=entry_of(tls[1]), item="number_active_du", text="Two ulcers on the photo?")
    query_answer(query=answered, user=user("coordinator.toulouse"), text="One only: the other healed.")
    closed = query_raise(user=monitor, entry=entry_of(tls[1]), item="", text="Closed one.")
    query_close(query=closed, user=monitor, justification="Not needed after all.")
    query_raise(user=monitor, entry=entry_of(gre), item="", text="Fresh query.")
    query_raise(user=manager, entry=entry_of(lil), item="", text="Lille's query (not monitor.du's).")
    sdv_verify(entry=entry_of(tls[0]), user=monitor)
    participant_services.participant_transition(participant=gre, to="completed", user=system_user(), reason="Follow-up completed")
    serious(tls[0])
    reported = serious(tls[1])
    clock_report(ReportingClock.objects.get(adverse_event=reported), user=system_user())
    serious(lil)
    return {"tls": tls, "gre": gre, "lil": lil}


def expected_counts(site_code: str) -> dict[str, int]:
    """The same numbers counted the slow, obvious way, in Python."""
    where = site(site_code)
    now = timezone.now()
    queries = [q for q in Query.objects.filter(site=where) if q.state in OPEN_QUERY_STATES]
    ages = [(now - q.raised_at).days for q in queries]
    entries = [e for e in CrfEntry.objects.filter(participant__site=where).select_related("sdv") if e.status == EntryStatus.COMPLETE]
    backlog = [e for e in entries if not (hasattr(e, "sdv") and e.sdv.state == "verified" and e.sdv.entry_revision == e.revision)]
    ended = [p for p in Participant.objects.filter(site=where) if p.status in ("completed", "withdrawn", "lost_to_follow_up", "died")]
    unsigned = [p for p in ended if p.crf_entries.exists() and all(e.status == EntryStatus.COMPLETE for e in p.crf_entries.all())
                and not p.signatures.filter(visit__isnull=True, state="valid").exists()]
    clocks = [c for c in ReportingClock.objects.filter(adverse_event__participant__site=where) if c.reported_at is None and not c.cancelled]
    return {
        "queries": len(queries), "queries_0_7": sum(a <= 7 for a in ages), "queries_8_30": sum(7 < a <= 30 for a in ages),
        "queries_over_30": sum(a > 30 for a in ages), "sdv_backlog": len(backlog),
        "overdue_visits": sum(v.status == "overdue" for v in Visit.objects.filter(participant__site=where)),
        "unsigned_casebooks": len(unsigned), "saes_awaiting": len(clocks),
    }


def test_the_counts_per_site_are_right(activity):
    panels = monitor_dashboard(user("monitor.du"))
    assert [p.trial.code for p in panels] == ["ASC-DU"]
    rows = {row.site.code: row for row in panels[0].rows}
    assert set(rows) == {"GRE", "TLS"}  # Lille is not hers
    for code, row in rows.items():
        expected = expected_counts(code)
        assert {k: row.counts[k] for k in expected} == expected, code
    tls, gre = rows["TLS"].counts, rows["GRE"].counts
    # The fixture's story, as numbers: an old open query and an answered one at Toulouse, a fresh one at Grenoble.
    assert (tls["queries"], tls["queries_over_30"], tls["queries_8_30"], gre["queries"], gre["queries_0_7"]) == (2, 1, 1, 1, 1)
    assert (tls["sdv_backlog"], gre["sdv_backlog"]) == (1, 1)
    assert (gre["unsigned_casebooks"], tls["unsigned_casebooks"]) == (1, 0)
    assert (tls["saes_awaiting"], gre["saes_awaiting"]) == (1, 0)
    assert tls["overdue_visits"] > 0
    assert panels[0].total.counts["queries"] == 3


def test_each_number_opens_the_admin_list_of_those_rows(activity, client):
    client.force_login(user("monitor.du"))
    page = client.get(reverse("monitoring_dashboard"))
    assert page.status_code == 200
    checked = 0
    for row in page.context["panels"][0].rows + [page.context["panels"][0].total]:
        for key in COUNTS:
            url = row.links.get(key)
            if key == "saes_overdue":
                continue
            assert url, (row.site, key)
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.context["cl"].result_count == row.counts[key], (row.site, key, url)
            checked += 1
    assert checked == 3 * 8
    html = page.content.decode()
    assert html.count('data-site="TLS"') == 1 and 'data-site="LIL"' not in html


def test_the_dashboard_reads_a_fixed_number_of_queries(activity, client):
    client.force_login(user("monitor.du"))
    url = reverse("monitoring_dashboard")
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for _ in range(3):
        participant = register(site("TLS"), days=28)
        query_raise(user=user("monitor.du"), entry=entry_of(participant), item="", text="More.")
        serious(participant)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]
    assert len(few) <= 20


def test_who_sees_the_dashboard(activity, client):
    client.force_login(user("coordinator.toulouse"))
    assert client.get(reverse("monitoring_dashboard")).status_code == 403
    assert reverse("monitoring_dashboard") not in client.get("/").content.decode()
    client.force_login(user("datamanager"))
    page = client.get(reverse("monitoring_dashboard"))
    assert [p.trial.code for p in page.context["panels"]] == ["ADSVF-SSC-HANDS", "ASC-DU", "EASC-RA", "SSC-FATGRAFT-REG"]
    asc = next(p for p in page.context["panels"] if p.trial.code == "ASC-DU")
    assert {"LIL", "TLS", "GRE"} <= {r.site.code for r in asc.rows}
    client.force_login(user("monitor.du"))
    assert reverse("monitoring_dashboard") in client.get(reverse("admin:index")).content.decode()  # from the admin
    home = client.get("/?stay=1").content.decode()
    assert re.search(rf'href="{reverse("monitoring_dashboard")}"', home)  # and the site's navigation


def test_the_admin_filters_behind_the_links(activity, client):
    """The list filters the links use exist for people too: open query, casebook, SAE report."""
    client.force_login(user("monitor.du"))
    entries = client.get(reverse("admin:visits_crfentry_changelist"), {"open_query": "yes"}).context["cl"]
    assert entries.result_count == 3  # Toulouse's two queried entries and Grenoble's
    participants = client.get(reverse("admin:participants_participant_changelist"), {"open_query": "yes"}).context["cl"]
    assert participants.result_count == 3
    clocks = client.get(reverse("admin:safety_reportingclock_changelist"), {"report": "reported"}).context["cl"]
    assert clocks.result_count == 1
