"""edc.form_renderer writes Django's <input> widgets in Python: the markup must be what Django's
own widget templates (the independent reference: django.forms.renderers.DjangoTemplates) write,
for every kind of value and attribute, escaping included."""

from datetime import date
from decimal import Decimal

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy, override

from edc.form_renderer import FormRenderer


class Everything(forms.Form):
    text = forms.CharField(max_length=20, widget=forms.TextInput(attrs={"class": "form-control", "placeholder": 'a "quoted" <b>', "data-x": mark_safe("<safe>")}))
    number = forms.DecimalField(min_value=Decimal("0.5"), max_value=10, decimal_places=1, required=False)
    integer = forms.IntegerField(widget=forms.NumberInput(attrs={"step": 1, "autofocus": True, "disabled": False}))
    day = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    hidden = forms.CharField(widget=forms.HiddenInput)
    email = forms.EmailField(required=False)
    secret = forms.CharField(widget=forms.PasswordInput(render_value=True))
    upload = forms.FileField(required=False, widget=forms.FileInput)
    ticked = forms.BooleanField(required=False)
    radio = forms.ChoiceField(choices=[("a", "Alpha & <omega>"), ("b", gettext_lazy("Yes")), (3, 3)], widget=forms.RadioSelect)
    boxes = forms.MultipleChoiceField(choices=[("x", "X"), ("y", mark_safe("<i>Y</i>"))], widget=forms.CheckboxSelectMultiple, required=False)
    choice = forms.ChoiceField(choices=[("", "—"), ("k", "K")], required=False)
    notes = forms.CharField(widget=forms.Textarea, required=False)


DATA = {"text": 'x" onmouseover="alert(1)', "number": "1.5", "integer": "3", "day": "2026-02-30", "hidden": "<h>", "email": "a@b",
        "secret": "p'w", "ticked": "on", "radio": "b", "boxes": ["y"], "choice": "k", "notes": "n"}
INITIAL = {"text": "t & t", "number": Decimal("2.5"), "integer": 0, "day": date(2026, 1, 2), "hidden": mark_safe("<safe>"), "radio": 3}


def rendered(form: forms.Form) -> list[str]:
    out = []
    for field in form:
        out.append(str(field))  # the whole widget (Django's templates for radio/checkbox lists and select)
        out.append(field.as_widget(attrs={"aria-describedby": "help-1", "class": "extra"}))
        for choice in getattr(field, "subwidgets", []):
            out.extend([choice.tag(), choice.tag(wrap_label=True), str(choice)])
    return out


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("kind", ["unbound", "initial", "bound", "bound-invalid"])
def test_the_python_inputs_are_djangos_markup(kind, language):
    arguments = {"unbound": {}, "initial": {"initial": INITIAL}, "bound": {"data": DATA}, "bound-invalid": {"data": {**DATA, "integer": "x", "radio": "zz"}}}[kind]
    with override(language):
        expected = rendered(Everything(renderer=DjangoTemplates(), **arguments))
        actual = rendered(Everything(renderer=FormRenderer(), **arguments))
    assert actual == expected
    assert any("<input" in html for html in actual)


def test_the_project_uses_it(settings):
    assert settings.FORM_RENDERER == "edc.form_renderer.FormRenderer"
    assert "django/forms/widgets/text.html" in FormRenderer()._python_written
