"""Template helpers of the safety pages."""

from django import template

from trials.safety.services import EXPECTEDNESS_ASSESSORS

register = template.Library()


@register.filter
def assesses_expectedness(roles) -> bool:  # noqa: ANN001
    """Whether one of these study roles assesses expectedness (the sponsor, the data manager)."""
    return any(role.role in EXPECTEDNESS_ASSESSORS for role in roles)
