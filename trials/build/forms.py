"""The study-build forms: the upload, and the amendment's version, effective date and reason."""

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UploadForm(forms.Form):
    """Files are read from request.FILES.getlist("files") by the view (several files, or a zip)."""


class ApplyForm(forms.Form):
    payload = forms.CharField(widget=forms.HiddenInput)
    previewed = forms.CharField(widget=forms.HiddenInput)
    version = forms.CharField(label=_("Protocol version"), max_length=40, help_text=_("As the approved protocol names it, e.g. 3.0."))
    effective_date = forms.DateField(label=_("Effective date"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    reason = forms.CharField(label=_("Reason for the amendment"), widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["effective_date"].initial = timezone.localdate()
