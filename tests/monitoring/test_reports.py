"""Operational reports (/trials/<code>/reports/, issue 21), expected numbers from the scenario
(time frozen): at Toulouse `a` enrolled 8 days ago and `b` 2 days ago (screening visits dated on
their consent, 10 and 4 days ago, inside ASC-DU's screening window of day -7, -14/+7), `a`'s LIPO
visit overdue (day 3, +4 days: closed yesterday); at Grenoble `c` screened and consented only; at
Lille `d` (not monitor.du's site)."""

from __future__ import annotations

import csv
import re
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.monitoring.queries.services import query_raise
from trials.monitoring.reports.selectors import REPORTS
from trials.monitoring.sdv.services import sdv_verify
from trials.protocol.models import Site, Trial
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
VITALS = {"height_cm": Decimal(165), "weight_kg": Decimal(60), "systolic_bp": 120, "diastolic_bp": 75, "heart_rate": 70}


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def register(code: str, consent_days_ago: int, enrolled_days_ago: int | None):  # noqa: ANN201
    where = Site.objects.select_related("trial").get(trial__code="ASC-DU", code=code)
    today = where.today()
    return participant_register(site=where, user=system_user(), consent_date=today - timedelta(days=consent_days_ago),
                                anchor_date=None if enrolled_days_ago is None else today - timedelta(days=enrolled_days_ago))


def by_site(report) -> dict:  # noqa: ANN001
    return {str(row["site"]): row for row in report.rows}


def test_reports_follow_the_scenario(demo_users, client):
    with time_machine.travel(NOW, tick=False):
        a, b = register("TLS", 10, 8), register("TLS", 4, 2)
        register("GRE", 3, None)
        register("LIL", 10, 8)
        lipo = Visit.objects.get(participant=a, definition__code="LIPO")
        crf_entry_save_answers(user=system_user(), visit=lipo, crf_code="VITALS", answers=VITALS, complete=True, reason="")
        monitor = user("monitor.du")
        sdv_verify(entry=CrfEntry.objects.get(visit=lipo, crf_code="VITALS"), user=monitor)
        query_raise(user=monitor, entry=CrfEntry.objects.get(participant=b, crf_code="DU_ASSESS"), item="", text="Check.")
        trial = Trial.objects.get(code="ASC-DU")
        reports = {code: build(monitor, trial) for code, build in REPORTS.items()}

        enrolment = by_site(reports["enrolment"])
        assert enrolment["TLS"]["enrolled"] == 2 and enrolment["GRE"]["enrolled"] == 0 and "LIL" not in enrolment
        assert enrolment["All your sites"]["enrolled"] == 2
        assert enrolment["All your sites"]["share_of_target"] == round(100 * 2 / 32, 1)  # target_enrolment: 32 in the trial file
        assert [(r["month"], r["enrolled"], r["cumulative"]) for r in reports["enrolment_by_month"].rows] == [("2026-03", 2, 2)]

        funnel = by_site(reports["screening_funnel"])
        assert {k: funnel["TLS"][k] for k in ("screened", "consented", "enrolled", "allocated", "screen_failures")} == {
            "screened": 2, "consented": 2, "enrolled": 2, "allocated": 2, "screen_failures": 0}
        assert (funnel["GRE"]["screened"], funnel["GRE"]["consented"], funnel["GRE"]["enrolled"]) == (1, 1, 0)

        visits = by_site(reports["visit_compliance"])["TLS"]
        assert (visits["in_window"], visits["out_of_window"], visits["overdue"], visits["missed"]) == (2, 0, 1, 0)

        ageing = by_site(reports["query_ageing"])["TLS"]
        assert (ageing["total"], ageing["age_0_7"]) == (1, 1)

        sdv = by_site(reports["sdv_progress"])["TLS"]
        # complete: both screening DU_ASSESS (the lesion CRF of the registration) and a's VITALS
        assert (sdv["complete"], sdv["verified"], sdv["backlog"], sdv["percent_done"]) == (3, 1, 2, round(100 / 3, 1))

        lag = {r["crf"]: r for r in reports["completion_lag"].rows}
        # DU_ASSESS completed today for screening visits dated 10 and 4 days ago; LIPO has no visit date
        assert (lag["DU_ASSESS"]["entries"], lag["DU_ASSESS"]["median_days"], lag["DU_ASSESS"]["max_days"]) == (2, 7, 10)
        assert "VITALS" not in lag

        client.force_login(monitor)
        page = client.get(reverse("trial_reports", args=["ASC-DU"]))
        assert page.status_code == 200 and "LIL" not in page.content.decode()
        response = client.get(reverse("trial_report_csv", args=["ASC-DU", "screening_funnel"]))
        body = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert [r["site"] for r in rows] == ["GRE", "TLS", "All your sites"]
        assert rows[1]["enrolled"] == "2"
        assert client.get(reverse("trial_report_csv", args=["ASC-DU", "nope"])).status_code == 404
        assert client.get(reverse("trial_reports", args=["EASC-RA"])).status_code == 404


def test_enrolment_chart_points_are_the_cumulative_counts(demo_users, client):
    """Enrolled at Toulouse on 10 and 20 January and 5 March 2026, at Grenoble on 3 February (each
    registered on its day, enrolment = the anchor date). Cumulative by month, by hand:
    TLS 2, 2, 3; GRE 0, 1, 1; all 2, 3, 4 (January, February, March); target 32 (the trial file)."""
    from trials.monitoring.reports import chart as geometry

    for when, code in [("2026-01-10", "TLS"), ("2026-01-20", "TLS"), ("2026-02-03", "GRE"), ("2026-03-05", "TLS")]:
        with time_machine.travel(datetime.fromisoformat(when + "T09:00:00+00:00"), tick=False):
            register(code, 3, 0)
    with time_machine.travel(NOW, tick=False):
        client.force_login(user("monitor.du"))
        html = client.get(reverse("trial_reports", args=["ASC-DU"])).content.decode()
    expected = {"TLS": [2, 2, 3], "GRE": [0, 1, 1], "All your sites": [2, 3, 4]}
    y_max = 32  # the target is above every count
    for label, counts in expected.items():
        block = re.search(rf'data-testid="chart-series-{label}"><polyline[^>]*points="([^"]+)"', html)
        assert block, label
        points = [tuple(float(v) for v in p.split(",")) for p in block.group(1).split()]
        # x: January at the left edge, March at the right one, February midway
        left, right = geometry.LEFT, geometry.WIDTH - geometry.RIGHT
        assert [x for x, _y in points] == [left, (left + right) / 2, right]
        # y: a count v sits at TOP + plot height × (1 − v / 32)
        assert [y for _x, y in points] == [round(geometry.TOP + geometry.PLOT_H * (1 - v / y_max), 1) for v in counts]
    assert '<title id="enrolment-chart-title">' in html and '<desc id="enrolment-chart-desc">' in html
    assert 'role="img"' in html and 'aria-labelledby="enrolment-chart-title enrolment-chart-desc"' in html
    # the text alternative: the table gives the same cumulative counts
    table = re.search(r'data-testid="report-enrolment_by_month".*?</table>', html, re.DOTALL).group(0)
    rows = re.findall(r"<tr><th scope=\"row\">(2026-0\d)</th>(.*?)</tr>", table)
    cells = {month: re.findall(r'<td class="text-end">([^<]*)</td>', rest) for month, rest in rows}
    # columns: enrolled, cumulative, cumulative per site (GRE, LIL?, ... in code order), target
    assert [cells[m][1] for m in ("2026-01", "2026-02", "2026-03")] == ["2", "3", "4"]
