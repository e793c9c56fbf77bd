"""The reads of the participant's dashboard (issue 22, third pass): everything the page shows in a
fixed, small number of queries, as plain values rather than model instances.

Before, the page made 15 queries (9 now, session, user, roles and the Study build link included): the grid (visits, their entries with a join for the open
queries, the visit definitions' CRFs, the unscheduled CRFs), the next visit, the logs (their CRFs
and their records), the open queries, the allocation... and built a model instance per visit,
entry and CRF link. Here:

- the participant with her site, consent version and allocation (arm, slot) in one row, and
  whether a newer consent version asks her to re-consent as an annotation of that row;
- all her visits (the grid's, the logs' records) with their entries in one query of values (a
  LEFT JOIN; the logs' answers are read only when she has log records): the next visit is found
  among them in Python with the rule of `visits.selectors.next_visit`;
- the CRFs of her visits, the trial's unscheduled and log CRFs in one UNION of values; the CRF
  versions become (deferred) model instances only for `schema_for`, once per version;
- her open (or answered) queries counted per entry in one grouped query: the page's total (AE
  queries included) and each chip's count.

What each list holds is what `visits.selectors.participant_grid` / `participant_logs` gave the
template (same order, same rows): the page's HTML is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import BooleanField, CharField, Count, Exists, IntegerField, OuterRef, Value

from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.participants.models import Allocation, Participant
from trials.protocol.engine import schema_for
from trials.protocol.models import ConsentDocument, CrfDefinition, TrialCrf, TrialCrfUse, VisitCrf
from trials.protocol.selectors import site_visible_to
from trials.protocol.trial_cache import attach_trial
from trials.visits.models import CrfEntry, EntryStatus, RecordKind, Visit, VisitStatus

VISIT_FIELDS = (
    "id", "definition_id", "definition__code", "record_kind", "log_crf_code", "sequence", "label", "planned_date",
    "window_start", "window_end", "visit_date", "status", "status_reason", "out_of_window", "order",
)
CRF_FIELDS = ("id", "code", "version", "title", "description", "content_sha256")


@dataclass
class VisitRow:
    """A visit as the dashboard shows it (the fields of the template's `row.visit`)."""

    pk: int
    definition_id: int | None
    code: str | None  # its definition's code; None for an unscheduled visit or a log record
    record_kind: str
    log_crf_code: str
    sequence: int
    label: str
    planned_date: object
    window_start: object
    window_end: object
    visit_date: object
    status: str
    status_reason: str
    out_of_window: bool
    order: int


@dataclass
class EntryRow:
    pk: int
    visit_id: int
    crf_code: str
    status: str
    open_queries: int = 0
    answers: dict | None = None

    def get_status_display(self) -> str:
        """As the model's: the status's label, or the stored value if it is not a choice."""
        return str(dict(EntryStatus.choices).get(self.status, self.status))


@dataclass
class Link:
    """A CRF due at a visit (VisitCrf) or allowed at unscheduled visits / kept as a log (TrialCrf)."""

    crf_code: str
    required: bool  # a TrialCrf has no `required`: the template's `link.required` was empty for it
    crf: CrfDefinition


def dashboard_participant(user, pk: int) -> Participant | None:  # noqa: ANN001
    """`visits.selectors.participant_for_user` (by key, its site checked against the request's
    roles memo) with, in the same row, her allocation (`_dashboard_allocation`: None or an
    Allocation with its arm and slot) and `_dashboard_newer_consent` (whether an active consent
    version approved after hers requires re-consent: `participants.services.consent_problem`'s
    second read)."""
    newer = Exists(ConsentDocument.objects.filter(
        trial=OuterRef("trial_id"), is_active=True, requires_reconsent=True,
        approved_on__gt=OuterRef("consent_document__approved_on"),
    ))
    participant = (
        Participant.objects.filter(pk=pk)
        .select_related("site", "consent_document", "allocation__arm", "allocation__slot")
        .annotate(_newer_consent=newer)
        .order_by()
        .first()
    )
    if participant is None or not site_visible_to(user, participant.site):
        return None
    try:
        participant._dashboard_allocation = participant.allocation
    except Allocation.DoesNotExist:
        participant._dashboard_allocation = None
    return attach_trial(participant)


def next_visit_among(visits: list[VisitRow], today) -> VisitRow | None:  # noqa: ANN001
    """`visits.selectors.next_visit` over rows already read: not dated, planned, its window not
    past (or, without a window, planned from today), not done / missed / not done; the earliest
    planned, then by order."""
    closed = {VisitStatus.DONE, VisitStatus.MISSED, VisitStatus.NOT_DONE}
    candidates = [
        v for v in visits
        if v.visit_date is None and v.planned_date is not None and v.status not in closed
        and ((v.window_end is not None and v.window_end >= today) or (v.window_end is None and v.planned_date >= today))
    ]
    return min(candidates, key=lambda v: (v.planned_date, v.order), default=None)


def _crf(row: dict, prefix: str, cache: dict[int, CrfDefinition]) -> CrfDefinition:
    """One CRF version as a model instance whose definition (the large JSON column) is deferred:
    `schema_for` reads it only the first time it compiles that version."""
    pk = row[prefix + "id"]
    crf = cache.get(pk)
    if crf is None:
        crf = cache[pk] = CrfDefinition.from_db("default", CRF_FIELDS, [row[prefix + name] for name in CRF_FIELDS])
    return crf


def _links(participant: Participant, definition_ids: set[int]) -> tuple[dict[int, list[Link]], list[Link], list[Link]]:
    """The CRFs of the visit definitions (by definition, in order), the trial's unscheduled CRFs
    and its log CRFs (in order), in one query."""
    crf_columns = [f"crf__{name}" for name in CRF_FIELDS]
    visit_links = (
        VisitCrf.objects.filter(visit_definition__in=definition_ids, is_active=True)
        .annotate(kind=Value("v", output_field=CharField()))
        .order_by()
        .values_list("kind", "visit_definition_id", "crf_code", "required", "order", *crf_columns)
    )
    trial_links = (
        TrialCrf.objects.filter(trial=participant.trial_id, use__in=(TrialCrfUse.UNSCHEDULED, TrialCrfUse.LOG), is_active=True)
        .annotate(required_=Value(False, output_field=BooleanField()), def_=Value(0, output_field=IntegerField()))
        .order_by()
        .values_list("use", "def_", "crf_code", "required_", "order", *crf_columns)
    )
    names = ("kind", "definition_id", "crf_code", "required", "order", *crf_columns)
    rows = [dict(zip(names, row, strict=True)) for row in visit_links.union(trial_links, all=True)]
    rows.sort(key=lambda r: r["order"])  # stable: the order within each list, as each query ordered it
    crfs: dict[int, CrfDefinition] = {}
    by_definition: dict[int, list[Link]] = {}
    unscheduled: list[Link] = []
    logs: list[Link] = []
    for row in rows:
        link = Link(row["crf_code"], row["required"], _crf(row, "crf__", crfs))
        if row["kind"] == "v":
            by_definition.setdefault(row["definition_id"], []).append(link)
        elif row["kind"] == TrialCrfUse.UNSCHEDULED:
            unscheduled.append(link)
        else:
            logs.append(link)
    return by_definition, unscheduled, logs


def dashboard_reads(participant: Participant) -> dict:
    """The grid's rows (`visit`, `cells` of `link` and `entry`, `participant_reported`), the logs
    (`link`, `columns`, `records` of `visit`, `entry`, `cells`), the next visit and the number of
    her open queries."""
    from trials.visits.selectors import LOG_COLUMNS, _shown

    # Her visits and their entries in one query: a LEFT JOIN, one row per entry (a visit without
    # entries once, its entry columns empty).
    visits: list[VisitRow] = []
    entries: dict[int, dict[str, EntryRow]] = {}
    by_pk: dict[int, EntryRow] = {}
    columns = (*VISIT_FIELDS, "crf_entries__id", "crf_entries__crf_code", "crf_entries__status")
    width = len(VISIT_FIELDS)
    for row in Visit.objects.filter(participant=participant).order_by("order", "sequence", "pk").values_list(*columns):
        if not visits or visits[-1].pk != row[0]:
            visits.append(VisitRow(*row[:width]))
        entry_pk, crf_code, status = row[width:]
        if entry_pk is not None:
            by_pk[entry_pk] = entries.setdefault(row[0], {})[crf_code] = EntryRow(entry_pk, row[0], crf_code, status)
    total_queries = 0
    for entry_id, n in (
        Query.objects.filter(participant=participant, state__in=list(OPEN_QUERY_STATES))
        .order_by().values("entry_id").annotate(n=Count("id")).values_list("entry_id", "n")
    ):
        total_queries += n
        if entry_id in by_pk:
            by_pk[entry_id].open_queries = n
    by_definition, unscheduled, log_links = _links(participant, {v.definition_id for v in visits if v.definition_id})

    grid = []
    for visit in visits:
        if visit.record_kind != RecordKind.VISIT:
            continue
        links = by_definition.get(visit.definition_id, []) if visit.definition_id else unscheduled
        found = entries.get(visit.pk, {})
        grid.append({
            "visit": visit,
            "cells": [{"link": link, "entry": found.get(link.crf_code)} for link in links],
            "participant_reported": any(schema_for(link.crf).respondent == "participant" for link in links),
        })

    records = sorted((v for v in visits if v.record_kind == RecordKind.LOG), key=lambda v: (v.log_crf_code, v.sequence))
    log_entries = [entry for record in records for entry in entries.get(record.pk, {}).values()]
    if log_entries:  # the answers (a large JSON column) only for the records' entries, the log's cells
        answers = dict(CrfEntry.objects.filter(pk__in=[e.pk for e in log_entries]).order_by().values_list("id", "answers"))
        for entry in log_entries:
            entry.answers = answers.get(entry.pk) or {}
    by_code: dict[str, list[dict]] = {link.crf_code: [] for link in log_links}
    for record in records:
        entry = next(iter(entries.get(record.pk, {}).values()), None)
        by_code.setdefault(record.log_crf_code, []).append({"visit": record, "entry": entry})
    logs = []
    for link in log_links:
        inputs = [item for item in schema_for(link.crf).items if item.is_input]
        naming = [item for item in inputs if item.type not in {"date", "datetime", "yes_no"}][:3]
        columns = [item for item in inputs if item in naming or item.type in {"date", "datetime", "yes_no"}][:LOG_COLUMNS]
        rows = by_code.get(link.crf_code, [])
        for row in rows:
            answers = row["entry"].answers if row["entry"] else {}
            row["cells"] = [_shown(item, (answers or {}).get(item.name)) for item in columns]
        logs.append({"link": link, "columns": columns, "records": rows})
    return {
        "grid": grid,
        "logs": logs,
        "next_visit": next_visit_among(visits, participant.site.today()),
        "open_queries": total_queries,
    }
