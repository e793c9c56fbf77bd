"""Benchmark of `load_trials` on the four seed trials (run with `make bench`).

Reports, for the same run on the same database, the median time of:
  validate  - parse + schema + CEL checks of every seed file, nothing written (the baseline)
  load      - the full first load into empty protocol tables (rows + history rows)
  reload    - a second load of unchanged files (must write nothing)
and each as a ratio to the baseline, so numbers compare across machines.
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
"""

import os
import statistics
import time

import benchenv  # noqa: E402 - the project root on sys.path, Django set up

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from django.db import transaction

        from edc.audit import system_user
        from trials.protocol.loader import protocol_check, protocol_load

        seeds = benchenv.ROOT / "seeds"
        user = system_user()
        validate, load, reload = [], [], []
        for _ in range(REPEATS):
            validate.append(timed(lambda: protocol_check([seeds])))
            # Each first load runs in a transaction that is rolled back, so every repeat starts empty.
            try:
                with transaction.atomic():
                    load.append(timed(lambda: protocol_load([seeds], user=user)))
                    reload.append(timed(lambda: protocol_load([seeds], user=user)))
                    raise _Rollback
            except _Rollback:
                pass
        base = statistics.median(validate)
        print(f"database: {connection.vendor}, repeats: {REPEATS}")
        print(f"{'step':<10}{'median s':>10}{'x validate':>12}")
        for name, values in (("validate", validate), ("load", load), ("reload", reload)):
            median = statistics.median(values)
            print(f"{name:<10}{median:>10.3f}{median / base:>12.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


class _Rollback(Exception):
    pass


if __name__ == "__main__":
    main()
