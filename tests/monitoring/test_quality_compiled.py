"""The data-quality rules compiled to SQL (trials.monitoring.quality.compiled) give exactly the hits
CEL gives (issue 21 bench: the simplest rule shapes run as one SQL statement).

- The cel package's behaviour the compiler reproduces is checked on the package itself.
- The seed trials' rules over the demo data, and synthetic rules of every compiled shape over a small
  synthetic trial with odd stored values injected (a float in an integer item, a string, a boolean,
  a malformed decimal, a visit without a date, two visits at the same position), run both ways
  (`compile_sql=True/False`) and must hit the same entries.
- Hand-computed cases: values set on chosen entries, the expected hit worked out from the rule's
  meaning (not from either evaluator).
PostgreSQL only (the compiler is; SQLite runs every rule with CEL).
"""

from __future__ import annotations

import cel
import pytest
from django.db import connection

from edc.audit import audited_save, system_user
from tests.participants.conftest import _seeded, demo  # noqa: F401 - fixtures
from trials.demo.synthetic import SynthParams, synth_trial_generate
from trials.monitoring.quality.compiled import compile_rule, item_types
from trials.monitoring.quality.rules import QualityRule, rule_hits, trial_rules
from trials.protocol.engine import schema_for
from trials.protocol.models import CrfDefinition, Trial
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, Visit

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL compiler is PostgreSQL-only")


def hits(trial: Trial, rules: list[QualityRule], *, compile_sql: bool) -> set[tuple[str, str, int]]:
    return {
        (rule.code, type(target).__name__ if type(target).__name__ == "AdverseEvent" else "entry", target.pk)
        for rule, target in rule_hits(trial, rules, compile_sql=compile_sql)
    }


def run(expression: str, context: dict) -> object:
    try:
        return cel.compile(expression).execute(context)
    except Exception:  # noqa: BLE001 - an error, as rules.evaluate reads it
        return "error"


def test_the_cel_semantics_the_compiler_relies_on():
    # An ordering comparison with a null, or between a number and a string, is an error.
    assert run("x <= 195", {"x": None}) == "error"
    assert run("x <= y", {"x": None, "y": None}) == "error"
    assert run("x <= 195", {"x": "12"}) == "error"
    assert run("x <= 195", {"x": True}) == "error"
    # int and double compare by value.
    assert run("x <= 3", {"x": 3.5}) is False
    assert run("x > 3", {"x": 3.5}) is True
    assert run("x <= 195.5", {"x": 195}) is True
    # x == null is true only for null, false otherwise.
    assert run("x == null", {"x": None}) is True
    assert run("x == null", {"x": 0}) is False
    assert run("x != null", {"x": "a"}) is True
    # Arithmetic: int * int an int, double * double a double, int * double and null * x errors.
    assert run("x * 4", {"x": 3}) == 12
    assert run("x * 1.1", {"x": 3}) == "error"
    assert run("x <= y * 4.0", {"x": 1.0, "y": None}) == "error"
    # Errors are absorbed as SQL's three-valued logic absorbs NULL.
    assert run("x < 4 || y < 3", {"x": 3, "y": None}) is True
    assert run("x < 4 || y < 3", {"x": 5, "y": None}) == "error"
    assert run("x > 4 && y < 3", {"x": 3, "y": None}) is False
    assert run("!(x < 3)", {"x": None}) == "error"
    # Strings compare by code point (as UTF-8 bytes under COLLATE "C").
    assert run("x <= y", {"x": "é", "y": "z"}) is False
    assert run("x <= y", {"x": "2026-01-02", "y": "2026-01-10"}) is True
    # A CRF missing from `previous` is an error; `aes.exists` over an empty list is false.
    assert run("p.C.x <= 3", {"p": {}}) == "error"
    assert run("aes.exists(a, a.grade >= 3)", {"aes": []}) is False


def test_the_compiler_takes_the_simple_shapes_and_leaves_the_rest_to_cel():
    types = {"int_01": "integer", "dec_02": "decimal", "date_05": "date", "choice_03": "single_choice", "photo": "file"}

    def compiled(expression: str) -> bool:
        return compile_rule(expression, "C", types, "r0") is not None

    assert compiled("int_01 <= 195")
    assert compiled("dec_02 <= previous['C'].dec_02 * 4.0 && dec_02 >= previous.C.dec_02 * 0.9")
    assert compiled("date_05 <= visit_date && date_05 >= consent_date")
    assert compiled("choice_03 < 4 || int_01 < 190 || aes.exists(a, a.grade >= 3)")
    assert compiled("int_01 == null || !(int_01 > -5)")
    assert not compiled("dec_02 <= previous.OTHER.dec_02 * 1.1")  # another CRF's previous entry
    assert not compiled("dec_02 <= baseline.C.dec_02 * 1.1")
    assert not compiled("int_01 * 1.1 <= 3.0")  # int * double: a CEL error, left to CEL
    assert not compiled("photo != null")  # a file item: CEL sees its name
    assert not compiled("date_05 <= today")  # the site's today
    assert not compiled("size(choice_03) > 0")
    assert not compiled("int_01 == 3")
    assert not compiled("!int_01 < 3")  # CEL reads (!int_01) < 3
    assert compiled("!(int_01 < 3) && !aes.exists(a, a.grade > 4)")
    assert not compiled("lab.alt.grade < 3")
    assert not compiled("unknown_item <= 3")


@postgresql_only
@pytest.mark.django_db
def test_the_seed_trials_rules_hit_the_same_entries_compiled_and_with_cel(demo):  # noqa: ARG001, F811
    trials = list(Trial.objects.exclude(quality_rules=[]))
    assert {t.code for t in trials} >= {"ASC-DU"}
    for trial in trials:
        rules = trial_rules(trial)
        assert hits(trial, rules, compile_sql=True) == hits(trial, rules, compile_sql=False), trial.code


SYNTH_RULES = [
    ("RANGE", "int_01 <= 195"),
    ("PREVIOUS", "dec_02 <= previous['{crf}'].dec_02 * 4.0"),
    ("CHANGE", "dec_02 <= previous['{crf}'].dec_02 * 1.1 && dec_02 >= previous['{crf}'].dec_02 * 0.9"),
    ("DATES", "date_05 <= visit_date"),
    ("CONSENT", "date_05 >= consent_date"),
    ("AES", "choice_03 < 4 || int_07 < 190 || aes.exists(a, a.grade >= 3)"),
    ("EMPTY", "int_01 != null"),
    ("NOT", "!(int_01 > 150) || int_07 == null"),
    ("MIXED", "dec_02 <= 195 && int_01 >= 20.5"),
    ("PRODUCT", "int_07 <= int_01 * 3"),
    ("TEXT", "date_05 >= '2020-01-01' || int_01 < 100"),
]


@pytest.fixture
def synth(db):  # noqa: ANN001, ANN201, ARG001
    trial = synth_trial_generate(SynthParams(code="QCOMP", participants=12, visits=4, crfs=2)).trial
    crf = f"{trial.code}-C01"
    trial.quality_rules = [
        {"code": code, "message": code, "crf": crf, "item": "int_01", "expression": expression.format(crf=crf)}
        for code, expression in SYNTH_RULES
    ]
    audited_save(trial, user=system_user(), reason="Rules for the test")
    return trial


def entries_of(trial: Trial) -> list[CrfEntry]:
    return list(
        CrfEntry.objects.filter(participant__trial=trial, crf_code=f"{trial.code}-C01")
        .order_by("participant_id", "visit__order", "visit__sequence", "pk")
    )


def set_answers(entry: CrfEntry, **values: object) -> None:
    """Stored values as they may be found (imported, or from an older version), not through the form."""
    entry.answers = {**entry.answers, **values}
    audited_save(entry, user=system_user(), reason="Odd stored value for the test")


def set_visit(visit: Visit, **values: object) -> None:
    for name, value in values.items():
        setattr(visit, name, value)
    audited_save(visit, user=system_user(), reason="Visit changed for the test")


@postgresql_only
@pytest.mark.django_db
def test_synthetic_rules_with_odd_values_hit_the_same_entries_both_ways(synth):
    trial = synth
    entries = entries_of(trial)
    # Odd stored values the SQL leaves undecided (CEL evaluates them) or decides as CEL does.
    set_answers(entries[1], int_01=195.5, dec_02="1e3", date_05=None)  # a float in an integer item
    set_answers(entries[2], int_01="200", dec_02="abc", int_07=True)  # a string, a malformed decimal, a boolean
    set_answers(entries[3], int_01=None, dec_02=None, choice_03=None)
    set_answers(entries[5], int_01=10**16, dec_02="-0", date_05="2999-12-31")
    set_answers(entries[6], int_01=196, dec_02="0.30000000000000004", int_07=190, choice_03=4)
    entry = entries[6]
    set_visit(entries[7].visit, visit_date=None)
    # Two visits at the same (order, sequence): the previous entry is not the row before.
    later = entries[9]
    set_visit(later.visit, order=entries[8].visit.order, sequence=entries[8].visit.sequence)
    rules = trial_rules(trial)
    types = item_types([schema_for(crf) for crf in CrfDefinition.objects.filter(code=f"{trial.code}-C01")])
    assert all(compile_rule(rule.expression, rule.crf, types, "r0") is not None for rule in rules)  # every shape compiled
    compiled, with_cel = hits(trial, rules, compile_sql=True), hits(trial, rules, compile_sql=False)
    assert compiled == with_cel
    assert ("RANGE", "entry", entry.pk) in compiled  # 196 > 195
    assert ("RANGE", "entry", entries[1].pk) in compiled  # 195.5 > 195: left to CEL, which compares by value
    assert ("RANGE", "entry", entries[2].pk) not in compiled  # "200": a string against a number, an error


@postgresql_only
@pytest.mark.django_db
def test_hand_computed_hits(synth):
    """Values chosen on the first participant's four C01 entries; the expected hits follow from the
    rules' meaning."""
    trial = synth
    entries = entries_of(trial)
    first = [e for e in entries if e.participant_id == entries[0].participant_id]
    assert len(first) == 4
    visit_dates = [e.visit.visit_date.isoformat() for e in first]
    values = [
        {"int_01": 100, "dec_02": "10.0", "date_05": visit_dates[0], "choice_03": 1, "int_07": 10},
        {"int_01": 196, "dec_02": "11.5", "date_05": "2999-01-01", "choice_03": 4, "int_07": 190},  # +15%
        {"int_01": 195, "dec_02": "46.1", "date_05": visit_dates[2], "choice_03": 1, "int_07": 10},  # x4.009
        {"int_01": None, "dec_02": "46.0", "date_05": visit_dates[3], "choice_03": 1, "int_07": None},
    ]
    for entry, answers in zip(first, values, strict=True):
        set_answers(entry, **answers)
    rules = trial_rules(trial)
    found = {
        (code, pk) for code, kind, pk in hits(trial, rules, compile_sql=True)
        if kind == "entry" and pk in {e.pk for e in first} and code in {"RANGE", "PREVIOUS", "CHANGE", "DATES", "EMPTY", "AES"}
    }
    severe = AdverseEvent.objects.filter(participant_id=first[0].participant_id, grade__gte=3).exists()
    expected = {
        ("RANGE", first[1].pk),  # 196 > 195 (195 is within)
        ("CHANGE", first[1].pk),  # 11.5 > 10.0 * 1.1
        ("PREVIOUS", first[2].pk),  # 46.1 > 11.5 * 4
        ("CHANGE", first[2].pk),  # 46.1 > 11.5 * 1.1
        ("DATES", first[1].pk),  # 2999-01-01 after the visit
        ("EMPTY", first[3].pk),  # int_01 unanswered
        # int_01 null: RANGE not evaluated; 46.0 is within 46.1 * 0.9 .. * 1.1: no CHANGE
    }
    if not severe:
        expected.add(("AES", first[1].pk))  # choice 4, int_07 190, no grade >= 3 AE
    assert found == expected, (sorted(found), sorted(expected), [e.pk for e in first])
