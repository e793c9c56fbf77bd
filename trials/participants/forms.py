"""Forms of the participant screens. They only parse input; every rule lives in the services."""

from django import forms
from django.utils.translation import gettext_lazy as _

from trials.participants.models import CohortDecisionKind, ParticipantStatus
from trials.protocol.models import Arm, ConsentDocument

DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
DATETIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class ScreenForm(forms.Form):
    screening_date = forms.DateField(label=_("Screening date"), widget=DATE, input_formats=["%Y-%m-%d"])


class ConsentForm(forms.Form):
    document = forms.ModelChoiceField(label=_("Consent document version"), queryset=ConsentDocument.objects.none(), empty_label=None)
    consented_at = forms.DateTimeField(
        label=_("Date and time of consent"), widget=DATETIME, input_formats=["%Y-%m-%dT%H:%M"],
        help_text=_("Local time at the site."),
    )

    def __init__(self, *args, trial, **kwargs):  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["document"].queryset = trial.consent_documents.filter(is_active=True).order_by("-approved_on")


class EnrolForm(forms.Form):
    enrolment_date = forms.DateField(label=_("Enrolment date"), widget=DATE, input_formats=["%Y-%m-%d"])


class RandomizeForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I confirm this participant is eligible, consented and is to be randomized now. This cannot be undone."),
    )

    def __init__(self, *args, factors=(), **kwargs):  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        for factor in factors:
            self.fields[f"stratum_{factor['name']}"] = forms.ChoiceField(
                label=factor["name"].replace("_", " ").capitalize(), choices=[(level, level) for level in factor["levels"]],
            )


class AssignForm(forms.Form):
    arm = forms.ModelChoiceField(label=_("Arm"), queryset=Arm.objects.none(), empty_label=None)
    reason = forms.CharField(label=_("Basis for the assignment"), widget=forms.Textarea(attrs={"rows": 2}), max_length=500)

    def __init__(self, *args, trial, **kwargs):  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["arm"].queryset = trial.arms.filter(is_active=True).order_by("code")


class TreatmentForm(forms.Form):
    first_treatment_date = forms.DateField(label=_("Date of the first treatment"), widget=DATE, input_formats=["%Y-%m-%d"])


END_STATES = [
    (s.value, s.label)
    for s in (ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED, ParticipantStatus.COMPLETED)
]


class StatusForm(forms.Form):
    to = forms.ChoiceField(label=_("New status"), choices=END_STATES)
    on = forms.DateField(label=_("Date"), widget=DATE, input_formats=["%Y-%m-%d"])
    reason = forms.CharField(
        label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=1000, required=False,
        help_text=_("Required for a withdrawal, a loss to follow-up or a death."),
    )


class ScreenFailForm(forms.Form):
    reason = forms.CharField(label=_("Reason for the screen failure"), widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)


class UnblindForm(forms.Form):
    reason = forms.CharField(
        label=_("Medical reason for the emergency unblinding"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
    )
    password = forms.CharField(label=_("Your password"), widget=forms.PasswordInput, help_text=_("Re-enter your password to sign this request."))


class CohortDecisionForm(forms.Form):
    decision = forms.ChoiceField(label=_("Decision"), choices=CohortDecisionKind.choices, widget=forms.RadioSelect)
    dlt_count = forms.IntegerField(label=_("Participants with a dose-limiting toxicity"), min_value=0, required=False)
    rationale = forms.CharField(label=_("Basis of the decision"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)
    password = forms.CharField(label=_("Your password"), widget=forms.PasswordInput, help_text=_("Re-enter your password to sign the decision."))


class AllocationListForm(forms.Form):
    slots_per_stratum = forms.IntegerField(
        label=_("Slots per stratum"), min_value=1, max_value=10000,
        help_text=_("Each stratum gets this many slots, in whole blocks. Default: the target enrolment."),
        required=False,
    )


class AllocationListImportForm(forms.Form):
    file = forms.FileField(
        label=_("Allocation list (CSV)"),
        help_text=_("UTF-8 CSV with the header stratum,sequence,arm,kit_code: one line per slot, every stratum of the trial, "
                    "sequences 1, 2, 3… per stratum, whole blocks in the protocol's ratio, each kit code once."),
    )
    reason = forms.CharField(
        label=_("Reason for the import"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Where and how the list was made (software, version, who keeps the seed)."),
    )


class AnchorForm(forms.Form):
    anchor = forms.ChoiceField(
        label=_("Date to correct"), choices=[("enrolment", _("Enrolment date")), ("first_treatment", _("First treatment date"))],
    )
    new_date = forms.DateField(label=_("Correct date"), widget=DATE, input_formats=["%Y-%m-%d"])
    reason = forms.CharField(label=_("Reason for the correction"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
