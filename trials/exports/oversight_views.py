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
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from trials.exports import dsmb
from trials.exports.casebook_pdf import casebook_participant, participant_casebook_pdf
from trials.exports.models import DownloadKind
from trials.exports.services import document_download_record

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
    name = f"{participant.trial.code}_{participant.site.code}_{participant}_casebook.pdf"
    document_download_record(user=request.user, kind=DownloadKind.CASEBOOK, document=name, content=data, trial=participant.trial)
    return _attachment(data, "application/pdf", name)


def _dsmb_trial(request: HttpRequest, code: str):
    trial = dsmb.dsmb_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial among those whose DSMB reports you may produce."))
    return trial


def _cutoff(request: HttpRequest, trial) -> tuple[date | None, str]:  # noqa: ANN001
    """The cut-off of the query string (the trial's today when absent, in its sites' time zone),
    or an error message."""
    raw = (request.GET.get("cutoff") or "").strip()
    today = dsmb.trial_today(trial)
    if not raw:
        return today, ""
    try:
        cutoff = parse_date(raw)
    except ValueError:
        cutoff = None
    if cutoff is None:
        return None, _("The cut-off must be a date (YYYY-MM-DD).")
    if cutoff > today:
        return None, _("The cut-off date cannot be in the future.")
    return cutoff, ""


@login_required
def dsmb_package(request: HttpRequest, code: str) -> HttpResponse:
    """Choose the cut-off; links to the open report, and to the closed one for the DSMB only."""
    trial = _dsmb_trial(request, code)
    cutoff, error = _cutoff(request, trial)
    return render(request, "exports/dsmb.html", {
        "trial": trial, "cutoff": cutoff, "raw_cutoff": request.GET.get("cutoff", ""), "error": error, "closed_allowed": dsmb.may_see_closed(request.user, trial),
        "packages": dsmb.dsmb_packages(request.user, trial),
    })


@login_required
def dsmb_download(request: HttpRequest, code: str, report: str, fmt: str) -> HttpResponse:
    """/trials/<code>/dsmb/<open|closed>.<pdf|csv>?cutoff=YYYY-MM-DD. The closed report answers
    404 to anyone but the trial's DSMB (it does not exist for a blinded role)."""
    trial = _dsmb_trial(request, code)
    closed = report == "closed"
    if closed and not dsmb.may_see_closed(request.user, trial):
        raise Http404(_("No such report."))
    cutoff, error = _cutoff(request, trial)
    if cutoff is None:
        return HttpResponseBadRequest(error)
    logger.info("DSMB %s report of %s at %s (%s) by %s", report, trial.code, cutoff, fmt, request.user.username)
    try:
        package = dsmb.dsmb_package_file(request.user, trial, cutoff=cutoff, closed=closed, file_format=fmt)
    except dsmb.ClosedReportRefused:
        raise Http404(_("No such report.")) from None
    content = bytes(package.content)
    document_download_record(user=request.user, kind=DownloadKind.DSMB, document=package.file_name, content=content, trial=trial)
    response = _attachment(content, "application/pdf" if fmt == "pdf" else "text/csv; charset=utf-8", package.file_name)
    response["X-Content-SHA256"] = package.sha256
    return response
