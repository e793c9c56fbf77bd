"""The protocol in the admin: data managers review and adjust, monitors read; every save needs a reason.

Querysets start from the selectors, so a monitor of one trial never sees another trial.
Protocol rows are never deleted from the admin (deactivate them, or change the seed file).
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from edc.admin_mixins import ReadOnlyAdminMixin
from edc.audit import audited_save
from edc.ids import with_checked_autocomplete
from trials.protocol import selectors
from trials.protocol.models import (
    Arm,
    ConsentDocument,
    CrfDefinition,
    Criterion,
    FieldDefinition,
    LabNormalRange,
    Site,
    StudyRole,
    Trial,
    UnblindedAccessEvent,
    TrialCrf,
    VisitCrf,
    VisitDefinition,
)
from trials.protocol.services import (
    lab_range_check,
    lab_range_save,
    study_role_grant,
    study_role_grant_check,
    study_role_revoke,
    study_role_revoke_check,
)

admin.site.site_header = _("EDC administration")
admin.site.site_title = _("EDC")
admin.site.index_title = _("Monitoring and configuration")
admin.site.site_url = "/?stay=1"  # "View site" shows the study pages even to monitors


class ReasonForm(forms.ModelForm):
    change_reason = forms.CharField(
        label=_("Reason for change"),
        max_length=500,
        help_text=_("Recorded in the audit trail with your name and the time."),
        widget=forms.TextInput(attrs={"size": 80}),
    )


class RelatedOnly(admin.RelatedOnlyFieldListFilter):
    """A filter offering only the trials (sites …) the user's rows point at, never the others.

    Unlike Django's, it stays when there is one choice or when the URL names one without rows: the
    admin drops a filter with fewer than two choices together with its URL parameter, so a link
    to "this site's rows" would list every site's (the monitor's dashboard links by site)."""

    def has_output(self) -> bool:
        return bool(self.lookup_choices) or bool(self.used_parameters)


class ScopedHistoryMixin:
    """A record outside the user's scope answers 404 on its change page and on simple-history's
    history pages (which would otherwise show any row): the admin's default for a missing object
    is a redirect to the index, and the history pages do not read the scoped queryset at all."""

    def change_view(self, request, object_id, form_url="", extra_context=None):  # noqa: ANN001, ANN201
        self._check_in_scope(request, object_id)
        return super().change_view(request, object_id, form_url=form_url, extra_context=extra_context)

    def history_view(self, request, object_id, extra_context=None):  # noqa: ANN001, ANN201
        # simple-history would otherwise show the history of rows outside the user's scope.
        self._check_in_scope(request, object_id)
        return super().history_view(request, object_id, extra_context=extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):  # noqa: ANN001, ANN201
        self._check_in_scope(request, object_id)
        return super().history_form_view(request, object_id, version_id, extra_context=extra_context)

    def _check_in_scope(self, request: HttpRequest, object_id: str) -> None:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            in_scope = self.get_queryset(request).filter(pk=object_id).exists()
        except (ValueError, ValidationError):
            in_scope = False
        if not in_scope:
            raise Http404(_("No such record in your studies."))


class AuditedAdmin(ScopedHistoryMixin, SimpleHistoryAdmin):
    """Saves through edc.audit.audited_save with the reason typed in the form; never deletes.

    Protocol definitions come from seeds/ (`load_trials`): in the admin they are read-only except
    the operational fields listed in `editable_fields`, which the loader only sets on creation.
    """

    form = ReasonForm
    trial_path = "trial"  # how to reach the trial from this model, for site scoping
    editable_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        names = [f.name for f in self.model._meta.fields if f.editable and f.name not in self.editable_fields]
        return [*names, *self.readonly_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # new protocol rows come from a seed file, validated as a whole

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return bool(self.editable_fields) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser or self.trial_path is None:
            return queryset
        return queryset.filter(**{f"{self.trial_path}__in": selectors.trials_for_user(request.user)})

    def get_fieldsets(self, request, obj=None):  # noqa: ANN001, ANN201
        fieldsets = list(super().get_fieldsets(request, obj))
        if self.has_change_permission(request, obj) and not self._is_readonly(request, obj):
            # Put the reason last, where it is typed just before saving.
            fieldsets = [(name, {**opts, "fields": [f for f in opts["fields"] if f != "change_reason"]}) for name, opts in fieldsets]
            fieldsets.append((_("Audit"), {"fields": ["change_reason"]}))
        return fieldsets

    def _is_readonly(self, request, obj) -> bool:  # noqa: ANN001
        return not self.has_change_permission(request, obj) and not self.has_add_permission(request)

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        audited_save(obj, user=request.user, reason=form.cleaned_data["change_reason"])

    def save_formset(self, request, form, formset, change):  # noqa: ANN001
        for instance in formset.save(commit=False):
            audited_save(instance, user=request.user, reason=form.cleaned_data["change_reason"])
        formset.save_m2m()


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


class SiteInline(ReadOnlyInline):
    model = Site
    fields = ["code", "name", "city", "country", "time_zone", "language", "recruitment_status", "is_active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=selectors.sites_for_user(request.user, include_inactive=True))


class ArmInline(ReadOnlyInline):
    model = Arm
    fields = ["code", "label", "arm_type", "planned_size", "dose", "dose_unit", "order", "is_active"]


class CriterionInline(ReadOnlyInline):
    model = Criterion
    fields = ["code", "kind", "level", "text", "applies_when", "expression", "is_active"]


class TrialCrfInline(ReadOnlyInline):
    """The CRFs kept outside the visit plan: the participant's logs, those of unscheduled visits."""

    model = TrialCrf
    fields = ["use", "order", "crf_code", "crf", "is_active"]
    show_change_link = False


class VisitDefinitionInline(ReadOnlyInline):
    model = VisitDefinition
    fields = ["order", "code", "label", "kind", "anchor", "day_offset", "window_before_days", "window_after_days", "is_active"]


@admin.register(Trial)
class TrialAdmin(AuditedAdmin):
    trial_path = "pk"
    editable_fields = ("status",)
    list_display = ["code", "short_title", "design", "phase", "masking", "status", "target_enrolment", "nct_id"]
    list_filter = ["design", "phase", "masking", "status", "study_type"]
    search_fields = ["code", "title", "short_title", "acronym", "nct_id", "org_study_id", "sponsor"]
    readonly_fields = ["source_file", "source_sha256"]
    inlines = [SiteInline, ArmInline, CriterionInline, VisitDefinitionInline, TrialCrfInline]
    fieldsets = [
        (None, {"fields": ["code", "title", "short_title", "acronym", "status", "sponsor", "principal_investigator"]}),
        (_("Registry"), {"fields": ["nct_id", "org_study_id", "other_ids"]}),
        (
            _("Design"),
            {"fields": ["study_type", "design", "phase", "intervention_model", "primary_purpose", "masking", "masked_roles"]},
        ),
        (
            _("Population"),
            {"fields": ["conditions", "target_enrolment", "min_age_years", "max_age_years", "sex", "healthy_volunteers"]},
        ),
        (_("Dates"), {"fields": ["start_date", "completion_date", "follow_up_weeks"]}),
        (_("Settings"), {"fields": ["numbering", "randomization", "escalation", "safety_reporting", "eligibility"]}),
        (_("Description"), {"fields": ["summary", "source", "source_file", "source_sha256"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = SimpleHistoryAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(pk__in=selectors.trials_for_user(request.user))


@admin.register(Site)
class SiteAdmin(AuditedAdmin):
    editable_fields = ("recruitment_status", "principal_investigator")
    list_display = ["code", "name", "trial", "city", "country", "time_zone", "language", "recruitment_status", "is_active"]
    list_filter = [("trial", RelatedOnly), "country", "recruitment_status", "is_active"]
    search_fields = ["code", "name", "city", "principal_investigator"]
    list_select_related = ["trial"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        if request.user.is_superuser:
            return super().get_queryset(request)
        # A site-bound role sees its own sites only, not every site of the trial.
        return SimpleHistoryAdmin.get_queryset(self, request).filter(
            pk__in=selectors.sites_for_user(request.user, include_inactive=True)
        )


@admin.register(Arm)
class ArmAdmin(AuditedAdmin):
    list_display = ["code", "label", "trial", "arm_type", "planned_size", "dose", "dose_unit", "order", "is_active"]
    list_filter = [("trial", RelatedOnly), "arm_type", "is_active"]
    search_fields = ["code", "label", "description", "intervention"]
    list_select_related = ["trial"]


@admin.register(Criterion)
class CriterionAdmin(AuditedAdmin):
    list_display = ["code", "trial", "kind", "level", "short_text", "expression", "is_active"]
    list_filter = [("trial", RelatedOnly), "kind", "level", "is_active"]
    search_fields = ["code", "text", "expression"]
    list_select_related = ["trial"]

    @admin.display(description=_("text"))
    def short_text(self, obj: Criterion) -> str:
        return obj.text if len(obj.text) <= 90 else obj.text[:87] + "…"


class VisitCrfInline(ReadOnlyInline):
    model = VisitCrf
    fields = ["order", "crf", "required", "is_active"]


@admin.register(VisitDefinition)
class VisitDefinitionAdmin(AuditedAdmin):
    list_display = ["code", "label", "trial", "kind", "anchor", "day_offset", "window_before_days", "window_after_days", "order", "is_active"]
    list_filter = [("trial", RelatedOnly), "kind", "anchor", "is_active"]
    search_fields = ["code", "label"]
    list_select_related = ["trial"]
    inlines = [VisitCrfInline]


@admin.register(VisitCrf)
class VisitCrfAdmin(AuditedAdmin):
    trial_path = "visit_definition__trial"
    list_display = ["visit_definition", "crf", "required", "order", "is_active"]
    list_filter = [("visit_definition__trial", RelatedOnly), "required", "is_active"]
    search_fields = ["crf_code", "visit_definition__code"]
    list_select_related = ["visit_definition", "crf"]


class FieldDefinitionInline(ReadOnlyInline):
    model = FieldDefinition
    fields = ["order", "name", "label", "field_type", "required", "unit", "min_value", "max_value", "section", "parent"]
    show_change_link = False


@admin.register(CrfDefinition)
class CrfDefinitionAdmin(AuditedAdmin):
    """The CRF library is shared and versioned: versions are created by the loader, never edited."""

    trial_path = None
    list_display = ["code", "version", "title", "field_count", "created_at", "source_file"]
    list_filter = ["code"]
    search_fields = ["code", "title", "description", "source"]
    readonly_fields = ["code", "version", "title", "description", "source", "definition", "content_sha256", "source_file", "created_at"]
    inlines = [FieldDefinitionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from django.db.models import Count

        return super().get_queryset(request).annotate(n_fields=Count("fields"))

    @admin.display(description=_("fields"), ordering="n_fields")
    def field_count(self, obj: CrfDefinition) -> int:
        return obj.n_fields



@admin.register(FieldDefinition)
class FieldDefinitionAdmin(AuditedAdmin):
    trial_path = None
    list_display = ["name", "crf", "field_type", "required", "unit", "section", "identifier"]
    list_filter = ["field_type", "required", "identifier", "crf__code"]
    search_fields = ["name", "label", "crf__code"]
    list_select_related = ["crf"]


class StudyRoleForm(ReasonForm):
    """Grant a role, or end one by unticking "active"; the service's rules (who may grant what)
    are checked here too, so a refusal shows on the form instead of failing the save."""

    acting_user = None  # set by StudyRoleAdmin.get_form

    class Meta:
        model = StudyRole
        fields = ["user", "trial", "site", "role", "is_active"]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if "is_active" in self.fields:
            self.fields["is_active"].help_text = _(
                "Untick to end the role: it stops at once, at the holder's next page. It comes back only by a new grant."
            )

    def clean(self) -> dict:
        data = super().clean()
        site, trial = data.get("site"), data.get("trial")
        if site is not None and trial is not None and site.trial_id != trial.pk:
            self.add_error("site", _("This site belongs to trial %(trial)s.") % {"trial": site.trial.code})
        if self.errors or self.acting_user is None:
            return data
        try:
            if self.instance.pk is None:
                study_role_grant_check(
                    user=data["user"], trial=trial, site=site, role=data["role"], granted_by=self.acting_user
                )
            elif "is_active" in self.changed_data and data.get("is_active"):
                role = self.instance
                study_role_grant_check(user=role.user, trial=role.trial, site=role.site, role=role.role, granted_by=self.acting_user)
            elif "is_active" in self.changed_data:
                study_role_revoke_check(study_role=self.instance, revoked_by=self.acting_user)
        except ValidationError as refusal:
            for field, messages in refusal.message_dict.items():
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(StudyRole)
class StudyRoleAdmin(AuditedAdmin):
    """Roles are granted and ended here, through the services (which also open the admin to staff
    roles, and log and notify a role that sees arms). A data manager grants roles in the trials
    she manages; a role that sees the arms of a blinded trial only if she sees them herself."""

    form = StudyRoleForm
    list_display = ["user", "role", "trial", "site", "is_active"]
    list_filter = [("trial", RelatedOnly), "role", "is_active"]
    search_fields = ["user__username", "user__first_name", "user__last_name"]
    list_select_related = ["user", "trial", "site"]
    autocomplete_fields = ["user"]
    editable_fields = ("user", "trial", "site", "role", "is_active")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return SimpleHistoryAdmin.get_queryset(self, request).filter(pk__in=selectors.study_roles_visible_to(request.user))

    def get_form(self, request, obj=None, change=False, **kwargs):  # noqa: ANN001, ANN201
        form = super().get_form(request, obj, change=change, **kwargs)
        form.acting_user = request.user  # the form class is made for this request
        return form

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        # Who, where and what are fixed once granted; a role is ended, not rewritten.
        return ["user", "trial", "site", "role"] if obj is not None else []

    def get_exclude(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return ["is_active"] if obj is None else []  # a new role is active

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("protocol.add_studyrole")

    def _managed_trials(self, request: HttpRequest) -> QuerySet:
        return Trial.objects.filter(
            pk__in=selectors.study_roles_for_user(request.user).filter(role="data_manager", site__isnull=True).values("trial")
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):  # noqa: ANN001, ANN201
        if db_field.name == "trial" and not request.user.is_superuser:
            kwargs["queryset"] = self._managed_trials(request)
        if db_field.name == "site" and not request.user.is_superuser:
            kwargs["queryset"] = Site.objects.filter(trial__in=self._managed_trials(request), is_active=True)
        return with_checked_autocomplete(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        reason = form.cleaned_data["change_reason"]
        if change and "is_active" not in form.changed_data:
            return  # nothing else of a granted role can change
        if change and not obj.is_active:
            study_role_revoke(study_role=obj, revoked_by=request.user, reason=reason)
        else:
            saved = study_role_grant(
                user=obj.user, trial=obj.trial, site=obj.site, role=obj.role, granted_by=request.user, reason=reason
            )
            obj.pk = saved.pk


@admin.register(UnblindedAccessEvent)
class UnblindedAccessEventAdmin(ReadOnlyAdminMixin, ScopedHistoryMixin, admin.ModelAdmin):
    """The unblinded-access log, read-only: rows are written by the study-role services. Readable
    by those who see the arms of the trial and by its data manager (it names no arm)."""

    list_display = ["created_at", "trial_code", "holder", "role", "action", "changed_by", "reason"]
    list_filter = [("trial", RelatedOnly), "action"]
    search_fields = ["study_role__user__username", "changed_by__username", "reason"]
    list_select_related = ["trial", "study_role__user", "study_role__site", "changed_by"]
    fields = ["trial", "study_role", "action", "changed_by", "created_at", "reason", "notified"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(trial__in=selectors.unblinded_access_log_trials(request.user))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        trials = selectors.unblinded_access_log_trials(request.user)
        return request.user.is_staff and (trials.filter(pk=obj.trial_id).exists() if obj is not None else trials.exists())

    @admin.display(description=_("trial"), ordering="trial__code")
    def trial_code(self, obj: UnblindedAccessEvent) -> str:
        return obj.trial.code

    @admin.display(description=_("person"), ordering="study_role__user__username")
    def holder(self, obj: UnblindedAccessEvent) -> str:
        return obj.study_role.user.get_username()

    @admin.display(description=_("role"))
    def role(self, obj: UnblindedAccessEvent) -> str:
        where = obj.study_role.site.code if obj.study_role.site_id else _("all sites")
        return f"{obj.study_role.get_role_display()} ({where})"


@admin.register(ConsentDocument)
class ConsentDocumentAdmin(AuditedAdmin):
    """Consent versions: the data manager adds a newly approved version here (participants on an
    older one must then re-consent before further data entry) and may retire a version."""

    list_display = ["trial", "version", "approved_on", "title", "requires_reconsent", "is_active"]
    list_filter = [("trial", RelatedOnly), "is_active"]
    list_select_related = ["trial"]
    editable_fields = ("title", "requires_reconsent", "is_active")

    def _managed_trials(self, request: HttpRequest) -> QuerySet:
        return Trial.objects.filter(
            pk__in=selectors.study_roles_for_user(request.user).filter(role="data_manager").values("trial")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("protocol.add_consentdocument") and (
            request.user.is_superuser or self._managed_trials(request).exists()
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or request.user.is_superuser or self._managed_trials(request).filter(pk=obj.trial_id).exists()

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return [] if obj is None else super().get_readonly_fields(request, obj)

    def _is_readonly(self, request, obj) -> bool:  # noqa: ANN001
        return not (self.has_add_permission(request) if obj is None else self.has_change_permission(request, obj))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):  # noqa: ANN001, ANN201
        if db_field.name == "trial" and not request.user.is_superuser:
            kwargs["queryset"] = self._managed_trials(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class LabNormalRangeForm(ReasonForm):
    class Meta:
        model = LabNormalRange
        fields = ["site", "test", "sex", "age_from_years", "age_to_years", "lln", "uln", "effective_from", "is_active"]

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is None and not self.errors:
            try:
                lab_range_check(
                    test=data.get("test"), lln=data.get("lln"), uln=data.get("uln"),
                    age_from_years=data.get("age_from_years", 0), age_to_years=data.get("age_to_years", 150),
                )
            except ValidationError as error:
                for field, messages in error.message_dict.items():
                    for message in messages:
                        self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(LabNormalRange)
class LabNormalRangeAdmin(AuditedAdmin):
    """Each site laboratory's normal ranges, which CTCAE grades of lab values relate to. Data managers
    add a new version (a later "effective from") when the laboratory changes a range; an existing row
    only changes by being deactivated, so the samples it graded keep their grade."""

    form = LabNormalRangeForm
    trial_path = "site__trial"
    list_display = ["site", "test", "sex", "age_from_years", "age_to_years", "lln", "uln", "unit", "effective_from", "is_active"]
    list_filter = [("site__trial", RelatedOnly), ("site", RelatedOnly), "test", "sex", "is_active"]
    list_select_related = ["site", "site__trial"]
    search_fields = ["site__code", "test"]
    editable_fields = ("is_active",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = SimpleHistoryAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(site__in=selectors.sites_for_user(request.user, include_inactive=True))

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        if obj is None:
            return ["unit"]
        return [name for name in LabNormalRangeForm.Meta.fields if name != "is_active"] + ["unit"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("protocol.add_labnormalrange") and selectors.lab_range_sites_for_user(request.user).exists()

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        if not request.user.has_perm("protocol.change_labnormalrange"):
            return False
        return obj is None or selectors.lab_range_sites_for_user(request.user).filter(pk=obj.site_id).exists()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):  # noqa: ANN001, ANN201
        if db_field.name == "site":
            kwargs["queryset"] = selectors.lab_range_sites_for_user(request.user).select_related("trial")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        lab_range_save(lab_range=obj, user=request.user, reason=form.cleaned_data["change_reason"])
