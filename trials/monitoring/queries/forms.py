"""Forms of the query screens (site answers; reviewers in the admin)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from trials.monitoring.models import QueryOrigin, QueryState
from trials.monitoring.queries.services import MAX_TEXT


class QueryAnswerForm(forms.Form):
    text = forms.CharField(label=_("Your answer"), max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 2}))


class QueryFilterForm(forms.Form):
    """Filters of a site's query list (all optional)."""

    STATE_CHOICES = [("unresolved", _("Open or answered")), *QueryState.choices, ("all", _("All"))]

    state = forms.ChoiceField(label=_("State"), choices=STATE_CHOICES, required=False)
    participant = forms.CharField(label=_("Participant"), max_length=40, required=False)
    crf = forms.CharField(label=_("CRF"), max_length=40, required=False)
    origin = forms.ChoiceField(label=_("Origin"), choices=[("", _("Any")), *QueryOrigin.choices], required=False)


class QueryRaiseForm(forms.Form):
    text = forms.CharField(
        label=_("Query"), max_length=MAX_TEXT, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=_("What should the site check or correct? The site sees this text."),
    )
    next = forms.CharField(required=False, widget=forms.HiddenInput)


class QueryActionForm(forms.Form):
    """Close, re-open, cancel or comment on a query, with the text the action needs."""

    ACTIONS = [("close", _("Close")), ("reopen", _("Re-open")), ("cancel", _("Cancel")), ("comment", _("Comment"))]

    action = forms.ChoiceField(choices=ACTIONS, widget=forms.HiddenInput)
    text = forms.CharField(
        label=_("Message"), max_length=MAX_TEXT, required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=_("Closing: required unless the value changed since the query was raised. Re-opening, cancelling, "
                    "commenting: always required."),
    )


class QueryBulkForm(forms.Form):
    """The text of a bulk admin action (close with a justification, re-open, cancel)."""

    text = forms.CharField(label=_("Message"), max_length=MAX_TEXT, required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}))
