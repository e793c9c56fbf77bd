"""Object ids from requests: integers in the range of a primary key, or a 400 / form error.

A forged id ("abc", "99999999999999999999") must never reach the database: PostgreSQL answers
"bigint out of range", SQLite raises OverflowError, a text raises ValueError, and each was a 500
(issue 16). Views, admin actions and forms pass every id they read through these helpers.
"""

from collections.abc import Iterable

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import BadRequest, ValidationError

MAX_ID = 2**63 - 1  # BigAutoField (DEFAULT_AUTO_FIELD): PostgreSQL bigint, SQLite INTEGER


def id_or_none(value: object) -> int | None:
    """The id, or None when `value` is not a positive integer within a primary key's range."""
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def ids_or_400(values: Iterable[object]) -> list[int]:
    """Every value as an id, or BadRequest (HTTP 400) naming the first that is not one."""
    ids = []
    for value in values:
        number = id_or_none(value)
        if number is None:
            raise BadRequest(f"Not an object id: {str(value)[:40]!r}")
        ids.append(number)
    return ids


class IdModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Django's multiple choice of rows, refusing an id out of range with a form error (Django
    itself checks each id with an exact lookup, safe, but then filters with `pk__in`, which
    overflows on SQLite)."""

    def _check_values(self, value):  # noqa: ANN001, ANN202
        for pk in value:
            if id_or_none(pk) is None:
                raise ValidationError(self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": str(pk)[:40]})
        return super()._check_values(value)


class IdCheckingAdminSite(admin.AdminSite):
    """The admin site, refusing (400) an action posted with a `_selected_action` that is not an
    object id, before any ModelAdmin filters its queryset with it: one check for every action
    (close queries, mark verified, lock, migrate …)."""

    def admin_view(self, view, cacheable=False):  # noqa: ANN001, ANN201, FBT002
        inner = super().admin_view(view, cacheable)

        def checked(request, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if request.method == "POST" and "_selected_action" in request.POST:
                ids_or_400(request.POST.getlist("_selected_action"))
            return inner(request, *args, **kwargs)

        checked.__dict__.update(inner.__dict__)
        checked.__name__ = getattr(inner, "__name__", "admin_view")
        checked.csrf_exempt = getattr(inner, "csrf_exempt", False)
        return checked


class IdAutocompleteSelect(AutocompleteSelect):
    """The admin's autocomplete select, redisplaying a refused form without looking up a forged
    value (Django's looks up whatever was posted with `pk__in`, raising ValueError on a text)."""

    def optgroups(self, name, value, attr=None):  # noqa: ANN001, ANN201
        return super().optgroups(name, [v for v in value if v in (None, "") or id_or_none(v) is not None], attr)


def with_checked_autocomplete(formfield):  # noqa: ANN001, ANN201
    """The ModelAdmin's form field, its autocomplete widget (inside the related-field wrapper)
    made an IdAutocompleteSelect. For `formfield_for_foreignkey` of an admin with autocomplete_fields."""
    if formfield is None:
        return formfield
    inner = getattr(formfield.widget, "widget", formfield.widget)
    if type(inner) is AutocompleteSelect:
        inner.__class__ = IdAutocompleteSelect
    return formfield
