"""Benchmark of the safety summary (run with `make bench` or directly).

5,000 participants in two arms (a few not allocated, some ended, 90 % treated a few days after
enrolment) and 100,000 adverse events, a third of them coded. Reports, in the same run on the same
database:
  baseline  - hand-written SQL computing the same content: one participant-level query (safety
              population, worst grade of the treatment-emergent AEs, flags and events, pre-treatment
              AEs, follow-up from the first dose per participant, then grouped by arm and worst
              grade), one by system organ class and term, one for the serious TEAEs by onset date
  core      - the hand-written participant-level query alone (the headline counts)
  summary   - trials.safety.summary.compute_summary(), unblinded (by arm)
  pooled    - compute_summary(), blinded (arms pooled)
and checks that the baseline and compute_summary agree on the headline counts.
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
"""

import os
import random
import statistics
import time
from datetime import timedelta

import benchenv  # noqa: E402, F401 - the project root on sys.path, Django set up
from benchenv import timed  # noqa: E402

from django.db import connection  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "5000"))
AES = int(os.environ.get("BENCH_AES", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
TARGET = 1.5


def _saved(obj):  # noqa: ANN001, ANN202
    obj._change_reason = "benchmark"
    obj.save()
    return obj


def prepare() -> int:
    """A blinded randomized trial with participants, allocations and AEs written in bulk (raw rows:
    the setup is not what is measured). Returns the trial id."""
    from edc.audit import system_user
    from trials.participants.models import Allocation, Participant
    from trials.protocol.models import Arm, Site, Trial
    from trials.safety.models import AdverseEvent, CodingTerm

    rng = random.Random(20260101)
    system = system_user()
    trial = _saved(Trial(code="BENCHAE", title="Safety benchmark", phase="2", study_type="interventional", design="randomized",
                         masking="double", masked_roles=["participant", "investigator"], target_enrolment=PARTICIPANTS,
                         status="recruiting", sponsor="Benchmark", conditions=["x"]))
    site = _saved(Site(trial=trial, code="PAR", name="PAR", city="Paris", country="FR", time_zone="Europe/Paris", recruitment_status="recruiting"))
    arms = [_saved(Arm(trial=trial, code=code, label=code.title(), arm_type="experimental")) for code in ("ACTIVE", "PLACEBO")]
    terms = [CodingTerm(dictionary="BENCH", version="1", llt_code=str(n), llt=f"LLT {n}", pt_code=f"P{n // 2}", pt=f"PT {n // 2}",
                        soc_code=f"S{n // 10}", soc=f"SOC {n // 10}") for n in range(60)]
    CodingTerm.objects.bulk_create(terms)
    terms = list(CodingTerm.objects.filter(dictionary="BENCH"))
    today = timezone.localdate()
    statuses = ["enrolled"] * 6 + ["on_treatment"] * 6 + ["completed", "withdrawn", "died", "screening", "screen_failure"]
    rows = []
    for i in range(PARTICIPANTS):
        status = rng.choice(statuses)
        enrolled = today - timedelta(days=rng.randint(1, 700)) if status not in ("screening", "screen_failure") else None
        ended = status in ("completed", "withdrawn", "died")
        treated = enrolled + timedelta(days=rng.randint(0, 10)) if enrolled and rng.random() < 0.9 else None
        rows.append(Participant(
            trial=trial, site=site, screening_number=f"S{i:06d}", subject_number=f"{i:06d}" if enrolled else "", status=status,
            consent_date=(enrolled or today) - timedelta(days=2), enrolment_date=enrolled, first_treatment_date=treated,
            status_date=(max(enrolled, treated or enrolled) + timedelta(days=rng.randint(0, max(0, (today - (treated or enrolled)).days))))
            if ended else None,
        ))
    QuerySet.bulk_create(Participant.objects.all(), rows, batch_size=2000)
    people = list(Participant.objects.filter(trial=trial).order_by("pk").values_list("pk", "enrolment_date"))
    allocations = [
        Allocation(participant_id=pk, arm=arms[n % 2], method="randomization", allocated_by=system, kit_code=f"K{n:06d}")
        for n, (pk, enrolled) in enumerate(people) if enrolled is not None and n % 50 != 0  # 2 % not allocated
    ]
    QuerySet.bulk_create(Allocation.objects.all(), allocations, batch_size=2000)
    numbers: dict[int, int] = {}
    aes = []
    now = timezone.now()
    words = ["Headache", "Nausea", "Fatigue", "Injection site pain", "Rash", "Dizziness", "Cough", "Arthralgia"]
    for _ in range(AES):
        pk, enrolled = rng.choice(people)
        numbers[pk] = numbers.get(pk, 0) + 1
        start = enrolled or today - timedelta(days=30)
        grade = rng.choices([1, 2, 3, 4, 5], weights=[50, 30, 14, 5, 1])[0]
        serious = grade >= 3 and rng.random() < 0.5
        aes.append(AdverseEvent(
            participant_id=pk, number=numbers[pk], verbatim_term=rng.choice(words),
            coded_term=rng.choice(terms) if rng.random() < 0.35 else None,
            onset_date=start + timedelta(days=rng.randint(0, 760)), grade=grade, serious=serious,
            related_product=rng.choice(["not_related", "unlikely", "possible", "probable", "definite"]),
            leads_to_withdrawal=rng.random() < 0.01, is_dlt=rng.random() < 0.005,
            outcome="fatal" if grade == 5 else "recovered", aware_at=now,
            procedure="none", related_procedure="not_related", action_taken="none", serious_aware_at=now if serious else None,
        ))
    QuerySet.bulk_create(AdverseEvent.objects.all(), aes, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return trial.pk


def _days_between(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def baseline_core(trial_id: int, cutoff) -> list:  # noqa: ANN001
    """Per enrolled participant: in the safety population (dosed on or before the cut-off), worst
    grade, flags and events of the treatment-emergent AEs (onset on/after the first dose), the
    pre-treatment AEs, follow-up from the first dose; then by arm, safety population, worst grade."""
    end = "CASE WHEN p.status IN ('completed','withdrawn','lost_to_follow_up','died') AND p.status_date < %(cut)s THEN p.status_date ELSE %(cut)s END"
    died = "(p.status = 'died' AND (p.status_date IS NULL OR p.status_date <= %(cut)s))"
    dosed = "(p.first_treatment_date IS NOT NULL AND p.first_treatment_date <= %(cut)s)"
    te = "(e.onset_date >= p.first_treatment_date)"
    sql = f"""
        WITH pop AS (
            SELECT p.id, a.arm_id, CASE WHEN {dosed} THEN 1 ELSE 0 END AS safety,
                   CASE WHEN {dosed} THEN {_days_between(end, 'p.first_treatment_date')} ELSE 0 END AS days,
                   CASE WHEN {died} THEN 1 ELSE 0 END AS died_status
            FROM participants_participant p LEFT JOIN participants_allocation a ON a.participant_id = p.id
            WHERE p.trial_id = %(trial)s AND p.enrolment_date <= %(cut)s AND p.status NOT IN ('screening', 'screen_failure')
        ), per AS (
            SELECT e.participant_id,
                   MAX(CASE WHEN {te} THEN e.grade END) AS worst, SUM(CASE WHEN {te} THEN 1 ELSE 0 END) AS events,
                   SUM(CASE WHEN {te} AND e.serious THEN 1 ELSE 0 END) AS sae_events,
                   MAX(CASE WHEN {te} AND e.serious THEN 1 ELSE 0 END) AS sae,
                   MAX(CASE WHEN {te} AND e.related_product IN ('possible','probable','definite') THEN 1 ELSE 0 END) AS related,
                   MAX(CASE WHEN {te} AND e.leads_to_withdrawal THEN 1 ELSE 0 END) AS withdrawal,
                   MAX(CASE WHEN {te} AND e.is_dlt THEN 1 ELSE 0 END) AS dlt,
                   MAX(CASE WHEN {te} AND (e.grade = 5 OR e.outcome = 'fatal') THEN 1 ELSE 0 END) AS fatal,
                   SUM(CASE WHEN {te} AND e.grade >= 3 THEN 1 ELSE 0 END) AS severe_events,
                   SUM(CASE WHEN {te} THEN 0 ELSE 1 END) AS pre_events
            FROM safety_adverseevent e JOIN participants_participant p ON p.id = e.participant_id
            JOIN pop ON pop.id = p.id
            WHERE e.onset_date <= %(cut)s GROUP BY e.participant_id
        )
        SELECT pop.arm_id, pop.safety, per.worst, COUNT(*), SUM(pop.days), SUM(COALESCE(per.events, 0)),
               SUM(COALESCE(per.sae_events, 0)), SUM(COALESCE(per.sae, 0)), SUM(COALESCE(per.related, 0)),
               SUM(COALESCE(per.withdrawal, 0)), SUM(COALESCE(per.dlt, 0)),
               SUM(CASE WHEN pop.safety = 1 AND (per.fatal = 1 OR pop.died_status = 1) THEN 1 ELSE 0 END),
               SUM(COALESCE(per.severe_events, 0)), SUM(COALESCE(per.pre_events, 0))
        FROM pop LEFT JOIN per ON per.participant_id = pop.id
        GROUP BY pop.arm_id, pop.safety, per.worst
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"trial": trial_id, "cut": cutoff})
        return cursor.fetchall()


def baseline_full(trial_id: int, cutoff) -> list:  # noqa: ANN001
    """The core counts, then TEAEs by system organ class and term, then serious TEAEs by onset date."""
    core = baseline_core(trial_id, cutoff)
    teae = """SELECT e.*, a.arm_id FROM safety_adverseevent e JOIN participants_participant p ON p.id = e.participant_id
              LEFT JOIN participants_allocation a ON a.participant_id = p.id
              WHERE p.trial_id = %(trial)s AND p.enrolment_date <= %(cut)s AND p.status NOT IN ('screening', 'screen_failure')
                AND e.onset_date <= %(cut)s AND e.onset_date >= p.first_treatment_date"""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH e AS ({teae})
            SELECT e.arm_id, COALESCE(t.soc, ''), COALESCE(t.pt, e.verbatim_term), COUNT(DISTINCT e.participant_id), COUNT(*)
            FROM e LEFT JOIN safety_codingterm t ON t.id = e.coded_term_id GROUP BY 1, 2, 3""", {"trial": trial_id, "cut": cutoff})
        terms = cursor.fetchall()
        cursor.execute(f"""
            WITH e AS ({teae})
            SELECT e.arm_id, COALESCE(t.soc, ''), COUNT(DISTINCT e.participant_id), COUNT(*)
            FROM e LEFT JOIN safety_codingterm t ON t.id = e.coded_term_id GROUP BY 1, 2""", {"trial": trial_id, "cut": cutoff})
        socs = cursor.fetchall()
        cursor.execute(f"""
            WITH e AS ({teae})
            SELECT e.arm_id, e.onset_date, COUNT(*) FROM e WHERE e.serious GROUP BY 1, 2 ORDER BY 2""", {"trial": trial_id, "cut": cutoff})
        timeline = cursor.fetchall()
    return [core, terms, socs, timeline]


def main() -> None:
    from trials.protocol.models import Trial
    from trials.safety.summary import compute_summary, cutoff_date_of

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        start = time.perf_counter()
        trial_id = prepare()
        setup_s = time.perf_counter() - start
        trial = Trial.objects.get(pk=trial_id)
        cutoff_at = timezone.now() - timedelta(days=30)
        cutoff = cutoff_date_of(cutoff_at)
        steps = {
            "baseline": lambda: baseline_full(trial_id, cutoff),
            "core": lambda: baseline_core(trial_id, cutoff),
            "summary": lambda: compute_summary(trial, cutoff_at=cutoff_at, blinded=False),
            "pooled": lambda: compute_summary(trial, cutoff_at=cutoff_at, blinded=True),
        }
        for fn in steps.values():  # warm the caches once
            fn()
        times: dict[str, list[float]] = {name: [] for name in steps}
        results: dict[str, object] = {}
        for _ in range(REPEATS):  # interleaved
            for name, fn in steps.items():
                elapsed, results[name] = timed(fn)
                times[name].append(elapsed)
        with CaptureQueriesContext(connection) as queries:
            compute_summary(trial, cutoff_at=cutoff_at, blinded=False)

        # The same headline counts from both.
        core = results["core"]
        content = results["summary"]
        total = content["total"]
        assert sum(row[3] for row in core) == total["enrolled"], "enrolled differs"
        assert sum(row[3] for row in core if row[1]) == total["safety_population"], "safety population differs"
        assert sum(row[3] for row in core if row[2] is not None) == total["with_ae"], "with AE differs"
        assert sum(row[5] for row in core) == total["events"], "events differ"
        assert sum(row[7] for row in core) == total["with_sae"], "with SAE differs"
        assert sum(row[11] for row in core) == total["deaths"], "deaths differ"
        assert sum(row[4] for row in core) == total["followup_days"], "follow-up differs"
        assert sum(row[12] for row in core) == total["severe_events"], "grade >= 3 events differ"
        assert sum(row[13] for row in core) == total["pre_events"], "pre-treatment events differ"
        assert sum(t[4] for t in results["baseline"][1]) == total["events"], "SOC/term events differ"

        base = statistics.median(times["baseline"])
        print(f"database: {connection.vendor}, {PARTICIPANTS} participants, {AES} AEs, repeats: {REPEATS} (setup {setup_s:.1f} s)")
        print(f"enrolled {total['enrolled']}, safety population {total['safety_population']}, with TEAE {total['with_ae']}, "
              f"TEAEs {total['events']}, pre-treatment AEs {total['pre_events']}")
        print(f"{'step':<10}{'median ms':>10}{'x baseline':>12}")
        for name, values in times.items():
            print(f"{name:<10}{statistics.median(values) * 1000:>10.1f}{statistics.median(values) / base:>12.2f}")
        print(f"statements of one compute_summary: {len(queries)} (does not depend on the number of AEs)")
        ratio = statistics.median(times["summary"]) / base
        print(f"target summary <= {TARGET:.2f}x baseline: {'met' if ratio <= TARGET else 'NOT met'} ({ratio:.2f}x)")
        if os.environ.get("BENCH_SQL"):
            for q in queries:  # each statement again, timed (the SQL as logged, parameters inlined)
                with connection.cursor() as cursor:
                    start = time.perf_counter()
                    cursor.execute(q["sql"].replace("%", "%%"))
                    cursor.fetchall()
                    print(f"{(time.perf_counter() - start) * 1000:8.1f} ms  {q['sql'][:160]}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
