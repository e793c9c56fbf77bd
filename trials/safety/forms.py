"""The AE form (rendered with crispy-bootstrap5): it parses; the rules live in services.ae_save."""

from django import forms
from django.urls import reverse_lazy
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from trials.safety.models import GRADE_DEFINITIONS, AdverseEvent, CodingTerm, Seriousness


def current_terms():  # noqa: ANN201
    """Terms of the dictionary version loaded last (codes repeat across versions)."""
    latest = CodingTerm.objects.order_by("-pk").values("dictionary", "version").first()
    return CodingTerm.objects.filter(**latest) if latest else CodingTerm.objects.none()


class GradeSelect(forms.RadioSelect):
    """CTCAE grades with their general definitions beside the choice."""

    def create_option(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        option = super().create_option(*args, **kwargs)
        value = option["value"]
        if value in GRADE_DEFINITIONS or str(value).isdigit() and int(value) in GRADE_DEFINITIONS:
            grade = int(value)
            option["label"] = format_html("<strong>{}</strong> – {}", grade, GRADE_DEFINITIONS[grade])
        return option


class AdverseEventForm(forms.ModelForm):
    seriousness = forms.MultipleChoiceField(
        label=_("Seriousness (ICH E2A): tick every criterion that applies; none = not serious"),
        choices=Seriousness.choices, widget=forms.CheckboxSelectMultiple, required=False,
    )
    coded_term = forms.ModelChoiceField(
        label=_("Coded term"), queryset=CodingTerm.objects.none(), required=False,
        help_text=_("Type to search the coding dictionary the data manager loaded, then pick a term (its code is kept)."),
        error_messages={"invalid_choice": _("Pick a term from the list (type at least two letters to search), or leave this empty.")},
        widget=forms.TextInput(attrs={
            "list": "coding-terms", "autocomplete": "off", "hx-get": reverse_lazy("coding_term_search"),
            "hx-trigger": "input changed delay:300ms", "hx-target": "#coding-terms", "hx-swap": "innerHTML",
        }),
    )
    reason = forms.CharField(label=_("Reason for change"), max_length=500, required=False)

    class Meta:
        model = AdverseEvent
        fields = [
            "verbatim_term", "coded_term", "onset_date", "ongoing", "end_date", "grade", "seriousness",
            "related_product", "procedure", "related_procedure", "action_taken", "outcome",
            "treatment_given", "aware_at", "serious_aware_at", "is_dlt", "leads_to_withdrawal",
        ]
        widgets = {
            "onset_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "end_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "aware_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "serious_aware_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
            "grade": GradeSelect,
            "treatment_given": forms.Textarea(attrs={"rows": 2}),
        }
        help_texts = {
            "aware_at": _("Local time at the site when the site first learned of the AE."),
            "serious_aware_at": _(
                "Serious AEs only: local time at the site when the site learned that the AE is serious; the reporting "
                "clocks start here. Empty: on a new AE, the time above; on an AE that becomes serious now, now."
            ),
        }

    def __init__(self, *args, trial=None, editing=False, **kwargs):  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["onset_date"].input_formats = ["%Y-%m-%d"]
        self.fields["end_date"].input_formats = ["%Y-%m-%d"]
        self.fields["aware_at"].input_formats = ["%Y-%m-%dT%H:%M"]
        self.fields["serious_aware_at"].input_formats = ["%Y-%m-%dT%H:%M"]
        self.fields["coded_term"].queryset = current_terms()
        if self.instance.pk and self.instance.coded_term_id:  # shown by its code, as typed
            self.initial["coded_term"] = self.instance.coded_term.llt_code
        self.fields["grade"].choices = [(g, str(g)) for g in range(1, 6)]  # no empty radio
        self.fields["coded_term"].to_field_name = "llt_code"
        if trial is not None and trial.dlt_window_days is None:
            del self.fields["is_dlt"]
        if not editing:
            del self.fields["reason"]
