"""Reads of visits and CRF entries, always through the participants the user may see."""

from django.db.models import Prefetch, Q

from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.models import VisitCrf
from trials.visits.models import CrfEntry, Visit, VisitStatus


def participant_for_user(user, pk: int) -> Participant | None:  # noqa: ANN001
    """One participant, if the user may see them."""
    return participants_for_user(user).select_related("consent_document").filter(pk=pk).first()


def participant_grid(participant: Participant, *, entry_annotations: dict | None = None) -> list[dict]:
    """The visit × CRF grid of a participant's dashboard, in a fixed number of queries; each entry
    carries the `entry_annotations` the page asks for (the dashboard, in trials.monitoring: its
    open queries, for the "query open" chip)."""
    visits = (
        Visit.objects.filter(participant=participant)
        .select_related("definition")
        .prefetch_related(
            Prefetch(
                "crf_entries",
                queryset=CrfEntry.objects.only("id", "visit_id", "crf_code", "status", "revision").annotate(**(entry_annotations or {})),
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


def screening_entries(participant: Participant, codes: set[str]) -> dict[str, CrfEntry]:
    """The participant's first entry of each CRF of `codes` (the screening one): what eligibility
    reads (provides participants.hooks.screening_entries)."""
    found: dict[str, CrfEntry] = {}
    for entry in (
        CrfEntry.objects.filter(visit__participant=participant, crf_code__in=codes)
        .select_related("crf").order_by("visit__order", "visit__sequence")
    ):
        found.setdefault(entry.crf_code, entry)
    return found


def next_visit(participant: Participant) -> Visit | None:
    """The participant's next visit still to be done, from today at her site (the dashboard's head)."""
    today = participant.site.today()
    return (
        Visit.objects.filter(participant=participant, visit_date__isnull=True, planned_date__isnull=False)
        .filter(Q(window_end__gte=today) | Q(window_end__isnull=True, planned_date__gte=today))
        .exclude(status__in=[VisitStatus.DONE, VisitStatus.MISSED, VisitStatus.NOT_DONE]).order_by("planned_date", "order").first()
    )


def visit_for_user(user, pk: int) -> Visit | None:  # noqa: ANN001
    """A visit of a participant the user may see."""
    return Visit.objects.filter(pk=pk, participant__in=participants_for_user(user)).select_related(
        "participant__trial", "participant__site", "participant__consent_document", "definition"
    ).first()
