"""Pages of the protocol: the home page per role, a trial's protocol summary and its unblinded-access log."""

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from trials.protocol import selectors
from trials.protocol.models import UNBLINDED_ROLES, Role, VisitCrf


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Coordinators, investigators, sponsors and DSMB land here; monitors go to the admin."""
    if selectors.user_home(request.user) == "admin" and request.GET.get("stay") is None:
        return redirect("admin:index")
    return render(request, "protocol/home.html", {"rows": selectors.roles_by_trial(request.user)})


@login_required
def trial_detail(request: HttpRequest, code: str) -> HttpResponse:
    """The protocol of one trial as the user may see it: sites in scope, schedule, criteria."""
    trial = selectors.trials_for_user(request.user).filter(code=code).first()
    if trial is None:
        raise Http404("No such trial in your studies.")
    visits = trial.visit_definitions.filter(is_active=True).prefetch_related(
        Prefetch("visit_crfs", queryset=VisitCrf.objects.filter(is_active=True).select_related("crf"))
    )
    context = {
        "trial": trial,
        "sites": selectors.sites_for_user(request.user, trial=trial).filter(is_active=True),
        "arms": trial.arms.filter(is_active=True),
        "criteria": trial.criteria.filter(is_active=True),
        "visits": visits,
        "roles": selectors.study_roles_for_user(request.user).filter(trial=trial),
        "is_data_manager": selectors.study_roles_for_user(request.user).filter(trial=trial, role="data_manager").exists(),
        "shows_unblinded_access_log": trial.is_blinded and selectors.unblinded_access_log_trials(request.user).filter(pk=trial.pk).exists(),
        # The data manager generates the allocation list; an unblinded statistician may import one.
        "manages_allocation_list": request.user.is_superuser or selectors.study_roles_for_user(request.user).filter(
            trial=trial, role__in=[Role.DATA_MANAGER, *UNBLINDED_ROLES]).exists(),
    }
    return render(request, "protocol/trial_detail.html", context)




@login_required
def unblinded_access_log(request: HttpRequest, code: str) -> HttpResponse:
    """Who was given or lost a role that sees the allocated arms, by whom, when and why; and who
    holds one now. For those who see the arms and the data manager (it names no arm)."""
    trial = selectors.unblinded_access_log_trials(request.user).filter(code=code).first()
    if trial is None:
        raise Http404(_("No such trial among those whose unblinded-access log you may read."))
    return render(request, "protocol/unblinded_access_log.html", {
        "trial": trial,
        "events": selectors.unblinded_access_events(request.user, trial=trial),
        "holders": selectors.arm_seeing_roles(request.user, trial),
    })
