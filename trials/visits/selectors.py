"""Reads of visits and CRF entries, always through the participants the user may see."""

from django.db.models import Prefetch, Q
from django.utils.translation import gettext as _

from trials.participants.models import Participant
from trials.protocol.engine import schema_for
from trials.protocol.medications import MEDICATION_LOG
from trials.protocol.models import TrialCrf, TrialCrfUse, VisitCrf
from trials.protocol.selectors import site_visible_to
from trials.protocol.trial_cache import attach_trial
from trials.visits.models import CrfEntry, RecordKind, Visit, VisitStatus


def participant_for_user(user, pk: int) -> Participant | None:  # noqa: ANN001
    """One participant, if the user may see them."""
    # The trial from the cache (trials.protocol.trial_cache), not joined: its settings change only on a load or amendment.
    # Read by key, its site checked against the request's roles memo (site_visible_to: sites_for_user's rule).
    participant = Participant.objects.filter(pk=pk).select_related("site", "consent_document").first()
    if participant is None or not site_visible_to(user, participant.site):
        return None
    return attach_trial(participant)


def participant_grid(participant: Participant, *, entry_annotations: dict | None = None) -> list[dict]:
    """The visit × CRF grid of a participant's dashboard, in a fixed number of queries; each entry
    carries the `entry_annotations` the page asks for (the dashboard, in trials.monitoring: its
    open queries, for the "query open" chip)."""
    visits = (
        Visit.objects.filter(participant=participant, record_kind=RecordKind.VISIT)
        .select_related("definition")
        .prefetch_related(
            Prefetch(
                "crf_entries",
                queryset=CrfEntry.objects.only("id", "visit_id", "crf_code", "status", "revision").annotate(**(entry_annotations or {})),
            ),
            Prefetch(
                "definition__visit_crfs",
                # The CRF's definition (its JSON, the largest column) is not read: its schema is cached per version.
                queryset=VisitCrf.objects.filter(is_active=True).select_related("crf").defer("crf__definition").order_by("order"),
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
                TrialCrf.objects.filter(trial=participant.trial_id, use=TrialCrfUse.UNSCHEDULED, is_active=True)
                .select_related("crf").defer("crf__definition").order_by("order")
            )
        links = visit.definition.visit_crfs.all() if visit.definition else unscheduled_links
        rows.append(
            {
                "visit": visit,
                "cells": [{"link": link, "entry": entries.get(link.crf_code)} for link in links],
                # Questionnaires the participant answers herself (trials.epro's visit page).
                "participant_reported": any(schema_for(link.crf).respondent == "participant" for link in links),
            }
        )
    return rows


def screening_entries(participant: Participant, codes: set[str]) -> dict[str, CrfEntry]:
    """The participant's first entry of each CRF of `codes` (the screening one): what eligibility
    reads (provides participants.hooks.screening_entries)."""
    found: dict[str, CrfEntry] = {}
    for entry in (
        CrfEntry.objects.filter(visit__participant=participant, crf_code__in=codes)
        .select_related("crf", "visit").order_by("visit__order", "visit__sequence")
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
    # Read by key, then checked against the user's roles read once per request (site_visible_to:
    # participants_for_user's rule) rather than filtered by a subquery on the roles (issue 22).
    # order_by(): by key, not by the model's ordering (which joined the trial only to sort one row).
    visit = Visit.objects.filter(pk=pk).select_related("participant__site", "participant__consent_document", "definition").order_by().first()
    if visit is None or not site_visible_to(user, visit.participant.site):
        return None
    attach_trial(visit.participant)
    return visit


def participant_logs(participant: Participant) -> list[dict]:
    """The participant's logs (the trial's log CRFs, in the trial file's order), each with its
    records in the order they were added; a record carries its `entry` (None until first saved)
    and the entry's answers for the list's columns."""
    links = list(
        TrialCrf.objects.filter(trial=participant.trial_id, use=TrialCrfUse.LOG, is_active=True)
        .select_related("crf").defer("crf__definition").order_by("order")  # schema_for's cache has what is needed
    )
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


def medication_log(participant: Participant) -> list[dict] | None:
    """The participant's medication log as criteria read it (`meds`), or None when it holds no record
    (provides participants.hooks.medication_log)."""
    records = []

    for entry in CrfEntry.objects.filter(
        participant=participant, crf_code=MEDICATION_LOG, visit__record_kind=RecordKind.LOG
    ).only("answers"):
        answers = entry.answers
        if not answers.get("start_date"):
            continue
        records.append({
            "name": answers.get("medication") or "", "class": answers.get("drug_class") or "other",
            "start": answers.get("start_date"), "stop": answers.get("stop_date"), "ongoing": answers.get("ongoing") is True,
            "stop_reason": answers.get("stop_reason"),
        })
    return records or None
