"""Close-out and oversight downloads: a participant's casebook PDF (the site's monitors and data
managers) and the DSMB package of a trial for a cut-off date (open report: the trial's export
roles; closed report: the DSMB alone, 404 for everybody else, the sponsor included). The trial's
casebooks as a zip are an export job (format "casebooks" on the trial's export page)."""

from __future__ import annotations

import logging
from datetime import date

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from trials.exports import dsmb
from trials.exports.casebook_pdf import casebook_participant, participant_casebook_pdf

logger = logging.getLogger(__name__)


def _attachment(content: bytes | str, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
def participant_casebook(request: HttpRequest, pk: int) -> HttpResponse:
    """One participant's casebook PDF, for a monitor or data manager of her site (else 404)."""
    participant = casebook_participant(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in the sites whose casebooks you may download."))
    logger.info("Casebook of participant %s downloaded by %s", participant.pk, request.user.username)
    data = participant_casebook_pdf(request.user, participant)
    return _attachment(data, "application/pdf", f"{participant.trial.code}_{participant.site.code}_{participant}_casebook.pdf")


def _dsmb_trial(request: HttpRequest, code: str):
    trial = dsmb.dsmb_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial among those whose DSMB reports you may produce."))
    return trial


def _cutoff(request: HttpRequest) -> tuple[date | None, str]:
    """The cut-off of the query string (today when absent), or an error message."""
    raw = (request.GET.get("cutoff") or "").strip()
    if not raw:
        return timezone.localdate(), ""
    try:
        cutoff = parse_date(raw)
    except ValueError:
        cutoff = None
    if cutoff is None:
        return None, _("The cut-off must be a date (YYYY-MM-DD).")
    if cutoff > timezone.localdate():
        return None, _("The cut-off date cannot be in the future.")
    return cutoff, ""


@login_required
def dsmb_package(request: HttpRequest, code: str) -> HttpResponse:
    """Choose the cut-off; links to the open report, and to the closed one for the DSMB only."""
    trial = _dsmb_trial(request, code)
    cutoff, error = _cutoff(request)
    return render(request, "exports/dsmb.html", {
        "trial": trial, "cutoff": cutoff, "raw_cutoff": request.GET.get("cutoff", ""), "error": error, "closed_allowed": dsmb.may_see_closed(request.user, trial),
    })


@login_required
def dsmb_download(request: HttpRequest, code: str, report: str, fmt: str) -> HttpResponse:
    """/trials/<code>/dsmb/<open|closed>.<pdf|csv>?cutoff=YYYY-MM-DD. The closed report answers
    404 to anyone but the trial's DSMB (it does not exist for a blinded role)."""
    trial = _dsmb_trial(request, code)
    closed = report == "closed"
    if closed and not dsmb.may_see_closed(request.user, trial):
        raise Http404(_("No such report."))
    cutoff, error = _cutoff(request)
    if cutoff is None:
        return HttpResponseBadRequest(error)
    logger.info("DSMB %s report of %s at %s (%s) by %s", report, trial.code, cutoff, fmt, request.user.username)
    name = f"{trial.code}_dsmb_{report}_{cutoff.isoformat()}.{fmt}"
    try:
        if fmt == "pdf":
            return _attachment(dsmb.dsmb_pdf(request.user, trial, cutoff=cutoff, closed=closed), "application/pdf", name)
        return _attachment(dsmb.dsmb_csv(request.user, trial, cutoff=cutoff, closed=closed), "text/csv; charset=utf-8", name)
    except dsmb.ClosedReportRefused:
        raise Http404(_("No such report.")) from None
