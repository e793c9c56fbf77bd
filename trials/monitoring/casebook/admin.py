"""Participants, visits and CRF entries in the admin: the monitor's workplace.

Read-only (trial data is entered in the study pages; monitors raise queries, they never edit
answers), scoped to the user's sites (a record of another site answers 404, also on its history
pages), with list filters by trial, site, visit, CRF, status and open queries. A participant's
page shows her visits, entries, AEs, queries, signatures, deviations and latest audited changes
inline; an entry's page shows its answers with a "Raise query" link on each item (and each row of
a repeating group), the open queries on each item, and its audit trail item by item. The full
audit trail pages and their CSV are trials.monitoring.audit.views, routed from here.
"""

from functools import partial

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import render
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from edc.admin_mixins import ReadOnlyAdminMixin
from trials.monitoring.audit import dashboard
from trials.monitoring.audit import views as views_audit
from trials.monitoring.audit.trail import entry_answer_trail
from trials.monitoring.models import OPEN_QUERY_STATES, ProtocolDeviation, Query
from trials.records.models import SdvState, Signature
from trials.participants.models import Consent, EligibilityAnswer, Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.admin import RelatedOnly, ScopedHistoryMixin
from trials.protocol.models import Role
from trials.protocol.selectors import study_roles_for_user
from trials.safety.models import AdverseEvent
from trials.protocol.engine import ROW_ID, Item, schema_for
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_migrate


class ScopedReadOnlyAdmin(ReadOnlyAdminMixin, ScopedHistoryMixin, SimpleHistoryAdmin):
    """Trial data is entered in the study pages; here it is reviewed, never edited or deleted."""

    participant_path = "participant"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.participant_path}__in": participants_for_user(request.user)})

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser or study_roles_for_user(request.user).filter(
            role__in=[Role.MONITOR, Role.DATA_MANAGER]
        ).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


class ReadOnlyInline(admin.TabularInline):
    """A related list on a read-only page (the page itself is scoped and gated by role)."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return list(self.fields)

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_view_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return True


class ConsentInline(ReadOnlyInline):
    model = Consent
    fields = ["document", "consented_at", "obtained_by", "recorded_at"]
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("document", "obtained_by")


class EligibilityInline(ReadOnlyInline):
    model = EligibilityAnswer
    fields = ["criterion", "lesion", "answer", "automatic", "note"]
    show_change_link = False
    classes = ["collapse"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("criterion")


class VisitInline(ReadOnlyInline):
    model = Visit
    fields = ["label", "planned_date", "window_start", "window_end", "visit_date", "status", "out_of_window"]


class CrfEntryInline(ReadOnlyInline):
    model = CrfEntry
    fields = ["visit_label", "crf_code", "status", "revision", "updated_at", "open_queries", "sdv_state"]
    verbose_name_plural = _("CRF entries")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        open_queries = Count("queries", filter=Q(queries__state__in=OPEN_QUERY_STATES))
        return (
            super().get_queryset(request).select_related("visit", "sdv").defer("answers", "missing", "warnings")
            .annotate(n_open_queries=open_queries).order_by("visit__order", "visit__sequence", "crf_code")
        )

    @admin.display(description=_("visit"))
    def visit_label(self, obj: CrfEntry) -> str:
        return obj.visit.label

    @admin.display(description=_("open queries"))
    def open_queries(self, obj: CrfEntry) -> int:
        return obj.n_open_queries

    @admin.display(description=_("SDV"))
    def sdv_state(self, obj: CrfEntry) -> str:
        mark = getattr(obj, "sdv", None)
        if mark is None:
            return "—"
        if mark.state == SdvState.VERIFIED and mark.entry_revision != obj.revision:
            return _("changed since verified")
        return mark.get_state_display()


class AdverseEventInline(ReadOnlyInline):
    model = AdverseEvent
    fields = ["number", "verbatim_term", "onset_date", "end_date", "grade", "serious", "outcome", "is_dlt"]


class QueryInline(ReadOnlyInline):
    model = Query
    fields = ["target", "state", "text", "raised_by", "raised_at", "closed_at"]
    verbose_name_plural = _("queries")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("entry__visit", "adverse_event", "raised_by")

    @admin.display(description=_("on"))
    def target(self, obj: Query) -> str:
        if obj.adverse_event_id:
            where = f"AE{obj.adverse_event.number}"
        else:
            where = f"{obj.entry.visit.label} – {obj.entry.crf_code}"
        return f"{where} · {obj.item}" if obj.item else where


class SignatureInline(ReadOnlyInline):
    model = Signature
    fields = ["visit", "printed_name", "meaning", "signed_at", "state", "broken_at", "broken_reason"]
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("visit__participant")


class DeviationInline(ReadOnlyInline):
    model = ProtocolDeviation
    fields = ["category", "severity", "state", "occurred_on", "identified_on", "description", "corrective_action"]
    show_change_link = False


# --- List filters ---------------------------------------------------------------------------

class OpenQueryFilter(admin.SimpleListFilter):
    """Records with an open (or answered, not yet closed) query."""

    title = _("open query")
    parameter_name = "open_query"
    query_path = "entry"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", _("Has an open query")), ("no", _("No open query"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in ("yes", "no"):
            return queryset
        has = Exists(Query.objects.filter(**{self.query_path: OuterRef("pk")}, state__in=OPEN_QUERY_STATES))
        return queryset.filter(has if self.value() == "yes" else ~has)


class ParticipantOpenQueryFilter(OpenQueryFilter):
    query_path = "participant"


class CasebookFilter(admin.SimpleListFilter):
    """The investigator's casebook signature (trials.monitoring.audit.dashboard defines "unsigned")."""

    title = _("casebook signature")
    parameter_name = "casebook"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("unsigned", _("Complete, awaiting signature")),
            ("signed", _("Signed")),
            ("broken", _("Signature broken by a change")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        select = {"unsigned": dashboard.casebooks_unsigned, "signed": dashboard.casebooks_signed, "broken": dashboard.casebooks_broken}
        return select[self.value()](queryset) if self.value() in select else queryset


class SdvFilter(admin.SimpleListFilter):
    """Source data verification: the backlog is the SDV plan's (trials.monitoring.sdv.services.sdv_backlog)."""

    title = _("source data verification")
    parameter_name = "sdv"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("backlog", _("To verify (SDV plan)")), ("verified", _("Verified")), ("reset", _("Reset by a change"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        from trials.monitoring.sdv.services import sdv_backlog

        if self.value() == "backlog":
            return queryset.filter(pk__in=sdv_backlog(request.user).values("pk"))
        if self.value() == "verified":
            return queryset.filter(sdv__state=SdvState.VERIFIED, sdv__entry_revision=F("revision"))
        if self.value() == "reset":
            return queryset.filter(Q(sdv__state=SdvState.RESET) | (Q(sdv__state=SdvState.VERIFIED) & ~Q(sdv__entry_revision=F("revision"))))
        return queryset


# --- Participants ---------------------------------------------------------------------------

def _audit_urls(model_admin: admin.ModelAdmin, page, csv) -> list:  # noqa: ANN001
    """The audit trail page and CSV of one record, under its admin URL."""
    name = f"{model_admin.model._meta.app_label}_{model_admin.model._meta.model_name}"
    wrap = model_admin.admin_site.admin_view
    return [
        path("<path:object_id>/audit/", wrap(partial(page, model_admin=model_admin)), name=f"{name}_audit"),
        path("<path:object_id>/audit.csv", wrap(partial(csv, model_admin=model_admin)), name=f"{name}_audit_csv"),
    ]


@admin.register(Participant)
class ParticipantAdmin(ScopedReadOnlyAdmin):
    participant_path = "pk"
    inlines = [ConsentInline, EligibilityInline, VisitInline, CrfEntryInline, AdverseEventInline, QueryInline, SignatureInline, DeviationInline]
    readonly_fields = [
        "trial", "site", "screening_number", "subject_number", "status", "status_reason", "status_date", "screening_date",
        "consent_date", "consent_document", "enrolment_date", "first_treatment_date", "unblinded_at",
    ]
    exclude = ["created_at"]
    list_display = ["screening_number", "subject_number", "trial", "site", "status", "consent_date", "open_queries"]
    list_filter = [("trial", RelatedOnly), ("site", RelatedOnly), "status", ParticipantOpenQueryFilter, CasebookFilter]
    search_fields = ["screening_number", "subject_number"]
    list_select_related = ["trial", "site"]

    def get_urls(self) -> list:
        return _audit_urls(self, views_audit.participant_audit, views_audit.participant_audit_csv) + super().get_urls()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            n_open_queries=Count("queries", filter=Q(queries__state__in=OPEN_QUERY_STATES), distinct=True)
        )

    @admin.display(description=_("open queries"), ordering="n_open_queries")
    def open_queries(self, obj: Participant) -> int:
        return obj.n_open_queries

    def change_view(self, request, object_id, form_url="", extra_context=None):  # noqa: ANN001, ANN201
        """The page ends with the latest audited changes (as this user may see them: blinding)."""
        from trials.monitoring.audit.trail import hides_allocation, participant_trail

        self._check_in_scope(request, object_id)
        participant = self.get_queryset(request).get(pk=object_id)
        trail = participant_trail(request.user, participant)
        extra_context = {
            **(extra_context or {}),
            "audit_latest": list(reversed(trail[-15:])),
            "audit_count": len(trail),
            "audit_hides_allocation": hides_allocation(request.user, participant.trial),
        }
        return super().change_view(request, object_id, form_url=form_url, extra_context=extra_context)


@admin.register(Visit)
class VisitAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "label", "planned_date", "window_start", "window_end", "visit_date", "status"]
    list_filter = [
        ("participant__trial", RelatedOnly), ("participant__site", RelatedOnly), ("definition", RelatedOnly), "status", "out_of_window",
    ]
    search_fields = ["participant__screening_number", "participant__subject_number", "label"]
    list_select_related = ["participant"]


# --- CRF entries ----------------------------------------------------------------------------

def raise_query_url(entry: CrfEntry, item: str = "", row: str = "") -> str:
    """The admin page where a reviewer raises a query on an item (a row, the whole entry), or ""
    if that page does not exist."""
    try:
        base = reverse("admin:monitoring_query_raise")
    except NoReverseMatch:
        return ""
    return base + "?" + urlencode({"entry": entry.pk, "item": item, "row": row})


def _query_url(query: Query) -> str:
    try:
        return reverse("admin:monitoring_query_change", args=[query.pk])
    except NoReverseMatch:
        return ""


class MigrateForm(forms.Form):
    reason = forms.CharField(label=_("Reason for change"), max_length=500)


@admin.register(CrfEntry)
class CrfEntryAdmin(ScopedReadOnlyAdmin):
    list_display = ["participant", "visit", "crf", "status", "revision", "updated_at"]
    list_filter = [
        ("participant__trial", RelatedOnly), ("participant__site", RelatedOnly), ("visit__definition", RelatedOnly),
        "crf_code", "status", OpenQueryFilter, SdvFilter,
    ]
    search_fields = ["participant__screening_number", "participant__subject_number", "crf_code"]
    list_select_related = ["participant", "visit__participant", "crf"]
    fields = ["participant", "visit", "crf", "status", "revision", "answers_table", "audit_trail", "warnings", "score_library_version"]
    readonly_fields = fields
    actions = ["migrate_to_newest_version"]

    def get_urls(self) -> list:
        return _audit_urls(self, views_audit.entry_audit, views_audit.entry_audit_csv) + super().get_urls()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("crf__definition")

    @admin.display(description=_("answers"))
    def answers_table(self, obj: CrfEntry) -> SafeString:
        """Each item with its answer, its open queries and a "Raise query" link; a repeating
        group row by row, with a link for the row and for each of its items."""
        schema = schema_for(obj.crf, get_language())  # labels in the reader's language (codes shown beside)
        queries: dict[tuple[str, str], list[Query]] = {}
        for query in Query.objects.filter(entry=obj, state__in=OPEN_QUERY_STATES).order_by("raised_at"):
            queries.setdefault((query.item, query.row_id), []).append(query)
        rows: list[SafeString] = []
        whole = queries.get(("", ""), [])
        rows.append(format_html(
            '<tr class="edc-entry-whole"><td colspan="3"><em>{}</em></td><td>{}</td><td class="nowrap">{}</td></tr>',
            _("The whole entry"), self._queries_html(whole), self._raise_link(obj, "", ""),
        ))
        for item in schema.items:
            if item.type == "descriptive":
                continue
            if item.type == "repeating_group":
                rows.extend(self._group_rows(obj, item, queries))
                continue
            rows.append(format_html(
                '<tr data-item="{}"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class="nowrap">{}</td></tr>',
                item.name, item.name, item.label, self._value(obj, item, obj.answers.get(item.name), obj.missing.get(item.name)),
                self._queries_html(queries.get((item.name, ""), [])), self._raise_link(obj, item.name, ""),
            ))
        return format_html(
            '<table class="edc-answers"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{}</tbody></table>',
            _("item"), _("question"), _("answer"), _("open queries"), format_html_join("", "{}", ((r,) for r in rows)),
        )

    def _group_rows(self, obj: CrfEntry, group: Item, queries: dict) -> list[SafeString]:
        rows = [format_html(
            '<tr data-item="{}"><td><code>{}</code></td><td colspan="2"><strong>{}</strong></td><td>{}</td><td>{}</td></tr>',
            group.name, group.name, group.label, self._queries_html(queries.get((group.name, ""), [])), "",
        )]
        group_missing = obj.missing.get(group.name) if isinstance(obj.missing.get(group.name), dict) else {}
        for position, row in enumerate(obj.answers.get(group.name) or [], start=1):
            row_id = str(row.get(ROW_ID, ""))
            rows.append(format_html(
                '<tr class="edc-group-row" data-item="{}" data-row="{}"><td></td><td colspan="2">{} #{}</td><td>{}</td><td class="nowrap">{}</td></tr>',
                group.name, row_id, group.label, position,
                self._queries_html(queries.get((group.name, row_id), [])), self._raise_link(obj, group.name, row_id, _("Raise query on the row")),
            ))
            row_missing = (group_missing or {}).get(row_id) or {}
            for child in group.children:
                if child.type == "descriptive":
                    continue
                rows.append(format_html(
                    '<tr class="edc-group-item" data-item="{}" data-row="{}"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class="nowrap">{}</td></tr>',
                    child.name, row_id, child.name, f"#{position} › {child.label}",
                    self._value(obj, child, row.get(child.name), row_missing.get(child.name)),
                    self._queries_html(queries.get((child.name, row_id), [])), self._raise_link(obj, child.name, row_id),
                ))
        return rows

    @staticmethod
    def _value(obj: CrfEntry, item: Item, value: object, missing: object) -> str:
        if isinstance(missing, dict) and "code" in missing:
            return f"[{missing['code']}: {missing.get('reason', '')}]"
        if value is None or value == "":
            return "—"
        if item.choices:
            labels = {str(code): label for code, label in item.choices}
            values = value if isinstance(value, list) else [value]
            return "; ".join(f"{labels.get(str(v), v)} [{v}]" for v in values)
        if isinstance(value, bool):
            return str(_("yes") if value else _("no"))
        return str(value)

    @staticmethod
    def _raise_link(obj: CrfEntry, item: str, row: str, text=None) -> SafeString:  # noqa: ANN001
        url = raise_query_url(obj, item, row)
        if not url:
            return SafeString("")
        return format_html('<a class="edc-raise-query" href="{}">{}</a>', url, text or _("Raise query"))

    @staticmethod
    def _queries_html(queries: list[Query]) -> SafeString:
        parts = []
        for query in queries:
            text = format_html("{}: {}", query.get_state_display(), query.text if len(query.text) <= 120 else query.text[:117] + "…")
            url = _query_url(query)
            parts.append(format_html(
                '<div class="edc-open-query" data-query="{}">{}</div>', query.pk, format_html('<a href="{}">{}</a>', url, text) if url else text,
            ))
        return format_html_join("", "{}", ((p,) for p in parts))

    @admin.display(description=_("audit trail (item by item)"))
    def audit_trail(self, obj: CrfEntry) -> SafeString:
        rows = []
        for record in entry_answer_trail(obj):
            for change in record.changes or ():
                rows.append((record.at_text, record.local_text, record.user_name, record.reason, change.label, change.old or "—", change.new or "—"))
            if not record.changes:
                rows.append((record.at_text, record.local_text, record.user_name, record.reason, "—", "", ""))
        return format_html(
            '<table class="edc-audit"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>',
            _("when (UTC)"), _("local time"), _("who"), _("why"), _("item"), _("old"), _("new"),
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
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
