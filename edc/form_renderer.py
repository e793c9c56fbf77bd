"""The form renderer (settings.FORM_RENDERER): Django's, with its `<input>` widgets written in
Python instead of through three templates each.

Why (issue 22, docs/benchmarks.md "The coordinator flow"): Django renders every widget through
the template engine (`text.html` includes `input.html`, which includes `attrs.html`; a radio button
is `radio_option.html` → `input_option.html` → `input.html` → `attrs.html`). On a CRF page of 30
items that is ~50 renders and, once the item loop itself was lean, half of the page's rendering
CPU. The markup below is the markup of those templates (Django 5.2), character for character
after the renderer's `strip()`: the same attributes in the same order, escaped the same way
(`stringformat:'s'` then autoescape; a safe string stays as it is). Every other template (select,
textarea, the forms' own templates, crispy's) goes through the engine as before.

A template of these names overridden by an app or the project's templates folder is respected:
the Python path is used only while Django's own files are the ones the engine finds.
"""

from __future__ import annotations

import html
from pathlib import Path

import django.forms
from django.forms.renderers import DjangoTemplates
from django.template.base import render_value_in_context
from django.template.context import Context
from django.utils.functional import cached_property
from django.utils.html import conditional_escape
from django.utils.safestring import SafeData, SafeString, mark_safe

_WIDGETS = "django/forms/widgets/"
# Templates that are exactly `{% include "django/forms/widgets/input.html" %}`.
INPUT_TEMPLATES = frozenset(
    f"{_WIDGETS}{name}.html"
    for name in ("input", "text", "number", "date", "datetime", "time", "email", "url", "tel", "search", "password", "hidden", "color", "file", "checkbox")
)
# Templates that are exactly `{% include "django/forms/widgets/input_option.html" %}` (and it).
OPTION_TEMPLATES = frozenset(f"{_WIDGETS}{name}.html" for name in ("input_option", "radio_option", "checkbox_option"))
# What those include: if one of them is overridden, none of the above is written here.
INCLUDED = frozenset(f"{_WIDGETS}{name}.html" for name in ("input", "attrs", "input_option"))
_CONTEXT = Context()  # autoescape on, localisation by the settings: a plain render's context (read only)


def escape_text(value) -> str:  # noqa: ANN001
    """`conditional_escape(value)`, the same result, with a short path for a plain `str` (the
    commonest case: labels, names, values): Django's `escape` is `SafeString(html.escape(str(text)))`
    behind a lazy-argument check and a `__html__` lookup, which a page of 30 items pays ~1,000 times
    (a fifth of the CRF page's rendering CPU, docs/benchmarks.md "Third pass"). A safe string, a lazy
    translation or anything else goes through `conditional_escape` itself."""
    if type(value) is str:  # exactly str: not a SafeString (a subclass), not a lazy proxy
        return SafeString(html.escape(value))
    return conditional_escape(value)


def _formatted(value) -> str:  # noqa: ANN001
    """`{{ value|stringformat:'s' }}`: the value as text, escaped unless it was safe."""
    text = "%s" % (str(value) if isinstance(value, tuple) else value)  # noqa: UP031 - stringformat's own formatting
    return mark_safe(text) if isinstance(value, SafeData) else escape_text(text)  # noqa: S308 - safe input stays safe, as the filter keeps it


def attrs_html(attrs: dict) -> str:
    """django/forms/widgets/attrs.html."""
    return "".join(
        f" {escape_text(name)}" + ("" if value is True else f'="{_formatted(value)}"')
        for name, value in attrs.items()
        if value is not False
    )


def input_html(widget: dict) -> str:
    """django/forms/widgets/input.html (after the renderer's strip())."""
    value = "" if widget["value"] is None else f' value="{_formatted(widget["value"])}"'
    return f'<input type="{escape_text(widget["type"])}" name="{escape_text(widget["name"])}"{value}{attrs_html(widget["attrs"])}>'


def option_html(widget: dict) -> str:
    """django/forms/widgets/input_option.html (after the renderer's strip())."""
    tag = input_html(widget)
    if not widget.get("wrap_label"):
        return tag
    target = widget["attrs"].get("id")
    label_for = f' for="{render_value_in_context(target, _CONTEXT)}"' if target else ""
    return f"<label{label_for}>{tag}\n {render_value_in_context(widget['label'], _CONTEXT)}</label>"


class FormRenderer(DjangoTemplates):
    """DjangoTemplates, with the `<input>` widgets written by input_html / option_html."""

    @cached_property
    def _python_written(self) -> frozenset[str]:
        stock = Path(django.forms.__file__).resolve().parent / "templates"

        def is_stock(name: str) -> bool:
            return Path(self.get_template(name).origin.name).resolve().is_relative_to(stock)

        if not all(is_stock(name) for name in INCLUDED):
            return frozenset()
        return frozenset(name for name in INPUT_TEMPLATES | OPTION_TEMPLATES if is_stock(name))

    def render(self, template_name: str, context: dict, request=None) -> str:  # noqa: ANN001
        if template_name in self._python_written:
            widget = context["widget"]
            return option_html(widget) if template_name in OPTION_TEMPLATES else input_html(widget)
        return super().render(template_name, context, request)
