"""Queries and source data verification in the admin: the monitor's workplace.

Every queryset starts from the selectors (a monitor of Toulouse never sees Lille); every change
goes through trials.monitoring.queries.services / trials.monitoring.sdv.services (audited, permission-checked there
too). Nothing here is edited as a model form: a query changes state through its actions, with the
text each action needs.

URLs other pages link to (keep their names and parameters):
- `admin:monitoring_query_raise` ?entry=<id>&item=<code>&row=<row_id> (or ?ae=<id>): raise a query;
- `admin:monitoring_query_ageing` ?trial=<id>: open queries by site and age;
- `admin:monitoring_sdv_worklist`: the SDV backlog with "Mark verified";
- `admin:monitoring_sdv_verify` <entry id>: verify one entry item by item (critical items).
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from simple_history.admin import SimpleHistoryAdmin

from edc import timefmt
from edc.admin_mixins import ReadOnlyAdminMixin
from edc.ids import id_or_none, ids_or_400
from edc.forms import add_service_errors
from trials.monitoring.queries import services
from trials.monitoring.sdv import services as sdv
from trials.monitoring.queries.forms import QueryActionForm, QueryBulkForm, QueryRaiseForm
from trials.monitoring.models import OPEN_QUERY_STATES, Query, QueryMessage, QueryOrigin, QueryState, SdvPlan, SdvScope
from trials.records.models import SdvMark
from trials.monitoring.queries.selectors import (
    item_queries,
    queries_for_user,
    query_ageing,
    query_target_label,
    reviewer_trials,
    user_reviews_at,
)
from trials.participants.selectors import participants_for_user
from trials.protocol.admin import ScopedHistoryMixin
from trials.protocol.models import Role, Trial
from trials.protocol.selectors import sites_for_user, study_roles_for_user
from trials.safety.models import AdverseEvent
from trials.protocol.engine import ROW_ID, schema_for
from trials.visits.models import CrfEntry, EntryStatus


def _is_reviewer(request: HttpRequest) -> bool:
    return request.user.is_superuser or study_roles_for_user(request.user).filter(role__in=[Role.MONITOR, Role.DATA_MANAGER]).exists()


def _safe_next(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return fallback


def _display(value) -> str:  # noqa: ANN001
    """A stored answer as a reviewer reads it."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _answer_text(item, value) -> str:  # noqa: ANN001
    """An answer with its choice labels ("2 – Index"), as the site chose it."""
    labels = {str(code): label for code, label in item.choices}
    if labels and value not in (None, "", []):
        values = value if isinstance(value, list) else [value]
        return ", ".join(f"{v} – {labels[str(v)]}" if str(v) in labels else str(v) for v in values)
    return _display(value)


def _value_text(snapshot: dict | None) -> str:
    """`value_at_raise` / the current value, in words."""
    if not snapshot:
        return "—"
    if "value" in snapshot:
        missing = snapshot.get("missing")
        if missing:
            return f"[{missing.get('code')}: {missing.get('reason')}]"
        return _display(snapshot["value"])
    if snapshot.get("row_removed"):
        return gettext("(row removed)")
    if "row" in snapshot:
        return ", ".join(f"{k}={_display(v)}" for k, v in snapshot["row"].items() if k != ROW_ID)
    return gettext("(the whole entry)") if "entry" in snapshot else gettext("(recorded)")


class ReviewerScopedAdmin(ReadOnlyAdminMixin, ScopedHistoryMixin, SimpleHistoryAdmin):
    """Monitors and data managers read here, within their sites; writes go through services."""

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return _is_reviewer(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_reviewer(request)


# --- Queries --------------------------------------------------------------------------------


class QueryAgeFilter(admin.SimpleListFilter):
    title = _("age")
    parameter_name = "age"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201
        return [("0-7", _("0–7 days")), ("8-30", _("8–30 days")), ("31-", _("over 30 days"))]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        now = timezone.now()
        if self.value() == "0-7":
            return queryset.filter(raised_at__gt=now - timedelta(days=8))
        if self.value() == "8-30":
            return queryset.filter(raised_at__lte=now - timedelta(days=8), raised_at__gt=now - timedelta(days=31))
        if self.value() == "31-":
            return queryset.filter(raised_at__lte=now - timedelta(days=31))
        return queryset


class QueryStateFilter(admin.SimpleListFilter):
    """States, plus "unresolved" (open or answered): what the monitor still has to see through."""

    title = _("state")
    parameter_name = "status"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201
        return [("unresolved", _("Unresolved (open or answered)")), *QueryState.choices]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        if self.value() == "unresolved":
            return queryset.filter(state__in=OPEN_QUERY_STATES)
        if self.value() in QueryState.values:
            return queryset.filter(state=self.value())
        return queryset


class QueryMessageInline(admin.TabularInline):
    model = QueryMessage
    fields = ["at", "kind", "author", "text"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("thread")

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_view_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return True  # the query page itself is scoped and gated by role

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("author")


@admin.register(Query)
class QueryAdmin(ReviewerScopedAdmin):
    change_form_template = "monitoring/query_admin_change_form.html"
    change_list_template = "monitoring/query_admin_change_list.html"
    list_display = ["id", "participant", "site_code", "target", "state", "origin_short", "age_days", "raised_at"]
    list_filter = [
        ("trial", admin.RelatedOnlyFieldListFilter), ("site", admin.RelatedOnlyFieldListFilter), QueryStateFilter, "origin", QueryAgeFilter,
    ]
    search_fields = ["participant__screening_number", "participant__subject_number", "text", "item", "entry__crf_code"]
    list_select_related = ["participant", "site", "raised_by", "entry__crf", "adverse_event"]
    fields = [
        "participant", "site", "target", "data_link", "state", "origin", "text", "value_then", "value_now",
        "raised", "closed",
    ]
    readonly_fields = fields
    inlines = [QueryMessageInline]
    actions = ["close_queries", "reopen_queries", "cancel_queries"]
    date_hierarchy = "raised_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(participant__in=participants_for_user(request.user))

    @admin.display(description=_("site"), ordering="site__code")
    def site_code(self, obj: Query) -> str:
        return obj.site.code

    @admin.display(description=_("origin"), ordering="origin")
    def origin_short(self, obj: Query) -> str:
        return gettext("edit check") if obj.origin == QueryOrigin.EDIT_CHECK else gettext("reviewer")

    @admin.display(description=_("about"))
    def target(self, obj: Query) -> str:
        return query_target_label(obj)

    @admin.display(description=_("age (days)"))
    def age_days(self, obj: Query) -> int:
        return ((obj.closed_at or timezone.now()) - obj.raised_at).days

    @admin.display(description=_("data"))
    def data_link(self, obj: Query) -> str:
        if obj.entry_id:
            return format_html(
                '<a href="{}">{}</a> · <a href="{}">{}</a>',
                reverse("admin:visits_crfentry_change", args=[obj.entry_id]), gettext("CRF entry"),
                reverse("admin:monitoring_sdv_verify", args=[obj.entry_id]), gettext("review and verify"),
            )
        return format_html('<a href="{}">{}</a>', reverse("admin:safety_adverseevent_change", args=[obj.adverse_event_id]), gettext("adverse event"))

    @admin.display(description=_("raised"))
    def raised(self, obj: Query) -> str:
        who = obj.raised_by.get_full_name() or obj.raised_by.username
        return f"{who} · {timefmt.utc_text(obj.raised_at)}"

    @admin.display(description=_("closed"))
    def closed(self, obj: Query) -> str:
        if obj.closed_at is None:
            return "—"
        who = obj.closed_by.get_full_name() or obj.closed_by.username
        return f"{obj.get_state_display()}: {who} · {timefmt.utc_text(obj.closed_at)}"

    @admin.display(description=_("value when raised"))
    def value_then(self, obj: Query) -> str:
        return _value_text(obj.value_at_raise)

    @admin.display(description=_("value now"))
    def value_now(self, obj: Query) -> str:
        now = services.query_current_value(obj)
        changed = now != obj.value_at_raise
        return format_html("{} <strong>{}</strong>", _value_text(now), gettext("(changed since raised)") if changed else gettext("(unchanged)"))

    def get_urls(self):  # noqa: ANN201
        view = self.admin_site.admin_view
        return [
            path("raise/", view(self.raise_view), name="monitoring_query_raise"),
            path("ageing/", view(self.ageing_view), name="monitoring_query_ageing"),
            path("<int:pk>/act/", view(self.act_view), name="monitoring_query_act"),
            *super().get_urls(),
        ]

    def _in_scope(self, request: HttpRequest, pk) -> Query:  # noqa: ANN001
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = self.get_queryset(request).filter(pk=pk).first()
        if query is None:
            raise Http404(gettext("No such query in your sites."))
        return query

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):  # noqa: ANN001, ANN201
        query = self.get_queryset(request).filter(pk=object_id).first() if str(object_id).isdigit() else None
        extra = dict(extra_context or {})
        if query is not None:
            extra.update({
                "action_form": QueryActionForm(), "query_obj": query,
                "can_review": user_reviews_at(request.user, query.participant),
                "is_open": query.state in OPEN_QUERY_STATES,
            })
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def act_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Close, re-open, cancel or comment from the query's page."""
        query = self._in_scope(request, pk)
        back = reverse("admin:monitoring_query_change", args=[query.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        form = QueryActionForm(request.POST)
        if not form.is_valid():
            messages.error(request, gettext("Choose an action."))
            return HttpResponseRedirect(back)
        action, text = form.cleaned_data["action"], form.cleaned_data["text"]
        try:
            if action == "close":
                services.query_close(query=query, user=request.user, justification=text)
                done = gettext("Query closed.")
            elif action == "reopen":
                services.query_reopen(query=query, user=request.user, text=text)
                done = gettext("Query re-opened: the site sees it again.")
            elif action == "cancel":
                services.query_cancel(query=query, user=request.user, text=text)
                done = gettext("Query cancelled.")
            else:
                services.query_comment(query=query, user=request.user, text=text)
                done = gettext("Comment added.")
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, done)
        return HttpResponseRedirect(back)

    def raise_view(self, request: HttpRequest) -> HttpResponse:
        """Raise a query on an item of an entry (?entry=&item=&row=), on a whole entry, or on an AE (?ae=)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        params = request.POST if request.method == "POST" else request.GET
        entry = adverse_event = None
        scope = participants_for_user(request.user)
        item, row_id = params.get("item", "").strip(), params.get("row", "").strip()
        if id_or_none(params.get("entry")):
            entry = CrfEntry.objects.select_related("crf", "visit", "participant__site", "participant__trial").filter(
                pk=params["entry"], participant__in=scope
            ).first()
            if entry is None:
                raise Http404(gettext("No such CRF entry in your sites."))
            fallback = reverse("admin:visits_crfentry_change", args=[entry.pk])
        elif id_or_none(params.get("ae")):
            adverse_event = AdverseEvent.objects.select_related("participant__site").filter(pk=params["ae"], participant__in=scope).first()
            if adverse_event is None:
                raise Http404(gettext("No such adverse event in your sites."))
            fallback = reverse("admin:safety_adverseevent_change", args=[adverse_event.pk])
        else:
            raise Http404(gettext("Say which CRF entry or adverse event the query is about."))
        participant = entry.participant if entry else adverse_event.participant
        if not user_reviews_at(request.user, participant):
            raise PermissionDenied(gettext("Only the monitors and data managers of this site raise queries."))
        form = QueryRaiseForm(request.POST if request.method == "POST" else None, initial={"next": request.GET.get("next", "")})
        if request.method == "POST" and form.is_valid():
            try:
                query = services.query_raise(
                    user=request.user, entry=entry, item=item, row_id=row_id, adverse_event=adverse_event, text=form.cleaned_data["text"],
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, gettext("Query raised on %(target)s: the site sees it now.") % {"target": query_target_label(query)})
                return HttpResponseRedirect(_safe_next(request, fallback))
        target = Query(participant=participant, entry=entry, item=item, row_id=row_id, adverse_event=adverse_event)
        try:
            label = query_target_label(target)
        except Exception:  # noqa: BLE001 - an unknown item: the form says so when raised
            label = item
        value = target_error = ""
        if entry is not None:
            try:
                services._check_target(entry, item, row_id, None)  # noqa: SLF001 - show a bad link before typing
                value = _value_text(services._entry_value(entry, item, row_id))  # noqa: SLF001
            except ValidationError as error:
                target_error = " ".join(error.messages)
        existing = [
            q for q in (item_queries(request.user, entry) if entry else queries_for_user(request.user).filter(adverse_event=adverse_event))
            if q.item == item and q.row_id == row_id
        ]
        return render(request, "monitoring/query_admin_raise.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": gettext("Raise a query"),
            "form": form, "entry": entry, "adverse_event": adverse_event, "participant": participant,
            "item": item, "row_id": row_id, "label": label, "value": value, "existing": existing,
            "target_error": "" if form.errors else target_error,
        })

    def ageing_view(self, request: HttpRequest) -> HttpResponse:
        """Unresolved queries per site by age: the query-ageing report."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        trials = list(reviewer_trials(request.user).order_by("code"))
        trial = next((t for t in trials if str(t.pk) == request.GET.get("trial")), trials[0] if trials else None)
        rows = query_ageing(request.user, trial) if trial else []
        totals = {key: sum(r[key] for r in rows) for key in ("total", "age_0_7", "age_8_30", "age_over_30", "waiting_site", "waiting_review", "closed")}
        return render(request, "monitoring/query_admin_ageing.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": gettext("Query ageing"),
            "trials": trials, "trial": trial, "rows": rows, "totals": totals,
        })

    def _bulk(self, request: HttpRequest, queryset: QuerySet, *, action: str, title: str, service, text_arg: str):  # noqa: ANN001, ANN202
        """An action that needs a text: ask for it, then apply the service to each selected query."""
        form = QueryBulkForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            done, refused = 0, []
            for query in queryset:
                try:
                    service(query=query, user=request.user, **{text_arg: form.cleaned_data["text"]})
                except (ValidationError, PermissionDenied) as error:
                    messages_ = error.messages if isinstance(error, ValidationError) else [str(error)]
                    refused.append(f"#{query.pk} ({query_target_label(query)}): {' '.join(messages_)}")
                else:
                    done += 1
            if done:
                self.message_user(request, ngettext("%(n)s query done.", "%(n)s queries done.", done) % {"n": done})
            for line in refused:
                self.message_user(request, line, messages.WARNING)
            return None
        return render(request, "monitoring/query_admin_bulk.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": title,
            "queries": queryset, "form": form, "action": action,
        })

    @admin.action(description=_("Close the selected queries (justify if the value did not change)"))
    def close_queries(self, request: HttpRequest, queryset: QuerySet):  # noqa: ANN201
        return self._bulk(request, queryset, action="close_queries", title=gettext("Close queries"), service=services.query_close, text_arg="justification")

    @admin.action(description=_("Re-open the selected queries"))
    def reopen_queries(self, request: HttpRequest, queryset: QuerySet):  # noqa: ANN201
        return self._bulk(request, queryset, action="reopen_queries", title=gettext("Re-open queries"), service=services.query_reopen, text_arg="text")

    @admin.action(description=_("Cancel the selected queries"))
    def cancel_queries(self, request: HttpRequest, queryset: QuerySet):  # noqa: ANN201
        return self._bulk(request, queryset, action="cancel_queries", title=gettext("Cancel queries"), service=services.query_cancel, text_arg="text")


# --- Source data verification ---------------------------------------------------------------


class SdvPlanForm(forms.ModelForm):
    change_reason = forms.CharField(
        label=_("Reason for change"), max_length=500, help_text=_("Recorded in the audit trail with your name and the time."),
        widget=forms.TextInput(attrs={"size": 80}),
    )

    class Meta:
        model = SdvPlan
        fields = ["trial", "scope", "critical_crfs", "critical_items", "first_n"]

    def clean(self):  # noqa: ANN201
        data = super().clean()
        trial = data.get("trial") or getattr(self.instance, "trial", None)
        if trial is not None and not self.errors:
            errors = sdv.sdv_plan_errors(
                trial, data.get("scope"), data.get("critical_crfs") or [], data.get("critical_items") or {}, data.get("first_n")
            )
            for field, message in errors.items():
                self.add_error(field, message)
        return data


@admin.register(SdvPlan)
class SdvPlanAdmin(ReviewerScopedAdmin):
    form = SdvPlanForm
    list_display = ["trial", "scope", "critical_crfs", "first_n"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(trial__in=reviewer_trials(request.user))

    def _manages(self, request: HttpRequest, trial: Trial | None = None) -> bool:
        roles = study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER)
        return (roles.filter(trial=trial) if trial else roles).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._manages(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return self._manages(request, obj.trial if obj else None)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return ["trial"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):  # noqa: ANN001, ANN201
        if db_field.name == "trial":
            managed = study_roles_for_user(request.user).filter(role=Role.DATA_MANAGER).values("trial_id")
            kwargs["queryset"] = Trial.objects.filter(pk__in=managed, sdv_plan__isnull=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        data = form.cleaned_data
        saved = sdv.sdv_plan_save(
            trial=obj.trial, user=request.user, scope=data["scope"], critical_crfs=data.get("critical_crfs") or [],
            critical_items=data.get("critical_items") or {}, first_n=data.get("first_n"), reason=data["change_reason"],
        )
        obj.pk = saved.pk


def _mark_verified(request: HttpRequest, entries) -> tuple[int, list[str]]:  # noqa: ANN001
    done, refused = 0, []
    for entry in entries:
        try:
            sdv.sdv_verify(entry=entry, user=request.user)
        except (ValidationError, PermissionDenied) as error:
            text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
            refused.append(format_html(
                '{}: {} <a href="{}">{}</a>', entry, text, reverse("admin:monitoring_sdv_verify", args=[entry.pk]), gettext("verify it item by item"),
            ))
        else:
            done += 1
    return done, refused


@admin.action(description=_("Mark verified (source data verification)"))
def sdv_mark_verified(modeladmin, request: HttpRequest, queryset: QuerySet) -> None:  # noqa: ANN001
    """Admin action for any list of CRF entries (e.g. the CRF entry admin): verify the selected
    complete entries at their current revision; entries with critical items are sent to their page."""
    done, refused = _mark_verified(request, queryset)
    if done:
        modeladmin.message_user(request, ngettext("%(n)s entry verified.", "%(n)s entries verified.", done) % {"n": done})
    for line in refused:
        modeladmin.message_user(request, line, messages.WARNING)


@admin.register(SdvMark)
class SdvMarkAdmin(ReviewerScopedAdmin):
    change_list_template = "monitoring/sdv_admin_change_list.html"
    list_display = ["entry", "participant", "site", "state", "entry_revision", "verified_by", "verified_at", "status"]
    list_filter = [("entry__participant__trial", admin.RelatedOnlyFieldListFilter), ("entry__participant__site", admin.RelatedOnlyFieldListFilter), "state"]
    search_fields = ["entry__participant__screening_number", "entry__participant__subject_number", "entry__crf_code"]
    list_select_related = ["entry__participant__site", "entry__visit", "entry__crf", "verified_by", "reset_by"]
    fields = ["entry", "state", "status", "entry_revision", "items", "verified_by", "verified_at", "reset_at", "reset_by"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(entry__participant__in=participants_for_user(request.user))

    @admin.display(description=_("participant"))
    def participant(self, obj: SdvMark) -> str:
        return str(obj.entry.participant)

    @admin.display(description=_("site"))
    def site(self, obj: SdvMark) -> str:
        return obj.entry.participant.site.code

    @admin.display(description=_("status"))
    def status(self, obj: SdvMark) -> str:
        return sdv.sdv_status_text(obj, obj.entry)

    def get_urls(self):  # noqa: ANN201
        view = self.admin_site.admin_view
        return [
            path("worklist/", view(self.worklist_view), name="monitoring_sdv_worklist"),
            path("verify/<int:entry_id>/", view(self.verify_view), name="monitoring_sdv_verify"),
            *super().get_urls(),
        ]

    def worklist_view(self, request: HttpRequest) -> HttpResponse:
        """The SDV backlog under each trial's plan, with "Mark verified" on the selected entries."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        trials = list(reviewer_trials(request.user).order_by("code"))
        trial = next((t for t in trials if str(t.pk) == request.GET.get("trial")), None)
        backlog = sdv.sdv_backlog(request.user, trial)
        site = request.GET.get("site", "")
        crf = request.GET.get("crf", "").strip()
        if id_or_none(site):
            backlog = backlog.filter(participant__site_id=id_or_none(site))
        if crf:
            backlog = backlog.filter(crf_code__iexact=crf)
        if request.method == "POST":
            selected = backlog.filter(pk__in=ids_or_400(request.POST.getlist("entry")))
            done, refused = _mark_verified(request, selected)
            if done:
                messages.success(request, ngettext("%(n)s entry verified.", "%(n)s entries verified.", done) % {"n": done})
            for line in refused:
                messages.warning(request, line)
            return HttpResponseRedirect(request.get_full_path())
        page = Paginator(backlog.select_related("sdv__reset_by", "sdv__verified_by"), 100).get_page(request.GET.get("page"))
        plans = {p.trial_id: p for p in SdvPlan.objects.filter(trial__in=trials)}
        for entry in page:
            mark = getattr(entry, "sdv", None)  # a missing reverse one-to-one raises an AttributeError
            entry.sdv_text = sdv.sdv_status_text(mark, entry)
            plan = plans.get(entry.participant.trial_id)
            entry.critical = bool(plan and (plan.critical_items or {}).get(entry.crf_code))
        return render(request, "monitoring/sdv_admin_worklist.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": gettext("SDV worklist"),
            "page": page, "trials": trials, "trial": trial, "plans": [(t, plans.get(t.pk)) for t in trials],
            "sites": sites_for_user(request.user, trial=trial).order_by("trial__code", "code") if trial else [],
            "site": site, "crf": crf, "scopes": SdvScope,
        })

    def verify_view(self, request: HttpRequest, entry_id: int) -> HttpResponse:
        """One entry's answers, item by item: tick the plan's critical items and mark verified;
        raise a query on any item."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        entry = CrfEntry.objects.select_related("crf", "visit", "participant__site", "participant__trial").filter(
            pk=entry_id, participant__in=participants_for_user(request.user)
        ).first()
        if entry is None:
            raise Http404(gettext("No such CRF entry in your sites."))
        critical = sdv.sdv_critical_items(entry)
        if request.method == "POST":
            try:
                sdv.sdv_verify(entry=entry, user=request.user, items=request.POST.getlist("item"))
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
            except PermissionDenied as error:
                messages.error(request, str(error) or gettext("Only the monitors of this site verify source data."))
            else:
                messages.success(request, gettext("%(entry)s verified at revision %(n)s.") % {"entry": entry, "n": entry.revision})
            return HttpResponseRedirect(request.get_full_path())
        mark = SdvMark.objects.select_related("verified_by", "reset_by").filter(entry=entry).first()
        queries = item_queries(request.user, entry)
        for query in queries:
            query.target = query_target_label(query)
        open_by_key: dict[tuple[str, str], int] = {}
        for query in queries:
            if query.state in OPEN_QUERY_STATES:
                open_by_key[(query.row_id, query.item)] = open_by_key.get((query.row_id, query.item), 0) + 1
        back = request.get_full_path()

        def raise_link(**params) -> str:  # noqa: ANN003
            return reverse("admin:monitoring_query_raise") + "?" + urlencode({"entry": entry.pk, **params, "next": back})

        schema = schema_for(entry.crf)
        rows = []
        for item in schema.items:
            if item.type == "descriptive":
                continue
            if item.type == "repeating_group":
                for index, row in enumerate(entry.answers.get(item.name) or [], start=1):
                    row_id = row.get(ROW_ID, "")
                    rows.append({"group": f"{item.label}, {gettext('row')} {index}", "row_header": True,
                                 "raise": raise_link(item=item.name, row=row_id),
                                 "open": open_by_key.get((row_id, item.name), 0)})
                    for child in item.children:
                        if child.type == "descriptive":
                            continue
                        missing = ((entry.missing.get(item.name) or {}).get(row_id) or {}).get(child.name)
                        rows.append({
                            "name": child.name, "label": child.label, "in_row": True,
                            "value": f"[{missing['code']}: {missing['reason']}]" if missing else _answer_text(child, row.get(child.name)),
                            "critical": False, "open": open_by_key.get((row_id, child.name), 0),
                            "raise": raise_link(item=child.name, row=row_id),
                        })
                continue
            missing = entry.missing.get(item.name)
            rows.append({
                "name": item.name, "label": item.label,
                "value": f"[{missing['code']}: {missing['reason']}]" if missing else _answer_text(item, entry.answers.get(item.name)),
                "critical": item.name in critical, "open": open_by_key.get(("", item.name), 0),
                "checked": bool(mark and mark.state == "verified" and mark.entry_revision == entry.revision and item.name in (mark.items or [])),
                "raise": raise_link(item=item.name),
            })
        return render(request, "monitoring/sdv_admin_verify.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": gettext("Review and verify %(entry)s") % {"entry": entry},
            "entry": entry, "rows": rows, "mark": mark, "sdv_text": sdv.sdv_status_text(mark, entry) if mark else gettext("Not verified"),
            "critical": critical, "is_complete": entry.status == EntryStatus.COMPLETE,
            "queries": [q for q in queries if q.state in OPEN_QUERY_STATES],
            "raise_entry": raise_link(),
        })



# Monitors verify from the CRF entry list they review in, too (that admin belongs to
# trials.visits; locks/admin.py has re-registered it with the lock actions by now).
_entry_admin = admin.site.get_model_admin(CrfEntry)
_entry_admin.actions = [*(_entry_admin.actions or []), sdv_mark_verified]
