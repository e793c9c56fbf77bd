"""AE screens: a participant's AE log and form, a site's AE log, the reporting-clock dashboard,
the sponsor's list of AEs whose expectedness is to assess, and the coding-dictionary search.
Pages parse and call the services."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from edc.forms import add_service_errors
from trials.participants.selectors import allocation_for_user, participants_for_user
from trials.participants.services import user_acts_at
from trials.protocol import selectors as protocol_selectors
from trials.safety import hooks, selectors, services
from trials.safety.forms import AdverseEventForm, current_terms
from trials.safety.models import AdverseEvent, ReportingClock, Seriousness


def _participant(request: HttpRequest, pk: int):  # noqa: ANN202
    participant = participants_for_user(request.user).filter(pk=pk).first()
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    return participant


@login_required
def participant_aes(request: HttpRequest, pk: int) -> HttpResponse:
    participant = _participant(request, pk)
    open_queries = hooks.ae_open_query_counts(request.user, participant)  # trials.monitoring
    aes = list(participant.adverse_events.select_related("coded_term").prefetch_related("clocks"))
    for ae in aes:
        ae.open_queries = open_queries.get(ae.pk, 0)
    return render(request, "safety/ae_list.html", {
        "participant": participant, "aes": aes, "can_act": user_acts_at(request.user, participant.site), "title": _("Adverse events"),
    })


@login_required
def ae_edit(request: HttpRequest, pk: int, number: int | None = None) -> HttpResponse:
    """Record a new AE (number None) or follow one up."""
    participant = _participant(request, pk)
    ae = None
    if number is not None:
        ae = participant.adverse_events.filter(number=number).first()
        if ae is None:
            raise Http404(_("No such adverse event."))
    can_act = user_acts_at(request.user, participant.site)
    if not can_act and (request.method == "POST" or ae is None):
        # A new AE's form is never shown to a role that cannot submit it (issue 16); an existing
        # AE is shown read-only (its fields disabled) to the monitor, sponsor and DSMB.
        raise PermissionDenied(_("You do not enter data at this site."))
    zone = ZoneInfo(participant.site.time_zone)
    with timezone.override(zone):  # dates and times are typed and shown in the site's local time
        form = AdverseEventForm(request.POST or None, instance=ae, trial=participant.trial, editing=ae is not None)
        valid = request.method == "POST" and form.is_valid()
        if valid:
            candidate = form.save(commit=False)
            candidate.participant = participant
            try:
                saved = services.ae_save(candidate, user=request.user, reason=form.cleaned_data.get("reason", ""))
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                if saved.serious and saved.clocks.filter(reported_at__isnull=True, cancelled=False).exists():
                    messages.warning(request, _("Serious AE: the reporting clock runs. Report it to the sponsor within 24 hours of learning of the seriousness and record the report."))
                else:
                    messages.success(request, _("Adverse event saved."))
                return redirect("participant_aes", participant.pk)
        return render(request, "safety/ae_form.html", {
            "participant": participant, "form": form, "ae": ae, "can_act": can_act,
            "title": _("AE %(n)s") % {"n": ae.number} if ae else _("New adverse event"),
            "queries": hooks.ae_queries(request.user, ae), "can_answer": can_act,
            "can_assess": ae is not None and user_acts_at(request.user, participant.site, roles=services.EXPECTEDNESS_ASSESSORS),
        })


@login_required
def ae_report(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A printable SAE report (CIOMS I-like summary): what the sponsor's safety desk needs, with no
    name (participant number, age and sex only) and never the arm of a blinded trial."""
    participant = _participant(request, pk)
    ae = participant.adverse_events.select_related("coded_term").prefetch_related("clocks").filter(number=number).first()
    if ae is None:
        raise Http404(_("No such adverse event."))
    demog = (
        participant.crf_entries.filter(crf_code="DEMOG").order_by("visit__order").values_list("answers", flat=True).first() or {}
    )
    age = None
    if demog.get("date_of_birth") and ae.onset_date:
        from datetime import date as _date

        born = _date.fromisoformat(demog["date_of_birth"])
        age = ae.onset_date.year - born.year - ((ae.onset_date.month, ae.onset_date.day) < (born.month, born.day))
    history = ae.history.select_related("history_user").order_by("history_date")
    return render(request, "safety/ae_report.html", {
        "participant": participant, "ae": ae, "age": age, "sex": demog.get("sex", ""), "history": history,
        "seriousness": [Seriousness(code).label for code in ae.seriousness if code in Seriousness.values],
        "allocation": allocation_for_user(request.user, participant), "printed_at": timezone.now(),
    })


@login_required
def site_aes(request: HttpRequest, code: str, site_code: str) -> HttpResponse:
    site = protocol_selectors.sites_for_user(request.user).filter(trial__code=code, code=site_code).first()
    if site is None:
        raise Http404(_("No such site in your studies."))
    aes = AdverseEvent.objects.filter(participant__in=participants_for_user(request.user).filter(site=site)).select_related(
        "participant", "coded_term").order_by("-onset_date", "participant__screening_number")
    return render(request, "safety/site_aes.html", {"site": site, "aes": aes})


@login_required
def clock_dashboard(request: HttpRequest) -> HttpResponse:
    """Open reporting clocks at the user's sites, most urgent first."""
    clocks = (
        ReportingClock.objects.filter(adverse_event__participant__in=participants_for_user(request.user), reported_at__isnull=True, cancelled=False)
        .select_related("adverse_event__participant__site", "adverse_event__participant__trial").order_by("due_at")
    )
    now = timezone.now()
    sites = {}
    rows = []
    for clock in clocks:
        site = clock.adverse_event.participant.site
        if site.pk not in sites:
            sites[site.pk] = user_acts_at(request.user, site)
        rows.append({"clock": clock, "overdue": clock.due_at <= now, "can_report": sites[site.pk]})
    recent = (
        ReportingClock.objects.filter(adverse_event__participant__in=participants_for_user(request.user), reported_at__isnull=False)
        .select_related("adverse_event__participant__site", "reported_by").order_by("-reported_at")[:20]
    )
    return render(request, "safety/clocks.html", {"rows": rows, "recent": recent})


@login_required
@require_POST
def clock_report(request: HttpRequest, pk: int) -> HttpResponse:
    clock = ReportingClock.objects.filter(pk=pk, adverse_event__participant__in=participants_for_user(request.user)).first()
    if clock is None:
        raise Http404(_("No such reporting clock in your sites."))
    # "Sent at" is typed in the site's local time (a report faxed last night); empty means now.
    sent = (request.POST.get("reported_at") or "").strip()
    reported_at = None
    if sent:
        try:
            reported_at = datetime.fromisoformat(sent).replace(tzinfo=ZoneInfo(clock.adverse_event.participant.site.time_zone))
        except ValueError:
            messages.error(request, _("“%(value)s” is not a date and time: give when the report was sent, e.g. 2026-11-22 14:30.") % {"value": sent})
            return redirect("clock_dashboard")
    try:
        services.clock_report(clock, user=request.user, reported_at=reported_at)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Report recorded; the clock is stopped."))
    return redirect("clock_dashboard")


@login_required
def expectedness_list(request: HttpRequest) -> HttpResponse:
    """Serious related AEs of the user's sites awaiting the sponsor's expectedness assessment. No
    arm is shown: the assessment is made blind, against the reference safety information."""
    trial_code = (request.GET.get("trial") or "").strip() or None
    aes = list(selectors.aes_awaiting_expectedness(request.user, trial_code=trial_code))
    sites = {}
    for ae in aes:
        site = ae.participant.site
        if site.pk not in sites:
            sites[site.pk] = user_acts_at(request.user, site, roles=services.EXPECTEDNESS_ASSESSORS)
        ae.can_assess = sites[site.pk]
        ae.open_clocks = [c for c in ae.clocks.all() if c.reported_at is None and not c.cancelled]
    return render(request, "safety/expectedness.html", {"aes": aes, "trial_code": trial_code, "now": timezone.now()})


@login_required
@require_POST
def expectedness_assess(request: HttpRequest, pk: int) -> HttpResponse:
    ae = AdverseEvent.objects.filter(pk=pk, participant__in=participants_for_user(request.user)).select_related("participant").first()
    if ae is None:
        raise Http404(_("No such adverse event in your sites."))
    answer = request.POST.get("expected")
    expected = {"expected": True, "unexpected": False}.get(answer)
    if request.POST.get("next") == "ae":
        back = redirect("ae_edit", ae.participant_id, ae.number)
    else:
        trial = (request.POST.get("trial") or "").strip()
        back = redirect(reverse("expectedness_list") + (f"?{urlencode({'trial': trial})}" if trial else ""))
    if expected is None:
        messages.error(request, _("Choose expected or unexpected."))
        return back
    try:
        services.ae_expectedness_assess(ae, user=request.user, expected=expected, reason=request.POST.get("reason", ""))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("%(ae)s assessed %(label)s.") % {
            "ae": f"{ae.participant.number} AE{ae.number}", "label": _("expected") if expected else _("unexpected")})
    return back


@login_required
def coding_term_search(request: HttpRequest) -> HttpResponse:
    """Options of the coding dictionary for the AE form's autocomplete (htmx)."""
    query = (request.GET.get("coded_term") or request.GET.get("q") or "").strip()
    terms = []
    if len(query) >= 2:
        terms = current_terms().filter(Q(llt__icontains=query) | Q(pt__icontains=query) | Q(llt_code=query)).order_by("llt")[:20]
    return render(request, "safety/_coding_options.html", {"terms": terms})
