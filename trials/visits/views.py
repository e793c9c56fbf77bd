"""Coordinator screens: a site's participants, the CRF page, the visit pages and the calendar (the
participant's dashboard, which shows monitoring too, is composed in trials.monitoring.casebook)."""

import secrets
from datetime import timedelta
from functools import cache
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from edc.forms import add_service_errors
from trials.participants.models import ParticipantStatus
from trials.participants.selectors import participants_for_user, user_enters_data_at
from trials.participants.services import consent_problem, user_acts_at
from trials.protocol import selectors as protocol_selectors
from trials.protocol.models import Site
from trials.records.locks import lock_covering, lock_message
from trials.records.models import Lock, Signature, SignatureState
from trials.visits import files as file_items
from trials.visits import hooks, participant_rows, schedule, selectors
from trials.protocol.engine import schema_for
from trials.visits.forms import CrfSubmission
from trials.visits.models import CalendarFeed, CrfEntry, StoredFile, Visit, VisitStatus
from trials.visits.services import (
    PARTICIPANT_SOURCED,
    CrfEntryConflict,
    crf_entry_carried_forward,
    crf_entry_for,
    crf_entry_save,
    entry_context,
    entry_lab_grades,
)
from trials.visits.services import log_record_add as log_record_add_service


PARTICIPANTS_PER_PAGE = 50


@login_required
def participant_list(request: HttpRequest, code: str, site_code: str) -> HttpResponse:
    """The participants of one site, searchable by number and filterable by status, a page at a
    time: the page's work does not grow with the site (issue 22). The site is read by key (its
    code and its trial's code only) and checked against the request's roles memo
    (`site_visible_to`, sites_for_user's rule); the page's rows and their total are one query of
    five columns, written as HTML by `participant_rows` (no template loop)."""
    site = Site.objects.select_related("trial").only("id", "code", "name", "is_active", "trial_id", "trial__code").filter(trial__code=code, code=site_code).first()
    if site is None or not protocol_selectors.site_visible_to(request.user, site):
        raise Http404(_("No such site in your studies."))
    query = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    rows = participant_rows.site_participant_rows(site, query=query, status=status if status in ParticipantStatus.values else "")
    page = participant_rows.participant_page(rows, request.GET.get("page"), PARTICIPANTS_PER_PAGE)
    empty = _("No participants match.") if query or status else _("No participants yet.")
    kept = {key: value for key, value in (("q", query), ("status", status)) if value}
    return render(
        request,
        "visits/participant_list.html",
        {
            "site": site, "page": page, "query": query, "status": status,
            "rows_html": participant_rows.participant_rows_html(page.object_list, dict(ParticipantStatus.choices), empty),
            "statuses": ParticipantStatus.choices, "can_screen": user_acts_at(request.user, site),
            "page_query": urlencode(kept), "page_numbers": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        },
    )


@login_required
def log_record_add(request: HttpRequest, pk: int, crf_code: str) -> HttpResponse:
    """Add a record to a participant's log (POST), then open its CRF."""
    participant = selectors.participant_for_user(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    if request.method != "POST":
        return redirect("participant_dashboard", participant.pk)
    try:
        visit = log_record_add_service(user=request.user, participant=participant, crf_code=crf_code)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(reverse("participant_dashboard", args=[participant.pk]) + "#logs")
    return redirect("crf_entry", visit.pk, crf_code)


def _next_url(visit, crf_code: str) -> str:  # noqa: ANN001
    """The next CRF of the same visit, else the dashboard (save-and-next)."""
    codes = list(visit.definition.visit_crfs.filter(is_active=True).order_by("order").values_list("crf_code", flat=True)) if visit.definition else []
    if crf_code in codes and codes.index(crf_code) + 1 < len(codes):
        return reverse("crf_entry", args=[visit.pk, codes[codes.index(crf_code) + 1]])
    return reverse("participant_dashboard", args=[visit.participant_id])


def visit_lock_context(visit: Visit) -> dict:
    """For the visit pages (visit date, missed): the lock or freeze covering the visit, if any."""
    lock = lock_covering(trial=visit.participant.trial_id, participant=visit.participant, visit=visit)
    return {"lock": lock, "lock_message": lock_message(lock) if lock else ""}


def crf_review_context(visit: Visit, entry: CrfEntry) -> dict:
    """For the CRF page: the lock or freeze covering the entry (the page is then read-only, with
    its reason) and the valid signature that a change would break. The signature is read only
    when the page is rendered (a save redirects): `signature` is a callable the template calls."""
    if "page_lock_id" in entry.__dict__:  # read with the entry (services.entry_page_annotations): the lock only if there is one
        lock = Lock.objects.select_related("locked_by").filter(pk=entry.page_lock_id).first() if entry.page_lock_id is not None else None
    else:
        lock = lock_covering(trial=visit.participant.trial_id, participant=visit.participant, visit=visit, entry=entry)

    @cache
    def signature() -> Signature | None:
        if "page_signature_id" in entry.__dict__:
            return Signature.objects.filter(pk=entry.page_signature_id).first() if entry.page_signature_id is not None else None
        return (
            Signature.objects.filter(
                Q(visit=visit) | Q(visit__isnull=True), participant=visit.participant_id, state=SignatureState.VALID
            )
            .order_by(F("visit_id").desc(nulls_last=True))
            .first()  # the visit's own signature first
        )

    return {"lock": lock, "lock_message": lock_message(lock) if lock else "", "signature": signature}


# Set on a successful save: the browser then drops its draft of the saved page (static/js/drafts.js).
DRAFT_SAVED_COOKIE = "edc_draft_saved"


@login_required
def crf_entry(request: HttpRequest, visit_pk: int, crf_code: str) -> HttpResponse:
    """Enter or change one CRF at one visit: validate, confirm warnings, save, audited."""
    visit = selectors.visit_for_user(request.user, visit_pk)
    if visit is None:
        raise Http404(_("No such visit in your sites."))
    try:
        # Read with the page's checks (consent, lock, signature, SDV mark, ePRO source, queries) in its query.
        entry = crf_entry_for(visit, crf_code, page_checks=True)
    except ValidationError:
        raise Http404(_("This CRF is not part of this visit.")) from None
    # The CRF's texts in the page's language when the CRF has it, else in its default language.
    schema = schema_for(entry.crf, get_language())
    blocked = _consent_block(visit.participant, entry)
    enters = user_enters_data_at(request.user, visit.participant)
    review = crf_review_context(visit, entry)  # a lock or freeze makes the page read-only, with its reason
    # Answered by the participant herself (trials.epro): read-only for staff, with why (ALCOA).
    respondent = hooks.entry_respondent(entry) if entry.pk else None
    can_enter = enters and not blocked and review["lock"] is None and respondent is None
    context = {
        "visit": visit, "participant": visit.participant, "entry": entry, "schema": schema, "can_enter": can_enter, "blocked": blocked,
        "respondent": respondent, **review,
        "has_files": any(i.type == "file" for i in (*schema.items, *(c for g in schema.groups for c in g.children))),
    }
    if request.method == "POST":
        if not can_enter:
            if enters and respondent:
                raise PermissionDenied(PARTICIPANT_SOURCED)
            raise PermissionDenied((enters and (blocked or review["lock_message"])) or _("You do not enter data at this site."))
        # Every htmx request is a live re-evaluation: htmx adds the last clicked button to its
        # requests, so a background request queued before "Save" may carry an action; saves are
        # plain form submissions.
        live = request.headers.get("HX-Request") == "true"
        if live or request.POST.get("action", "").startswith("add_row:") or request.POST.get("action") == "restore_draft":
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
                files=request.FILES, language=schema.language,
            )
        except ValidationError as error:  # locked since the page was opened: nothing was saved
            raise PermissionDenied(" ".join(error.messages)) from None
        except CrfEntryConflict as conflict:
            submission = CrfSubmission(schema, data=request.POST, context=entry_context(visit, schema))
            submission.validate()
            current = conflict.current()
            if current is None:  # the form claimed a revision that never existed: show it again
                submission = CrfSubmission(schema, data=request.POST, context=entry_context(visit, schema))
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
                response = redirect(_next_url(visit, crf_code))
            else:
                response = redirect(reverse("crf_entry", args=[visit.pk, crf_code]) + "?saved=1")
            # The browser keeps a draft of this page only until it is saved: the next page it
            # loads (this one again, or the next CRF) drops it (static/js/drafts.js).
            response.set_cookie(DRAFT_SAVED_COOKIE, request.path, max_age=600, samesite="Lax", secure=request.is_secure())
            return response
        submission = result.submission
        status = 200
    else:
        answers = entry.answers if entry.pk else crf_entry_carried_forward(entry)
        submission = CrfSubmission(schema, answers=answers, missing=entry.missing, context=entry_context(visit, schema), stored=answers)
        submission.evaluate_stored(answers, entry.missing)  # branching and scores as stored
        status = 200
    outcome = submission.outcome
    lab_grades = entry_lab_grades(visit, schema, outcome.answers) if outcome is not None else {}
    return render(request, "visits/crf_entry.html", {
        **context, **_queries(request, entry, submission), "submission": submission, "saved": request.GET.get("saved"),
        "lab_grades": lab_grades,
        "form_revision": entry.revision, "offer_draft": request.method == "GET"}, status=status)


def _consent_block(participant, entry: CrfEntry) -> str | None:  # noqa: ANN001
    """consent_problem(participant), without its query when the entry was read with `newer_consent`
    and the participant consented to the newest version she must (the usual case)."""
    if "newer_consent" in entry.__dict__ and participant.consent_date is not None and not entry.newer_consent:
        return None
    return consent_problem(participant)


def _queries(request: HttpRequest, entry, submission: CrfSubmission) -> dict:  # noqa: ANN001
    """The query threads beside the items and the SDV status (only for pages that are shown: a
    save redirects, and live updates rarely show an item again)."""
    return hooks.crf_page_queries(request.user, entry, hidden=submission.outcome.hidden if submission.outcome else set())


def _live(request: HttpRequest, schema, visit, entry, context: dict) -> HttpResponse:  # noqa: ANN001
    """Re-evaluate branching and scores for the page as typed (htmx), or add a row; saves nothing."""
    data = request.POST.copy()
    is_htmx = request.headers.get("HX-Request") == "true"
    group = "" if is_htmx else request.POST.get("action", "").removeprefix("add_row:")
    if any(g.name == group for g in schema.groups):
        total = f"{group}-TOTAL_FORMS"
        try:
            data[total] = str(int(data.get(total, "0")) + 1)
        except ValueError:
            data[total] = "1"
    # Uploads are not read here (a live re-evaluation saves nothing): the files saved before are shown.
    submission = CrfSubmission(schema, data=data, context=entry_context(visit, schema), stored=entry.answers)
    submission.validate()
    if request.headers.get("HX-Request") != "true":
        submission.clear_messages()
        # The page stays the edit of the revision it was opened at (a row added, or a draft kept by
        # the browser after an expired session or a dropped connection, restored): a save made by
        # someone else meanwhile is then a conflict, not silently overwritten.
        return render(request, "visits/crf_entry.html", {
            **context, **_queries(request, entry, submission), "submission": submission, "live": True,
            "form_revision": request.POST.get("revision", entry.revision),
            "restored": request.POST.get("action") == "restore_draft"})
    updates = _live_updates(submission, set(request.POST.getlist("_shown")))
    shown_again = any(not u["hidden"] and u["item"].type != "calculated" for u in updates)
    return render(request, "visits/_crf_live.html", {"updates": updates, **(_queries(request, entry, submission) if shown_again else {})})


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


# --- Schedule: visit dates, missed visits, unscheduled visits, the coordinator's calendar -------


class VisitDateForm(forms.Form):
    visit_date = forms.DateField(label=_("Visit date"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), input_formats=["%Y-%m-%d"])
    reason = forms.CharField(label=_("Reason for change"), max_length=500, required=False, help_text=_("Required when correcting a recorded date."))


class VisitMarkForm(forms.Form):
    status = forms.ChoiceField(label=_("The visit"), choices=[(VisitStatus.MISSED, _("was missed")), (VisitStatus.NOT_DONE, _("will not be done"))], widget=forms.RadioSelect)
    reason = forms.CharField(label=_("Reason"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


class UnscheduledVisitForm(forms.Form):
    label = forms.CharField(label=_("Visit"), max_length=200, help_text=_("E.g. AE follow-up, extra assessment."))
    planned_date = forms.DateField(label=_("Date"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), input_formats=["%Y-%m-%d"])
    reason = forms.CharField(label=_("Reason"), max_length=1000, widget=forms.Textarea(attrs={"rows": 2}))


def _visit_for_action(request: HttpRequest, visit_pk: int):  # noqa: ANN202
    visit = selectors.visit_for_user(request.user, visit_pk)
    if visit is None:
        raise Http404(_("No such visit in your sites."))
    if not user_acts_at(request.user, visit.participant.site):
        raise PermissionDenied(_("You do not enter data at this site."))
    return visit


@login_required
def visit_date(request: HttpRequest, visit_pk: int) -> HttpResponse:
    visit = _visit_for_action(request, visit_pk)
    form = VisitDateForm(request.POST or None, initial={"visit_date": visit.visit_date or visit.participant.site.today()})
    if request.method == "POST" and form.is_valid():
        try:
            visit = schedule.visit_record_date(visit, user=request.user, visit_date=form.cleaned_data["visit_date"], reason=form.cleaned_data["reason"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            if visit.out_of_window:
                messages.warning(request, _("%(visit)s was done outside its window (%(start)s – %(end)s): this may be a protocol deviation.") % {
                    "visit": visit.label, "start": visit.window_start, "end": visit.window_end})
            else:
                messages.success(request, _("Visit date recorded."))
            return redirect("participant_dashboard", visit.participant_id)
    return render(request, "visits/visit_action.html", {
        "visit": visit, "participant": visit.participant, "form": form, "title": _("Visit date"), **visit_lock_context(visit)})


@login_required
def visit_mark(request: HttpRequest, visit_pk: int) -> HttpResponse:
    visit = _visit_for_action(request, visit_pk)
    form = VisitMarkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            schedule.visit_mark(visit, user=request.user, status=form.cleaned_data["status"], reason=form.cleaned_data["reason"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Recorded."))
            return redirect("participant_dashboard", visit.participant_id)
    return render(request, "visits/visit_action.html", {
        "visit": visit, "participant": visit.participant, "form": form, "title": _("Missed or not done"), **visit_lock_context(visit)})


@login_required
def visit_unscheduled(request: HttpRequest, pk: int) -> HttpResponse:
    participant = selectors.participant_for_user(request.user, pk)
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    if not user_acts_at(request.user, participant.site):
        raise PermissionDenied(_("You do not enter data at this site."))
    form = UnscheduledVisitForm(request.POST or None, initial={"planned_date": participant.site.today()})
    if request.method == "POST" and form.is_valid():
        try:
            schedule.visit_add_unscheduled(participant, user=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Unscheduled visit added."))
            return redirect("participant_dashboard", participant.pk)
    return render(request, "visits/visit_action.html", {"visit": None, "participant": participant, "form": form, "title": _("Unscheduled visit")})


def _calendar_visits(user):  # noqa: ANN001, ANN202
    return (
        Visit.objects.filter(participant__in=participants_for_user(user), participant__status__in=schedule.SCHEDULED_STATUSES)
        .filter(status__in=[VisitStatus.UPCOMING, VisitStatus.OPEN, VisitStatus.OVERDUE], window_start__isnull=False)
        .select_related("participant__site", "participant__trial")
        .order_by("window_start", "participant__site__code")
    )


@login_required
def coordinator_calendar(request: HttpRequest) -> HttpResponse:
    """Overdue visits, visits open now and those opening in the next four weeks, at the user's sites."""
    if request.method == "POST":  # a new secret feed address replaces the old one
        CalendarFeed.objects.update_or_create(user=request.user, defaults={"token": secrets.token_urlsafe(32)})
        messages.success(request, _("A new calendar address was made; the previous one no longer works."))
        return redirect("coordinator_calendar")
    visits = list(_calendar_visits(request.user))
    today = timezone.localdate()
    weeks: dict = {}
    for visit in visits:
        if visit.status == VisitStatus.UPCOMING and visit.window_start <= today + timedelta(days=28):
            monday = visit.window_start - timedelta(days=visit.window_start.weekday())
            weeks.setdefault(monday, []).append(visit)
    feed = CalendarFeed.objects.filter(user=request.user).first()
    return render(request, "visits/calendar.html", {
        "overdue": [v for v in visits if v.status == VisitStatus.OVERDUE],
        "open": [v for v in visits if v.status == VisitStatus.OPEN],
        "weeks": sorted(weeks.items()),
        "feed_url": request.build_absolute_uri(reverse("calendar_feed", args=[feed.token])) if feed else "",
    })


def calendar_feed(request: HttpRequest, token: str) -> HttpResponse:
    """The coordinator's visits as an iCalendar feed (the secret address is the credential)."""
    from icalendar import Calendar, Event

    feed = CalendarFeed.objects.select_related("user").filter(token=token, user__is_active=True).first()
    if feed is None:
        raise Http404(_("No such calendar."))
    calendar = Calendar()
    calendar.add("prodid", "-//EDC//visit schedule//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", _("EDC visits"))
    for visit in _calendar_visits(feed.user):
        event = Event()
        participant = visit.participant
        event.add("uid", f"visit-{visit.pk}@edc")
        event.add("summary", f"{participant.trial.code} {participant.number}: {visit.label}")
        event.add("dtstart", visit.planned_date or visit.window_start)
        event.add("dtend", (visit.planned_date or visit.window_start) + timedelta(days=1))
        event.add("description", _("Window %(start)s – %(end)s · site %(site)s · %(status)s") % {
            "start": visit.window_start, "end": visit.window_end, "site": participant.site.code, "status": visit.get_status_display()})
        event.add("dtstamp", timezone.now())
        calendar.add_component(event)
    return HttpResponse(calendar.to_ical(), content_type="text/calendar; charset=utf-8")


# --- Files of CRF `file` items --------------------------------------------------------------


def _stored_file_for(request: HttpRequest, file_id):  # noqa: ANN001, ANN202
    """A stored file of a participant the user may see (the same scoping as the data), else 404:
    a file id of another site's participant is as unknown as one that does not exist."""
    stored = StoredFile.objects.filter(pk=file_id, participant__in=participants_for_user(request.user)).first()
    if stored is None:
        raise Http404(_("No such file in your sites."))
    return stored


def _file_response(stored_name: str, *, content_type: str, filename: str, attachment: bool) -> FileResponse:
    try:
        handle = file_items.storage().open(stored_name, "rb")
    except (FileNotFoundError, OSError):
        raise Http404(_("This file is missing from the storage; tell the data manager.")) from None
    response = FileResponse(handle, content_type=content_type, as_attachment=attachment, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
def crf_file(request: HttpRequest, file_id) -> FileResponse:  # noqa: ANN001
    """Download an uploaded file, always as an attachment with the content type read from its
    bytes at upload (never rendered by the browser from this site's origin)."""
    stored = _stored_file_for(request, file_id)
    return _file_response(stored.storage_name, content_type=stored.content_type, filename=stored.original_name, attachment=True)


@login_required
def crf_file_thumbnail(request: HttpRequest, file_id) -> FileResponse:  # noqa: ANN001
    """The thumbnail of an uploaded image: a PNG made by Pillow at upload (not the uploaded bytes)."""
    stored = _stored_file_for(request, file_id)
    if not stored.thumbnail_name:
        raise Http404(_("This file has no thumbnail."))
    return _file_response(stored.thumbnail_name, content_type="image/png", filename="thumbnail.png", attachment=False)
