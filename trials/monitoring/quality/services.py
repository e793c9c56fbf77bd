"""Runs of the data-quality rules: raise a query per new hit, close the rule's queries whose data no
longer hit, and coalesce requests (a button click and the nightly run never overlap).

Queries are keyed on (rule code, entry): a hit with an open or answered query of the rule raises
nothing; a hit whose last query a reviewer closed or cancelled with the value unchanged since it was
raised raises nothing either (the reviewer accepted the value: a rule does not argue with her); a
hit whose value changed since (or whose query the rule itself closed) raises a new query; an open
query of another origin on the same item (e.g. the overridden soft check that already asks the same)
stands for it. Every
write goes through trials.monitoring.queries.services (audited, refused under a lock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from edc.audit import system_user
from edc.coalesce import coalesced_request, coalesced_run
from trials.monitoring.models import OPEN_QUERY_STATES, QualityRunState, Query, QueryOrigin
from trials.monitoring.quality.rules import rule_hits, trial_rules
from trials.monitoring.queries.services import query_value_changed, rule_query_close, rule_query_raise
from trials.protocol.models import Trial
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry


@dataclass
class RunResult:
    hits: dict[str, int] = field(default_factory=dict)  # rule code -> entries hit
    raised: int = 0
    closed: int = 0
    locked: int = 0  # raises or closes refused by a lock on the data (retried at the next run)


def _key(rule_code: str, entry_id: int | None, adverse_event_id: int | None) -> tuple[str, str, int]:
    """A rule's query target: (rule code, "entry" or "ae", id)."""
    return (rule_code, "entry", entry_id) if entry_id else (rule_code, "ae", adverse_event_id)


def _latest_rule_queries(trial: Trial) -> dict[tuple[str, str, int], Query]:
    """The latest query of each (rule, entry or adverse event) of the trial."""
    latest: dict[tuple[str, str, int], Query] = {}
    queries = Query.objects.filter(trial=trial, origin=QueryOrigin.QUALITY_RULE).order_by("raised_at", "pk")
    # Only what the reconciliation reads (not the entry and its CRF version: a run has thousands).
    fields = ("id", "rule_code", "entry_id", "adverse_event_id", "state", "closed_by_id", "value_at_raise", "item", "row_id")
    for query in queries.only(*fields, "participant_id", "trial_id"):
        latest[_key(query.rule_code, query.entry_id, query.adverse_event_id)] = query
    return latest


def quality_rules_run(trial: Trial) -> RunResult:
    """Evaluate every rule of the trial over all its stored entries and adverse events and reconcile
    the queries."""
    robot = system_user()
    rules = trial_rules(trial)
    latest = _latest_rule_queries(trial)
    # An open query of another origin on the same item (a reviewer's, an overridden soft check's)
    # already asks the site about it: the rule does not ask a second time.
    asked = {
        _key(item, entry_id, ae_id)
        for entry_id, ae_id, item in Query.objects.filter(trial=trial, state__in=OPEN_QUERY_STATES)
        .exclude(origin=QueryOrigin.QUALITY_RULE).values_list("entry_id", "adverse_event_id", "item")
    }
    result = RunResult(hits={rule.code: 0 for rule in rules})
    hit_keys: set[tuple[str, str, int]] = set()
    for rule, target in rule_hits(trial, rules):
        on_ae = isinstance(target, AdverseEvent)
        key = _key(rule.code, None if on_ae else target.pk, target.pk if on_ae else None)
        hit_keys.add(key)
        result.hits[rule.code] += 1
        query = latest.get(key)
        if query is not None and query.state in OPEN_QUERY_STATES:
            continue
        if _key(rule.item, None if on_ae else target.pk, target.pk if on_ae else None) in asked:
            continue
        if query is not None and query.closed_by_id != robot.pk and not query_value_changed(query):
            continue  # closed or cancelled by a reviewer, value unchanged: accepted
        try:
            with transaction.atomic():
                if on_ae:
                    rule_query_raise(adverse_event=target, item=rule.item, text=rule.message, rule_code=rule.code, user=robot)
                else:  # the hit is a plain row (rules.StoredEntry): the model instance only to raise
                    entry = CrfEntry.objects.select_related("participant", "visit").get(pk=target.pk)
                    rule_query_raise(entry=entry, item=rule.item, text=rule.message, rule_code=rule.code, user=robot)
            result.raised += 1
        except ValidationError:
            result.locked += 1
    for key, query in latest.items():
        if key in hit_keys or query.state not in OPEN_QUERY_STATES:
            continue
        # Not hit now: the data changed, or the rule was removed or rewritten by an amendment.
        try:
            with transaction.atomic():
                rule_query_close(query=query, user=robot)
            result.closed += 1
        except ValidationError:
            result.locked += 1
    return result


# --- Coalescing (edc.coalesce, as the safety summaries) ------------------------------------------


def _enqueue(trial_id: int) -> None:
    from trials.monitoring.tasks import quality_rules_task

    quality_rules_task.delay(trial_id)


# A run queued longer than this is taken as lost (a message dropped with its worker): the nightly
# request enqueues a new one rather than wait forever behind it.
STALE_AFTER = timedelta(hours=12)


def quality_run_request(trial_id: int) -> bool:
    """Ask for a run of the trial's rules: enqueue one unless one is pending or running (then the
    running one runs once more at its end). Returns whether a task was enqueued."""
    return coalesced_request(QualityRunState, trial_id, _enqueue, stale_after=STALE_AFTER)


def quality_run_execute(trial_id: int) -> bool:
    """One coalesced run (the Celery task's body): run, store the hits per rule, then release the
    queue or enqueue the next run if another was requested meanwhile. Returns whether one follows."""

    def run() -> RunResult | None:
        trial = Trial.objects.filter(pk=trial_id).first()
        return quality_rules_run(trial) if trial is not None else None

    def record(state: QualityRunState, result: RunResult | None) -> list[str]:
        result = result or RunResult()
        state.last_finished_at = timezone.now()
        state.last_hits = {"hits": result.hits, "raised": result.raised, "closed": result.closed, "locked": result.locked}
        return ["last_finished_at", "last_hits"]

    return coalesced_run(QualityRunState, trial_id, run, _enqueue, record=record)
