"""Reads of visits and CRF entries, always through the participants the user may see."""

from django.db.models import Count, Prefetch, Q
from django.utils.translation import gettext as _

from trials.participants.models import Participant
from trials.participants.selectors import participants_for_user
from trials.protocol.engine import schema_for
from trials.protocol.models import TrialCrf, TrialCrfUse, VisitCrf
from trials.visits.models import CrfEntry, RecordKind, Visit


def participant_for_user(user, pk: int) -> Participant | None:  # noqa: ANN001
    """One participant, if the user may see them."""
    return participants_for_user(user).select_related("consent_document").filter(pk=pk).first()


def participant_grid(participant: Participant) -> list[dict]:
    """The visit × CRF grid of a participant's dashboard, in a fixed number of queries; each entry
    carries `open_queries` (open or answered queries, for the "query open" chip)."""
    from trials.monitoring.models import OPEN_QUERY_STATES

    open_queries = Count("queries", filter=Q(queries__state__in=list(OPEN_QUERY_STATES)))
    visits = (
        Visit.objects.filter(participant=participant, record_kind=RecordKind.VISIT)
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
    unscheduled_links = None
    for visit in visits:
        entries = {e.crf_code: e for e in visit.crf_entries.all()}
        if visit.definition is None and unscheduled_links is None:
            unscheduled_links = list(
                TrialCrf.objects.filter(trial=participant.trial_id, use=TrialCrfUse.UNSCHEDULED, is_active=True).order_by("order")
            )
        links = visit.definition.visit_crfs.all() if visit.definition else unscheduled_links
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


def participant_logs(participant: Participant) -> list[dict]:
    """The participant's logs (the trial's log CRFs, in the trial file's order), each with its
    records in the order they were added; a record carries its `entry` (None until first saved)
    and the entry's answers for the list's columns."""
    links = list(TrialCrf.objects.filter(trial=participant.trial_id, use=TrialCrfUse.LOG, is_active=True).select_related("crf").order_by("order"))
    saved = (
        Visit.objects.filter(participant=participant, record_kind=RecordKind.LOG)
        .prefetch_related("crf_entries")
        .order_by("log_crf_code", "sequence")
    )
    by_code: dict[str, list[dict]] = {link.crf_code: [] for link in links}
    for record in saved:
        entry = next(iter(record.crf_entries.all()), None)
        by_code.setdefault(record.log_crf_code, []).append({"visit": record, "entry": entry})
    logs = []
    for link in links:
        # The list shows what names a record (the first three items: the medication, its class, its
        # indication) and when it ran (the dates and yes/no items: start, ongoing, stop), in CRF order.
        inputs = [item for item in schema_for(link.crf).items if item.is_input]
        naming = [item for item in inputs if item.type not in {"date", "datetime", "yes_no"}][:3]
        columns = [item for item in inputs if item in naming or item.type in {"date", "datetime", "yes_no"}][:LOG_COLUMNS]
        records = by_code.get(link.crf_code, [])
        for record in records:
            answers = record["entry"].answers if record["entry"] else {}
            record["cells"] = [_shown(item, answers.get(item.name)) for item in columns]
        logs.append({"link": link, "columns": columns, "records": records})
    return logs


LOG_COLUMNS = 7


def _shown(item, value) -> str:  # noqa: ANN001
    """An answer as the log's list shows it: a choice by its label, yes/no in words, "—" when empty."""
    if value is None or value == "" or value == []:
        return "—"
    if item.type == "yes_no":
        return _("yes") if value else _("no")
    labels = dict((str(code), label) for code, label in item.choices)
    if isinstance(value, list):
        return ", ".join(labels.get(str(v), str(v)) for v in value)
    return labels.get(str(value), str(value))
