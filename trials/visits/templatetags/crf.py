"""Template helpers for CRF pages."""

from django import template

from trials.protocol.engine import MISSING_CODES
from trials.visits.forms import missing_state

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
