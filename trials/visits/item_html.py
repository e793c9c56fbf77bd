"""The HTML of one CRF item on the CRF page (label, input with unit, help, missing-data code,
errors, query threads), written in Python instead of a Django template included per item.

Why (issue 22, docs/benchmarks.md "The coordinator flow"): the item loop was two thirds of the
CRF page's CPU, almost all of it the template engine's own work per item (an include, a dozen
`with` scopes, ~40 variable lookups) rather than anything the page needs. The markup here is the
markup the template wrote; every text from the CRF, the entry or the request is escaped with
`conditional_escape` and every value is formatted as a template's `{{ }}` formats it
(`render_value_in_context`: localised numbers and dates, then escaped). The rarer parts keep
their templates and are rendered only when present: the query threads (monitoring), the
monitor's review controls, a VAS, a file's saved file, a laboratory grade. Nothing is cached
across requests: the output depends on the user (queries, review) and the entry.

`wrapper id="w-<prefix><name>"` lets the live evaluation (htmx) show, hide or refresh this item
alone, so what is being typed elsewhere is never replaced.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from django.template.base import render_value_in_context
from django.template.context import Context
from django.utils import formats
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from edc.form_renderer import escape_text
from trials.protocol.engine import MISSING_CODES
from trials.visits.forms import missing_state

DECIMAL_TEXT = re.compile(r"^-?\d+\.\d+$")


def shown_number(value):  # noqa: ANN001, ANN201
    """A stored number as the reader writes it: "1.714" is "1,714" in French and Spanish (the
    locale's decimal separator, every stored decimal kept). Only for text shown, never for an
    input's value or an export, which keep the stored "1.714"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and DECIMAL_TEXT.match(value):
        value = Decimal(value)
    if isinstance(value, (int, float, Decimal)):
        return formats.number_format(value, use_l10n=True)
    return value


INLINE = frozenset({"yes_no", "scale"})  # item types whose choices sit on one line (as widget "inline_radio")


def _e(value) -> str:  # noqa: ANN001
    """A text escaped as the template engine escapes it (safe strings are kept as they are):
    `conditional_escape`, with its short path for a plain str (edc.form_renderer.escape_text)."""
    return escape_text(value)


def _sub(context: Context, name: str, **values) -> str:  # noqa: ANN003
    """A sub-template rendered in the page's context with `values` added."""
    template = context.template.engine.get_template(name)
    with context.push(**values):
        return template.render(context)


def _bound(form, name: str):  # noqa: ANN001, ANN202
    try:
        return form[name]
    except KeyError:
        return None


def item_queries(context: Context, name: str, row_id=None) -> list:  # noqa: ANN001
    """The queries of an item (in a row: `row_id` is the row's `_row_id` bound field or value)."""
    by_item = context.get("queries_by_item") or {}
    if hasattr(row_id, "value"):
        row_id = row_id.value()
    return by_item.get((row_id or "", name), [])


@lru_cache(maxsize=16)
def _missing_texts(language: str | None) -> tuple:  # noqa: ARG001 - the key: the texts are the active language's
    """The missing-data control's fixed texts in one language, escaped: the codes (value, value and
    label as HTML) and five labels. Read once per language and process (the catalogues do not
    change while it runs) rather than translated and escaped again for every required item."""
    codes = tuple((value, _e(value), _e(label)) for value, label in MISSING_CODES)
    # The texts are read outside the f-strings: xgettext (makemessages) does not look inside them.
    cannot, code_label, answered = _e(_("Cannot answer?")), _e(_("Missing-data code")), _e(_("— answered —"))
    reason_placeholder, reason_label = _e(_("Reason")), _e(_("Reason the item is missing"))
    return codes, cannot, code_label, answered, reason_placeholder, reason_label


def missing_html(context: Context, form, item) -> str:  # noqa: ANN001
    """A required item's missing-data code and reason: the "Cannot answer?" control, or on the
    monitor's review the code and reason given, if any. Empty for an optional item."""
    state = missing_state(form, item)
    if not state:
        return ""
    code, reason = state["code"], state["reason"]
    if context.get("review"):
        if not code:
            return ""
        text = _("Not answered: %(code)s (%(reason)s)") % {
            "code": render_value_in_context(code, context), "reason": render_value_in_context(reason, context)}
        return f'<p class="small text-muted mt-1 mb-0" data-testid="missing-{_e(item.name)}">{text}</p>'
    code_name, reason_name = _e(state["code_name"]), _e(state["reason_name"])
    codes, cannot, code_label, answered, reason_placeholder, reason_label = _missing_texts(get_language())
    options = "".join(
        f'<option value="{value_html}"{" selected" if code == value else ""}>{label_html}</option>' for value, value_html, label_html in codes
    )
    return (
        f'<details class="edc-missing mt-1"{" open" if code else ""}>'
        f'<summary class="small text-muted">{cannot}</summary>'
        f'<div class="d-flex gap-2 mt-1">'
        f'<select name="{code_name}" id="id_{code_name}" class="form-select form-select-sm w-auto" aria-label="{code_label}">'
        f'<option value="">{answered}</option>{options}</select>'
        f'<input type="text" name="{reason_name}" id="id_{reason_name}" value="{render_value_in_context(reason, context)}" maxlength="500"'
        f' class="form-control form-control-sm" placeholder="{reason_placeholder}" aria-label="{reason_label}">'
        f"</div></details>"
    )


def query_badge(context: Context, name: str, row_id=None) -> str:  # noqa: ANN001
    """The red badge counting an item's open (or answered) queries, if any (counted by the
    monitoring app's query context, `open_queries_by_item`)."""
    if hasattr(row_id, "value"):
        row_id = row_id.value()
    n = (context.get("open_queries_by_item") or {}).get((row_id or "", name), 0)
    if not n:
        return ""
    text = ngettext("%(n)s query", "%(n)s queries", n) % {"n": n}
    title = _e(_("open queries"))
    return f' <span class="badge rounded-pill text-bg-danger" data-testid="query-badge-{_e(name)}" title="{title}">{text}</span>'


def item_html(context: Context, item, form, *, answers=None, notes=None, prefix: str = "", hidden: bool = False,  # noqa: ANN001, PLR0913
              oob: bool = False, row_id=None) -> SafeString:
    """One item of the CRF page (top level, or in a row of a repeating group: `prefix` is the
    row form's prefix and a dash, `row_id` the row's `_row_id`)."""
    name = _e(item.name)
    swap = ' hx-swap-oob="true"' if oob else ""
    out = [f'<div id="w-{_e(prefix)}{name}"{swap}{" hidden" if hidden else ""}>']
    field = None if hidden else _bound(form, item.name)
    if hidden:
        pass
    elif item.type == "descriptive":
        out.append(f'<p class="text-muted small mb-2">{_e(item.label)}</p>')
    elif item.type == "calculated":
        value = answers.get(item.name) if answers else None
        if value is not None:
            shown = render_value_in_context(shown_number(value), context) + (f" {_e(item.unit)}" if item.unit else "")
        else:
            shown = "—"
        note = notes.get(item.name) if notes else None
        out.append(
            f'<div class="mb-3 row"><div class="col-md-5 col-form-label">{_e(item.label)}</div>'
            f'<div class="col-md-7"><output class="form-control-plaintext fw-semibold" data-testid="calc-{name}">{shown}</output>'
            + (f'<div class="form-text" data-testid="note-{name}">{render_value_in_context(note, context)}</div>' if note else "")
            + "</div></div>"
        )
    elif field is not None:
        out.append(_input_html(context, item, form, field, prefix=prefix, row_id=row_id))
    out.append("</div>")
    return mark_safe("".join(out))  # noqa: S308 - every text and value above is escaped


def _input_html(context: Context, item, form, field, *, prefix: str, row_id) -> str:  # noqa: ANN001
    name = _e(item.name)
    queries = item_queries(context, item.name, row_id)
    widget = field.field.widget
    vas = widget.attrs.get("data-edc-slider")
    html_name = _e(field.html_name)
    required_title = _e(_("required"))
    required = f' <span class="text-danger" title="{required_title}">*</span>' if item.required else ""
    out = [
        f'<input type="hidden" name="_shown" value="{_e(prefix)}{name}">',
        f'<div class="mb-3 row{" edc-has-error" if field.errors else ""}" id="item-{html_name}">',
        f'<label class="{"col-12 form-label" if vas else "col-md-5 col-form-label"}" for="{_e(field.id_for_label)}">'
        f"{_e(item.label)}{required}{query_badge(context, item.name, row_id)}</label>",
        f'<div class="{"col-12" if vas else "col-md-7"}">',
    ]
    input_type = getattr(widget, "input_type", None)
    if input_type in {"radio", "checkbox"}:
        inline = item.widget == "inline_radio" or item.type in INLINE
        out.append(f'<div class="{"d-flex flex-wrap gap-3" if inline else ""}" role="group" aria-label="{_e(item.label)}">')
        check = "form-check form-check-inline" if inline else "form-check"
        for choice in field:
            out.append(
                f'<div class="{check}">{choice.tag()}<label class="form-check-label" for="{_e(choice.id_for_label)}">'
                f"{render_value_in_context(choice.choice_label, context)}</label></div>"
            )
        out.append("</div>")
    elif vas:
        out.append(_sub(context, "visits/_item_vas.html", item=item, field=field))
    else:
        unit = f'<span class="input-group-text">{_e(item.unit)}</span>' if item.unit else ""
        out.append(f'<div class="input-group">{field.as_widget()}{unit}</div>')
        if item.type == "file":
            out.append(_sub(context, "visits/_file.html", item=item, field=field, form=form, prefix=prefix, row_id=row_id))
        if item.lab_test:
            graded = (context.get("lab_grades") or {}).get(item.name)
            if graded:
                out.append(_sub(context, "visits/_lab_grade.html", item=item, graded=graded))
    for error in field.errors:
        out.append(f'<div class="invalid-feedback d-block" data-testid="error-{name}">{render_value_in_context(error, context)}</div>')
    if item.help:
        out.append(f'<div class="form-text">{_e(item.help)}</div>')
    out.append(missing_html(context, form, item))
    if queries:
        out.append(_sub(context, "monitoring/query_item.html", queries=queries, item=item, field=field, row_id=row_id))
    if context.get("review"):  # the monitor's form-view review
        out.append(_sub(context, "monitoring/review_item.html", item=item, field=field, form=form, prefix=prefix, row_id=row_id))
    out.append("</div></div>")
    return "".join(out)
