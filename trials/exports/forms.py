"""Export request forms: they parse; trials.exports.services.export_request decides."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from edc.ids import IdModelMultipleChoiceField
from trials.exports import selectors
from trials.exports.formats import format_choices
from trials.exports.spec import ExportSpec
from trials.protocol.models import CrfDefinition, Role, Trial
from trials.protocol.selectors import study_roles_for_user, user_sees_allocation


class _ExportForm(forms.Form):
    cutoff = forms.DateField(
        label=_("Data cut-off date"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=_("Empty: the data as they are now. A date: the data as they stood at the end of that day (UTC)."),
    )
    blinded = forms.BooleanField(
        label=_("Blinded export"), required=False, initial=True,
        help_text=_("No arm, kit code or unblinding in any file. Untick only if your role may see the arms, and give a reason."),
    )
    reason = forms.CharField(
        label=_("Reason"), required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required for an unblinded export and for identifying items. Kept in the audit trail."),
    )

    def _blinding(self, user, trials: list[Trial]) -> None:  # noqa: ANN001
        if not all(user_sees_allocation(user, trial) for trial in trials):
            field = self.fields["blinded"]
            field.disabled = True
            field.help_text = _("Your role does not see the allocated arms: exports are blinded.")
            if "identifiers" not in self.fields:
                del self.fields["reason"]  # nothing this user may ask for needs a reason


class TrialExportForm(_ExportForm):
    format = forms.ChoiceField(label=_("Format"))
    sites = IdModelMultipleChoiceField(
        label=_("Sites"), queryset=None, required=False, widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every site you may export."),
    )
    crfs = forms.MultipleChoiceField(
        label=_("CRFs"), required=False, widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every CRF of the trial."),
    )
    identifiers = forms.BooleanField(
        label=_("Include identifying items (date of birth, initials …)"), required=False,
        help_text=_("Data managers only, with a reason. Left out by default: the age at consent replaces the date of birth."),
    )
    field_order = ["format", "sites", "crfs", "cutoff", "blinded", "identifiers", "reason"]

    def __init__(self, *args, user, trial: Trial, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["format"].choices = format_choices()
        sites = selectors.exportable_sites(user, trial=trial)
        self.fields["sites"].queryset = sites
        self.fields["sites"].label_from_instance = lambda site: f"{site.code} – {site.name}"
        spec = ExportSpec(user_id=user.pk, trial_id=trial.pk, site_ids=())
        titles = dict(CrfDefinition.objects.order_by("code", "version").values_list("code", "title"))  # newest wins
        self.fields["crfs"].choices = [
            (code, f"{code} – {titles.get(code, code)}") for code in selectors.export_crf_codes(spec)
        ]
        manager = user.is_superuser or study_roles_for_user(user).filter(
            trial=trial, role=Role.DATA_MANAGER, site__isnull=True
        ).exists()
        if not manager:
            del self.fields["identifiers"]
        self._blinding(user, [trial])


class PooledExportForm(_ExportForm):
    pooled_crf = forms.ChoiceField(
        label=_("CRF"), help_text=_("One row per entry of this CRF in every trial you may export, with the trial as a column."),
    )
    format = forms.ChoiceField(label=_("Format"))
    field_order = ["pooled_crf", "format", "cutoff", "blinded", "reason"]

    def __init__(self, *args, user, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        titles = dict(CrfDefinition.objects.order_by("code", "version").values_list("code", "title"))  # newest wins
        self.fields["pooled_crf"].choices = [
            (code, f"{code} – {titles.get(code, code)}") for code in selectors.pooled_crf_codes(user)
        ]
        self.fields["format"].choices = format_choices(pooled=True)
        self._blinding(user, list(selectors.exportable_trials(user)))
