"""Benchmark of the data-quality rules (issue 21; run with `make bench` or directly).

A 2,000-participant synthetic trial (trials.demo.synthetic, as `manage.py synth_trial --participants
2000`: 10 visits x 5 CRFs of 30 items, 100,000 complete entries, about one AE per participant) and
20 rules, four per CRF, one of each kind the trial files use:
  range     - `int_01 <= 195`                                       (an item against a limit)
  previous  - `dec_02 <= previous.<CRF>.dec_02 * 4.0`               (the previous visit's entry)
  dates     - `date_05 <= visit_date`                               (an item against the visit)
  aes       - `choice_03 < 4 || int_07 < 190 || aes.exists(a, a.grade >= 3)`  (two items, the AE log)
(a few % of the entries hit, as in real data).
Reports, in the same run on the same database:
  sql       - one hand-written SQL statement reading the same entries' data (a window function for
              the previous visit, a join to the participants with a grade >= 3 AE), hits per rule
  rules     - trials.monitoring.quality.rules.rule_hits over the 20 rules (every hit enumerated; on
              PostgreSQL the shapes trials.monitoring.quality.compiled takes run as one SQL
              statement, the rest with CEL)
  run       - with BENCH_RUN=1 only: quality_rules_run, steady state (the hits already queried:
              evaluation plus the reconciliation reads; the first run, that raises the queries, is
              timed apart)
and checks that the SQL and the rules find the same hits per rule. Target: rules <= 5x sql.
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
"""

import os
import statistics
import time

import benchenv  # noqa: F401 - the project root on sys.path, Django set up
from benchenv import timed  # noqa: E402

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "2000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TARGET = 5.0
CRFS = 5


def rule_specs(code: str) -> list[dict]:
    specs = []
    for n in range(1, CRFS + 1):
        crf = f"{code}-C{n:02d}"
        specs += [
            {"code": f"R{n}_RANGE", "message": "int_01 above 195", "crf": crf, "item": "int_01", "expression": "int_01 <= 195"},
            {"code": f"R{n}_PREVIOUS", "message": "dec_02 more than quadrupled", "crf": crf, "item": "dec_02",
             "expression": f"dec_02 <= previous['{crf}'].dec_02 * 4.0"},
            {"code": f"R{n}_DATES", "message": "date_05 after the visit", "crf": crf, "item": "date_05", "expression": "date_05 <= visit_date"},
            {"code": f"R{n}_AES", "message": "very severe, int_07 high, no grade >= 3 AE", "crf": crf, "item": "choice_03",
             "expression": "choice_03 < 4 || int_07 < 190 || aes.exists(a, a.grade >= 3)"},
        ]
    return specs


def sql_hits(trial_id: int) -> dict[str, int]:
    """The 20 rules in one statement over the same entries (not started ones excluded)."""
    cast_real = "numeric" if connection.vendor == "postgresql" else "REAL"
    sql = f"""
        WITH e AS (
            SELECT ce.crf_code, ce.participant_id, ce.answers ->> 'int_01' AS int_01, ce.answers ->> 'dec_02' AS dec_02,
                   ce.answers ->> 'date_05' AS date_05, v.visit_date, ce.answers ->> 'choice_03' AS choice_03,
                   ce.answers ->> 'int_07' AS int_07,
                   LAG(ce.answers ->> 'dec_02') OVER (
                       PARTITION BY ce.participant_id, ce.crf_code ORDER BY v."order", v.sequence, ce.id) AS prev_dec_02
            FROM visits_crfentry ce JOIN visits_visit v ON v.id = ce.visit_id
            JOIN participants_participant p ON p.id = ce.participant_id
            WHERE p.trial_id = %(trial)s AND ce.status <> 'not_started'
        ), severe AS (
            SELECT DISTINCT ae.participant_id FROM safety_adverseevent ae
            JOIN participants_participant p ON p.id = ae.participant_id WHERE p.trial_id = %(trial)s AND ae.grade >= 3
        )
        SELECT e.crf_code,
               SUM(CASE WHEN CAST(e.int_01 AS integer) > 195 THEN 1 ELSE 0 END),
               SUM(CASE WHEN CAST(e.dec_02 AS {cast_real}) > CAST(e.prev_dec_02 AS {cast_real}) * 4 THEN 1 ELSE 0 END),
               SUM(CASE WHEN e.date_05 > CAST(e.visit_date AS text) THEN 1 ELSE 0 END),
               SUM(CASE WHEN CAST(e.choice_03 AS integer) >= 4 AND CAST(e.int_07 AS integer) >= 190
                        AND severe.participant_id IS NULL THEN 1 ELSE 0 END)
        FROM e LEFT JOIN severe ON severe.participant_id = e.participant_id
        GROUP BY e.crf_code
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trial": trial_id})
        rows = cursor.fetchall()
    hits: dict[str, int] = {}
    for crf_code, *counts in rows:
        n = int(crf_code.rsplit("-C", 1)[1])
        for kind, count in zip(("RANGE", "PREVIOUS", "DATES", "AES"), counts, strict=True):
            hits[f"R{n}_{kind}"] = int(count or 0)
    return hits


def rules_hits(trial) -> dict[str, int]:  # noqa: ANN001
    from trials.monitoring.quality.rules import rule_hits, trial_rules

    rules = trial_rules(trial)
    hits = {rule.code: 0 for rule in rules}
    for rule, _entry in rule_hits(trial, rules):
        hits[rule.code] += 1
    return hits


def compiled_rules(trial) -> int:  # noqa: ANN001
    """How many of the trial's rules the SQL compiler takes (on PostgreSQL; none on SQLite)."""
    from trials.monitoring.quality.compiled import compile_rule, item_types
    from trials.monitoring.quality.rules import trial_rules
    from trials.protocol.engine import schema_for
    from trials.protocol.models import CrfDefinition

    if connection.vendor != "postgresql":
        return 0
    rules = trial_rules(trial)
    types = {
        code: item_types([schema_for(crf) for crf in CrfDefinition.objects.filter(code=code)])
        for code in {rule.crf for rule in rules}
    }
    return sum(compile_rule(rule.expression, rule.crf, types[rule.crf], "r0") is not None for rule in rules)


def main() -> None:
    from edc.audit import audited_save, system_user
    from trials.demo.synthetic import SynthParams, synth_trial_generate
    from trials.monitoring.quality.services import quality_rules_run

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        start = time.perf_counter()
        result = synth_trial_generate(SynthParams(code="BENCHQ", participants=PARTICIPANTS, crfs=CRFS))
        trial = result.trial
        trial.quality_rules = rule_specs(trial.code)
        audited_save(trial, user=system_user(), reason="benchmark rules")
        setup_s = time.perf_counter() - start
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM visits_crfentry ce JOIN participants_participant p ON p.id = ce.participant_id "
                "WHERE p.trial_id = %s", [trial.pk])
            (n_entries,) = cursor.fetchone()
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(rules_hits, trial)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
            return
        full_run = bool(os.environ.get("BENCH_RUN"))
        if full_run:
            first_s, first = timed(lambda: quality_rules_run(trial))  # raises the queries
        steps = {"sql": lambda: sql_hits(trial.pk), "rules": lambda: rules_hits(trial)}
        if full_run:
            steps["run"] = lambda: quality_rules_run(trial)
        times: dict[str, list[float]] = {name: [] for name in steps}
        results: dict[str, object] = {}
        for _ in range(REPEATS):  # interleaved
            for name, fn in steps.items():
                elapsed, results[name] = timed(fn)
                times[name].append(elapsed)

        sql, rules = results["sql"], results["rules"]
        assert sql == rules, f"the SQL and the rules disagree: {sql} != {rules}"
        if full_run:
            assert results["run"].raised == 0 and results["run"].hits == rules

        base = statistics.median(times["sql"])
        compiled = compiled_rules(trial)
        print(f"database: {connection.vendor}, {PARTICIPANTS} participants, {n_entries} entries, 20 rules, "
              f"repeats: {REPEATS} (setup {setup_s:.1f} s)")
        print(f"hits: {sum(rules.values())} ({', '.join(f'{k} {v}' for k, v in sorted(rules.items()) if k.startswith('R1_'))} …)")
        if full_run:
            print(f"first run (raises {first.raised} queries): {first_s:.1f} s")
        print(f"rules compiled to SQL: {compiled} of 20 (the others by CEL)")
        print(f"{'step':<8}{'median ms':>10}{'x sql':>8}")
        for name, values in times.items():
            print(f"{name:<8}{statistics.median(values) * 1000:>10.1f}{statistics.median(values) / base:>8.2f}")
        ratio = statistics.median(times["rules"]) / base
        print(f"target rules <= {TARGET:.1f}x sql: {'met' if ratio <= TARGET else 'NOT met'} ({ratio:.2f}x)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
