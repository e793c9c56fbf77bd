"""Forms of the signature, deviation and lock screens: they parse; the services decide."""

from django import forms
from django.utils.translation import gettext_lazy as _

from trials.monitoring.models import DeviationCategory, DeviationSeverity

DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class SignForm(forms.Form):
    # The first signing of a session asks for both components, user name and password; later
    # ones the password only (21 CFR 11.200(a)(1)(i) and (ii)). The view drops it after the first.
    username = forms.CharField(
        label=_("Your user name"), widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(
        label=_("Your password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
        help_text=_("Re-entering your password makes this your signature (21 CFR 11.200)."),
    )


class DeviationForm(forms.Form):
    category = forms.ChoiceField(label=_("Category"), choices=DeviationCategory.choices)
    severity = forms.ChoiceField(
        label=_("Severity"),
        choices=DeviationSeverity.choices,
        widget=forms.RadioSelect,
        initial=DeviationSeverity.MINOR,
    )
    visit = forms.ModelChoiceField(
        label=_("Visit"), queryset=None, required=False, help_text=_("If the deviation concerns one visit.")
    )
    occurred_on = forms.DateField(label=_("Occurred on"), widget=DATE_WIDGET, input_formats=["%Y-%m-%d"])
    identified_on = forms.DateField(
        label=_("Identified on"),
        widget=DATE_WIDGET,
        input_formats=["%Y-%m-%d"],
        required=False,
        help_text=_("Empty: today."),
    )
    description = forms.CharField(label=_("What happened"), max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    corrective_action = forms.CharField(
        label=_("Corrective and preventive action"),
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, participant, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["visit"].queryset = participant.visits.order_by("order", "sequence")


class DeviationDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("confirm", _("Confirm")), ("dismiss", _("Dismiss"))])
    severity = forms.ChoiceField(label=_("Severity"), choices=DeviationSeverity.choices, required=False)
    corrective_action = forms.CharField(label=_("Corrective and preventive action"), max_length=4000, required=False)
    reason = forms.CharField(label=_("Reason"), max_length=1000, required=False, help_text=_("Required to dismiss."))


class LockReasonForm(forms.Form):
    """The admin's intermediate page of the lock, freeze and release actions."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=_(
            "Recorded in the audit trail with your name and the time, and shown to everyone who meets the lock."
        ),
    )
