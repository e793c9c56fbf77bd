"""Template helpers for the query threads shown beside CRF items."""

from django import template

from trials.monitoring.models import OPEN_QUERY_STATES

register = template.Library()


@register.simple_tag(takes_context=True)
def item_queries(context, item: str, row=None) -> list:  # noqa: ANN001
    """The queries of an item (in a row: `row` is the row's `_row_id` bound field or value) from
    the page's `queries_by_item`."""
    by_item = context.get("queries_by_item") or {}
    if hasattr(row, "value"):
        row = row.value()
    return by_item.get((row or "", item), [])


@register.filter
def open_count(queries) -> int:  # noqa: ANN001
    """How many of these queries still wait for someone (open or answered)."""
    return sum(1 for q in queries or () if q.state in OPEN_QUERY_STATES)


@register.filter
def closed_count(queries) -> int:  # noqa: ANN001
    """How many of these queries are over (closed or cancelled)."""
    return sum(1 for q in queries or () if q.state not in OPEN_QUERY_STATES)


@register.filter
def sdv_key(item: str, row=None) -> str:  # noqa: ANN001
    """The key of an SDV tick (and of a review control): `item`, or `item@row_id` in a row (`row`
    is the row's `_row_id` bound field or value)."""
    if hasattr(row, "value"):
        row = row.value()
    return f"{item}@{row}" if row else item


@register.filter
def row_value(row) -> str:  # noqa: ANN001
    """A row's identity as text, from the row's `_row_id` bound field or value ("" at the top level)."""
    if hasattr(row, "value"):
        row = row.value()
    return row or ""


@register.simple_tag(takes_context=True)
def review_row_id(context) -> str:  # noqa: ANN001
    """The row identity of the item being rendered ("" at the top level, where no `row_id` is set)."""
    return row_value(context.get("row_id"))


@register.filter
def dom_id(key: str) -> str:
    """An SDV key as an HTML id safe in a CSS selector (`item@row` → `item--row`)."""
    return str(key).replace("@", "--")
