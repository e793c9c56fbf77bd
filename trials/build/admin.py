"""The study-builder role (granted and ended by a superuser, through the services) and the
amendments (read-only: they are written by the study-build page)."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from edc.admin_mixins import ReadOnlyAdminMixin
from trials.build.models import Amendment, StudyBuilder
from trials.build.services import study_builder_end, study_builder_grant


class StudyBuilderForm(forms.ModelForm):
    change_reason = forms.CharField(label=_("Reason for change"), max_length=500)
    acting_user = None

    class Meta:
        model = StudyBuilder
        fields = ["user", "is_active"]

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is None and data.get("user") is not None and self.acting_user is not None and data["user"].pk == self.acting_user.pk:
            raise ValidationError(_("You cannot grant yourself a role: another administrator must."))
        return data


@admin.register(StudyBuilder)
class StudyBuilderAdmin(admin.ModelAdmin):
    """Superusers only: the role creates trials, so no data manager grants it (nor herself)."""

    form = StudyBuilderForm
    list_display = ["user", "is_active", "granted_by", "granted_at"]
    autocomplete_fields = ["user"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:  # noqa: ANN001
        return ["user"] if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):  # noqa: ANN001, ANN201
        form = super().get_form(request, obj, change=change, **kwargs)
        form.acting_user = request.user
        return form

    def save_model(self, request, obj, form, change):  # noqa: ANN001
        reason = form.cleaned_data["change_reason"]
        if change and not obj.is_active:
            study_builder_end(builder=obj, ended_by=request.user, reason=reason)
        else:
            saved = study_builder_grant(user=obj.user, granted_by=request.user, reason=reason)
            obj.pk = saved.pk


@admin.register(Amendment)
class AmendmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["trial", "number", "version", "effective_date", "applied_by", "applied_at"]
    list_filter = ["trial"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:  # noqa: ANN001
        return request.user.is_superuser
