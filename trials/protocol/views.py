"""Pages of the protocol: the home page per role and a trial's protocol summary."""

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

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
        # The data manager generates the allocation list; an unblinded statistician may import one.
        "manages_allocation_list": request.user.is_superuser or selectors.study_roles_for_user(request.user).filter(
            trial=trial, role__in=[Role.DATA_MANAGER, *UNBLINDED_ROLES]).exists(),
    }
    return render(request, "protocol/trial_detail.html", context)


