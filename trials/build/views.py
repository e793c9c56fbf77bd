"""The study-build pages: upload → validation → impact preview → apply with a reason; the
amendment history; the blank and annotated CRFs (printable)."""

from __future__ import annotations

import base64
import csv
import io
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from edc.pdf import html_to_pdf
from trials.build import hooks, selectors
from trials.build.forms import ApplyForm
from trials.build.impact import impact_rows
from trials.build.services import BuildError, amendment_apply, build_preview, impact_digest
from trials.build.uploads import MAX_UPLOAD_BYTES, UploadedFile, UploadError, too_large_message, upload_to_yaml
from trials.protocol.content import localized_definition
from trials.protocol.engine import crf_language
from trials.protocol.models import CrfDefinition, Trial

SALT = "trials.build.upload"
PAYLOAD_MAX_AGE = 4 * 3600  # a preview older than this is previewed again


def _trial_or_404(request: HttpRequest, code: str | None) -> Trial | None:
    """The trial of the page (None: a new trial), among those the user may amend."""
    if code is None:
        if not selectors.is_study_builder(request.user):
            raise Http404(_("Only a study builder may create a trial."))
        return None
    trial = selectors.buildable_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial among those you manage."))
    return trial


def _pack(files: dict[str, bytes]) -> str:
    """The uploaded files travel from the preview to the apply signed, in the page (nothing is
    stored before the amendment is applied)."""
    return signing.dumps({name: base64.b64encode(data).decode() for name, data in files.items()}, salt=SALT, compress=True)


def _unpack(payload: str) -> dict[str, bytes]:
    try:
        packed = signing.loads(payload, salt=SALT, max_age=PAYLOAD_MAX_AGE)
    except signing.BadSignature:
        raise BuildError([_("The preview has expired or was altered: upload the files again.")]) from None
    return {name: base64.b64decode(data) for name, data in packed.items()}


@login_required
def build_home(request: HttpRequest) -> HttpResponse:
    if not selectors.user_may_build(request.user):
        raise Http404(_("The study build is for data managers and study builders."))
    return render(request, "build/home.html", {
        "trials": selectors.buildable_trials(request.user).order_by("code"),
        "is_builder": selectors.is_study_builder(request.user),
    })


def _read_uploads(request: HttpRequest) -> dict[str, bytes]:
    uploads, problems = [], []
    for upload in request.FILES.getlist("files"):
        if upload.size > MAX_UPLOAD_BYTES:  # refused by its size, never read
            problems.append(too_large_message(upload.name, upload.size))
            continue
        uploads.append(UploadedFile(upload.name, upload.read()))
    if problems:
        raise UploadError(problems)
    return upload_to_yaml(uploads)


@login_required
def build_trial(request: HttpRequest, code: str | None = None) -> HttpResponse:
    """GET: the upload form; POST: validate and preview (nothing written)."""
    trial = _trial_or_404(request, code)
    context = {"trial": trial, "max_mb": MAX_UPLOAD_BYTES // 2**20}
    if trial is not None:
        context["amendments"] = selectors.amendments(trial)[:5]
    if request.method != "POST":
        return render(request, "build/upload.html", context)
    try:
        files = _read_uploads(request)
        trial_code, impact = build_preview(files, user=request.user, trial=trial)
    except (UploadError, BuildError) as error:
        return render(request, "build/upload.html", {**context, "problems": error.messages}, status=400)
    form = ApplyForm(initial={"payload": _pack(files), "previewed": impact_digest(impact)})
    return render(request, "build/preview.html", {**context, "trial_code": trial_code, "impact": impact, "form": form,
                                                  "files": sorted(files)})


@login_required
@require_POST
def build_apply(request: HttpRequest, code: str | None = None) -> HttpResponse:
    trial = _trial_or_404(request, code)
    form = ApplyForm(request.POST)
    context = {"trial": trial, "max_mb": MAX_UPLOAD_BYTES // 2**20}
    try:
        files = _unpack(request.POST.get("payload", ""))
        if not form.is_valid():
            trial_code, impact = build_preview(files, user=request.user, trial=trial)
            return render(request, "build/preview.html", {**context, "trial_code": trial_code, "impact": impact, "form": form,
                                                          "files": sorted(files)}, status=400)
        data = form.cleaned_data
        amendment = amendment_apply(files, user=request.user, trial=trial, version=data["version"],
                                    effective_date=data["effective_date"], reason=data["reason"], previewed=data["previewed"])
    except (UploadError, BuildError) as error:
        return render(request, "build/upload.html", {**context, "problems": error.messages}, status=400)
    except ValidationError as error:
        for field, texts in error.message_dict.items() if hasattr(error, "error_dict") else [(None, error.messages)]:
            for text in texts:
                form.add_error(field if field in form.fields else None, text)
        trial_code, impact = build_preview(files, user=request.user, trial=trial)
        return render(request, "build/preview.html", {**context, "trial_code": trial_code, "impact": impact, "form": form,
                                                      "files": sorted(files)}, status=400)
    messages.success(request, _("Amendment %(n)s (version %(v)s) of %(trial)s applied.") % {
        "n": amendment.number, "v": amendment.version, "trial": amendment.trial.code})
    return redirect("build_history", code=amendment.trial.code)


def _impact_response(impact: dict, fmt: str, name: str) -> HttpResponse:
    if fmt not in ("csv", "json"):
        raise Http404(_("CSV or JSON only."))
    if fmt == "json":
        response = HttpResponse(json.dumps(impact, indent=2, ensure_ascii=False, default=str), content_type="application/json")
    else:
        out = io.StringIO()
        csv.writer(out).writerows(impact_rows(impact))
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@login_required
@require_POST
def build_impact_download(request: HttpRequest, fmt: str, code: str | None = None) -> HttpResponse:
    """The preview's impact as CSV or JSON (recomputed from the signed files: nothing written)."""
    trial = _trial_or_404(request, code)
    try:
        files = _unpack(request.POST.get("payload", ""))
        trial_code, impact = build_preview(files, user=request.user, trial=trial)
    except (UploadError, BuildError) as error:
        return render(request, "build/upload.html", {"trial": trial, "problems": error.messages}, status=400)
    return _impact_response(impact, fmt, f"{trial_code}_impact_preview")


@login_required
def build_history(request: HttpRequest, code: str) -> HttpResponse:
    trial = _trial_or_404(request, code)
    return render(request, "build/history.html", {"trial": trial, "amendments": selectors.amendments(trial)})


@login_required
def amendment_download(request: HttpRequest, code: str, number: int, fmt: str) -> HttpResponse:
    trial = _trial_or_404(request, code)
    amendment = trial.amendments.filter(number=number).first()
    if amendment is None:
        raise Http404(_("No such amendment."))
    return _impact_response(amendment.impact, fmt, f"{trial.code}_amendment_{amendment.number}")


def _crf_trial(request: HttpRequest, code: str) -> Trial:
    from trials.protocol.selectors import trials_for_user

    trial = trials_for_user(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial in your studies."))
    return trial


@login_required
def crf_list(request: HttpRequest, code: str) -> HttpResponse:
    trial = _crf_trial(request, code)
    return render(request, "build/crf_list.html", {"trial": trial, "crfs": selectors.crf_versions_for_user(request.user, trial)})


def _rows(fields: list[dict], codelists: dict) -> list[dict]:
    """The CRF's items for the printable page, with the choices of a codelist spelled out."""
    rows = []
    for field in fields:
        choices = field.get("choices")
        if isinstance(choices, str):
            choices = codelists.get(choices) or []
        rows.append({**field, "choices": choices or [], "children": _rows(field.get("fields") or [], codelists)})
    return rows


@login_required
def crf_print(request: HttpRequest, code: str, crf: str, version: int) -> HttpResponse:
    """A CRF version as a printable page: blank (for paper), or annotated (item names, types,
    codes, branching and checks beside the items) with ?annotated=1."""
    trial = _crf_trial(request, code)
    definition = selectors.crf_versions_for_user(request.user, trial).filter(code=crf, version=version).first()
    if definition is None:
        raise Http404(_("No such CRF version in this trial."))
    # The printed form speaks the requester's language when the CRF has it (docs/architecture.md,
    # "Languages of documents"); its codes and names are the same in every language.
    spec = localized_definition(definition.definition, crf_language(definition, get_language()))
    annotated = request.GET.get("annotated") == "1"
    context = {
        "trial": trial, "crf": definition, "annotated": annotated,
        "rows": _rows(spec.get("fields") or [], spec.get("codelists") or {}), "checks": spec.get("checks") or [],
        "versions": CrfDefinition.objects.filter(code=crf, pk__in=selectors.crf_versions_for_user(request.user, trial)).order_by("version"),
    }
    if request.GET.get("format") == "pdf":  # the same page, printed by WeasyPrint (print CSS)
        kind = "annotated" if annotated else "blank"
        pdf = html_to_pdf(render_to_string("build/crf_print.html", context, request=request))
        name = f"{definition.code}-v{definition.version}-{kind}.pdf"
        hooks.document_downloaded(user=request.user, kind="crf_print", document=f"{trial.code}/{name}", content=pdf, trial=trial)
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    return render(request, "build/crf_print.html", context)
