"""ePRO pages: the coordinator's page of a visit's questionnaires, participant mode, personal links.

Participant pages show the questionnaire only: no participant number, no site, no arm.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from trials.accounts.services import PinLocked, has_pin
from trials.epro import runner, services
from trials.epro.models import Mode, ProLink
from trials.participants.selectors import user_enters_data_at
from trials.visits.selectors import visit_for_user
from trials.visits.services import entry_context

# Participant mode: {"visit": pk, "user": pk} in the coordinator's session; the middleware keeps
# every other page out of reach until she takes the tablet back with her password.
TABLET = "epro_tablet"


def _participant_language(request: HttpRequest, visit) -> None:  # noqa: ANN001
    """Participant pages speak her language: the one picked on these pages (the language cookie),
    else her site's (`language:` in the trial file), else her browser's (LocaleMiddleware)."""
    if request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) in dict(settings.LANGUAGES):
        return
    language = visit.participant.site.language
    if language:
        translation.activate(language)
        request.LANGUAGE_CODE = language


def _client(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


# --- The coordinator's page -----------------------------------------------------------------


@login_required
def visit_page(request: HttpRequest, visit_pk: int) -> HttpResponse:
    """The visit's participant questionnaires: hand the tablet over, make personal links, see their state."""
    visit = visit_for_user(request.user, visit_pk)
    if visit is None:
        raise Http404(_("No such visit in your sites."))
    enters = user_enters_data_at(request.user, visit.participant)
    new_link = None
    if request.method == "POST":
        if not enters:
            raise PermissionDenied(_("You do not enter data at this site."))
        action = request.POST.get("action")
        if action == "handover":
            if not services.due_questionnaires(visit):
                messages.error(request, _("Nothing is left for the participant to answer at this visit."))
                return redirect("epro_visit", visit.pk)
            request.session[TABLET] = {"visit": visit.pk, "user": request.user.pk}
            return redirect("epro_tablet")
        if action == "revoke":
            link = ProLink.objects.filter(visit=visit, pk=request.POST.get("link") or 0).first() if str(request.POST.get("link", "")).isdigit() else None
            if link is None:
                messages.error(request, _("No such link at this visit."))
                return redirect("epro_visit", visit.pk)
            try:
                services.link_revoke(user=request.user, link=link, reason=request.POST.get("reason", ""))
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
            else:
                messages.success(request, _("The link is withdrawn: it no longer opens the questionnaire."))
            return redirect("epro_visit", visit.pk)
        if action == "link":
            try:
                link, token = services.link_create(
                    user=request.user, visit=visit, crf_code=request.POST.get("crf_code", ""),
                    email=request.POST.get("email", "").strip(), base_url=request.build_absolute_uri("/"),
                )
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
                return redirect("epro_visit", visit.pk)
            url = request.build_absolute_uri(services.link_path(token))
            # Shown once: only the token's hash is stored, so the page cannot show it again.
            new_link = {"link": link, "url": url, "qr": services.qr_svg(url)}
    questionnaires = services.visit_questionnaires(visit)
    links = list(ProLink.objects.filter(visit=visit).select_related("participant__site", "visit", "created_by", "revoked_by"))
    now = timezone.now()
    for link in links:
        link.state = services.link_state(link, now=now)
        link.state_label = services.LINK_STATES[link.state]
    return render(request, "epro/visit.html", {
        "visit": visit, "participant": visit.participant, "questionnaires": questionnaires, "links": links,
        "enters": enters, "new_link": new_link, "due": [q for q in questionnaires if not q.done],
    })


# --- Participant mode -----------------------------------------------------------------------


def _tablet_visit(request: HttpRequest):  # noqa: ANN202
    state = request.session.get(TABLET)
    if not state or not request.user.is_authenticated or state.get("user") != request.user.pk:
        raise Http404(_("Participant mode is not on."))
    visit = visit_for_user(request.user, state["visit"])
    if visit is None:
        raise Http404(_("Participant mode is not on."))
    return visit


@never_cache
@login_required
def tablet_home(request: HttpRequest) -> HttpResponse:
    """The locked screen: only the questionnaires this participant still has to answer at this visit."""
    visit = _tablet_visit(request)
    _participant_language(request, visit)
    return render(request, "epro/tablet_home.html", {
        "due": services.due_questionnaires(visit), "tablet": True, "initials": services.participant_initials(visit.participant),
    })


@never_cache
@login_required
def tablet_answer(request: HttpRequest, crf_code: str) -> HttpResponse:
    visit = _tablet_visit(request)
    try:
        services.questionnaire(visit, crf_code)
    except ValidationError:
        raise Http404(_("No such questionnaire.")) from None
    return _run(
        request, visit=visit, crf_code=crf_code, key=f"t{visit.pk}:{crf_code}", mode=Mode.TABLET,
        handed_over_by=request.user, here=reverse("epro_tablet_answer", args=[crf_code]), tablet=True,
    )


@never_cache
@login_required
def tablet_exit(request: HttpRequest) -> HttpResponse:
    """The staff member takes the tablet back: her own PIN or password ends participant mode."""
    visit = _tablet_visit(request)
    error = ""
    key = f"exit:{request.user.pk}"
    if request.method == "POST":
        if services.rate_limited(key):
            error = _("Too many attempts. Wait a few minutes and try again.")
        else:
            try:
                allowed = services.tablet_exit_allowed(request.user, request.POST.get("password", ""), request=request)
            except PinLocked as locked:
                allowed = False
                error = _(
                    "Too many wrong PINs: your PIN is locked until %(time)s UTC. Use your password instead."
                ) % {"time": f"{locked.until:%H:%M}"}
            if allowed:
                for name in [k for k in request.session.keys() if k.startswith("epro:")]:  # noqa: SIM118 - a session is not iterable
                    del request.session[name]
                del request.session[TABLET]
                return redirect("epro_visit", visit.pk)
            services._count_failure(key)
            error = error or _("This is not the PIN or the password of the staff member who handed the tablet over.")
    return render(request, "epro/tablet_exit.html", {
        "error": error, "tablet": True, "has_pin": has_pin(request.user),
    }, status=403 if error else 200)


# --- Personal links -------------------------------------------------------------------------


@never_cache
def link_answer(request: HttpRequest, token: str) -> HttpResponse:
    """A personal link: no account; a wrong token is a 404 page, a used or expired one a 410 page."""
    client = _client(request)
    if services.rate_limited(client):
        return render(request, "epro/gone.html", {"message": _("Too many attempts. Please try again later.")}, status=429)
    try:
        link = services.link_for_token(token, client=client)
    except services.LinkNotFound:
        return render(request, "epro/gone.html", {"message": _("This link is not valid. Please check it, or ask the study team for a new one.")}, status=404)
    except services.LinkGone as gone:
        if gone.link is not None:
            _participant_language(request, gone.link.visit)  # her language, as her questionnaire was
        return render(request, "epro/gone.html", {"message": gone.reason}, status=410)
    return _run(
        request, visit=link.visit, crf_code=link.crf_code, key=f"l{link.pk}", mode=Mode.LINK, link=link,
        here=request.path, tablet=False,
    )


# --- The questionnaire itself ---------------------------------------------------------------


def _run(
    request: HttpRequest, *, visit, crf_code: str, key: str, mode: str, here: str, tablet: bool,  # noqa: ANN001
    link: ProLink | None = None, handed_over_by=None,  # noqa: ANN001
) -> HttpResponse:
    _participant_language(request, visit)
    found = services.questionnaire(visit, crf_code)
    schema = found.schema
    if found.done:
        if tablet:
            return redirect("epro_tablet")
        return render(request, "epro/gone.html", {"message": _("This questionnaire has already been answered. Thank you.")}, status=410)
    session_key = f"epro:{key}"
    stored: dict = dict(request.session.get(session_key) or {})
    context = entry_context(visit, schema)
    hidden = runner.hidden_items(schema, stored, context)
    steps = [s for s in ([i for i in step if i.name not in hidden] for step in runner.steps_for(schema)) if s]
    try:
        index = int(request.POST.get("step") if request.method == "POST" else request.GET.get("step", 0))
    except (TypeError, ValueError):
        index = 0
    index = max(0, min(index, len(steps) - 1))
    errors: dict = {}
    if request.method == "POST":
        action = request.POST.get("action", "next")
        values, errors = runner.read_step(steps[index], request.POST, check=action != "back")
        stored.update(values)
        request.session[session_key] = stored
        if action == "back":
            return redirect(f"{here}?step={max(0, index - 1)}")
        if not errors and index < len(steps) - 1:
            return redirect(f"{here}?step={index + 1}")
        if not errors:
            answers, missing = runner.parsed(schema, stored)
            try:
                services.pro_submit(
                    visit=visit, crf_code=crf_code, answers=answers, missing=missing, mode=mode, link=link,
                    handed_over_by=handed_over_by,
                )
            except services.LinkGone as gone:
                return render(request, "epro/gone.html", {"message": gone.reason}, status=410)
            except (ValidationError, PermissionDenied) as error:
                errors = _item_errors(error)
                for number, step in enumerate(steps):
                    if any(i.name in errors for i in step):
                        index = number
                        break
                else:
                    errors.setdefault("__all__", _("Your answers could not be saved. Please ask the study team."))
            else:
                request.session.pop(session_key, None)
                if tablet:
                    messages.success(request, _("Thank you. Your answers have been saved."))
                    return redirect("epro_tablet")
                return render(request, "epro/thanks.html", {"title": schema.title, "initials": services.participant_initials(visit.participant)})
    step = steps[index]
    # The screen's section (its title and help, "Are you able to:") in the participant's language:
    # the schema is read in it (services.questionnaire); a long section keeps them on every screen.
    sections = {s.name: s for s in schema.sections}
    section = next((sections.get(i.section) for i in step if i.section), None)
    return render(request, "epro/question.html", {
        "title": schema.title, "section": section, "questions": runner.questions(step, stored, errors), "index": index, "count": len(steps),
        "number": index + 1, "percent": round(100 * index / len(steps)), "last": index == len(steps) - 1,
        "form_error": errors.get("__all__", ""), "tablet": tablet, "decline": runner.DECLINE_VALUE,
        "initials": services.participant_initials(visit.participant),
    }, status=200)


def _item_errors(error: ValidationError | PermissionDenied) -> dict:
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        return {name: " ".join(str(m) for m in messages_) for name, messages_ in error.message_dict.items()}
    text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
    return {"__all__": text}
