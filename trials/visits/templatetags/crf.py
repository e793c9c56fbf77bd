"""Template helpers for CRF pages."""

from django import template

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
def missing_code(form, name: str):  # noqa: ANN001, ANN201
    """The missing-data code field of item `name`, if the item has one (required items)."""
    return bound(form, f"{name}__missing")


@register.filter
def missing_reason(form, name: str):  # noqa: ANN001, ANN201
    return bound(form, f"{name}__missing_reason")
