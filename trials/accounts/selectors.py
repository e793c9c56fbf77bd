"""Reads about accounts, scoped to the acting user: a data manager sees the accounts of the people
who hold a role in the trials she manages, and their login audit; an administrator sees all."""

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from trials.accounts.models import LoginEvent
from trials.protocol.models import Role, StudyRole
from trials.protocol.selectors import study_roles_for_user


def managed_trial_ids(user) -> QuerySet:  # noqa: ANN001
    """The trials the user is data manager of (at all sites)."""
    return study_roles_for_user(user).filter(role=Role.DATA_MANAGER, site__isnull=True).values("trial_id")


def accounts_visible_to(user) -> QuerySet:  # noqa: ANN001
    """User accounts the user may list: everyone's for a superuser; for a data manager those holding
    (or having held) a role in a trial she manages; else her own."""
    users = get_user_model().objects.all()
    if user.is_authenticated and user.is_superuser:
        return users
    if not user.is_authenticated:
        return users.none()
    holders = StudyRole.objects.filter(trial_id__in=managed_trial_ids(user)).values("user_id")
    return users.filter(pk__in=holders) | users.filter(pk=user.pk)


def login_events_visible_to(user) -> QuerySet[LoginEvent]:  # noqa: ANN001
    """The login audit the user may read: her trials' users' events (data manager), all (superuser),
    newest first. Failed logins under a user name that matches no account are shown to superusers only."""
    events = LoginEvent.objects.select_related("user").order_by("-at", "-pk")
    if user.is_authenticated and user.is_superuser:
        return events
    if not managed_trial_ids(user).exists():
        return events.none()
    return events.filter(user__in=accounts_visible_to(user))
