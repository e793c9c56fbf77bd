"""Benchmark of the coordinator flow's server CPU per request (issue 22; run with `make bench`).

Setup (not timed): a synthetic trial (manage.py synth_trial's generator; 2,000 participants × 10
visits × 5 CRFs × 30 items, 4 sites, by default) in a fresh database, and a coordinator of its
first site. The flow is tests/flow.py's, the one the query-count tests use: the participant list
(a page of it), the participant's page, a CRF page, a live (htmx) update of that page, a save.

Each request goes through Django's test client (the whole middleware stack, the session, the
templates); `time.process_time()` around it is the CPU of this process (the server's work and
the client's small share, no waiting for the database counted on PostgreSQL, where the database
is another process). Baseline: GET /healthz (a database round trip and a cache write/read).
Runs are interleaved, medians of BENCH_REPEATS (default 30). Reported per step: CPU ms, the
ratio to /healthz, wall ms and the queries of one request. Target of issue 22: every step
≤ 10 ms CPU median on PostgreSQL.

Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
BENCH_PARTICIPANTS, BENCH_VISITS, BENCH_CRFS, BENCH_ITEMS change the trial; BENCH_PROFILE=<step>
prints a cProfile of 20 requests of that step.
"""

import os
import statistics
import time

import benchenv  # noqa: F401 - the project root on sys.path, Django set up

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "30"))
WARMUP = 3
TARGET_MS = 10.0


def cpu_ms(step) -> tuple[float, float]:  # noqa: ANN001
    """CPU and wall milliseconds of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    step()
    return (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000


def main() -> None:
    # Not setup_test_environment(): it instruments every template render for the test client's
    # `response.templates`, work a server does not do (a third of the CRF page's CPU).
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from edc.audit import system_user
        from tests.flow import STEPS, Flow
        from trials.demo.synthetic import SynthParams, synth_trial_generate
        from trials.protocol.models import Role
        from trials.protocol.services import study_role_grant

        params = SynthParams(
            code="BENCH-FLOW", participants=int(os.environ.get("BENCH_PARTICIPANTS", "2000")),
            visits=int(os.environ.get("BENCH_VISITS", "10")), crfs=int(os.environ.get("BENCH_CRFS", "5")),
            items=int(os.environ.get("BENCH_ITEMS", "30")), sites=4,
        )
        started = time.perf_counter()
        trial = synth_trial_generate(params).trial
        print(f"setup: {params.participants} participants × {params.visits} visits × {params.crfs} CRFs × {params.items} items "
              f"in {time.perf_counter() - started:.0f} s")
        site = trial.sites.order_by("code").first()
        user = get_user_model().objects.create_user("bench-coordinator", password="x")
        study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, site=site, granted_by=system_user(), reason="benchmark")
        participant = trial.participants.filter(site=site).order_by("screening_number").first()
        visit = participant.visits.order_by("order").last()
        client = Client()
        client.force_login(user)
        steps = {"healthz": lambda: client.get("/healthz"), **Flow.at(client, participant, visit, f"{params.code}-C01").steps()}
        queries = {}
        for name, step in steps.items():
            for _ in range(WARMUP):
                step()
            with CaptureQueriesContext(connection) as captured:
                step()
            queries[name] = len(captured)
            if os.environ.get("BENCH_SQL") == name:  # the queries of one request of that step
                for query in captured.captured_queries:
                    print(query["sql"])
        profiled = os.environ.get("BENCH_PROFILE")
        if profiled:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                steps[profiled]()
            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "40")))
        cpu: dict[str, list[float]] = {name: [] for name in steps}
        wall: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(REPEATS):  # interleaved: drift on the machine hits every step alike
            for name, step in steps.items():
                c, w = cpu_ms(step)
                cpu[name].append(c)
                wall[name].append(w)
        base = statistics.median(cpu["healthz"])
        print(f"database: {connection.vendor}, repeats: {REPEATS}, site {site.code}: "
              f"{trial.participants.filter(site=site).count()} participants")
        print(f"{'step':<12}{'CPU ms':>9}{'x healthz':>11}{'wall ms':>9}{'queries':>9}")
        for name in ("healthz", *STEPS):
            median = statistics.median(cpu[name])
            print(f"{name:<12}{median:>9.2f}{median / base:>11.1f}{statistics.median(wall[name]):>9.2f}{queries[name]:>9}")
        worst = max(statistics.median(cpu[name]) for name in STEPS)
        print(f"target every step <= {TARGET_MS:.0f} ms CPU median: {'met' if worst <= TARGET_MS else 'NOT met'} (worst {worst:.2f} ms)")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
