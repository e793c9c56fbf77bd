"""Reads of the protocol, always from the acting user's study roles (site scoping lives here)."""

from collections.abc import Iterable
from typing import NamedTuple

from django.db.models import Q, QuerySet

from edc.request_memo import memoized

from trials.protocol.models import (
    STAFF_MASKED_ROLES,
    STAFF_ROLES,
    UNBLINDED_ROLES,
    LabNormalRange,
    Role,
    Site,
    StudyRole,
    Trial,
    UnblindedAccessEvent,
)


def study_roles_for_user(user) -> QuerySet[StudyRole]:  # noqa: ANN001
    """The user's active roles (a role at a site no longer in the protocol is not), with trial and site."""
    if not user.is_authenticated:
        return StudyRole.objects.none()
    return StudyRole.objects.filter(
        Q(site__isnull=True) | Q(site__is_active=True), user=user, is_active=True
    ).select_related("trial", "site")


class RoleGrant(NamedTuple):
    """One active study role of a user: the trial, the site (None: all sites) and the role."""

    trial_id: int
    site_id: int | None
    role: str


def user_role_grants(user) -> tuple[RoleGrant, ...]:  # noqa: ANN001
    """The user's active roles (study_roles_for_user's rows) as tuples, read once per request
    (edc.request_memo) and reused by every access check of that request (issue 22)."""
    if not user.is_authenticated:
        return ()
    return memoized(("study-roles", user.pk), lambda: tuple(
        RoleGrant(*row) for row in study_roles_for_user(user).values_list("trial_id", "site_id", "role")
    ))


def user_holds_role(user, *, trial_id: int, roles: Iterable[str], site_id: int | None = None, any_site: bool = False) -> bool:  # noqa: ANN001
    """Whether the user holds one of `roles` in the trial: at `site_id` (or at all its sites),
    or, with `any_site`, at any site of it. Reads the request's memo of user_role_grants."""
    wanted = set(roles)
    return any(
        grant.trial_id == trial_id and grant.role in wanted and (any_site or grant.site_id is None or grant.site_id == site_id)
        for grant in user_role_grants(user)
    )


def trials_for_user(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials the user holds an active role in (a superuser sees every trial)."""
    if user.is_authenticated and user.is_superuser:
        return Trial.objects.all()
    return Trial.objects.filter(study_roles__in=study_roles_for_user(user)).distinct()


def sites_for_user(user, *, trial: Trial | None = None, include_inactive: bool = False) -> QuerySet[Site]:  # noqa: ANN001
    """Sites the user may see: every site of a trial for an all-sites role, else the named sites."""
    if user.is_authenticated and user.is_superuser:
        sites = Site.objects.all()
    else:
        roles = study_roles_for_user(user)
        all_sites_trials = roles.filter(site__isnull=True).values("trial_id")
        named_sites = roles.filter(site__isnull=False).values("site_id")
        sites = Site.objects.filter(Q(trial_id__in=all_sites_trials) | Q(pk__in=named_sites))
    if trial is not None:
        sites = sites.filter(trial=trial)
    if not include_inactive:
        sites = sites.filter(is_active=True)
    return sites.select_related("trial")


def site_visible_to(user, site: Site) -> bool:  # noqa: ANN001
    """sites_for_user's rule for one site already read (with its `is_active` and `trial_id`),
    checked against the request's memo of the user's roles instead of a subquery (issue 22: the
    CRF page reads its visit by key and checks it here, the roles query serving every check)."""
    if not site.is_active:
        return False
    if user.is_authenticated and user.is_superuser:
        return True
    return any(
        grant.site_id == site.pk or (grant.site_id is None and grant.trial_id == site.trial_id) for grant in user_role_grants(user)
    )


def study_roles_visible_to(user) -> QuerySet[StudyRole]:  # noqa: ANN001
    """Roles a user may list: all roles of trials where they work at all sites, else roles at their sites."""
    if user.is_authenticated and user.is_superuser:
        return StudyRole.objects.all()
    all_sites_trials = study_roles_for_user(user).filter(site__isnull=True).values("trial_id")
    return StudyRole.objects.filter(
        Q(trial_id__in=all_sites_trials) | Q(site__in=sites_for_user(user, include_inactive=True))
    )


def user_sees_allocation(user, trial: Trial) -> bool:  # noqa: ANN001
    """Whether the user may see allocated arms in this trial (never for a blinded role)."""
    if not trial.is_blinded:
        return True
    return user_holds_role(user, trial_id=trial.pk, roles=UNBLINDED_ROLES, any_site=True)


def user_sees_cohort_placebo(user, trial: Trial) -> bool:  # noqa: ANN001
    """Whether the user may see who received placebo inside a dose cohort (`escalation.placebo`):
    when a staff role is masked to it, only the unblinded roles (DSMB / unblinded statistician)."""
    placebo = (trial.escalation or {}).get("placebo") if trial.design == "dose_escalation" else None
    if not placebo or not set(placebo.get("masked") or ()) & STAFF_MASKED_ROLES:
        return user_sees_allocation(user, trial)
    return study_roles_for_user(user).filter(trial=trial, role__in=UNBLINDED_ROLES).exists()


def unblinded_access_log_trials(user) -> QuerySet[Trial]:  # noqa: ANN001
    """Trials whose unblinded-access log the user may read: those where she sees the allocated
    arms, and those she is data manager of (the log names people, never an arm)."""
    if user.is_authenticated and user.is_superuser:
        return Trial.objects.all()
    roles = study_roles_for_user(user)
    managed = set(roles.filter(role=Role.DATA_MANAGER).values_list("trial_id", flat=True))
    allowed = [trial.pk for trial in trials_for_user(user) if trial.pk in managed or user_sees_allocation(user, trial)]
    return Trial.objects.filter(pk__in=allowed)


def unblinded_access_events(user, *, trial: Trial | None = None) -> QuerySet[UnblindedAccessEvent]:  # noqa: ANN001
    """The unblinded-access log rows the user may read (of one trial, or of all hers), newest first."""
    events = UnblindedAccessEvent.objects.filter(trial__in=unblinded_access_log_trials(user))
    if trial is not None:
        events = events.filter(trial=trial)
    return events.select_related("trial", "study_role__user", "study_role__site", "changed_by").order_by("-created_at", "-pk")


def arm_seeing_roles(user, trial: Trial) -> QuerySet[StudyRole]:  # noqa: ANN001
    """Who sees the allocated arms of a blinded trial now (active roles), for a user who may read
    its unblinded-access log; nobody for a trial whose staff are not blinded."""
    if not trial.is_blinded or not unblinded_access_log_trials(user).filter(pk=trial.pk).exists():
        return StudyRole.objects.none()
    return (
        StudyRole.objects.filter(Q(site__isnull=True) | Q(site__is_active=True), trial=trial, is_active=True, role__in=UNBLINDED_ROLES)
        .select_related("user", "site")
        .order_by("user__username")
    )


def user_home(user) -> str:  # noqa: ANN001
    """Where the user lands after login: 'admin' for monitors and data managers, else 'home'."""
    roles = set(study_roles_for_user(user).values_list("role", flat=True))
    if user.is_superuser or (roles and roles <= set(STAFF_ROLES)):
        return "admin"
    return "home"


def roles_by_trial(user) -> list[dict]:  # noqa: ANN001
    """For the home page: each trial with the user's roles and visible sites."""
    rows: dict[int, dict] = {}
    for role in study_roles_for_user(user).order_by("trial__code", "role"):
        row = rows.setdefault(role.trial_id, {"trial": role.trial, "roles": [], "sites": []})
        row["roles"].append(role)
    for site in sites_for_user(user).filter(trial_id__in=rows).order_by("code"):
        rows[site.trial_id]["sites"].append(site)
    return list(rows.values())


__all__ = [
    "Role",
    "roles_by_trial",
    "sites_for_user",
    "study_roles_for_user",
    "study_roles_visible_to",
    "trials_for_user",
    "unblinded_access_events",
    "unblinded_access_log_trials",
    "user_home",
    "user_sees_allocation",
]


def lab_ranges_for_site(site_id: int) -> list[LabNormalRange]:
    """Every active normal-range row of a site's laboratory (all tests, all versions), for grading."""
    return list(LabNormalRange.objects.filter(site_id=site_id, is_active=True))


def lab_range_sites_for_user(user) -> QuerySet[Site]:  # noqa: ANN001
    """Sites whose laboratory normal ranges the user may set: those where she is data manager."""
    if user.is_authenticated and user.is_superuser:
        return Site.objects.filter(is_active=True)
    roles = study_roles_for_user(user).filter(role=Role.DATA_MANAGER)
    return Site.objects.filter(
        Q(trial__in=roles.filter(site__isnull=True).values("trial")) | Q(pk__in=roles.values("site")), is_active=True
    )


def user_site_language(user) -> str:  # noqa: ANN001
    """The default language of a user who never chose one: the `language` of the sites her
    site-scoped roles name, when those that declare one agree (a trial-wide role spans sites: no default)."""
    if not user.is_authenticated or user.is_superuser:
        return ""
    named = study_roles_for_user(user).filter(site__isnull=False).values("site_id")
    languages = set(Site.objects.filter(pk__in=named, is_active=True).exclude(language="").values_list("language", flat=True))
    return languages.pop() if len(languages) == 1 else ""
