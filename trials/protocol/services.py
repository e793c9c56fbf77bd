"""Writes to the protocol outside the loader: study roles and the permission groups behind them."""

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.protocol.models import STAFF_ROLES, Role, Site, StudyRole, Trial

PROTOCOL_MODELS = ("trial", "site", "arm", "criterion", "visitdefinition", "visitcrf", "crfdefinition", "fielddefinition", "studyrole", "consentdocument")
# Admin permissions per staff role: monitors read, data managers configure.
ROLE_GROUPS = {
    Role.MONITOR: ("Monitors", ("view",)),
    Role.DATA_MANAGER: ("Data managers", ("view", "change", "add")),
}


@transaction.atomic
def role_groups_sync() -> dict[str, Group]:
    """Create (or complete) the permission group of each staff role; idempotent."""
    groups = {}
    for role, (name, actions) in ROLE_GROUPS.items():
        group, _created = Group.objects.get_or_create(name=name)
        codenames = [f"{action}_{model}" for model in PROTOCOL_MODELS for action in actions]
        codenames += ["view_historicaltrial"] if "view" in actions else []
        permissions = Permission.objects.filter(content_type__app_label="protocol", codename__in=codenames)
        group.permissions.add(*permissions)
        if role == Role.DATA_MANAGER:  # to pick the user when granting a study role
            group.permissions.add(*Permission.objects.filter(content_type__app_label="auth", codename="view_user"))
        groups[role] = group
    return groups


@transaction.atomic
def study_role_grant(*, user, trial: Trial, role: str, site: Site | None = None, granted_by, reason: str) -> StudyRole:  # noqa: ANN001
    """Give `user` a role in `trial` (at `site`, or all sites); staff roles get admin access."""
    if role not in Role.values:
        raise ValidationError({"role": _("Unknown role '%(role)s'.") % {"role": role}})
    if site is not None and site.trial_id != trial.pk:
        raise ValidationError({"site": _("Site %(site)s does not belong to trial %(trial)s.") % {"site": site.code, "trial": trial.code}})
    try:
        study_role = StudyRole.objects.get(user=user, trial=trial, site=site, role=role)
    except StudyRole.DoesNotExist:
        study_role = audited_save(StudyRole(user=user, trial=trial, site=site, role=role), user=granted_by, reason=reason)
    else:
        if not study_role.is_active:
            study_role.is_active = True
            audited_save(study_role, user=granted_by, reason=reason)
    if role in STAFF_ROLES:
        group = role_groups_sync()[role]
        user.groups.add(group)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    return study_role


@transaction.atomic
def study_role_revoke(*, study_role: StudyRole, revoked_by, reason: str) -> StudyRole:  # noqa: ANN001
    """End a role (kept in the audit trail, never deleted)."""
    if study_role.is_active:
        study_role.is_active = False
        audited_save(study_role, user=revoked_by, reason=reason)
    _staff_access_sync(study_role.user)
    return study_role


def _staff_access_sync(user) -> None:  # noqa: ANN001
    """Take back admin access and permission groups that no active role justifies any more."""
    active = set(StudyRole.objects.filter(user=user, is_active=True).values_list("role", flat=True))
    for role, (name, _actions) in ROLE_GROUPS.items():
        if role not in active:
            user.groups.remove(*Group.objects.filter(name=name))
    if user.is_staff and not user.is_superuser and not active & set(STAFF_ROLES):
        user.is_staff = False
        user.save(update_fields=["is_staff"])
