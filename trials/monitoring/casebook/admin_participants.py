"""Consents, eligibility answers, allocations, cohort decisions and unblindings in the admin:
read-only (they are written by the study pages' services), scoped to the user's sites.

Allocations of a blinded trial are listed only to roles that may see arms; the allocation list
and its slots are not in the admin at all (an arm must never reach a blinded user, and a
historical record page would show it)."""

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from edc import timefmt

from trials.participants.models import Allocation, CohortDecision, Consent, EligibilityAnswer, Unblinding
from trials.protocol.models import UNBLINDED_ROLES, Role
from trials.protocol.selectors import study_roles_for_user, trials_for_user
from trials.monitoring.casebook.admin import RelatedOnly, ScopedReadOnlyAdmin


@admin.register(Consent)
class ConsentAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "document", "consented_at_site", "obtained_by", "recorded_at"]
    list_filter = [("participant__trial", RelatedOnly), ("participant__site", RelatedOnly)]
    search_fields = ["participant__screening_number", "participant__subject_number"]
    list_select_related = ["participant__site", "document", "obtained_by"]

    @admin.display(description=_("consented at"), ordering="consented_at")
    def consented_at_site(self, consent: Consent) -> str:
        """The time the site typed, in the site's zone (a monitor abroad reads what the site wrote)."""
        return timefmt.site_html(consent.consented_at, consent.participant.site)


@admin.register(EligibilityAnswer)
class EligibilityAnswerAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "criterion", "lesion", "answer", "automatic", "note"]
    list_filter = [("participant__trial", RelatedOnly), ("participant__site", RelatedOnly), "answer", "automatic"]
    search_fields = ["participant__screening_number", "participant__subject_number", "criterion__code"]
    list_select_related = ["participant", "criterion"]


@admin.register(Unblinding)
class UnblindingAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "requested_by", "unblinded_at", "reason"]
    list_filter = [("participant__trial", RelatedOnly), ("participant__site", RelatedOnly)]
    list_select_related = ["participant", "requested_by"]


@admin.register(Allocation)
class AllocationAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "arm", "method", "kit_code", "stratum", "allocated_at", "allocated_by"]
    list_filter = [("participant__trial", RelatedOnly), ("participant__site", RelatedOnly), "method"]
    list_select_related = ["participant", "arm", "allocated_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        unblinded = study_roles_for_user(request.user).filter(role__in=list(UNBLINDED_ROLES)).values("trial")
        not_blinded = [t.pk for t in trials_for_user(request.user) if not t.is_blinded]
        return queryset.filter(Q(participant__trial__in=not_blinded) | Q(participant__trial__in=unblinded))


@admin.register(CohortDecision)
class CohortDecisionAdmin(ScopedReadOnlyAdmin):
    list_display = ["cohort", "decision", "participants_reviewed", "dlt_count", "decided_by", "decided_at"]
    list_filter = [("cohort__trial", RelatedOnly), "decision"]
    list_select_related = ["cohort", "decided_by"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super(ScopedReadOnlyAdmin, self).get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(cohort__trial__in=trials_for_user(request.user))

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser or study_roles_for_user(request.user).filter(
            role__in=[Role.MONITOR, Role.DATA_MANAGER]
        ).exists()
