"""Who may build what: data managers (all sites) of a trial amend it; study builders create trials."""

from django.db.models import QuerySet

from trials.build.models import Amendment, StudyBuilder
from trials.protocol.models import CrfDefinition, Role, Trial, TrialCrf, VisitCrf
from trials.protocol.selectors import study_roles_for_user, trials_for_user, user_role_grants


def buildable_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials the user may amend: those she is data manager of at all sites (a superuser: all)."""
    if not user.is_authenticated:
        return Trial.objects.none()
    if user.is_superuser:
        return Trial.objects.all()
    roles = study_roles_for_user(user).filter(role=Role.DATA_MANAGER, site__isnull=True)
    return Trial.objects.filter(pk__in=roles.values("trial_id"))


def is_study_builder(user) -> bool:  # noqa: ANN001
    """Whether the user may create a new trial from a file (a superuser always may)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    # Read with the user in the request's session query (settings.EDC_SESSION_USER_RELATED): the
    # database's row at this request, no query of its own.
    if user.__class__.study_builder.is_cached(user):  # __class__: request.user is a lazy object
        try:
            return user.study_builder.is_active and user.is_active
        except StudyBuilder.DoesNotExist:
            return False
    return StudyBuilder.objects.filter(user=user, is_active=True, user__is_active=True).exists()


def user_may_build(user) -> bool:  # noqa: ANN001
    """Whether to show the Study build link (every page's menu): a study builder, or a data manager
    at all sites of a trial (buildable_trials, read from the request's memo of the user's roles)."""
    if not user.is_authenticated:
        return False
    # The memo first: a data manager's menu then needs no query of its own.
    return any(g.role == Role.DATA_MANAGER and g.site_id is None for g in user_role_grants(user)) or is_study_builder(user)


def amendments(trial: Trial) -> QuerySet[Amendment]:
    return trial.amendments.select_related("applied_by").order_by("-number")


def crf_codes_of_trial(trial: Trial) -> set[str]:
    codes = set(VisitCrf.objects.filter(visit_definition__trial=trial).values_list("crf_code", flat=True))
    return codes | set(TrialCrf.objects.filter(trial=trial).values_list("crf_code", flat=True))


def crf_versions_for_user(user, trial: Trial) -> QuerySet[CrfDefinition]:  # noqa: ANN001
    """Every version of every CRF the trial uses, for a user with a role in the trial."""
    if not trials_for_user(user).filter(pk=trial.pk).exists():
        return CrfDefinition.objects.none()
    return CrfDefinition.objects.filter(code__in=crf_codes_of_trial(trial)).order_by("code", "-version")
