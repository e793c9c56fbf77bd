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

On PostgreSQL the simplest rule shapes are evaluated by one SQL statement instead
(trials.monitoring.quality.compiled says which and why the hits are the same); CEL here evaluates
the other rules and the entries the SQL leaves undecided.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from itertools import groupby
from typing import NamedTuple

import re

import cel
from django.db import connection, transaction
from django.db.models import Case, F, JSONField, When
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import JSONObject

from trials.monitoring.quality.compiled import RuleSql, compile_rule, hits_sql, item_types
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.engine import CRF_NAMESPACES, crf_references, evaluate, schema_for, to_cel
from trials.protocol.labs import grade_entry
from trials.protocol.models import CrfDefinition, LabNormalRange, Site, Trial
from trials.protocol.quality import AE_FIELDS, ae_member_names
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
    ae_fields: frozenset[str] | None = None  # the AE fields it reads in `aes` (None: it may read all)

    @classmethod
    def from_spec(cls, spec: dict) -> QualityRule:
        expression = spec["expression"]
        program = cel.compile(expression)
        return cls(
            code=spec["code"], message=spec["message"], crf=spec.get("crf") or "", item=spec.get("item") or "",
            expression=expression, severity=spec.get("severity") or "major", program=program,
            reads=frozenset(code for _ns, code, _item in crf_references(expression) if code),
            subject=spec.get("subject") or "crf", names=frozenset(program.variables()), ae_fields=_ae_fields(expression),
        )


def _ae_fields(expression: str) -> frozenset[str] | None:
    """The AE fields an expression reads through `aes.<macro>(a, a.<field> …)`; None when it also
    reads `aes` another way (`aes[0]`, `aes.map(…)` results passed on): then every field is given.
    Converting a value for CEL is most of an evaluation's time, so a rule gets only what it reads."""
    if re.search(r"(?<![\w.])aes\s*\[", expression) or re.search(r"(?<![\w.])aes\s*(?:[^.\s]|$)", expression):
        return None
    fields = frozenset(ae_member_names(expression))
    return fields if fields <= frozenset(AE_FIELDS) else None


def trial_rules(trial: Trial) -> list[QualityRule]:
    """The trial's rules as loaded from its trial file (validated by the loader)."""
    return [QualityRule.from_spec(spec) for spec in trial.quality_rules or []]


class _Visit(NamedTuple):
    order: int
    sequence: int
    visit_date: date | None


class StoredEntry:
    """A stored CRF entry as the rules read it: the columns they need, no model instance (building
    100,000 of them was most of a run's time). A hit is yielded as this; `pk` is the CrfEntry's, so
    a caller loads the model instance of the few entries it acts on."""

    __slots__ = ("pk", "crf_code", "crf_id", "answers", "visit_id", "visit", "participant_id", "participant", "crf")

    def __init__(self, pk, crf_code, crf_id, answers, visit_id, visit, participant_id):  # noqa: ANN001, PLR0913
        self.pk, self.crf_code, self.crf_id, self.answers = pk, crf_code, crf_id, answers
        self.visit_id, self.visit, self.participant_id = visit_id, visit, participant_id
        self.participant = self.crf = None

    def __repr__(self) -> str:
        return f"<StoredEntry {self.pk} {self.crf_code}>"


MAX_SUBSET_KEYS = 40  # JSONB_BUILD_OBJECT takes at most 100 arguments (two per key)


def _entries(trial: Trial, codes: set[str], keys: set[str] | None = None, whole: frozenset[str] = frozenset()) -> Iterator[StoredEntry]:
    """The trial's entries of `codes`, ordered by participant and visit, as plain rows (no model
    instances, no CRF version: its schema is compiled once per version, `crfs` in `_crf_rule_hits`).
    With `keys` on PostgreSQL, the answers hold only those items (an absent one as null, which CEL
    sees as an unanswered one): the rules read a few items of 30, and decoding the whole JSON
    document in Python was a fifth of a run. The entries of the `whole` CRFs (the lab grading reads
    a lab CRF's and DEMOG's answers) come whole in the same query."""
    answers = "answers"
    queryset = CrfEntry.objects.filter(participant__trial=trial, crf_code__in=codes).exclude(status=EntryStatus.NOT_STARTED)
    if keys and len(keys) <= MAX_SUBSET_KEYS and connection.vendor == "postgresql":
        answers = "subset"
        subset = JSONObject(**{key: KeyTransform(key, "answers") for key in sorted(keys)})
        if whole:
            subset = Case(When(crf_code__in=sorted(whole), then=F("answers")), default=subset, output_field=JSONField())
        queryset = queryset.annotate(subset=subset)
    rows = (
        queryset.order_by("participant_id", "visit__order", "visit__sequence", "visit_id", "pk")
        .values_list(
            "id", "crf_code", "crf_id", answers, "visit_id", "participant_id",
            "visit__order", "visit__sequence", "visit__visit_date",
        )
        .iterator(chunk_size=2000)
    )
    visits: dict[int, _Visit] = {}
    for pk, crf_code, crf_id, answers, visit_id, participant_id, order, sequence, visit_date in rows:
        visit = visits.get(visit_id)
        if visit is None:
            visit = visits[visit_id] = _Visit(order, sequence, visit_date)
        yield StoredEntry(pk, crf_code, crf_id, answers, visit_id, visit, participant_id)


def _participants(trial: Trial) -> dict[int, Participant]:
    return {
        participant.pk: participant
        for participant in Participant.objects.filter(trial=trial).only(
            "id", "site_id", "trial_id", "status", "status_date", "consent_date", "enrolment_date",
        )
    }


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


def rule_hits(
    trial: Trial, rules: list[QualityRule], *, compile_sql: bool = True,
) -> Iterator[tuple[QualityRule, StoredEntry | AdverseEvent]]:
    """Every (rule, entry) — or (rule, adverse event) for a rule on the AE log — where the rule's
    expression is false. On PostgreSQL the simplest rule shapes on a CRF are evaluated by one SQL
    statement (trials.monitoring.quality.compiled, which says why the hits are the same), CEL the
    rest; `compile_sql=False` evaluates every rule with CEL (the tests compare both)."""
    if not rules:
        return
    crf_rules = [rule for rule in rules if rule.subject == "crf"]
    ae_rules = [rule for rule in rules if rule.subject == "adverse_event"]
    loaded: list[dict[int, list[AdverseEvent]]] = []

    def aes_by_participant() -> dict[int, list[AdverseEvent]]:
        """The trial's AEs, read when CEL first needs them (not when SQL evaluated every `aes` rule)."""
        if not loaded:
            loaded.append(_adverse_events(trial))
        return loaded[0]

    aes_cache: dict[int, list[dict]] = {}
    aes_subsets: dict[tuple[int, frozenset[str]], list[dict]] = {}

    def aes_of(participant_id: int, fields: frozenset[str] | None = None) -> list[dict]:
        """The participant's AEs as maps (only `fields` of each when given)."""
        if participant_id not in aes_cache:
            aes_cache[participant_id] = [ae_map(ae) for ae in aes_by_participant().get(participant_id, ())]
        if fields is None:
            return aes_cache[participant_id]
        key = (participant_id, fields)
        if key not in aes_subsets:
            aes_subsets[key] = [{name: event[name] for name in fields} for event in aes_cache[participant_id]]
        return aes_subsets[key]

    yield from _crf_rule_hits(trial, crf_rules, aes_of, compile_sql=compile_sql and _compilable())
    for events in aes_by_participant().values() if ae_rules else ():
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


def _crf_rule_hits(trial: Trial, rules: list[QualityRule], aes_of, *, compile_sql: bool) -> Iterator[tuple[QualityRule, StoredEntry]]:  # noqa: ANN001
    if not rules:
        return
    only: dict[str, set[int]] | None = None
    if compile_sql:
        compiled_rules, only = yield from _compiled_rule_hits(trial, rules)
        rules = [rule for rule in rules if rule.code not in compiled_rules or only.get(rule.code)]
        if not rules:
            return
    yield from _cel_rule_hits(trial, rules, aes_of, only)


def _compilable() -> bool:
    """PostgreSQL with a UTF8 database: `COLLATE "C"` then orders strings by code point, as CEL."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_encoding')")
        return cursor.fetchone()[0] == "UTF8"


def _compiled_rule_hits(trial: Trial, rules: list[QualityRule]):  # noqa: ANN202 - a generator returning a value
    """The hits of the rules the SQL compiler takes (yielded); returns (their codes, rule code ->
    the entries where SQL left one undecided, for CEL)."""
    versions: dict[str, list] = defaultdict(list)
    for crf in CrfDefinition.objects.filter(code__in={rule.crf for rule in rules}):
        versions[crf.code].append(schema_for(crf))
    types = {code: item_types(schemas) for code, schemas in versions.items()}
    compiled: dict[str, tuple[str, RuleSql]] = {}
    by_prefix: dict[str, QualityRule] = {}
    for n, rule in enumerate(rules):
        if rule.crf not in types:
            continue
        prefix = f"r{n}"
        sql_rule = compile_rule(rule.expression, rule.crf, types[rule.crf], prefix)
        if sql_rule is not None:
            compiled[prefix], by_prefix[prefix] = (rule.crf, sql_rule), rule
    undecided: dict[str, set[int]] = defaultdict(set)
    if not compiled:
        return set(), undecided
    sql, params = hits_sql(trial.pk, compiled, EntryStatus.NOT_STARTED)
    with transaction.atomic(), connection.cursor() as cursor:
        # JIT-compiling the statement's many expressions took longer than running them (0.4 s of
        # 3), and the window's sort spilled to disk (100,000 entries: ~20 MB). Set for this
        # statement only, then put back (an outer transaction, e.g. a test's, goes on after it).
        cursor.execute("SELECT current_setting('jit'), current_setting('work_mem')")
        jit, work_mem = cursor.fetchone()
        cursor.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true)")
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
        cursor.execute("SELECT set_config('jit', %s, true), set_config('work_mem', %s, true)", [jit, work_mem])
    flags = [(columns.index(f"hit {prefix}"), columns.index(f"undecided {prefix}"), rule) for prefix, rule in by_prefix.items()]
    for row in rows:
        pk, crf_code, crf_id, visit_id, participant_id = row[:5]
        entry = None
        for hit_at, undecided_at, rule in flags:
            if row[undecided_at]:
                undecided[rule.code].add(pk)
            elif row[hit_at]:
                if entry is None:  # the columns the run reads (the pk); no answers, visit or CRF version
                    entry = StoredEntry(pk, crf_code, crf_id, None, visit_id, None, participant_id)
                yield rule, entry
    return {rule.code for rule in by_prefix.values()}, undecided


def _cel_rule_hits(trial: Trial, rules: list[QualityRule], aes_of, only: dict[str, set[int]] | None) -> Iterator[tuple[QualityRule, StoredEntry]]:  # noqa: ANN001
    """The rules evaluated by CEL over the entries walked in order (`only`: rule code -> the entries
    to evaluate it on, for a rule SQL evaluated elsewhere)."""
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
    crfs = {crf.pk: crf for crf in CrfDefinition.objects.filter(code__in=codes)}
    sites = {site.pk: site for site in Site.objects.filter(trial=trial)}
    today = {pk: site.today().isoformat() for pk, site in sites.items()}  # once per run, not per entry
    plans = {rule.code: _plan(rule) for rule in rules}
    # The items of each CRF the rules read (None: all): only those are converted for CEL.
    needed: dict[str, set[str] | None] = {}
    for rule in rules:
        if rule.crf in needed and needed[rule.crf] is None:
            pass
        else:
            needed.setdefault(rule.crf, set()).update(rule.names)
        for crfs_read in plans[rule.code].values():
            for code, items in crfs_read.items():
                if items is None or needed.get(code, set()) is None:
                    needed[code] = None
                else:
                    needed.setdefault(code, set()).update(items)

    participants = _participants(trial)
    converters: dict[int, tuple] = {}  # CRF version -> the (name, item) pairs to convert for CEL

    def converter(crf_id: int) -> tuple:
        if crf_id not in converters:
            crf = crfs[crf_id]
            converters[crf_id] = _converter(schema_for(crf), needed.get(crf.code))
        return converters[crf_id]

    # The items any rule reads (None: whole answers, for a rule reading a whole CRF); the lab grading
    # reads the whole answers of the lab CRFs and DEMOG, in the same query.
    whole = frozenset(lab_crfs | {DEMOG}) if lab_crfs else frozenset()
    subset_codes = codes - whole
    keys = (
        None if any(needed.get(code) is None for code in subset_codes)
        else set().union(*(needed.get(code) or set() for code in subset_codes))
    )
    for participant_id, group in groupby(_entries(trial, codes, keys, whole), key=lambda e: e.participant_id):
        entries = list(group)
        answers: dict[int, dict] = {}

        def answers_of(entry: StoredEntry) -> dict:
            values = answers.get(entry.pk)
            if values is None:
                values = answers[entry.pk] = _convert(converter(entry.crf_id), entry.answers)
            return values

        participant = participants[participant_id]
        participant.site = sites[participant.site_id]
        shared = {**participant_names(participant), "consent_date": _iso(participant.consent_date)}
        # One pass over the visits in order: `previous` and `baseline` hold the entries of the
        # visits before the current one (by order and sequence), `visit` the current visit's.
        latest: dict[str, StoredEntry] = {}
        first: dict[str, StoredEntry] = {}
        pending: dict[str, StoredEntry] = {}  # entries of visits at the current (order, sequence)
        here = None
        for _visit_id, visit_group in groupby(entries, key=lambda e: e.visit_id):
            visit_entries = list(visit_group)
            visit = visit_entries[0].visit
            if (visit.order, visit.sequence) != here:
                for code, other in pending.items():
                    latest[code] = other
                    first.setdefault(code, other)
                pending, here = {}, (visit.order, visit.sequence)
            for entry in visit_entries:
                entry.crf = crfs[entry.crf_id]
                entry.participant = participant
                targeted = by_crf.get(entry.crf_code)
                if not targeted:
                    continue
                base = {
                    **shared, **answers_of(entry), "today": today[participant.site_id],
                    "visit_date": (visit.visit_date.isoformat() if visit.visit_date else today[participant.site_id]),
                }
                if entry.crf_code in lab_crfs:
                    base["lab"] = _lab(entry, entries, ranges[participant.site_id])
                for rule in targeted:
                    if only is not None and rule.code in only and entry.pk not in only[rule.code]:
                        continue
                    context = base
                    reads = plans[rule.code]
                    if reads:
                        context = {**base, **_namespaces(reads, entry, visit_entries, latest, first, answers_of)}
                    ok = False
                    if "aes" in rule.names:
                        # First without `aes`: converting the AE maps for CEL is the dearest part of
                        # an evaluation, and most entries are decided by their items (`x < 4 || aes…`).
                        # CEL reads an undefined name as an error, which `||`/`&&` absorb only when
                        # the other side decides: a value without `aes` is the value with it.
                        ok, passed = evaluate(rule.program, context)
                        if not ok:
                            context = {**context, "aes": aes_of(entry.participant_id, rule.ae_fields)}
                    if not ok:
                        ok, passed = evaluate(rule.program, context)
                    if ok and passed is False:
                        yield rule, entry
            for entry in visit_entries:
                pending[entry.crf_code] = entry


def _converter(schema, names: set[str] | None) -> tuple:  # noqa: ANN001
    """The items of a CRF version `_convert` hands to CEL: those in `names` (all when None), as
    `cel_answers` converts them; worked out once per version rather than per entry."""
    return tuple(
        (item.name, item, item.type == "repeating_group")
        for item in schema.items
        if item.type != "descriptive" and (names is None or item.name in names)
    )


def _convert(converter: tuple, stored: dict) -> dict:
    """`cel_answers` limited to the converter's items."""
    out: dict = {}
    for name, item, repeating in converter:
        if repeating:
            out[name] = [
                {child.name: to_cel(child, row.get(child.name)) for child in item.children}
                for row in stored.get(name) or [] if isinstance(row, dict)
            ]
        else:
            out[name] = to_cel(item, stored.get(name))
    return out


def _plan(rule: QualityRule) -> dict[str, dict[str, set[str] | None]]:
    """namespace -> CRF code -> the items the rule reads there (None: the whole CRF), so that only
    those values are handed to CEL (converting a context is most of an evaluation's time)."""
    plan: dict[str, dict[str, set[str] | None]] = {}
    for namespace, code, item in crf_references(rule.expression):
        if not code:
            continue
        crfs = plan.setdefault(namespace, {})
        if item is None or crfs.get(code, set()) is None:
            crfs[code] = None
        else:
            crfs.setdefault(code, set()).add(item)
    return plan


def _namespaces(plan, entry, visit_entries, latest, first, answers_of) -> dict:  # noqa: ANN001
    out: dict[str, dict] = {namespace: {} for namespace in CRF_NAMESPACES}
    for namespace, crfs in plan.items():
        for code, items in crfs.items():
            if namespace == "visit":
                other = next((e for e in visit_entries if e.crf_code == code and e.pk != entry.pk), None)
            else:
                other = (latest if namespace == "previous" else first).get(code)
            if other is None:
                continue
            values = answers_of(other)
            out[namespace][code] = values if items is None else {name: values.get(name) for name in items}
    return out


def _lab(entry: StoredEntry, entries: list[StoredEntry], ranges: list[LabNormalRange]) -> dict:
    """The entry's lab items graded as the CRF page grades them (trials.protocol.labs.grade_entry, as
    trials.visits.services.entry_lab_grades): the range of the site for the participant's sex and
    age (DEMOG) on the sample date, the first earlier entry of the CRF as baseline."""
    if not ranges:
        return {}
    visit = entry.visit
    demog = next((e.answers for e in entries if e.crf_code == DEMOG), None) or {}
    baseline = next(
        (e.answers for e in entries if e.crf_code == entry.crf_code and e.pk != entry.pk
         and (e.visit.order, e.visit.sequence) < (visit.order, visit.sequence)), None,
    )
    graded = grade_entry(
        schema_for(entry.crf), entry.answers, ranges=ranges, demog=demog, baseline=baseline,
        visit_date=visit.visit_date, today=entry.participant.site.today,
    )
    return {
        name: {
            "test": g.test, "value": float(entry.answers[name]), "lln": None if g.lln is None else float(g.lln),
            "uln": None if g.uln is None else float(g.uln), "indicator": g.indicator, "grade": g.grade, "term": g.term,
        }
        for name, g in graded.items()
    }
