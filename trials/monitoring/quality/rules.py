"""Evaluation of the data-quality rules over stored entries and adverse events: pure reads, no writes.

A rule is evaluated per entry of its CRF with the context the CRF's own edit checks get at a save
(trials.protocol.engine.validate_answers and trials.visits.services.entry_context): the entry's
answers by item name, `visit_date`, `consent_date`, `today` (the site's) and the other CRFs of the
participant as `visit.<CRF>` (this visit), `previous.<CRF>` (latest earlier visit) and
`baseline.<CRF>` (first earlier visit); besides, `aes` (the participant's adverse events), `lab`
(the entry's laboratory values graded against the site's normal ranges) and the participant's
`study_end_date`, `death_date` and `enrolment_date` (trials.protocol.quality says what each holds).
A rule with `subject: adverse_event` is evaluated per adverse event of the trial instead.

The whole trial is read in a few queries (the entries ordered by participant and visit, the AEs, the
lab ranges of the sites); the namespaces are then built in memory, and `aes`/`lab` only when a rule
reads them (rather than one query per entry).

A rule that cannot be evaluated for an entry (a null in arithmetic, a CRF not entered, a lab value
without a range) is not a hit, as an edit check reading an unanswered item is not applied.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from itertools import groupby

import cel

from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.engine import CRF_NAMESPACES, cel_answers, crf_references, evaluate, schema_for
from trials.protocol.labs import grade_answers
from trials.protocol.models import LabNormalRange, Trial
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, EntryStatus

END_STATUSES = frozenset({
    ParticipantStatus.COMPLETED, ParticipantStatus.WITHDRAWN, ParticipantStatus.LOST_TO_FOLLOW_UP, ParticipantStatus.DIED,
})
DEMOG = "DEMOG"  # the CRF the lab grading reads the participant's sex and date of birth from


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
    subject: str = "crf"  # or "adverse_event"
    names: frozenset[str] = frozenset()  # the names the expression reads

    @classmethod
    def from_spec(cls, spec: dict) -> QualityRule:
        expression = spec["expression"]
        program = cel.compile(expression)
        return cls(
            code=spec["code"], message=spec["message"], crf=spec.get("crf") or "", item=spec.get("item") or "",
            expression=expression, severity=spec.get("severity") or "major", program=program,
            reads=frozenset(code for _ns, code, _item in crf_references(expression) if code),
            subject=spec.get("subject") or "crf", names=frozenset(program.variables()),
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


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def ae_map(ae: AdverseEvent) -> dict:
    """An adverse event as a rule reads it (trials.protocol.quality.AE_FIELDS)."""
    term = ae.coded_term
    return {
        "number": ae.number, "verbatim_term": ae.verbatim_term, "coded_term": term.pt if term else None,
        "soc": term.soc if term else None, "onset_date": _iso(ae.onset_date), "end_date": _iso(ae.end_date),
        "ongoing": ae.ongoing, "grade": ae.grade, "serious": ae.serious, "seriousness": list(ae.seriousness or []),
        "outcome": ae.outcome, "related_product": ae.related_product, "procedure": ae.procedure,
        "related_procedure": ae.related_procedure, "expected": ae.expected, "action_taken": ae.action_taken,
        "is_dlt": ae.is_dlt, "leads_to_withdrawal": ae.leads_to_withdrawal,
    }


def participant_names(participant: Participant) -> dict:
    """`study_end_date`, `death_date`, `enrolment_date` of a participant."""
    ended = participant.status in END_STATUSES
    return {
        "study_end_date": _iso(participant.status_date) if ended else None,
        "death_date": _iso(participant.status_date) if participant.status == ParticipantStatus.DIED else None,
        "enrolment_date": _iso(participant.enrolment_date),
    }


def _adverse_events(trial: Trial) -> dict[int, list[AdverseEvent]]:
    by_participant: dict[int, list[AdverseEvent]] = defaultdict(list)
    events = (
        AdverseEvent.objects.filter(participant__trial=trial).select_related("coded_term", "participant__site")
        .order_by("participant_id", "number")
    )
    for ae in events:
        by_participant[ae.participant_id].append(ae)
    return by_participant


def rule_hits(trial: Trial, rules: list[QualityRule]) -> Iterator[tuple[QualityRule, CrfEntry | AdverseEvent]]:
    """Every (rule, entry) — or (rule, adverse event) for a rule on the AE log — where the rule's
    expression is false."""
    if not rules:
        return
    crf_rules = [rule for rule in rules if rule.subject == "crf"]
    ae_rules = [rule for rule in rules if rule.subject == "adverse_event"]
    aes_by_participant = _adverse_events(trial) if ae_rules or any("aes" in r.names for r in crf_rules) else {}
    aes_cache: dict[int, list[dict]] = {}

    def aes_of(participant_id: int) -> list[dict]:
        if participant_id not in aes_cache:
            aes_cache[participant_id] = [ae_map(ae) for ae in aes_by_participant.get(participant_id, ())]
        return aes_cache[participant_id]

    yield from _crf_rule_hits(trial, crf_rules, aes_of)
    for events in aes_by_participant.values() if ae_rules else ():
        participant = events[0].participant
        shared = {
            "aes": aes_of(participant.pk), "today": participant.site.today().isoformat(),
            "consent_date": _iso(participant.consent_date), **participant_names(participant),
        }
        for ae, fields in zip(events, aes_of(participant.pk), strict=True):
            context = {**shared, **fields}
            for rule in ae_rules:
                ok, passed = evaluate(rule.program, context)
                if ok and passed is False:
                    yield rule, ae


def _crf_rule_hits(trial: Trial, rules: list[QualityRule], aes_of) -> Iterator[tuple[QualityRule, CrfEntry]]:  # noqa: ANN001
    if not rules:
        return
    by_crf: dict[str, list[QualityRule]] = {}
    for rule in rules:
        by_crf.setdefault(rule.crf, []).append(rule)
    codes = set(by_crf) | set().union(*(rule.reads for rule in rules))
    lab_crfs = {rule.crf for rule in rules if "lab" in rule.names}
    ranges: dict[int, list[LabNormalRange]] = defaultdict(list)
    if lab_crfs:
        codes.add(DEMOG)
        for row in LabNormalRange.objects.filter(site__trial=trial, is_active=True):
            ranges[row.site_id].append(row)
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
            if any("aes" in rule.names for rule in targeted):
                context["aes"] = aes_of(entry.participant_id)
            if entry.crf_code in lab_crfs:
                context["lab"] = _lab(entry, entries, ranges[entry.participant.site_id])
            for rule in targeted:
                ok, passed = evaluate(rule.program, context)
                if ok and passed is False:
                    yield rule, entry


def _lab(entry: CrfEntry, entries: list[CrfEntry], ranges: list[LabNormalRange]) -> dict:
    """The entry's lab items graded as the CRF page grades them (trials.visits.services.entry_lab_grades):
    the range of the site for the participant's sex and age (DEMOG) on the sample date, the first
    earlier entry of the CRF as baseline."""
    if not ranges:
        return {}
    visit = entry.visit
    demog = next((e.answers for e in entries if e.crf_code == DEMOG), None) or {}
    baseline = next(
        (e.answers for e in entries if e.crf_code == entry.crf_code and e.pk != entry.pk
         and (e.visit.order, e.visit.sequence) < (visit.order, visit.sequence)), None,
    )
    on = _day(entry.answers.get("sample_date")) or visit.visit_date or entry.participant.site.today()
    born = _day(demog.get("date_of_birth"))
    age = None if born is None else on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    graded = grade_answers(schema_for(entry.crf), entry.answers, ranges=ranges, sex=demog.get("sex"), age=age, on=on, baseline=baseline)
    return {
        name: {
            "test": g.test, "value": float(entry.answers[name]), "lln": None if g.lln is None else float(g.lln),
            "uln": None if g.uln is None else float(g.uln), "indicator": g.indicator, "grade": g.grade, "term": g.term,
        }
        for name, g in graded.items()
    }


def _day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


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
        **participant_names(participant),  # a CRF item of the same name wins, as in its own checks
        **answers_of(entry),
        **namespaces,
        "today": today.isoformat(),
        "visit_date": (visit.visit_date or today).isoformat(),
        "consent_date": participant.consent_date.isoformat() if participant.consent_date else None,
    }
