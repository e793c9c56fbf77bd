"""Adverse events and reporting clocks in the admin: read-only, scoped to the user's sites (they
are entered and followed up in the study pages). Coding terms are listed for reference."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from trials.monitoring.audit.dashboard import saes_awaiting
from trials.safety.models import AdverseEvent, CodingTerm, ReportingClock
from trials.monitoring.casebook.admin import OpenQueryFilter, RelatedOnly, ScopedReadOnlyAdmin


class AeOpenQueryFilter(OpenQueryFilter):
    query_path = "adverse_event"


class ReportFilter(admin.SimpleListFilter):
    """Where a reporting clock stands (the monitor's dashboard counts "awaiting")."""

    title = _("report")
    parameter_name = "report"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("awaiting", _("Awaiting report")), ("reported", _("Reported")), ("cancelled", _("Cancelled"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "awaiting":
            return saes_awaiting(queryset)
        if self.value() == "reported":
            return queryset.filter(reported_at__isnull=False)
        if self.value() == "cancelled":
            return queryset.filter(cancelled=True)
        return queryset


@admin.register(AdverseEvent)
class AdverseEventAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "number", "verbatim_term", "onset_date", "grade", "serious", "related_product", "outcome"]
    list_filter = [("participant__trial", RelatedOnly), ("participant__site", RelatedOnly), "serious", "grade", "outcome", AeOpenQueryFilter]
    search_fields = ["participant__screening_number", "participant__subject_number", "verbatim_term"]
    list_select_related = ["participant"]


@admin.register(ReportingClock)
class ReportingClockAdmin(ScopedReadOnlyAdmin):
    participant_path = "adverse_event__participant"
    list_display = ["adverse_event", "kind", "started_at", "due_at", "reported_at", "cancelled"]
    list_filter = [
        ("adverse_event__participant__trial", RelatedOnly), ("adverse_event__participant__site", RelatedOnly), "kind", ReportFilter,
    ]
    list_select_related = ["adverse_event__participant"]


@admin.register(CodingTerm)
class CodingTermAdmin(admin.ModelAdmin):
    list_display = ["llt_code", "llt", "pt", "soc", "dictionary", "version"]
    search_fields = ["llt", "pt", "llt_code"]
    list_filter = ["dictionary", "version", "soc"]

    def has_add_permission(self, request):  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None):  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None):  # noqa: ANN001
        return False
