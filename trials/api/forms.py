from django import forms
from django.utils.translation import gettext_lazy as _

from trials.api.models import TokenScope
from trials.api.services import MAX_DAYS


class TokenCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("What the token is for, e.g. 'R pipeline'."))
    scope = forms.ChoiceField(label=_("Scope"), choices=TokenScope.choices, initial=TokenScope.READ, widget=forms.RadioSelect)
    trials = forms.ModelMultipleChoiceField(label=_("Trials"), queryset=None, widget=forms.CheckboxSelectMultiple)
    days = forms.IntegerField(label=_("Valid for (days)"), min_value=1, max_value=MAX_DAYS, initial=90)

    def __init__(self, *args, trials, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["trials"].queryset = trials
        self.fields["trials"].label_from_instance = lambda t: f"{t.code} – {t.short_title or t.title}"
