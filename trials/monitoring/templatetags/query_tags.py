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
