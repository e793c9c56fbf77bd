"""Coordinator screens: a site's participants, a participant's visit × CRF grid, the CRF page."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _

from trials.participants.models import ParticipantStatus
from trials.participants.selectors import participant_summary, participants_for_user, user_enters_data_at
from trials.participants.services import consent_problem, user_acts_at
from trials.protocol import selectors as protocol_selectors
from trials.visits import selectors
from trials.visits.engine import schema_for
from trials.visits.forms import CrfSubmission
from trials.visits.services import CrfEntryConflict, crf_entry_carried_forward, crf_entry_for, crf_entry_save, entry_context


@login_required
def participant_list(request: HttpRequest, code: str, site_code: str) -> HttpResponse:
    """The participants of one site, searchable by number and filterable by status."""
    site = protocol_selectors.sites_for_user(request.user).filter(trial__code=code, code=site_code).first()
    if site is None:
        raise Http404(_("No such site in your studies."))
    participants = participants_for_user(request.user).filter(site=site)
    query = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    if query:
        participants = participants.filter(screening_number__icontains=query) | participants.filter(subject_number__icontains=query)
    if status in ParticipantStatus.values:
        participants = participants.filter(status=status)
    return render(
        request,
        "visits/participant_list.html",
        {
            "site": site, "participants": participants.order_by("screening_number"), "query": query, "status": status,
            "statuses": ParticipantStatus.choices, "can_screen": user_acts_at(request.user, site),
        },
    )


@login_required
def participant_dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    """A participant's visits with the status of every CRF due at each."""
    participant = selectors.participant_for_user(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    return render(
        request,
        "visits/participant_dashboard.html",
        {
            "participant": participant,
            "grid": selectors.participant_grid(participant),
            "can_enter": user_enters_data_at(request.user, participant),
            "summary": participant_summary(request.user, participant),
        },
    )


def _next_url(visit, crf_code: str) -> str:  # noqa: ANN001
    """The next CRF of the same visit, else the dashboard (save-and-next)."""
    codes = list(visit.definition.visit_crfs.filter(is_active=True).order_by("order").values_list("crf_code", flat=True)) if visit.definition else []
    if crf_code in codes and codes.index(crf_code) + 1 < len(codes):
        return reverse("crf_entry", args=[visit.pk, codes[codes.index(crf_code) + 1]])
    return reverse("participant_dashboard", args=[visit.participant_id])


@login_required
def crf_entry(request: HttpRequest, visit_pk: int, crf_code: str) -> HttpResponse:
    """Enter or change one CRF at one visit: validate, confirm warnings, save, audited."""
    visit = selectors.visit_for_user(request.user, visit_pk)
    if visit is None:
        raise Http404(_("No such visit in your sites."))
    try:
        entry = crf_entry_for(visit, crf_code)
    except ValidationError:
        raise Http404(_("This CRF is not part of this visit.")) from None
    schema = schema_for(entry.crf)
    blocked = consent_problem(visit.participant)
    can_enter = user_enters_data_at(request.user, visit.participant) and not blocked
    context = {"visit": visit, "participant": visit.participant, "entry": entry, "schema": schema, "can_enter": can_enter, "blocked": blocked}
    if request.method == "POST":
        if not can_enter:
            raise PermissionDenied(blocked or _("You do not enter data at this site."))
        live = request.headers.get("HX-Request") == "true" and "action" not in request.POST
        if live or request.POST.get("action", "").startswith("add_row:"):
            return _live(request, schema, visit, entry, context)
        try:
            expected = int(request.POST.get("revision", "-1"))
        except ValueError:
            expected = -1
        try:
            result = crf_entry_save(
                user=request.user, visit=visit, crf_code=crf_code, data=request.POST, expected_revision=expected,
                complete=request.POST.get("action") in {"complete", "complete_next"},
                confirm_warnings=request.POST.get("confirm_warnings") == "on", reason=request.POST.get("reason", ""),
            )
        except CrfEntryConflict as conflict:
            submission = CrfSubmission(schema, data=request.POST, context=entry_context(visit))
            submission.validate()
            current = conflict.current()
            if current is None:  # the form claimed a revision that never existed: show it again
                submission = CrfSubmission(schema, data=request.POST, context=entry_context(visit))
                submission.validate()
                submission.clear_messages()
                submission.form.add_error(None, _("This page was out of date; nothing was saved. Check your answers and save again."))
                return render(request, "visits/crf_entry.html", {**context, "submission": submission, "stale": True}, status=409)
            return render(
                request, "visits/crf_conflict.html",
                {**context, "entry": current, "mine": submission.outcome.answers, "theirs": current.answers},
                status=409,
            )
        if result.saved:
            if request.POST.get("action") in {"save_next", "complete_next"}:
                return redirect(_next_url(visit, crf_code))
            return redirect(reverse("crf_entry", args=[visit.pk, crf_code]) + "?saved=1")
        submission = result.submission
        status = 200
    else:
        answers = entry.answers if entry.pk else crf_entry_carried_forward(entry)
        submission = CrfSubmission(schema, answers=answers, missing=entry.missing, context=entry_context(visit))
        submission.evaluate_stored(answers, entry.missing)  # branching and scores as stored
        status = 200
    return render(request, "visits/crf_entry.html", {**context, "submission": submission, "saved": request.GET.get("saved")}, status=status)


def _live(request: HttpRequest, schema, visit, entry, context: dict) -> HttpResponse:  # noqa: ANN001
    """Re-evaluate branching and scores for the page as typed (htmx), or add a row; saves nothing."""
    data = request.POST.copy()
    group = request.POST.get("action", "").removeprefix("add_row:")
    if any(g.name == group for g in schema.groups):
        total = f"{group}-TOTAL_FORMS"
        try:
            data[total] = str(int(data.get(total, "0")) + 1)
        except ValueError:
            data[total] = "1"
    submission = CrfSubmission(schema, data=data, context=entry_context(visit))
    submission.validate()
    if request.headers.get("HX-Request") != "true":
        submission.clear_messages()
        return render(request, "visits/crf_entry.html", {**context, "submission": submission, "live": True})
    return render(request, "visits/_crf_live.html", {"updates": _live_updates(submission, set(request.POST.getlist("_shown")))})


def _live_updates(submission: CrfSubmission, shown_before: set[str]) -> list[dict]:
    """Items to re-render after a change: calculated values, and items shown or hidden since."""
    outcome = submission.outcome
    updates = []

    def consider(item, form, prefix: str, hidden: bool, answers, notes) -> None:  # noqa: ANN001
        if item.type == "calculated" or (item.is_input and hidden == (f"{prefix}{item.name}" in shown_before)):
            updates.append({"item": item, "form": form, "prefix": prefix, "hidden": hidden, "answers": answers, "notes": notes})

    for item in submission.schema.items:
        if item.type != "repeating_group":
            consider(item, submission.form, "", item.name in outcome.hidden, outcome.answers, outcome.notes)
    for group in submission.schema.groups:
        live_forms = [f for f in submission.formsets[group.name].forms if not (getattr(f, "cleaned_data", {}) or {}).get("DELETE")]
        for index, form in enumerate(live_forms):
            row_hidden = (outcome.hidden_in_rows.get(group.name) or {}).get(index, set())
            stored_rows = outcome.answers.get(group.name) or []
            row_answers = stored_rows[index] if index < len(stored_rows) else {}
            for item in group.children:
                consider(item, form, f"{form.prefix}-", item.name in row_hidden, row_answers, {})
    return updates
