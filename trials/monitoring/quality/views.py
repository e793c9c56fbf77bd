"""The data manager's page of the data-quality rules: hits per rule, and the button that runs them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from trials.monitoring.quality.selectors import quality_trials, rule_report
from trials.monitoring.quality.services import quality_run_request


def _trial(request: HttpRequest, code: str):  # noqa: ANN202
    trials = quality_trials(request.user)
    if not trials.exists():
        raise PermissionDenied(_("The data-quality rules are for data managers."))
    return get_object_or_404(trials, code=code)


@login_required
def quality_index(request: HttpRequest) -> HttpResponse:
    """The trials the data manager runs rules for."""
    trials = quality_trials(request.user).order_by("code")
    if not trials.exists():
        raise PermissionDenied(_("The data-quality rules are for data managers."))
    if trials.count() == 1:
        return redirect("quality_report", trials.get().code)
    return render(request, "monitoring/quality_index.html", {"trials": trials})


@login_required
def quality_report(request: HttpRequest, code: str) -> HttpResponse:
    trial = _trial(request, code)
    rows, state = rule_report(request.user, trial)
    return render(request, "monitoring/quality_report.html", {"trial": trial, "rows": rows, "state": state})


@login_required
@require_POST
def quality_run(request: HttpRequest, code: str) -> HttpResponse:
    """Ask for a run (coalesced with one pending or running: never two at once)."""
    trial = _trial(request, code)
    if quality_run_request(trial.pk):
        messages.success(request, _("The data-quality rules are running; refresh this page in a moment."))
    else:
        messages.info(request, _("A run of the data-quality rules is already under way; it will include your request."))
    return redirect("quality_report", trial.code)
