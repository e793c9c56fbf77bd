"""Audit trail plumbing shared by every app: who, when, old -> new, why.

Every model that holds trial data inherits `AuditedModel`: django-simple-history keeps a
historical row per change, and the model refuses any write that would bypass it:

- `save()` without a reason for change raises `AuditError` (use `audited_save`);
- `delete()` raises: trial data is deactivated or voided with a reason, never deleted;
- `QuerySet.update()`, `.delete()`, `.bulk_update()` raise; `.bulk_create()` only runs inside
  `audited_bulk_create`, which writes the historical rows in the same transaction;
- `QuerySet.derived_update()` sets only the fields a model declares in `DERIVED_FIELDS` (values
  computed from other data and the calendar, such as a visit's window state).

`save()` here is a guard, not behaviour: it decides nothing about the trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import TypeVar

from django.contrib.auth import get_user_model
from django.db import models
from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history

SYSTEM_USERNAME = "edc-system"

_bulk_create_allowed: ContextVar[bool] = ContextVar("edc_audit_bulk_create_allowed", default=False)

M = TypeVar("M", bound=models.Model)


class AuditError(RuntimeError):
    """A write that would escape the audit trail."""


class AuditedQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003
        raise AuditError(
            f"{self.model.__name__}: QuerySet.update() would bypass the audit trail; "
            "change each object and save it with audited_save()"
        )

    def delete(self):
        raise AuditError(f"{self.model.__name__}: trial data is never deleted; deactivate or void it with a reason")

    def bulk_update(self, objs, fields, batch_size=None):  # noqa: ANN001
        raise AuditError(f"{self.model.__name__}: bulk_update() would bypass the audit trail; use audited_save()")

    def derived_update(self, **kwargs) -> int:  # noqa: ANN003
        """One UPDATE of fields the model declares as derived (`DERIVED_FIELDS`): values computed
        from other data and the calendar (a visit's window state), which nobody enters. They are
        left out of the history on purpose: the history records what people did, and a derived
        value can be recomputed at any time from what it derives from."""
        allowed = getattr(self.model, "DERIVED_FIELDS", frozenset())
        if not kwargs or set(kwargs) - allowed:
            raise AuditError(
                f"{self.model.__name__}: derived_update() only sets derived fields ({', '.join(sorted(allowed)) or 'none'})"
            )
        return super().update(**kwargs)

    def bulk_create(self, objs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if not _bulk_create_allowed.get():
            raise AuditError(
                f"{self.model.__name__}: bulk_create() would bypass the audit trail; use audited_bulk_create()"
            )
        return super().bulk_create(objs, *args, **kwargs)


class _AuditHistoricalRecords(HistoricalRecords):
    """simple-history's inherited history, except that a model may name its history table
    (`HISTORY_DB_TABLE`): a model moved to another app keeps its historical rows where they are,
    as its own table is kept with `Meta.db_table` (simple-history ignores `table_name` when the
    history is inherited)."""

    def get_meta_options(self, model):  # noqa: ANN001, ANN201
        options = super().get_meta_options(model)
        table = getattr(model, "HISTORY_DB_TABLE", None)
        if table:
            options["db_table"] = table
        return options


class AuditedModel(models.Model):
    history = _AuditHistoricalRecords(inherit=True, cascade_delete_history=False)
    objects = AuditedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):  # noqa: ANN002, ANN003
        if not getattr(self, "_change_reason", ""):
            raise AuditError(
                f"{type(self).__name__} saved without a reason for change; use edc.audit.audited_save(obj, user=…, reason=…)"
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003
        raise AuditError(f"{type(self).__name__}: trial data is never deleted; deactivate or void it with a reason")


def audited_save(obj: M, *, user: models.Model | None, reason: str) -> M:
    """Save `obj` with the acting user and the reason for change recorded in its history."""
    if not reason or not reason.strip():
        raise AuditError(f"{type(obj).__name__}: a reason for change is required")
    obj._history_user = user  # type: ignore[attr-defined]
    obj._change_reason = reason.strip()  # type: ignore[attr-defined]
    try:
        obj.save()
    finally:
        # A reason belongs to one change: the next save must give its own.
        del obj._change_reason  # type: ignore[attr-defined]
        del obj._history_user  # type: ignore[attr-defined]
    return obj


def audited_bulk_create(
    model: type[M], objs: Sequence[M], *, user: models.Model | None, reason: str, batch_size: int = 500
) -> list[M]:
    """Insert many rows at once together with one historical row each (same user and reason)."""
    if not reason or not reason.strip():
        raise AuditError(f"{model.__name__}: a reason for change is required")
    token = _bulk_create_allowed.set(True)
    try:
        return bulk_create_with_history(
            list(objs), model, batch_size=batch_size, default_user=user, default_change_reason=reason.strip()
        )
    finally:
        _bulk_create_allowed.reset(token)


def changed_fields(obj: models.Model, values: dict) -> dict[str, tuple]:
    """The attributes of `obj` that `values` would change, as {name: (old, new)}."""
    return {name: (getattr(obj, name), new) for name, new in values.items() if getattr(obj, name) != new}


def system_user():  # noqa: ANN201
    """The account that system actions (loader from the shell, Celery scans) are recorded under."""
    User = get_user_model()
    try:
        return User.objects.get(username=SYSTEM_USERNAME)
    except User.DoesNotExist:
        user = User(username=SYSTEM_USERNAME, first_name="EDC", last_name="system", is_active=False)
        user.set_unusable_password()
        user.save()
        return user

