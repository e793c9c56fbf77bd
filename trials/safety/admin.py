"""Adverse events and reporting clocks in the admin: read-only, scoped to the user's sites (they
are entered and followed up in the study pages). Coding terms are listed for reference."""

from django.contrib import admin

from trials.safety.models import AdverseEvent, CodingTerm, ReportingClock
from trials.visits.admin import ScopedReadOnlyAdmin


@admin.register(AdverseEvent)
class AdverseEventAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "number", "verbatim_term", "onset_date", "grade", "serious", "related_product", "outcome"]
    list_filter = ["participant__trial", "participant__site", "serious", "grade", "outcome"]
    search_fields = ["participant__screening_number", "participant__subject_number", "verbatim_term"]
    list_select_related = ["participant"]


@admin.register(ReportingClock)
class ReportingClockAdmin(ScopedReadOnlyAdmin):
    participant_path = "adverse_event__participant"
    list_display = ["adverse_event", "kind", "started_at", "due_at", "reported_at", "cancelled"]
    list_filter = ["kind", "cancelled"]
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
