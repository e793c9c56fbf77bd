"""Participant screens: screen, consent, eligibility, enrol, allocate, treat, end, unblind; the
screening log, the cohort reviews and the allocation list. Pages parse input and call the
services; a refused action re-renders the page with the service's message on the field."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from edc.forms import add_service_errors
from trials.participants import eligibility, hooks, services
from trials.participants.forms import (
    AllocationListForm,
    AllocationListImportForm,
    AnchorForm,
    AssignForm,
    CohortDecisionForm,
    ConsentForm,
    EnrolForm,
    RandomizeForm,
    ScreenFailForm,
    StatusForm,
    TreatmentForm,
    UnblindForm,
)
from trials.participants.models import AllocationList, CriterionAnswer, Participant, ParticipantStatus
from trials.participants.selectors import allocation_for_user, allocation_list_usage, participants_for_user, screening_log
from trials.protocol import selectors as protocol_selectors
from trials.protocol.models import CriterionLevel, Role


def _participant(request: HttpRequest, pk: int) -> Participant:
    participant = participants_for_user(request.user).select_related("consent_document").filter(pk=pk).first()
    if participant is None:
        raise Http404(_("No such participant in your sites."))
    return participant


def _acting(request: HttpRequest, pk: int, roles=services.SITE_ROLES) -> Participant:  # noqa: ANN001
    """The participant of an action page, for a user who may submit it: a read-only role (sponsor,
    monitor, DSMB) gets 403 on the GET too, never a form she cannot submit (issue 16)."""
    participant = _participant(request, pk)
    if not services.user_acts_at(request.user, participant.site, roles):
        raise PermissionDenied(_("You do not have a role at site %(site)s that allows this.") % {"site": participant.site.code})
    return participant


def _trial(request: HttpRequest, code: str):  # noqa: ANN202
    trial = protocol_selectors.trials_for_user(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial in your studies."))
    return trial



def _action_page(request, participant, form, title, template="participants/action.html", **extra):  # noqa: ANN001, ANN202
    return render(request, template, {"participant": participant, "form": form, "title": title, **extra})


@login_required
@require_POST
def participant_new(request: HttpRequest, code: str, site_code: str) -> HttpResponse:
    """Start screening a new participant at the site (the number comes from the trial's pattern)."""
    site = protocol_selectors.sites_for_user(request.user).filter(trial__code=code, code=site_code).first()
    if site is None:
        raise Http404(_("No such site in your studies."))
    try:
        participant = services.participant_screen(site=site, user=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("participant_list", code, site_code)
    messages.success(request, _("%(number)s is in screening. Record the consent first.") % {"number": participant.number})
    return redirect("participant_consent", participant.pk)


@login_required
def participant_consent(request: HttpRequest, pk: int) -> HttpResponse:
    participant = _acting(request, pk)  # the consents recorded are on the dashboard for read-only roles
    form = ConsentForm(request.POST or None, trial=participant.trial)
    # The typed date-time is the site's local time (Toulouse, Mexico City …), not the server's.
    with timezone.override(ZoneInfo(participant.site.time_zone)):
        valid = request.method == "POST" and form.is_valid()
    if valid:
        try:
            services.participant_consent(
                participant=participant, document=form.cleaned_data["document"],
                consented_at=form.cleaned_data["consented_at"], user=request.user,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Consent recorded."))
            return redirect("participant_dashboard", participant.pk)
    return _action_page(
        request, participant, form, _("Consent"), template="participants/consent.html",
        consents=participant.consents.select_related("document", "obtained_by"), site_zone=participant.site.time_zone,
    )


@login_required
def participant_eligibility(request: HttpRequest, pk: int) -> HttpResponse:
    """The eligibility checklist: answers from the screening data are shown with their basis and
    cannot be changed here; the rest are answered met / not met / unknown (exclusion criteria read
    "Excluded: yes / no")."""
    participant = _participant(request, pk)
    evaluation = eligibility.evaluate(participant)
    criteria = list(participant.trial.criteria.filter(is_active=True).order_by("order"))
    stored = {(a.criterion_id, a.lesion): a for a in participant.eligibility_answers.all()}
    rows = []
    for criterion in criteria:
        keys = [(lesion, label) for lesion, label in evaluation.lesions.items()] if criterion.level == CriterionLevel.LESION else [("", "")]
        for lesion, label in keys:
            auto = evaluation.answers.get((criterion.code, lesion))
            answer = stored.get((criterion.pk, lesion))
            name = f"c-{criterion.code}-{lesion}" if lesion else f"c-{criterion.code}"
            value = request.POST.get(name) if request.method == "POST" else (answer.answer if answer else "")
            rows.append({
                "criterion": criterion, "lesion": lesion, "lesion_label": label, "auto": auto, "name": name,
                "choices": eligibility.answer_choices(criterion.kind, not_applicable=bool(criterion.applies_when)),
                "auto_label": eligibility.answer_label(criterion.kind, auto.answer) if auto else "",
                "value": auto.answer if auto else value, "note_name": f"{name}-note",
                "note": request.POST.get(f"{name}-note", "") if request.method == "POST" else (answer.note if answer and not answer.automatic else ""),
            })
    errors: list[str] = []
    needs_confirmation = False
    if request.method == "POST":
        answers = {}
        for row in rows:
            if row["auto"]:
                continue
            value = request.POST.get(row["name"], "") or CriterionAnswer.UNKNOWN
            answers[(row["criterion"].code, row["lesion"])] = (value, request.POST.get(row["note_name"], ""))
        try:
            services.eligibility_record(
                participant=participant, answers=answers, user=request.user,
                confirm_screen_failure=request.POST.get("confirm_screen_failure") == "on",
            )
        except ValidationError as error:
            errors = error.messages
            needs_confirmation = any(getattr(e, "code", "") == "confirm_screen_failure" for e in error.error_list)
        else:
            participant.refresh_from_db()
            if participant.status == ParticipantStatus.SCREEN_FAILURE:
                messages.warning(request, _("%(number)s is a screen failure: %(reason)s") % {"number": participant.number, "reason": participant.status_reason})
            else:
                messages.success(request, _("Eligibility checklist saved."))
            return redirect("participant_dashboard", participant.pk)
    assessment = eligibility.assess(participant, evaluation)
    return render(request, "participants/eligibility.html", {
        "participant": participant, "rows": rows, "errors": errors, "needs_confirmation": needs_confirmation,
        "assessment": assessment, "lesion_crf": (participant.trial.eligibility or {}).get("lesion"),
        "can_act": services.user_acts_at(request.user, participant.site) and participant.status == ParticipantStatus.SCREENING,
    })


@login_required
def participant_enrol(request: HttpRequest, pk: int) -> HttpResponse:
    participant = _acting(request, pk)
    form = EnrolForm(request.POST or None, initial={"enrolment_date": participant.site.today()})
    if request.method == "POST" and form.is_valid():
        try:
            participant = services.participant_enrol(participant=participant, user=request.user, enrolment_date=form.cleaned_data["enrolment_date"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("%(screening)s is enrolled as %(subject)s.") % {"screening": participant.screening_number, "subject": participant.subject_number})
            return redirect("participant_dashboard", participant.pk)
    cohort = None
    if participant.trial.design == "dose_escalation":
        cohort = next((s for s in services.cohort_states(participant.trial) if s.state in ("open", "review", "stopped")), None)
    return _action_page(
        request, participant, form, _("Enrol"), template="participants/enrol.html",
        assessment=eligibility.assess(participant), consent_problem=services.consent_problem(participant), cohort=cohort,
    )


@login_required
def participant_allocate(request: HttpRequest, pk: int) -> HttpResponse:
    """Randomize (with a confirmation step) or, in an open-label trial without a list, assign."""
    participant = _participant(request, pk)
    _acting(request, pk, services.SITE_ROLES if participant.trial.design == "randomized" else {Role.INVESTIGATOR})
    trial = participant.trial
    if trial.design == "randomized":
        form = RandomizeForm(request.POST or None, factors=(trial.randomization or {}).get("strata", []))
    elif trial.design == "open_label":
        form = AssignForm(request.POST or None, trial=trial)
    else:
        raise Http404(_("This trial does not allocate participants here."))
    if request.method == "POST" and form.is_valid():
        try:
            if trial.design == "randomized":
                strata = {k.removeprefix("stratum_"): v for k, v in form.cleaned_data.items() if k.startswith("stratum_")}
                services.participant_randomize(participant=participant, user=request.user, strata=strata)
            else:
                services.participant_assign(
                    participant=participant, arm=form.cleaned_data["arm"], user=request.user, reason=form.cleaned_data["reason"]
                )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            shown = allocation_for_user(request.user, participant)
            messages.success(request, _("%(number)s is allocated: %(allocation)s.") % {"number": participant.number, "allocation": shown.text})
            return redirect("participant_dashboard", participant.pk)
    return _action_page(
        request, participant, form, _("Randomize") if trial.design == "randomized" else _("Assign an arm"),
        template="participants/allocate.html",
    )


@login_required
def participant_treatment(request: HttpRequest, pk: int) -> HttpResponse:
    participant = _acting(request, pk)
    form = TreatmentForm(request.POST or None, initial={"first_treatment_date": participant.site.today()})
    if request.method == "POST" and form.is_valid():
        try:
            services.participant_start_treatment(
                participant=participant, user=request.user, first_treatment_date=form.cleaned_data["first_treatment_date"]
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("First treatment recorded; the visits that follow it are planned."))
            return redirect("participant_dashboard", participant.pk)
    return _action_page(request, participant, form, _("First treatment"))


@login_required
def participant_status(request: HttpRequest, pk: int) -> HttpResponse:
    """End of participation: withdrawal, loss to follow-up, death, completion."""
    participant = _acting(request, pk)
    form = StatusForm(request.POST or None, initial={"on": participant.site.today()})
    if request.method == "POST" and form.is_valid():
        try:
            services.participant_transition(
                participant=participant, to=form.cleaned_data["to"], user=request.user,
                reason=form.cleaned_data["reason"], on=form.cleaned_data["on"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Status changed."))
            return redirect("participant_dashboard", participant.pk)
    return _action_page(request, participant, form, _("End of participation"))


@login_required
def participant_anchor(request: HttpRequest, pk: int) -> HttpResponse:
    """Correct the enrolment or first-treatment date: the visits not done yet are re-planned."""
    participant = _acting(request, pk)
    form = AnchorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            moved = services.participant_anchor_change(participant=participant, user=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Date corrected; %(n)s visit(s) re-planned.") % {"n": moved})
            return redirect("participant_dashboard", participant.pk)
    return _action_page(request, participant, form, _("Correct a date"))


@login_required
def participant_screen_fail(request: HttpRequest, pk: int) -> HttpResponse:
    participant = _acting(request, pk)
    form = ScreenFailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.participant_screen_fail(participant=participant, user=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.warning(request, _("%(number)s is a screen failure.") % {"number": participant.number})
            return redirect("participant_dashboard", participant.pk)
    return _action_page(request, participant, form, _("Screen failure"))


@login_required
def participant_unblind(request: HttpRequest, pk: int) -> HttpResponse:
    """Emergency unblinding: reason and password; the arm is shown once, here, to the investigator."""
    participant = _acting(request, pk, {Role.INVESTIGATOR})
    form = UnblindForm(request.POST or None)
    arm = None
    if request.method == "POST" and form.is_valid():
        try:
            arm = services.participant_unblind(
                participant=participant, user=request.user, password=form.cleaned_data["password"], reason=form.cleaned_data["reason"]
            )
        except ValidationError as error:
            add_service_errors(form, error)
    # The label says active or placebo inside a dose cohort (EASC-RA), the arm elsewhere.
    arm_label = allocation_for_user(request.user, participant).text if arm is not None else ""
    return _action_page(request, participant, form, _("Emergency unblinding"), template="participants/unblind.html", arm=arm,
                        arm_label=arm_label)


@login_required
def trial_screening_log(request: HttpRequest, code: str) -> HttpResponse:
    trial = _trial(request, code)
    return render(request, "participants/screening_log.html", {"trial": trial, "log": screening_log(request.user, trial)})


@login_required
def trial_cohorts(request: HttpRequest, code: str) -> HttpResponse:
    """Dose cohorts with their 3+3 state, and the investigator's review decision."""
    trial = _trial(request, code)
    if trial.design != "dose_escalation":
        raise Http404(_("This trial has no dose cohorts."))
    states = services.cohort_states(trial)
    awaiting = next((s for s in states if s.state == "review"), None)
    is_investigator = protocol_selectors.study_roles_for_user(request.user).filter(trial=trial, role=Role.INVESTIGATOR).exists()
    review = None
    if awaiting is not None:
        review = hooks.cohort_review(awaiting.cohort, expanded=awaiting.expanded)
    initial = {"decision": review.recommendation, "dlt_count": review.with_dlt} if review and review.recommendation else {}
    form = CohortDecisionForm(request.POST or None, initial=initial) if awaiting and is_investigator else None
    if request.method == "POST":
        if form is None:
            raise PermissionDenied(_("No cohort awaits your review."))
        if form.is_valid():
            try:
                services.cohort_decide(
                    cohort=awaiting.cohort, decision=form.cleaned_data["decision"], user=request.user,
                    password=form.cleaned_data["password"], rationale=form.cleaned_data["rationale"],
                    dlt_count=form.cleaned_data["dlt_count"],
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, _("Decision recorded."))
                return redirect("trial_cohorts", trial.code)
    return render(request, "participants/cohorts.html", {
        "trial": trial, "states": states, "awaiting": awaiting, "form": form, "review": review,
        "rule": services.escalation_rule(trial), "placebo": services.cohort_has_placebo(trial),
    })


def _allocation_list_roles(request: HttpRequest, trial) -> tuple[bool, bool]:  # noqa: ANN001
    """(generates, imports): the data manager generates the list; an unblinded statistician imports one."""
    if trial.design != "randomized" and not services.cohort_has_placebo(trial):
        raise Http404(_("This trial has no allocation list."))
    generates = protocol_selectors.study_roles_for_user(request.user).filter(trial=trial, role=Role.DATA_MANAGER).exists()
    imports = services.user_imports_allocation_list(request.user, trial)
    if not (generates or imports):
        raise PermissionDenied(_("Only the trial's data manager or unblinded statistician manages its allocation list."))
    return generates, imports


def _allocation_list_page(request: HttpRequest, trial, *, form=None, import_form=None) -> HttpResponse:  # noqa: ANN001
    generates, imports = _allocation_list_roles(request, trial)
    allocation_list = AllocationList.objects.filter(trial=trial).first()
    usage = []
    if allocation_list is not None:
        usage = allocation_list_usage(allocation_list)
    else:
        if generates and form is None:
            form = AllocationListForm()
        if imports and import_form is None:
            import_form = AllocationListImportForm()
    return render(request, "participants/allocation_list.html", {
        "trial": trial, "allocation_list": allocation_list, "usage": usage, "imported": allocation_list is not None and not allocation_list.seed,
        "form": form if generates and allocation_list is None else None,
        "import_form": import_form if imports and allocation_list is None else None,
    })


@login_required
def trial_allocation_list(request: HttpRequest, code: str) -> HttpResponse:
    """The data manager generates the randomization list (from a secret seed: she never sees or
    sets it); the page shows its use, never its arms or its seed."""
    trial = _trial(request, code)
    generates, _imports = _allocation_list_roles(request, trial)
    form = None
    if request.method == "POST":
        if not generates:
            raise PermissionDenied(_("Only a data manager of the trial generates its allocation list."))
        form = AllocationListForm(request.POST)
        if form.is_valid():
            try:
                services.allocation_list_generate(trial=trial, user=request.user, slots_per_stratum=form.cleaned_data["slots_per_stratum"])
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, _("Allocation list generated."))
                return redirect("trial_allocation_list", trial.code)
    return _allocation_list_page(request, trial, form=form)


@login_required
@require_POST
def trial_allocation_list_import(request: HttpRequest, code: str) -> HttpResponse:
    """An unblinded statistician imports a list made elsewhere (CSV), checked line by line."""
    trial = _trial(request, code)
    _allocation_list_roles(request, trial)
    form = AllocationListImportForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            services.allocation_list_import(
                trial=trial, user=request.user, content=upload.read(), file_name=upload.name, reason=form.cleaned_data["reason"]
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Allocation list imported."))
            return redirect("trial_allocation_list", trial.code)
    return _allocation_list_page(request, trial, import_form=form)
