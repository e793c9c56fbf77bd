"""Participants, visits and CRF entries in the admin: read-only, scoped to the user's sites,
with the audit trail item by item (who, when, old -> new, why)."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import render
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from trials.participants.models import Consent, EligibilityAnswer, Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.admin import ScopedHistoryMixin
from trials.protocol.models import Role
from trials.protocol.selectors import study_roles_for_user
from trials.visits.engine import schema_for
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_migrate


class ScopedReadOnlyAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    """Trial data is entered in the study pages; here it is reviewed, never edited or deleted."""

    participant_path = "participant"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.participant_path}__in": participants_for_user(request.user)})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser or study_roles_for_user(request.user).filter(
            role__in=[Role.MONITOR, Role.DATA_MANAGER]
        ).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


class ConsentInline(admin.TabularInline):
    model = Consent
    fields = ["document", "consented_at", "obtained_by", "recorded_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_view_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return True  # the participant page itself is scoped and gated by role


class EligibilityInline(ConsentInline):
    model = EligibilityAnswer
    fields = ["criterion", "lesion", "answer", "automatic", "note"]
    readonly_fields = fields


@admin.register(Participant)
class ParticipantAdmin(ScopedReadOnlyAdmin):
    participant_path = "pk"
    inlines = [ConsentInline, EligibilityInline]
    readonly_fields = [
        "trial", "site", "screening_number", "subject_number", "status", "status_reason", "status_date", "screening_date",
        "consent_date", "consent_document", "enrolment_date", "first_treatment_date", "unblinded_at",
    ]
    exclude = ["created_at"]
    list_display = ["screening_number", "subject_number", "trial", "site", "status", "consent_date"]
    list_filter = ["trial", "site", "status"]
    search_fields = ["screening_number", "subject_number"]
    list_select_related = ["trial", "site"]


@admin.register(Visit)
class VisitAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "label", "planned_date", "visit_date", "status"]
    list_filter = ["participant__trial", "participant__site", "status"]
    search_fields = ["participant__screening_number", "participant__subject_number", "label"]
    list_select_related = ["participant"]


def item_changes(old: dict, new: dict, labels: dict) -> list[tuple[str, object, object]]:
    """(item label, old, new) for each answer that differs between two versions of an entry."""
    changes = []
    for name in sorted(set(old) | set(new), key=lambda n: list(labels).index(n) if n in labels else 10_000):
        if old.get(name) != new.get(name):
            changes.append((labels.get(name, name), old.get(name), new.get(name)))
    return changes


class MigrateForm(forms.Form):
    reason = forms.CharField(label=_("Reason for change"), max_length=500)


@admin.register(CrfEntry)
class CrfEntryAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "visit", "crf", "status", "revision", "updated_at"]
    list_filter = ["participant__trial", "participant__site", "crf_code", "status"]
    search_fields = ["participant__screening_number", "participant__subject_number", "crf_code"]
    list_select_related = ["participant", "visit", "crf"]
    fields = ["participant", "visit", "crf", "status", "revision", "answers_table", "audit_trail", "warnings", "score_library_version"]
    readonly_fields = fields
    actions = ["migrate_to_newest_version"]

    @admin.display(description=_("answers"))
    def answers_table(self, obj: CrfEntry) -> str:
        schema = schema_for(obj.crf)
        rows = []
        for item in schema.items:
            if item.type == "descriptive":
                continue
            value = obj.answers.get(item.name)
            if item.name in obj.missing:
                value = f"[{obj.missing[item.name]['code']}: {obj.missing[item.name]['reason']}]"
            rows.append((item.name, item.label, "—" if value is None else value))
        return format_html(
            '<table class="edc-answers"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=_("audit trail (item by item)"))
    def audit_trail(self, obj: CrfEntry) -> str:
        labels = {i.name: i.label for i in schema_for(obj.crf).items}
        records = list(obj.history.select_related("history_user").order_by("history_date"))
        rows = []
        previous: dict = {}
        for record in records:
            for label, old, new in item_changes(previous, record.answers or {}, labels) or [("—", "", "")]:
                rows.append((record.history_date.strftime("%Y-%m-%d %H:%M:%S UTC"), record.history_user or "", record.history_change_reason or "", label, "—" if old is None else old, "—" if new is None else new))
            previous = record.answers or {}
        return format_html(
            '<table class="edc-audit"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>',
            _("when"), _("who"), _("why"), _("item"), _("old"), _("new"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def has_migrate_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER).exists()

    @admin.action(description=_("Migrate to the newest CRF version (data managers)"), permissions=["migrate"])
    def migrate_to_newest_version(self, request: HttpRequest, queryset: QuerySet):  # noqa: ANN201
        form = MigrateForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            for entry in queryset:
                try:
                    _entry, dropped = crf_entry_migrate(entry=entry, user=request.user, reason=form.cleaned_data["reason"])
                except Exception as exc:  # noqa: BLE001 - reported per entry, the others go on
                    self.message_user(request, f"{entry}: {exc}", messages.WARNING)
                    continue
                suffix = _(" (not carried over: %(items)s)") % {"items": ", ".join(dropped)} if dropped else ""
                self.message_user(request, _("%(entry)s migrated%(suffix)s.") % {"entry": entry, "suffix": suffix})
            return None
        return render(
            request, "admin/visits/migrate_confirm.html",
            {**self.admin_site.each_context(request), "entries": queryset, "form": form, "action": "migrate_to_newest_version", "opts": self.model._meta},
        )
