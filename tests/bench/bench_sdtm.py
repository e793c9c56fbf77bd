"""Benchmark of the SDTM package (issue 17; run with `make bench` or directly).

Setup (timed apart): `manage.py synth_trial`'s generator makes a trial of BENCH_PARTICIPANTS
(default 2,000) participants x 10 visits x 5 CRFs x 30 items in a fresh database, and a sponsor
with a role at every site (a blinded export), as tests/bench/bench_export.py does (its helpers are
reused).

Time, in the same run on the same data, interleaved, medians of BENCH_REPEATS (default 3):
  csv  - the CSV export (the baseline of this benchmark: the same data as a zip of tables);
  xpt  - the SDTM package: every dataset as SAS transport v5 (the streaming writer,
         trials.exports.xpt), define.xml and the manifest;
  define - inside each xpt run, the time of define.xml's generation alone.
Targets: xpt <= 3x csv; define.xml < 5 s.

Memory: the SDTM package runs again in a separate process (bench_export.py --child xpt) on a
trial of half the participants and on the full one; the child reports its peak resident size
(VmHWM). Targets: peak < 300 MB, and flat when the trial doubles (the export's own growth at
most a quarter more, or 5 MB).

Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server:
set DATABASE_TEST_NAME to a name no test run is using).
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_DEBUG", "0")

import benchenv  # noqa: F401 - the project root on sys.path, Django set up
import bench_export as common
from django.db import connection

PARTICIPANTS = common.PARTICIPANTS
REPEATS = common.REPEATS
TARGET_RATIO = 3.0
TARGET_DEFINE_S = 5.0
TARGET_MB = 300


def main() -> None:
    from django.test.utils import setup_test_environment

    from trials.exports import define

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    define_times: list[float] = []
    original = define.define_xml

    def timed_define(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            define_times.append(time.perf_counter() - start)

    define.define_xml = timed_define
    try:
        half = PARTICIPANTS // 2
        print(f"database: {connection.vendor}; trials of {half} and {PARTICIPANTS} participants x {common.VISITS} visits x "
              f"{common.CRFS} CRFs x {common.ITEMS} items; repeats: {REPEATS}")
        user_id = common.sponsor()
        trials = []
        for participants in (half, PARTICIPANTS):
            trial_id, seconds = common.generate(f"SYN-{participants}", participants)
            common.grant(user_id, trial_id)
            print(f"setup: {participants} participants generated in {seconds:.1f} s")
            trials.append((participants, trial_id))
        spec = common.export_spec(user_id, trials[-1][1])
        with tempfile.TemporaryDirectory(prefix="bench-sdtm-") as scratch:
            folder = Path(scratch)
            steps = {code: (lambda code=code: common.export_to(code, spec, folder / f"export.{code}")) for code in ("csv", "xpt")}
            for fn in steps.values():
                fn()  # warm-up
            define_times.clear()
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(REPEATS):
                for name, fn in steps.items():
                    times[name].append(common.timed(fn))
            sizes = {code: (folder / f"export.{code}").stat().st_size for code in steps}
        csv_s, xpt_s = statistics.median(times["csv"]), statistics.median(times["xpt"])
        define_s = statistics.median(define_times)
        print(f"\n{'step':<8}{'median s':>10}{'x csv':>8}{'output MB':>11}")
        print(f"{'csv':<8}{csv_s:>10.2f}{1:>8.2f}{sizes['csv'] / 1e6:>11.1f}")
        print(f"{'xpt':<8}{xpt_s:>10.2f}{xpt_s / csv_s:>8.2f}{sizes['xpt'] / 1e6:>11.1f}")
        print(f"{'define':<8}{define_s:>10.2f}")
        print(f"target xpt <= {TARGET_RATIO:.0f}x csv: {'met' if xpt_s / csv_s <= TARGET_RATIO else 'NOT met'} ({xpt_s / csv_s:.2f}x)")
        print(f"target define.xml < {TARGET_DEFINE_S:.0f} s: {'met' if define_s < TARGET_DEFINE_S else 'NOT met'} ({define_s:.2f} s)")

        print("\nmemory: the SDTM package in a separate process (RSS after Django setup, peak during the export)")
        print(f"{'participants':>13}{'start MB':>10}{'peak MB':>9}{'growth MB':>11}{'time s':>8}")
        values = []
        for participants, trial_id in trials:
            found = common.memory("xpt", trial_id, user_id)
            start_mb, peak_mb = found["start_kb"] / 1024, found["peak_kb"] / 1024
            values.append((peak_mb, peak_mb - start_mb))
            print(f"{participants:>13}{start_mb:>10.0f}{peak_mb:>9.0f}{peak_mb - start_mb:>11.0f}{found['seconds']:>8.1f}")
        top = max(peak for peak, _growth in values)
        (_p1, small), (_p2, large) = values
        flat = large <= small * 1.25 + 5
        print(f"target peak < {TARGET_MB} MB: {'met' if top < TARGET_MB else 'NOT met'} ({top:.0f} MB); "
              f"flat when the trial doubles: {'yes' if flat else 'NO'} (growth {small:.0f} -> {large:.0f} MB)")
    finally:
        define.define_xml = original
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
