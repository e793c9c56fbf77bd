"""Accounts in the admin: the login audit (read-only, CSV export), lockouts with an audited unlock,
and user accounts scoped to the data manager's trials."""

import csv

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from edc.admin_mixins import ReadOnlyAdminMixin
from trials.accounts.models import LoginEvent, LoginEventKind
from trials.accounts.selectors import accounts_visible_to, login_events_visible_to
from trials.accounts.services import login_event_record, password_change_require
from trials.accounts.twofactor import second_factor_reset

CSV_COLUMNS = ("at", "kind", "username", "ip_address", "user_agent", "detail")


@admin.register(LoginEvent)
class LoginEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who logged in, out, failed or was locked out, when, from where (21 CFR 11.300(d)). A data
    manager reads the events of her trials' users; nobody changes or deletes a row."""

    list_display = ["at", "kind", "username", "ip_address", "user_agent"]
    list_filter = ["kind"]
    search_fields = ["username", "ip_address"]
    date_hierarchy = "at"
    actions = ["export_csv"]
    readonly_fields = ["kind", "at", "user", "username", "ip_address", "user_agent", "detail"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return login_events_visible_to(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_active and request.user.is_staff and login_events_visible_to(request.user).exists() or (
            request.user.is_active and request.user.is_superuser
        )


    @admin.action(description=_("Export the selected events as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="login-audit.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for event in queryset.order_by("at", "pk"):
            # A leading = + - @ would be a formula in a spreadsheet (typed user names, browsers).
            writer.writerow([_cell(getattr(event, column)) for column in CSV_COLUMNS])
        return response


def _cell(value: object) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value if value is not None else "")
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class AuditedAccessAttemptAdmin(AccessAttemptAdmin):
    """django-axes' lockouts: deleting a row unlocks that user name or address before its time,
    and the unlock is written to the login audit with the administrator's name."""

    def delete_model(self, request: HttpRequest, obj: AccessAttempt) -> None:
        _record_unlock(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for attempt in queryset:
            _record_unlock(request, attempt)
        super().delete_queryset(request, queryset)


def _record_unlock(request: HttpRequest, attempt: AccessAttempt) -> None:
    user = get_user_model().objects.filter(username=attempt.username).first() if attempt.username else None
    login_event_record(
        kind=LoginEventKind.UNLOCKED,
        request=request,
        user=user,
        username=attempt.username or "",
        detail=f"unlocked by {request.user.get_username()} (address {attempt.ip_address or '-'})",
    )


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ScopedUserAdmin(UserAdmin):
    """Django's user admin, listing only the accounts the acting user may see: a data manager those
    of her trials' users, never every account of the system. An administrator resets a lost
    second factor here (audited)."""

    actions = ["reset_second_factor"]

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("reset_second_factor", None)
        return actions

    @admin.action(description=_("Reset the second factor (lost phone): enrol again at next login"))
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.is_superuser:
            raise PermissionDenied
        for user in queryset:
            second_factor_reset(user=user, by=request.user, request=request)
        self.message_user(request, _("Second factor reset for %(n)s account(s).") % {"n": queryset.count()})

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.path.endswith("/autocomplete/"):
            # Granting a study role (StudyRoleAdmin's user field) picks among active accounts,
            # including people who hold no role yet; the search answers names, never a profile.
            return queryset.filter(is_active=True)
        return queryset.filter(pk__in=accounts_visible_to(request.user).values("pk"))

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        super().save_model(request, obj, form, change)
        if not change:
            # The administrator typed this password: the person chooses her own at first login.
            password_change_require(user=obj)

    def user_change_password(self, request, id, form_url=""):  # noqa: ANN001, ANN201, A002
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, id)
            if user is not None and user.pk != request.user.pk:
                password_change_require(user=user)
        return response
