"""Benchmark of the visit-state refresh (run with `make bench`).

10,000 participants × 10 visits (100,000 visits) at two sites in different time zones, with windows
spread around today. Reports, in the same run on the same database:
  baseline  - one hand-written SQL UPDATE of the Visit table computing the new state from the
              window and today's date, guarded to change only rows whose state differs
  refresh   - trials.visits.schedule.visit_states_refresh(): the same change on the Visit table,
              per time zone, through the ORM
Each run starts from the same shifted states (the setup moves every visit's state away from the
right one), so both do the same amount of work. Also reports the refresh's SQL statement count
(one query for the time zones, then one UPDATE per time zone: it does not grow with the number of
participants).
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
"""

import os
import statistics
import time
from datetime import timedelta

import benchenv  # noqa: E402, F401 - the project root on sys.path, Django set up

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "10000"))
VISITS = 10
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def prepare(participants: int) -> None:
    """Participants and visits written in bulk (raw rows: the setup is not what is measured)."""
    from trials.participants.models import Participant
    from trials.protocol.models import Site, Trial, VisitDefinition
    from trials.visits.models import Visit

    trial = Trial(code="BENCHS", title="Schedule benchmark", phase="na", study_type="observational", design="registry",
                  masking="none", target_enrolment=participants, status="recruiting", sponsor="Benchmark", conditions=["x"])
    trial._change_reason = "benchmark"
    trial.save()
    sites = []
    for code, zone in (("PAR", "Europe/Paris"), ("MEX", "America/Mexico_City")):
        site = Site(trial=trial, code=code, name=code, city=code, country="FR", time_zone=zone, recruitment_status="recruiting")
        site._change_reason = "benchmark"
        site.save()
        sites.append(site)
    definitions = []
    for n in range(VISITS):
        definition = VisitDefinition(trial=trial, code=f"V{n}", label=f"Visit {n}", day_offset=n * 14,
                                     window_before_days=3, window_after_days=3, order=n)
        definition._change_reason = "benchmark"
        definition.save()
        definitions.append(definition)
    today = timezone.localdate()
    with transaction.atomic():
        rows = [
            Participant(trial=trial, site=sites[i % 2], screening_number=f"S{i:06d}", subject_number=f"{i:06d}",
                        status="enrolled", consent_date=today, enrolment_date=today - timedelta(days=(i % 150)))
            for i in range(participants)
        ]
        from django.db.models import QuerySet

        # Plain QuerySet.bulk_create: synthetic rows without history (the audited guard is for trial data).
        QuerySet.bulk_create(Participant.objects.all(), rows, batch_size=2000)
        ids = list(Participant.objects.filter(trial=trial).order_by("pk").values_list("pk", "enrolment_date"))
        visits = []
        for pk, enrolled in ids:
            for definition in definitions:
                planned = enrolled + timedelta(days=definition.day_offset)
                visits.append(Visit(participant_id=pk, definition=definition, label=definition.label, order=definition.order,
                                    planned_date=planned, window_start=planned - timedelta(days=3),
                                    window_end=planned + timedelta(days=3), status="upcoming"))
        QuerySet.bulk_create(Visit.objects.all(), visits, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics for both tables, as a live database has


def scramble() -> None:
    """Put every visit in a wrong calendar state (rotate upcoming -> open -> overdue -> upcoming)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE visits_visit SET status = CASE status WHEN 'upcoming' THEN 'open' WHEN 'open' THEN 'overdue' ELSE 'upcoming' END"
        )


def baseline() -> None:
    """One hand-written guarded UPDATE of the same rows of the same table (one date for every
    site, no participant filter: the least a refresh can do)."""
    today = timezone.localdate()
    state = "CASE WHEN window_start > %s THEN 'upcoming' WHEN window_end < %s THEN 'overdue' ELSE 'open' END"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE visits_visit SET status = {state} WHERE window_start IS NOT NULL"
            f" AND status IN ('upcoming', 'open', 'overdue') AND status <> {state}",
            [today, today, today, today],
        )


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    with transaction.atomic():
        fn()
    return time.perf_counter() - start


def main() -> None:
    from trials.visits.schedule import visit_states_refresh

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        prepare(PARTICIPANTS)
        times: dict[str, list[float]] = {"baseline": [], "refresh": []}
        for _ in range(REPEATS):  # interleaved; each from the same scrambled states
            scramble()
            times["baseline"].append(timed(baseline))
            scramble()
            times["refresh"].append(timed(visit_states_refresh))
        scramble()
        with CaptureQueriesContext(connection) as big:
            visit_states_refresh()
        base = statistics.median(times["baseline"])
        print(f"database: {connection.vendor}, {PARTICIPANTS} participants x {VISITS} visits, repeats: {REPEATS}")
        print(f"{'step':<10}{'median ms':>10}{'x baseline':>12}")
        for name, values in times.items():
            print(f"{name:<10}{statistics.median(values) * 1000:>10.1f}{statistics.median(values) / base:>12.2f}")
        print(f"statements of one refresh: {len(big)} (2 time zones; does not depend on the number of visits)")
        ratio = statistics.median(times["refresh"]) / base
        print(f"target refresh <= 2.00x baseline: {'met' if ratio <= 2 else 'NOT met'} ({ratio:.2f}x)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
