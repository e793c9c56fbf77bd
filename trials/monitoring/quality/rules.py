"""Evaluation of the data-quality rules over stored entries: pure reads, no writes.

A rule is evaluated per entry of its CRF with the context the CRF's own edit checks get at a save
(trials.protocol.engine.validate_answers and trials.visits.services.entry_context): the entry's
answers by item name, `visit_date`, `consent_date`, `today` (the site's) and the other CRFs of the
participant as `visit.<CRF>` (this visit), `previous.<CRF>` (latest earlier visit) and
`baseline.<CRF>` (first earlier visit). The whole trial is read in one query ordered by participant
and visit; the namespaces are then built in memory (rather than one query per entry).

A rule that cannot be evaluated for an entry (a null in arithmetic, a CRF not entered) is not a hit,
as an edit check reading an unanswered item is not applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

import cel

from trials.protocol.engine import CRF_NAMESPACES, cel_answers, crf_references, evaluate, schema_for
from trials.protocol.models import Trial
from trials.visits.models import CrfEntry, EntryStatus


@dataclass(frozen=True)
class QualityRule:
    code: str
    message: str
    crf: str
    item: str
    expression: str
    severity: str
    program: cel.Program
    reads: frozenset[str]  # other CRF codes the expression reads

    @classmethod
    def from_spec(cls, spec: dict) -> QualityRule:
        expression = spec["expression"]
        return cls(
            code=spec["code"], message=spec["message"], crf=spec["crf"], item=spec.get("item") or "",
            expression=expression, severity=spec.get("severity") or "major", program=cel.compile(expression),
            reads=frozenset(code for _ns, code, _item in crf_references(expression) if code),
        )


def trial_rules(trial: Trial) -> list[QualityRule]:
    """The trial's rules as loaded from its trial file (validated by the loader)."""
    return [QualityRule.from_spec(spec) for spec in trial.quality_rules or []]


def _entries(trial: Trial, codes: set[str]) -> Iterator[CrfEntry]:
    return (
        CrfEntry.objects.filter(participant__trial=trial, crf_code__in=codes)
        .exclude(status=EntryStatus.NOT_STARTED)
        .select_related("visit", "crf", "participant__site")
        .order_by("participant_id", "visit__order", "visit__sequence", "pk")
        .iterator(chunk_size=2000)
    )


def rule_hits(trial: Trial, rules: list[QualityRule]) -> Iterator[tuple[QualityRule, CrfEntry]]:
    """Every (rule, entry) where the rule's expression is false."""
    if not rules:
        return
    by_crf: dict[str, list[QualityRule]] = {}
    for rule in rules:
        by_crf.setdefault(rule.crf, []).append(rule)
    codes = set(by_crf) | set().union(*(rule.reads for rule in rules))
    answers_cache: dict[int, dict] = {}

    def answers_of(entry: CrfEntry) -> dict:
        if entry.pk not in answers_cache:
            answers_cache[entry.pk] = cel_answers(schema_for(entry.crf), entry.answers)
        return answers_cache[entry.pk]

    for _participant, group in groupby(_entries(trial, codes), key=lambda e: e.participant_id):
        entries = list(group)
        answers_cache.clear()
        for entry in entries:
            targeted = by_crf.get(entry.crf_code)
            if not targeted:
                continue
            context = _context(entry, entries, answers_of)
            for rule in targeted:
                ok, passed = evaluate(rule.program, context)
                if ok and passed is False:
                    yield rule, entry


def _context(entry: CrfEntry, entries: list[CrfEntry], answers_of) -> dict:  # noqa: ANN001
    """The CRF checks' context for a stored entry (see the module docstring)."""
    visit, participant = entry.visit, entry.participant
    today = participant.site.today()
    namespaces: dict[str, dict] = {namespace: {} for namespace in CRF_NAMESPACES}
    here = (visit.order, visit.sequence)
    for other in entries:
        if other.pk == entry.pk:
            continue
        if other.visit_id == entry.visit_id:
            namespaces["visit"][other.crf_code] = answers_of(other)
        elif (other.visit.order, other.visit.sequence) < here:
            namespaces["previous"][other.crf_code] = answers_of(other)  # later ones overwrite: the latest
            namespaces["baseline"].setdefault(other.crf_code, answers_of(other))
    return {
        **answers_of(entry),
        **namespaces,
        "today": today.isoformat(),
        "visit_date": (visit.visit_date or today).isoformat(),
        "consent_date": participant.consent_date.isoformat() if participant.consent_date else None,
    }
