"""Writes to the protocol outside the loader: study roles and the permission groups behind them.

Who may grant what (`study_role_grant_check`) is decided here, for the admin and for any other
caller alike: the trial's data manager (or an administrator, or the shell's system account)
grants roles; nobody grants herself one; a role that sees the allocated arms of a blinded trial
is granted only by someone who already sees them, with a reason, and every grant or end of such
a role is written to the trial's unblinded-access log and e-mailed to the sponsor and the DSMB.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils.translation import gettext as _

from edc.audit import SYSTEM_USERNAME, audited_save
from edc.request_memo import forget
from trials.protocol.models import (
    STAFF_ROLES,
    LabNormalRange,
    Role,
    Site,
    StudyRole,
    Trial,
    UnblindedAccessAction,
    UnblindedAccessEvent,
    role_sees_arms_of_blinded_trial,
)
from trials.protocol.selectors import study_roles_for_user, user_sees_allocation

PROTOCOL_MODELS = (
    "trial", "site", "arm", "criterion", "visitdefinition", "visitcrf", "crfdefinition", "fielddefinition", "studyrole",
    "consentdocument", "labnormalrange",
)
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


def _is_administrator(actor) -> bool:  # noqa: ANN001
    """A superuser, or the system account of the shell (loader, load_demo): whoever has those can
    change the database anyway."""
    return actor.is_superuser or actor.username == SYSTEM_USERNAME


def _manages(actor, trial: Trial) -> bool:  # noqa: ANN001
    """Whether `actor` holds an active all-sites data-manager role in `trial`."""
    return study_roles_for_user(actor).filter(trial=trial, role=Role.DATA_MANAGER, site__isnull=True).exists()


def study_role_grant_check(*, user, trial: Trial, role: str, site: Site | None, granted_by) -> None:  # noqa: ANN001
    """Refuse (ValidationError naming the field) a grant its author may not make: an unknown role,
    a site of another trial, a grant to oneself, a grant by someone who does not manage the
    trial, and a role that sees the arms of a blinded trial granted by someone who does not."""
    errors: dict[str, str] = {}
    if role not in Role.values:
        errors["role"] = _("Unknown role '%(role)s'.") % {"role": role}
    if site is not None and site.trial_id != trial.pk:
        errors["site"] = _("Site %(site)s does not belong to trial %(trial)s.") % {"site": site.code, "trial": trial.code}
    if user.pk == granted_by.pk:
        errors["user"] = _("You cannot grant yourself a role: another data manager or an administrator must.")
    elif not _is_administrator(granted_by):
        if not _manages(granted_by, trial):
            errors["trial"] = _("Only the data manager of %(trial)s (or an administrator) may grant roles in it.") % {"trial": trial.code}
        elif role_sees_arms_of_blinded_trial(trial, role) and not user_sees_allocation(granted_by, trial):
            errors["role"] = _(
                "This role sees the allocated arms of %(trial)s: only someone who sees the allocated arms "
                "(or an administrator) may grant it."
            ) % {"trial": trial.code}
    if errors:
        raise ValidationError(errors)


def study_role_revoke_check(*, study_role: StudyRole, revoked_by) -> None:  # noqa: ANN001
    """Refuse the end of a role by someone who does not manage its trial (nor administers)."""
    if not _is_administrator(revoked_by) and not _manages(revoked_by, study_role.trial):
        raise ValidationError(
            {"trial": _("Only the data manager of %(trial)s (or an administrator) may end roles in it.") % {"trial": study_role.trial.code}}
        )


@transaction.atomic
def study_role_grant(*, user, trial: Trial, role: str, site: Site | None = None, granted_by, reason: str) -> StudyRole:  # noqa: ANN001
    """Give `user` a role in `trial` (at `site`, or all sites); staff roles get admin access. A
    role that sees the arms of a blinded trial is logged and notified (see the module)."""
    study_role_grant_check(user=user, trial=trial, role=role, site=site, granted_by=granted_by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for granting this role.")})
    try:
        study_role = StudyRole.objects.select_for_update().get(user=user, trial=trial, site=site, role=role)
    except StudyRole.DoesNotExist:
        study_role = audited_save(StudyRole(user=user, trial=trial, site=site, role=role), user=granted_by, reason=reason)
        changed = True
    else:
        changed = not study_role.is_active
        if changed:
            study_role.is_active = True
            audited_save(study_role, user=granted_by, reason=reason)
    if role in STAFF_ROLES:
        group = role_groups_sync()[role]
        user.groups.add(group)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
    if changed and role_sees_arms_of_blinded_trial(trial, role):
        _unblinded_access_record(study_role, action=UnblindedAccessAction.GRANTED, actor=granted_by, reason=reason)
    forget(("study-roles", user.pk))  # this request's memo of her roles (edc.request_memo)
    return study_role


@transaction.atomic
def study_role_revoke(*, study_role: StudyRole, revoked_by, reason: str) -> StudyRole:  # noqa: ANN001
    """End a role at once (kept in the audit trail, never deleted), with the admin access and
    permission groups no other role justifies; the holder's next request is refused, since every
    role check reads the database. Ending a role that sees arms is logged and notified."""
    study_role_revoke_check(study_role=study_role, revoked_by=revoked_by)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": _("Give the reason for ending this role.")})
    # Read the row as stored: the admin hands over an instance its form already set inactive,
    # which must not be taken for "already ended".
    current = StudyRole.objects.select_for_update().select_related("trial", "user").get(pk=study_role.pk)
    if current.is_active:
        current.is_active = False
        audited_save(current, user=revoked_by, reason=reason)
        if role_sees_arms_of_blinded_trial(current.trial, current.role):
            _unblinded_access_record(current, action=UnblindedAccessAction.REVOKED, actor=revoked_by, reason=reason)
    study_role.is_active = current.is_active
    _staff_access_sync(current.user)
    forget(("study-roles", current.user_id))  # this request's memo of her roles (edc.request_memo)
    return current


def _staff_access_sync(user) -> None:  # noqa: ANN001
    """Take back admin access and permission groups that no active role justifies any more."""
    active = set(StudyRole.objects.filter(user=user, is_active=True).values_list("role", flat=True))
    for role, (name, _actions) in ROLE_GROUPS.items():
        if role not in active:
            user.groups.remove(*Group.objects.filter(name=name))
    if user.is_staff and not user.is_superuser and not active & set(STAFF_ROLES):
        user.is_staff = False
        user.save(update_fields=["is_staff"])


def _unblinded_access_recipients(trial: Trial) -> list[str]:
    """The sponsor's safety desk (trial file `safety_reporting.contacts`), and the trial's active
    sponsor and DSMB users."""
    users = get_user_model().objects.filter(
        is_active=True, study_roles__trial=trial, study_roles__is_active=True,
        study_roles__role__in=[Role.SPONSOR, Role.DSMB],
    ).exclude(email="").values_list("email", flat=True)
    contacts = (trial.safety_reporting or {}).get("contacts") or []
    return sorted(set(contacts) | set(users))


def _unblinded_access_record(study_role: StudyRole, *, action: str, actor, reason: str) -> UnblindedAccessEvent:  # noqa: ANN001
    """Write the log row and e-mail it (after the commit: no mail for a grant rolled back). The
    message names the person, the role, who and why; it never names an arm."""
    trial = study_role.trial
    recipients = _unblinded_access_recipients(trial)
    event = audited_save(
        UnblindedAccessEvent(
            trial=trial, study_role=study_role, action=action, changed_by=actor, reason=reason, notified=recipients,
        ),
        user=actor,
        reason=reason,
    )
    if recipients:
        holder = study_role.user
        values = {
            "trial": trial.code,
            "holder": f"{holder.get_full_name()} ({holder.username})" if holder.get_full_name() else holder.username,
            "role": study_role.get_role_display(),
            "where": study_role.site.code if study_role.site_id else _("all sites"),
            "actor": f"{actor.get_full_name()} ({actor.username})" if actor.get_full_name() else actor.username,
            "when": f"{event.created_at:%Y-%m-%d %H:%M}",
            "reason": reason,
        }
        if action == UnblindedAccessAction.GRANTED:
            subject = _("[%(trial)s] Unblinded access granted to %(holder)s") % values
            body = _(
                "%(holder)s was granted the role %(role)s (%(where)s) of %(trial)s, which sees the allocated arms, "
                "by %(actor)s at %(when)s UTC.\n\nReason: %(reason)s\n"
            ) % values
        else:
            subject = _("[%(trial)s] Unblinded access of %(holder)s ended") % values
            body = _(
                "The role %(role)s (%(where)s) of %(holder)s in %(trial)s, which sees the allocated arms, "
                "was ended by %(actor)s at %(when)s UTC.\n\nReason: %(reason)s\n"
            ) % values
        transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients))
    return event


def lab_range_check(*, test: str, lln, uln, age_from_years: int, age_to_years: int) -> None:  # noqa: ANN001
    """Refuse (ValidationError naming the field) a normal range that cannot grade: an unknown test,
    no limit at all, LLN not below ULN, an empty age band."""
    from trials.protocol.ctcae import LAB_TESTS

    errors: dict[str, str] = {}
    if test not in LAB_TESTS:
        errors["test"] = _("Unknown laboratory test '%(test)s'.") % {"test": test}
    if lln is None and uln is None:
        errors["uln"] = _("Give the lower limit, the upper limit or both.")
    elif lln is not None and uln is not None and lln >= uln:
        errors["uln"] = _("The upper limit must be above the lower limit.")
    for name, value in (("lln", lln), ("uln", uln)):
        if value is not None and value < 0:
            errors[name] = _("A limit cannot be negative.")
    if age_from_years >= age_to_years:
        errors["age_to_years"] = _("The age band is empty: 'to age' must be above 'from age'.")
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def lab_range_save(*, lab_range: LabNormalRange, user, reason: str) -> LabNormalRange:  # noqa: ANN001
    """Record a site laboratory's normal range (a new version, or its deactivation), audited with the
    reason. The unit is the one the CTCAE grading table and the CRF item use for the test."""
    from trials.protocol.ctcae import LAB_TESTS

    lab_range_check(
        test=lab_range.test, lln=lab_range.lln, uln=lab_range.uln,
        age_from_years=lab_range.age_from_years, age_to_years=lab_range.age_to_years,
    )
    lab_range.unit = LAB_TESTS[lab_range.test].unit
    audited_save(lab_range, user=user, reason=reason)
    return lab_range
