"""The status grid page: /trials/<code>/status-grid/ (monitors, data managers, coordinators,
investigators; each sees her sites only)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from trials.monitoring.status.selectors import Cell, enters_data, grid_trials, reviews, status_grid


def _cell_link(cell: Cell, participant, site_roles: set[str]) -> str:  # noqa: ANN001
    """A reviewer opens the form-view review of a started entry; a coordinator the CRF page."""
    if reviews(site_roles):
        return reverse("form_review", args=[cell.entry_id]) if cell.entry_id and cell.state != "not_started" else ""
    if enters_data(site_roles):
        return reverse("crf_entry", args=[cell.visit_id, cell.column.crf_code])
    return ""


@login_required
def status_grid_page(request: HttpRequest, code: str) -> HttpResponse:
    """Participant × visit × CRF for one trial, filterable by site and by state, paged by participant."""
    trial = grid_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial in your studies."))
    grid = status_grid(
        request.user, trial, site_code=request.GET.get("site", ""), state=request.GET.get("state", ""),
        page=request.GET.get("page", 1), link=_cell_link,
    )
    return render(request, "monitoring/status_grid.html", {"grid": grid, "trial": trial})
