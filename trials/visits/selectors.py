"""Reads of visits and CRF entries, always through the participants the user may see."""

from django.db.models import Count, Prefetch, Q

from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import VisitCrf
from trials.visits.models import CrfEntry, Visit


def participant_for_user(user, pk: int) -> Participant | None:  # noqa: ANN001
    """One participant, if the user may see them."""
    return participants_for_user(user).select_related("consent_document").filter(pk=pk).first()


def participant_grid(participant: Participant) -> list[dict]:
    """The visit × CRF grid of a participant's dashboard, in a fixed number of queries; each entry
    carries `open_queries` (open or answered queries, for the "query open" chip)."""
    from trials.monitoring.models import OPEN_QUERY_STATES

    open_queries = Count("queries", filter=Q(queries__state__in=list(OPEN_QUERY_STATES)))
    visits = (
        Visit.objects.filter(participant=participant)
        .select_related("definition")
        .prefetch_related(
            Prefetch(
                "crf_entries",
                queryset=CrfEntry.objects.only("id", "visit_id", "crf_code", "status", "revision").annotate(open_queries=open_queries),
            ),
            Prefetch(
                "definition__visit_crfs",
                queryset=VisitCrf.objects.filter(is_active=True).select_related("crf").order_by("order"),
            ),
        )
        .order_by("order", "sequence")
    )
    rows = []
    for visit in visits:
        entries = {e.crf_code: e for e in visit.crf_entries.all()}
        links = visit.definition.visit_crfs.all() if visit.definition else []
        rows.append(
            {
                "visit": visit,
                "cells": [{"link": link, "entry": entries.get(link.crf_code)} for link in links],
            }
        )
    return rows


def visit_for_user(user, pk: int) -> Visit | None:  # noqa: ANN001
    """A visit of a participant the user may see."""
    return Visit.objects.filter(pk=pk, participant__in=participants_for_user(user)).select_related(
        "participant__trial", "participant__site", "participant__consent_document", "definition"
    ).first()
