"""The operational reports page /trials/<code>/reports/ and each report's CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.db_router import replica_reads
from edc.spreadsheet import text_cell
from trials.monitoring.reports.chart import enrolment_chart
from trials.monitoring.reports.selectors import REPORTS, Report
from trials.monitoring.status.selectors import grid_trials


def _trial(request: HttpRequest, code: str):  # noqa: ANN202
    trial = grid_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial in your studies."))
    return trial


@login_required
def reports_page(request: HttpRequest, code: str) -> HttpResponse:
    trial = _trial(request, code)  # the access check on the primary
    with replica_reads(caught_up=True, wait=settings.REPLICA_PAGE_WAIT_SECONDS):  # issue 22: read-only counts, from the replica once it has caught up
        reports = [build(request.user, trial) for build in REPORTS.values()]
    for report in reports:
        report.table = [[row.get(key) for key, _heading in report.columns] for row in report.rows]
    over_time = next(r for r in reports if r.code == "enrolment_by_month")
    sites = [key.removeprefix("cumulative_") for key, _heading in over_time.columns if key.startswith("cumulative_")]
    chart = enrolment_chart(over_time.rows, sites, trial.target_enrolment, _("All your sites"))
    return render(request, "monitoring/reports.html", {"trial": trial, "reports": reports, "chart": chart})


class _Echo:
    def write(self, value: str) -> str:
        return value


def _lines(report: Report) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff"
    yield writer.writerow([key for key, _heading in report.columns])
    for row in report.rows:
        yield writer.writerow([text_cell("" if row.get(key) is None else str(row.get(key))) for key, _heading in report.columns])


@login_required
def report_csv(request: HttpRequest, code: str, report: str) -> StreamingHttpResponse:
    trial = _trial(request, code)
    build = REPORTS.get(report)
    if build is None:
        raise Http404(_("No such report."))
    with replica_reads(caught_up=True, wait=settings.REPLICA_PAGE_WAIT_SECONDS):
        built = build(request.user, trial)
    response = StreamingHttpResponse(_lines(built), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{trial.code}-{report}-{timezone.now():%Y%m%dT%H%M%SZ}.csv"'
    response["Cache-Control"] = "no-store"
    return response
