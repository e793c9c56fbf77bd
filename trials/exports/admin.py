"""Export jobs in the admin: read-only, for the trial's data managers (who exported what, when,
blinded or not, and each download). Files are downloaded only by their requester, from the
export page, never from here."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from edc.admin_mixins import ReadOnlyAdminMixin
from trials.exports.models import ExportDownload, ExportJob
from trials.protocol.admin import ScopedHistoryMixin
from trials.protocol.models import Role
from trials.protocol.selectors import study_roles_for_user


def _managed_trials(request: HttpRequest) -> QuerySet:
    return study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER, site__isnull=True).values("trial_id")


class _ReadOnly(ReadOnlyAdminMixin, ScopedHistoryMixin, SimpleHistoryAdmin):
    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser or _managed_trials(request).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


class ExportDownloadInline(admin.TabularInline):
    model = ExportDownload
    extra = 0
    can_delete = False
    fields = ["downloaded_by", "downloaded_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(ExportJob)
class ExportJobAdmin(_ReadOnly):
    list_display = ["pk", "trial", "pooled_crf", "format", "requested_by", "blinded", "identifiers", "state", "created_at", "rows_done"]
    list_filter = ["state", "format", "blinded", "trial"]
    list_select_related = ["trial", "requested_by"]
    readonly_fields = [
        "requested_by", "trial", "pooled_crf", "format", "spec", "blinded", "identifiers", "reason", "state", "rows_done",
        "rows_total", "file_name", "size", "sha256", "error", "created_at", "started_at", "finished_at", "expires_at",
    ]
    fields = readonly_fields
    inlines = [ExportDownloadInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(trial_id__in=_managed_trials(request))
