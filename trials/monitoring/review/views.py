"""The monitor's form-view review: a CRF entry rendered as the site sees it (the CRF page's own
templates, every input disabled), with beside each item the SDV tick (only the plan's items), a
query form and the item's history from the audit trail. Every act goes through the services:
`sdv_item_tick` (one audited tick, saved at once) and `sdv_verify_items` (the audited SDV mark), `query_raise` (the audited query and its thread).

Monitors and data managers of the participant's site; another site's entry is a 404 (the entry
is read through `participants_for_user`), a coordinator of the site gets a 403 (she has the CRF page).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from trials.monitoring.audit.trail import entry_answer_trail
from trials.monitoring.models import SdvPlan
from trials.monitoring.queries.selectors import user_reviews_at, user_verifies_at
from trials.monitoring.queries.services import query_raise
from trials.monitoring.queries.views import crf_query_context
from trials.monitoring.sdv.services import sdv_item_tick, sdv_review_items, sdv_status_text, sdv_ticks, sdv_verify_items
from trials.participants.selectors import participants_for_user
from trials.protocol.engine import schema_for
from trials.records.models import SdvMark, SdvState
from trials.visits.forms import CrfSubmission
from trials.visits.models import CrfEntry, EntryStatus
from trials.visits.services import entry_context, entry_lab_grades
from trials.visits.views import crf_review_context


def _entry_for_reviewer(user, pk: int) -> CrfEntry:  # noqa: ANN001
    entry = (
        CrfEntry.objects.filter(pk=pk, participant__in=participants_for_user(user))
        .select_related("crf", "visit__definition", "participant__trial", "participant__site", "participant__consent_document")
        .first()
    )
    if entry is None:
        raise Http404(_("No such CRF entry in your sites."))
    if not user_reviews_at(user, entry.participant):
        raise PermissionDenied(_("Only the monitors and data managers of this site review its forms."))
    return entry


def _read_only(submission: CrfSubmission) -> None:
    """Every input of the rendered CRF disabled: the page shows, it never posts CRF data."""
    for field in submission.form.fields.values():
        field.disabled = True
    for formset in submission.formsets.values():
        for form in formset.forms:
            for field in form.fields.values():
                field.disabled = True


def _history(entry: CrfEntry) -> dict[str, list[dict]]:
    """Item name → its changes, oldest first (when, who, why, old → new), from the audit trail."""
    by_item: dict[str, list[dict]] = {}
    for row in entry_answer_trail(entry):
        for change in row.changes:
            name = change.field.split(".")[0]  # a row's item is filed under its group
            by_item.setdefault(name, []).append({"row": row, "change": change})
    return by_item


def _tick_label(tick) -> str:  # noqa: ANN001
    return tick.label + (" " + _("(row %(n)s)") % {"n": tick.row_number} if tick.row_id else "")


@login_required
def form_review(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the entry as the site sees it, with the review controls. POST action=tick (`item`,
    `row_id`, `ticked` 1/0: one SDV tick, saved at once; htmx gets the tick's fragment back, a
    plain form post a redirect), action=sdv (several ticked `sdv_item`s at once, and the form
    verified) or action=query (`item`, `row_id`, `text`)."""
    entry = _entry_for_reviewer(request.user, pk)
    visit, participant = entry.visit, entry.participant
    schema = schema_for(entry.crf, get_language())  # the reviewer reads the form in her language where the CRF has it
    plan = SdvPlan.objects.filter(trial_id=participant.trial_id).first()
    here = reverse("form_review", args=[entry.pk])
    query_errors: dict[str, list[str]] = {}
    sdv_errors: list[str] = []
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "tick":
            item, row_id = request.POST.get("item", ""), request.POST.get("row_id", "")
            ticked = request.POST.get("ticked") == "1"
            try:
                sdv_item_tick(entry=entry, user=request.user, item=item, row_id=row_id, ticked=ticked, plan=plan)
            except (ValidationError, PermissionDenied) as error:
                sdv_errors = list(getattr(error, "messages", None) or [str(error)])
            else:
                key = f"{item}@{row_id}" if row_id else item
                if request.headers.get("HX-Request"):
                    entry.refresh_from_db()
                    return render(request, "monitoring/sdv_tick_response.html", _sdv_context(request, entry, plan, key=key))
                return redirect(here + "#sdv-" + key.replace("@", "--"))
        elif action == "sdv":
            try:
                sdv_verify_items(entry=entry, user=request.user, items=request.POST.getlist("sdv_item"), plan=plan)
            except (ValidationError, PermissionDenied) as error:
                sdv_errors = list(getattr(error, "messages", None) or [str(error)])
            else:
                messages.success(request, _("Source data verified: %(crf)s at %(visit)s.") % {"crf": schema.code, "visit": visit.label})
                return redirect(here + "#sdv")
        elif action == "query":
            item, row_id = request.POST.get("item", ""), request.POST.get("row_id", "")
            try:
                query = query_raise(user=request.user, entry=entry, item=item, row_id=row_id, text=request.POST.get("text", ""))
            except (ValidationError, PermissionDenied) as error:
                query_errors[f"{item}@{row_id}" if row_id else item] = list(getattr(error, "messages", None) or [str(error)])
            else:
                label = next((i.label for i in schema.items if i.name == query.item), query.item)
                messages.success(request, _("Query raised on %(item)s.") % {"item": label})
                return redirect(here + f"#query-{query.pk}")
        else:
            sdv_errors = [_("Unknown action.")]
        if sdv_errors and request.headers.get("HX-Request"):
            return HttpResponse(" ".join(sdv_errors), status=400)
        entry.refresh_from_db()
    submission = CrfSubmission(schema, answers=entry.answers, missing=entry.missing, context=entry_context(visit, schema))
    outcome = submission.evaluate_stored(entry.answers, entry.missing)
    _read_only(submission)
    status = 400 if (sdv_errors or query_errors) else 200
    return render(request, "monitoring/form_review.html", {
        "visit": visit, "participant": participant, "entry": entry, "schema": schema, "submission": submission,
        "live": True, "review": True, "can_enter": False, "lab_grades": entry_lab_grades(visit, schema, outcome.answers),
        **crf_review_context(visit, entry), **crf_query_context(request.user, entry, hidden=outcome.hidden),
        **_sdv_context(request, entry, plan),
        "history": _history(entry), "sdv_errors": sdv_errors, "query_errors": query_errors,
        "query_text": request.POST.get("text", "") if query_errors else "",
        "grid_url": reverse("status_grid", args=[participant.trial.code]) + f"?site={participant.site.code}",
    }, status=status)


def _sdv_context(request: HttpRequest, entry: CrfEntry, plan: SdvPlan | None, key: str = "") -> dict:
    """The SDV state of the page: the planned ticks by key, the saved ticks, the form's mark."""
    review_items = sdv_review_items(entry, plan)
    ticks = sdv_ticks(entry)
    mark = SdvMark.objects.filter(entry=entry).select_related("verified_by", "reset_by").first()
    verified = mark is not None and mark.state == SdvState.VERIFIED and mark.entry_revision == entry.revision
    blocking = [t for t in review_items if t.blocking]
    ticked = {k for k, t in ticks.items() if t.ticked}
    context = {
        "sdv_items": {t.key: t for t in review_items}, "sdv_saved": ticks, "ticked": ticked, "verified": verified,
        "sdv_mark": mark, "sdv_text": sdv_status_text(mark, entry) if mark else "",
        "planned": [t.key for t in blocking], "planned_labels": [_tick_label(t) for t in blocking],
        "ticked_planned": sum(1 for t in blocking if t.key in ticked), "all_ticked": all(t.key in ticked for t in blocking),
        "can_verify": entry.status == EntryStatus.COMPLETE and user_verifies_at(request.user, entry.participant),
    }
    if key:
        context["tick"] = context["sdv_items"].get(key)
        context["tick_key"] = key
    return context
