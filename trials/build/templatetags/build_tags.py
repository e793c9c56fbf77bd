"""Template helpers of the study-build pages."""

from django import template

from trials.build.selectors import user_may_build

register = template.Library()


@register.filter
def may_build(user) -> bool:  # noqa: ANN001
    """Whether to show the Study build link (data manager of a trial at all sites, or study builder)."""
    return user_may_build(user)
