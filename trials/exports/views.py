"""Export pages: request an export (of a trial, or of one CRF pooled across trials), follow its
progress (an htmx fragment polled every second while it runs) and download it. Pages parse and
call trials.exports.services; the user sees only her own jobs."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from edc.forms import add_service_errors
from trials.exports import selectors, services
from trials.exports.formats import format_get
from trials.exports.forms import PooledExportForm, TrialExportForm
from trials.exports.models import ExportJob


def _trial(request: HttpRequest, code: str):  # noqa: ANN202
    trial = selectors.exportable_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial among those you may export."))
    return trial


def _requested(request: HttpRequest, form, **kwargs) -> ExportJob | None:  # noqa: ANN001, ANN003
    """Call the service with the form's values; on refusal put the messages on the form."""
    data = form.cleaned_data
    try:
        job = services.export_request(
            user=request.user, format=data["format"], cutoff=data.get("cutoff"),
            blinded=data.get("blinded", True) if not form.fields["blinded"].disabled else True,
            reason=data.get("reason", ""), **kwargs,
        )
    except ValidationError as error:
        add_service_errors(form, error)
        return None
    messages.success(request, _("Export #%(id)s requested. It is prepared in the background; the progress shows below.") % {"id": job.pk})
    return job


@login_required
def export_home(request: HttpRequest) -> HttpResponse:
    """The trials the user may export, the pooled export of one CRF, and the user's exports."""
    trials = list(selectors.exportable_trials(request.user).order_by("code"))
    if not trials:
        raise Http404(_("You have no role that exports data."))
    services.exports_stale_requeue()  # a killed worker's job is queued again at once, not at the next scan
    form = PooledExportForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        if _requested(request, form, pooled_crf=form.cleaned_data["pooled_crf"]) is not None:
            return redirect("export_home")
    return render(request, "exports/home.html", {
        "trials": trials, "form": form, "jobs": selectors.jobs_for_user(request.user)[:50],
    })


@login_required
def trial_exports(request: HttpRequest, code: str) -> HttpResponse:
    """Request an export of one trial; the user's exports of it."""
    trial = _trial(request, code)
    services.exports_stale_requeue()
    form = TrialExportForm(request.POST or None, user=request.user, trial=trial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        extra = {"identifiers": data.get("identifiers", False)}
        if _requested(request, form, trial=trial, sites=list(data["sites"]), crf_codes=data["crfs"], **extra) is not None:
            return redirect("trial_exports", trial.code)
    return render(request, "exports/trial.html", {
        "trial": trial, "form": form, "jobs": selectors.jobs_for_user(request.user).filter(trial=trial)[:50],
    })


def _own_job(request: HttpRequest, pk: int) -> ExportJob:
    job = selectors.jobs_for_user(request.user).filter(pk=pk).first()
    if job is None:
        raise Http404(_("No such export."))
    return job


@login_required
def job_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """One job's row (htmx polls it every second while the job is queued or running)."""
    job = _own_job(request, pk)
    if job.is_active and any(services.exports_stale_requeue().values()):
        job.refresh_from_db()
    return render(request, "exports/_job_row.html", {"job": job})


@login_required
@require_POST
def job_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Request a failed export of one's own again, with the same parameters (checked again)."""
    try:
        job = services.export_retry(job_id=pk, user=request.user)
    except ExportJob.DoesNotExist:
        raise Http404(_("No such failed export.")) from None
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        job = None
    else:
        messages.success(request, _("Export #%(id)s requested again as #%(new)s.") % {"id": pk, "new": job.pk})
    if job is not None and job.trial_id:
        return redirect("trial_exports", job.trial.code)
    return redirect("export_home")


def export_file_response(job: ExportJob, handle) -> FileResponse:  # noqa: ANN001
    """An export's file as a download, never cached (the page's and the API's download)."""
    export_format = format_get(job.format)
    response = FileResponse(
        handle, as_attachment=True, filename=job.download_name,
        content_type=export_format.content_type if export_format else "application/octet-stream",
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
def job_download(request: HttpRequest, pk: int) -> FileResponse:
    """The file, for its requester only (anyone else: 404); every download is recorded."""
    try:
        job, handle = services.export_download(job_id=pk, user=request.user)
    except ExportJob.DoesNotExist:
        raise Http404(_("No such export.")) from None
    return export_file_response(job, handle)
