"""Template helpers of the export pages."""

from django import template

from trials.exports.selectors import user_may_export

register = template.Library()


@register.filter
def may_export(user) -> bool:  # noqa: ANN001
    """Whether to show the Exports link (sponsor, data manager or DSMB role in some trial)."""
    return user_may_export(user)

