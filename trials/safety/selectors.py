"""Reads of the safety screens, scoped to the user's sites."""

from __future__ import annotations

from django.db.models import QuerySet

from trials.participants.selectors import participants_for_user
from trials.safety.models import RELATED, AdverseEvent


def aes_awaiting_expectedness(user, *, trial_code: str | None = None) -> QuerySet[AdverseEvent]:  # noqa: ANN001
    """Serious related AEs of the user's sites whose expectedness the sponsor has not assessed yet
    (each runs a conservative SUSAR clock), the earliest seriousness awareness first."""
    aes = AdverseEvent.objects.filter(
        participant__in=participants_for_user(user), serious=True, related_product__in=list(RELATED), expected__isnull=True,
    )
    if trial_code:
        aes = aes.filter(participant__trial__code=trial_code)
    return aes.select_related("participant__site", "participant__trial", "coded_term").prefetch_related("clocks").order_by(
        "serious_aware_at", "pk"
    )
