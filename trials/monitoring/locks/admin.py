"""Locks, signatures and protocol deviations in the admin.

Data managers work in the admin: the participant, visit and CRF entry lists get the actions
"Lock", "Freeze" and "Release", and the trial list the database lock, each asking for a reason on
an intermediate page and calling `trials.records.locks` (only data managers of the trial may;
the others see no such action). The admin classes of those models belong to their apps: this
module re-registers each as a subclass with the actions mixed in, so their behaviour is unchanged.

Locks, signatures, refused signature attempts and deviations are listed read-only, scoped to the
user's trials and sites (they are written by the services, never edited here).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from trials.monitoring.locks.forms import LockReasonForm
from trials.records.locks import lock_apply, lock_release
from trials.monitoring.models import ProtocolDeviation, SignatureFailure
from trials.records.models import Lock, LockKind, LockLevel, Signature
from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import study_roles_for_user, trials_for_user
from trials.monitoring.casebook.admin import ScopedReadOnlyAdmin
from trials.visits.models import CrfEntry, Visit


def _reason_page(modeladmin, request: HttpRequest, queryset: QuerySet, *, action: str, title: str, explain: str):  # noqa: ANN001, ANN202
    """The intermediate page of an action: the reason, then `(form, None)`; or `(None, response)`."""
    form = LockReasonForm(request.POST if "confirm" in request.POST else None)
    if form.is_valid():
        return form, None
    return None, render(
        request,
        "monitoring/lock_confirm.html",
        {
            **modeladmin.admin_site.each_context(request),
            "objects": queryset,
            "form": form,
            "action": action,
            "title": f"{title}: {modeladmin.model._meta.verbose_name_plural}",
            "button": title,
            "explain": explain,
            "opts": modeladmin.model._meta,
        },
    )


def _report(modeladmin, request: HttpRequest, done: int, failures: list[str], message: str) -> None:  # noqa: ANN001
    for failure in failures:
        modeladmin.message_user(request, failure, messages.WARNING)
    if done:
        modeladmin.message_user(request, message % {"n": done}, messages.SUCCESS)


def _apply_to(modeladmin, request: HttpRequest, queryset: QuerySet, *, level: str, kind: str, action: str):  # noqa: ANN001, ANN202
    title = _("Lock") if kind == LockKind.LOCK else _("Freeze")
    explain = (
        _("Locked data cannot be changed by anyone, and no query can be raised or answered on them.")
        if kind == LockKind.LOCK
        else _("Frozen data cannot be changed; queries can still be raised and answered.")
    )
    form, response = _reason_page(modeladmin, request, queryset, action=action, title=title, explain=explain)
    if form is None:
        return response
    done, failures = 0, []
    for target in queryset:
        try:
            lock_apply(level=level, target=target, kind=kind, user=request.user, reason=form.cleaned_data["reason"])
            done += 1
        except (ValidationError, PermissionDenied) as error:
            failures.append(f"{target}: {' '.join(getattr(error, 'messages', [str(error)]))}")
    _report(modeladmin, request, done, failures, _("%(n)s locked.") if kind == LockKind.LOCK else _("%(n)s frozen."))
    return None


def _release_on(modeladmin, request: HttpRequest, queryset: QuerySet, *, level: str, action: str):  # noqa: ANN001, ANN202
    form, response = _reason_page(
        modeladmin,
        request,
        queryset,
        action=action,
        title=_("Release"),
        explain=_(
            "Releases the active locks and freezes placed on the selected rows themselves (not those of a wider level)."
        ),
    )
    if form is None:
        return response
    field = {
        LockLevel.TRIAL: "trial",
        LockLevel.PARTICIPANT: "participant",
        LockLevel.VISIT: "visit",
        LockLevel.ENTRY: "entry",
    }[level]
    locks = Lock.objects.filter(level=level, released_at__isnull=True, **{f"{field}__in": queryset})
    return _release_locks(modeladmin, request, locks, form.cleaned_data["reason"])


def _release_locks(modeladmin, request: HttpRequest, locks, reason: str):  # noqa: ANN001, ANN202
    done, failures = 0, []
    for lock in locks:
        try:
            lock_release(lock=lock, user=request.user, reason=reason)
            done += 1
        except (ValidationError, PermissionDenied) as error:
            failures.append(f"{lock}: {' '.join(getattr(error, 'messages', [str(error)]))}")
    if not done and not failures:
        modeladmin.message_user(
            request, _("Nothing to release: no active lock or freeze on the selected rows."), messages.WARNING
        )
    _report(modeladmin, request, done, failures, _("%(n)s released."))


def _lock_actions(level: str) -> list:
    """The three actions of a level, named per level (the admin keys actions by name)."""

    def lock(modeladmin, request, queryset):  # noqa: ANN001, ANN202
        return _apply_to(modeladmin, request, queryset, level=level, kind=LockKind.LOCK, action=lock.__name__)

    def freeze(modeladmin, request, queryset):  # noqa: ANN001, ANN202
        return _apply_to(modeladmin, request, queryset, level=level, kind=LockKind.FREEZE, action=freeze.__name__)

    def release(modeladmin, request, queryset):  # noqa: ANN001, ANN202
        return _release_on(modeladmin, request, queryset, level=level, action=release.__name__)

    lock.__name__, freeze.__name__, release.__name__ = f"lock_{level}", f"freeze_{level}", f"release_{level}"
    if level == LockLevel.TRIAL:
        descriptions = (
            _("Database lock (data managers)"),
            _("Freeze the trial (data managers)"),
            _("Release the trial's lock or freeze"),
        )
    else:
        descriptions = (_("Lock (data managers)"), _("Freeze (data managers)"), _("Release lock or freeze"))
    return [
        admin.action(function, description=description, permissions=["lock"])
        for function, description in zip((lock, freeze, release), descriptions, strict=True)
    ]


class LockActionsMixin:
    """Gives a model admin the data manager's permission to lock (the actions check it)."""

    def has_lock_permission(self, request: HttpRequest) -> bool:
        return study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER).exists()


def _with_lock_actions(model, level: str) -> None:  # noqa: ANN001
    """Re-register the model's admin as a subclass with the lock actions added to its own."""
    current = type(admin.site.get_model_admin(model))
    if issubclass(current, LockActionsMixin):
        return
    admin.site.unregister(model)
    admin.site.register(
        model,
        type(
            current.__name__,
            (LockActionsMixin, current),
            {
                "actions": [*(current.actions or []), *_lock_actions(level)],
                "__module__": current.__module__,
            },
        ),
    )


_with_lock_actions(Participant, LockLevel.PARTICIPANT)
_with_lock_actions(Visit, LockLevel.VISIT)
_with_lock_actions(CrfEntry, LockLevel.ENTRY)
_with_lock_actions(Trial, LockLevel.TRIAL)


# --- The lists -------------------------------------------------------------------------------


class _ActiveFilter(admin.SimpleListFilter):
    title = _("active")
    parameter_name = "active"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201
        return [("yes", _("Active")), ("no", _("Released"))]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        if self.value() == "yes":
            return queryset.filter(released_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(released_at__isnull=False)
        return queryset


@admin.register(Lock)
class LockAdmin(ScopedReadOnlyAdmin):
    """Every lock and freeze of the user's trials and sites, active or released; data managers
    release them here (with a reason) and apply them from the participant, visit, CRF entry and
    trial lists."""

    list_display = [
        "target",
        "trial_code",
        "level",
        "kind_short",
        "reason",
        "locked_by",
        "locked_at",
        "released_at",
        "released_by",
    ]
    list_filter = [_ActiveFilter, ("trial", admin.RelatedOnlyFieldListFilter), "level", "kind"]
    search_fields = ["reason", "participant__screening_number", "participant__subject_number"]
    list_select_related = ["trial", "participant", "visit", "entry__visit", "entry__crf", "locked_by", "released_by"]
    actions = ["release_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super(ScopedReadOnlyAdmin, self).get_queryset(request)
        if request.user.is_superuser:
            return queryset
        # Trial-level locks have no participant: they are seen by everyone of the trial.
        return queryset.filter(
            Q(participant__in=participants_for_user(request.user))
            | Q(participant__isnull=True, trial__in=trials_for_user(request.user))
        )

    def has_lock_permission(self, request: HttpRequest) -> bool:
        return study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER).exists()

    @admin.display(description=_("locked data"))
    def target(self, obj: Lock) -> str:
        if obj.level == LockLevel.ENTRY:
            return f"{obj.participant} – {obj.entry.visit.label} – {obj.entry.crf_code}"
        if obj.level == LockLevel.VISIT:
            return f"{obj.participant} – {obj.visit.label}"
        return str(obj.participant or obj.trial.code)

    @admin.display(description=_("trial"), ordering="trial__code")
    def trial_code(self, obj: Lock) -> str:
        return obj.trial.code

    @admin.display(description=_("kind"), ordering="kind")
    def kind_short(self, obj: Lock) -> str:
        return _("lock") if obj.kind == LockKind.LOCK else _("freeze")

    @admin.action(description=_("Release the selected locks and freezes (data managers)"), permissions=["lock"])
    def release_selected(self, request: HttpRequest, queryset: QuerySet):  # noqa: ANN201
        form, response = _reason_page(
            self,
            request,
            queryset,
            action="release_selected",
            title=_("Release"),
            explain=_("The data become editable again (unless another lock or freeze covers them)."),
        )
        if form is None:
            return response
        return _release_locks(self, request, queryset.filter(released_at__isnull=True), form.cleaned_data["reason"])


@admin.register(Signature)
class SignatureAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "visit", "printed_name", "signed_at", "state", "broken_at", "broken_reason"]
    list_filter = [
        ("participant__trial", admin.RelatedOnlyFieldListFilter),
        ("participant__site", admin.RelatedOnlyFieldListFilter),
        "state",
    ]
    search_fields = ["participant__screening_number", "participant__subject_number", "printed_name"]
    list_select_related = ["participant", "visit"]


@admin.register(SignatureFailure)
class SignatureFailureAdmin(ScopedReadOnlyAdmin):
    list_display = ["at", "user", "participant", "visit"]
    list_filter = [("participant__trial", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "participant", "visit"]


@admin.register(ProtocolDeviation)
class ProtocolDeviationAdmin(ScopedReadOnlyAdmin):
    """The deviation logs, read-only for monitors (they record deviations on the participant's
    deviation page, like the site's staff)."""

    list_display = [
        "participant",
        "occurred_on",
        "identified_on",
        "category",
        "severity",
        "state",
        "visit",
        "reported_by",
    ]
    list_filter = [
        ("participant__trial", admin.RelatedOnlyFieldListFilter),
        ("participant__site", admin.RelatedOnlyFieldListFilter),
        "category",
        "severity",
        "state",
    ]
    search_fields = ["participant__screening_number", "participant__subject_number", "description"]
    list_select_related = ["participant", "visit", "reported_by"]
