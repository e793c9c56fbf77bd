"""Template helpers for CRF pages."""

from django import template
from django.forms.boundfield import BoundWidget
from django.utils.safestring import mark_safe

from trials.protocol.engine import MISSING_CODES
from trials.visits.forms import missing_state
from trials.visits.item_html import item_html, missing_html, shown_number

register = template.Library()


@register.filter
def bound(form, name: str):  # noqa: ANN001, ANN201
    """The bound field `name` of `form`, or None."""
    try:
        return form[name]
    except KeyError:
        return None


@register.filter
def get(mapping, key):  # noqa: ANN001, ANN201
    """mapping[key], or None."""
    if mapping is None:
        return None
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def contains(container, item) -> bool:  # noqa: ANN001
    return container is not None and item in container


@register.filter
def missing(form, item):  # noqa: ANN001, ANN201
    """The missing-data code and reason of a required item (None for an optional one)."""
    return missing_state(form, item)


@register.simple_tag
def missing_codes():  # noqa: ANN201
    return MISSING_CODES


@register.filter
def matrix_columns(form, items) -> list[str]:  # noqa: ANN001
    """The column headings of a matrix section: the choices of its first answerable item (a yes/no
    item's Yes and No included, which are the form field's choices, not the CRF's)."""
    for item in items:
        field = bound(form, item.name)
        if field is not None and getattr(field.field, "choices", None):
            return [str(label) for value, label in field.field.choices if value != ""]
    return []


@register.simple_tag
def matrix_choice(choice, section_no: int, html_name: str, column: int) -> str:  # noqa: ANN001
    """One radio of a matrix row, named by its section, its row and its column heading."""
    labelled_by = f"section-{section_no} label-{html_name} section-{section_no}-col-{column}"
    attrs = {**choice.data["attrs"], "aria-labelledby": labelled_by}
    return BoundWidget(choice.parent_widget, {**choice.data, "attrs": attrs}, choice.renderer).tag()


@register.simple_tag(takes_context=True)
def file_answer(context, item, prefix: str = "", row_id=None):  # noqa: ANN001, ANN201
    """The saved file (its reference) of a file item on the page: top level, or the row `row_id`
    (a bound hidden field) of the group whose rows are prefixed `<group>-<n>-`."""
    submission = context.get("submission")
    if submission is None:
        return None
    group = prefix.split("-")[0] if prefix else ""
    if hasattr(row_id, "value"):
        row_id = row_id.value()
    return submission.stored_files.get((group, str(row_id or "") if group else "", item.name))


@register.simple_tag
def file_limits(item) -> dict:  # noqa: ANN001
    from trials.visits.files import describe_accept

    size = item.max_size_kb or 0
    return {"accepted": describe_accept(item), "size": f"{size / 1024:g} MB" if size >= 1024 else f"{size} kB"}


register.filter("shown_number", shown_number)


@register.simple_tag(takes_context=True)
def crf_item(context, item, form, answers=None, notes=None, prefix: str = "", hidden: bool = False, oob: bool = False, row_id=None):  # noqa: ANN001, ANN201, PLR0913
    """One item of the CRF page, written by trials.visits.item_html (no template per item)."""
    return item_html(context, item, form, answers=answers, notes=notes, prefix=prefix or "", hidden=bool(hidden), oob=bool(oob), row_id=row_id)


@register.simple_tag(takes_context=True)
def crf_missing(context, form, item):  # noqa: ANN001, ANN201
    """A required item's missing-data control (or, on the review, the code given)."""
    return mark_safe(missing_html(context, form, item))  # noqa: S308 - escaped by missing_html
