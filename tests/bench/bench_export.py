"""Benchmark of the exports on a synthetic trial (issue 8; run with `make bench` or directly).

Setup (timed apart): `manage.py synth_trial`'s generator makes a trial of BENCH_PARTICIPANTS
(default 2,000) participants x 10 visits x 5 CRFs x 30 items (100,000 complete entries, 3 million
values) in a fresh database, and a sponsor with a role at every site (a blinded export).

Time, in the same run on the same data, interleaved, medians of BENCH_REPEATS (default 3):
  copy      - the baseline: the same rows straight from the database into CSV files. On PostgreSQL
              `COPY (SELECT …) TO STDOUT WITH CSV` through psycopg's `cursor.copy`, one statement per
              table: participants, visits, one per CRF (site, subject, visit, entry, version, status,
              last saved, then `answers ->> 'item'` for each item), adverse events. On SQLite the
              same SELECTs (json_extract per item) written by the csv module.
  copy+zip  - the same, written into a zip with the CSV writer's compression (deflate, csvzip.COMPRESS_LEVEL):
              how much of the CSV export's time is compression.
  csv       - the CSV export writer of the format registry (trials.exports.formats, "csv"), in
              process, into a temporary file.
  odm       - the CDISC ODM 1.3.2 writer, the same way.
Target: csv <= 2x copy.

Memory: each writer runs again in a separate process (this script with --child) on the same
database; the child reports its resident set size after Django is set up and its peak (VmHWM in
/proc/self/status, which unlike ru_maxrss does not inherit the parent's size) after the export.
With BENCH_DOUBLE=1 (the default) a second trial with twice the participants is generated and
exported the same way: the peak must stay flat.
Target: peak < 300 MB.

BENCH_PROFILE=csv (or odm) profiles one export with cProfile and prints where the time goes.
Uses a fresh SQLite file unless DATABASE_URL is set (then a fresh test database on that server).
"""

import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("DJANGO_DEBUG", "0")  # as a worker runs: no query log growing in memory

import benchenv  # noqa: F401 - the project root on sys.path, Django set up
from django.db import connection

PARTICIPANTS = int(os.environ.get("BENCH_PARTICIPANTS", "2000"))
VISITS, CRFS, ITEMS = (int(os.environ.get(f"BENCH_{name}", default)) for name, default in (("VISITS", "10"), ("CRFS", "5"), ("ITEMS", "30")))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
DOUBLE = os.environ.get("BENCH_DOUBLE", "1") != "0"
FORMATS = [f for f in os.environ.get("BENCH_FORMATS", "csv,odm").split(",") if f]
TARGET_RATIO = 2.0
TARGET_MB = 300
SAFE = re.compile(r"^[A-Za-z0-9_-]+$")  # codes and item names inlined in the baseline SQL


# --- Setup ------------------------------------------------------------------------------------


def generate(code: str, participants: int) -> tuple[int, float]:
    """A synthetic trial; returns its id and the generation time."""
    from trials.demo.synthetic import SynthParams, synth_trial_generate

    params = SynthParams(code=code, participants=participants, visits=VISITS, crfs=CRFS, items=ITEMS)
    result = synth_trial_generate(params)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return result.trial.pk, result.seconds


def sponsor() -> int:
    from django.contrib.auth import get_user_model

    user, _created = get_user_model().objects.get_or_create(username="bench-sponsor")
    return user.pk


def grant(user_id: int, trial_id: int) -> None:
    from django.contrib.auth import get_user_model

    from edc.audit import system_user
    from trials.protocol.models import Role, Trial
    from trials.protocol.services import study_role_grant

    study_role_grant(user=get_user_model().objects.get(pk=user_id), trial=Trial.objects.get(pk=trial_id), role=Role.SPONSOR,
                     granted_by=system_user(), reason="benchmark")


def export_spec(user_id: int, trial_id: int):
    from trials.exports.spec import ExportSpec
    from trials.protocol.models import Site

    sites = tuple(Site.objects.filter(trial_id=trial_id).order_by("pk").values_list("pk", flat=True))
    return ExportSpec(user_id=user_id, trial_id=trial_id, site_ids=sites)


def writer(code: str):
    """The registered writer of a format (None while the format is not registered)."""
    from django.utils.module_loading import import_string

    from trials.exports import formats

    found = formats.format_get(code)
    if found is not None:
        return found.write
    try:  # written but not registered yet: the module's write() (the contract of trials.exports.spec)
        return import_string(f"trials.exports.{code}.write")
    except ImportError:
        return None


# --- The baseline -----------------------------------------------------------------------------


def baseline_queries(trial_id: int) -> list[tuple[str, str]]:
    """(file name, SELECT) of every table the baseline writes, in the CSV export's row order."""
    from trials.participants.models import Participant
    from trials.protocol.models import CrfDefinition, Site, VisitCrf, VisitDefinition
    from trials.safety.models import AdverseEvent
    from trials.protocol.engine import schema_for
    from trials.visits.models import CrfEntry, Visit

    p, s, v, vd = Participant._meta.db_table, Site._meta.db_table, Visit._meta.db_table, VisitDefinition._meta.db_table
    e, c, ae = CrfEntry._meta.db_table, CrfDefinition._meta.db_table, AdverseEvent._meta.db_table
    subject = "p.screening_number"  # the stable key of every export (trials/exports/selectors._subject)
    order = "s.code, p.screening_number"
    queries = [
        ("participants", (f"SELECT s.code, {subject}, p.screening_number, p.subject_number, p.status, p.status_reason, p.status_date, "
                         f"p.screening_date, p.consent_date, p.enrolment_date, p.first_treatment_date FROM {p} p "
                         f"JOIN {s} s ON s.id = p.site_id WHERE p.trial_id = {int(trial_id)} ORDER BY {order}")),
        ("visits", (f"SELECT s.code, {subject}, vd.code, v.label, v.sequence, vd.kind, v.planned_date, v.window_start, v.window_end, "
                   f"v.visit_date, v.status, v.status_reason, v.out_of_window FROM {v} v JOIN {p} p ON p.id = v.participant_id "
                   f"JOIN {s} s ON s.id = p.site_id LEFT JOIN {vd} vd ON vd.id = v.definition_id WHERE p.trial_id = {int(trial_id)} "
                   f'ORDER BY {order}, v."order", v.sequence, v.id')),
    ]
    links = VisitCrf.objects.filter(visit_definition__trial_id=trial_id).select_related("crf").order_by("visit_definition__order", "order")
    seen = set()
    for link in links:
        if link.crf_code in seen:
            continue
        seen.add(link.crf_code)
        names = [item.name for item in schema_for(link.crf).items if item.is_input]
        assert SAFE.match(link.crf_code) and all(SAFE.match(n) for n in names)
        if connection.vendor == "postgresql":
            items = ", ".join(f"e.answers ->> '{name}'" for name in names)
        else:
            items = ", ".join(f"json_extract(e.answers, '$.{name}')" for name in names)
        queries.append((link.crf_code, (
            f"SELECT s.code, {subject}, vd.code, vv.sequence, vv.visit_date, e.id, c.version, e.status, e.updated_at, {items} "
            f"FROM {e} e JOIN {p} p ON p.id = e.participant_id JOIN {s} s ON s.id = p.site_id "
            f"JOIN {v} vv ON vv.id = e.visit_id LEFT JOIN {vd} vd ON vd.id = vv.definition_id JOIN {c} c ON c.id = e.crf_id "
            f"WHERE p.trial_id = {int(trial_id)} AND e.crf_code = '{link.crf_code}' "
            f'ORDER BY {order}, vv."order", vv.sequence, e.crf_code'
        )))
    queries.append(("adverse_events", (
        f"SELECT s.code, {subject}, a.number, a.verbatim_term, a.onset_date, a.end_date, a.ongoing, a.grade, a.serious, "
        f"a.seriousness, a.related_product, a.procedure, a.related_procedure, a.expected, a.action_taken, a.outcome, "
        f"a.treatment_given, a.aware_at, a.is_dlt, a.leads_to_withdrawal FROM {ae} a JOIN {p} p ON p.id = a.participant_id "
        f"JOIN {s} s ON s.id = p.site_id WHERE p.trial_id = {int(trial_id)} ORDER BY {order}, a.number"
    )))
    return queries


def _copy_into(sql: str, stream) -> None:
    """One table as CSV into a binary stream: COPY on PostgreSQL, SELECT + csv module on SQLite."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            buffer = bytearray()  # COPY yields one block per row: write in larger pieces
            with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
                for block in copy:
                    buffer += block
                    if len(buffer) >= 1 << 20:
                        stream.write(bytes(buffer))
                        buffer.clear()
            stream.write(bytes(buffer))
            return
        cursor.execute(sql)
        import io

        text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
        out = csv.writer(text)
        out.writerow([column[0] for column in cursor.description])
        while rows := cursor.fetchmany(2000):
            out.writerows(rows)
        text.flush()
        text.detach()


def baseline_copy(queries: list[tuple[str, str]], folder: Path) -> int:
    """Every table into its own CSV file; returns the bytes written."""
    size = 0
    for name, sql in queries:
        path = folder / f"{name}.csv"
        with path.open("wb") as stream:
            _copy_into(sql, stream)
        size += path.stat().st_size
    return size


def baseline_zip(queries: list[tuple[str, str]], path: Path) -> int:
    """The same, into one zip compressed as the CSV export compresses."""
    from trials.exports.csvzip import COMPRESS_LEVEL

    with path.open("wb") as out, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for name, sql in queries:
            with archive.open(f"{name}.csv", "w", force_zip64=True) as member:
                _copy_into(sql, member)
    return path.stat().st_size


# --- The writers ------------------------------------------------------------------------------


def export_to(code: str, spec, path: Path) -> int:
    """Run the format's writer into a file; returns the rows it reported."""
    rows = [0]

    def progress(n: int) -> None:
        rows[0] += n

    with path.open("wb") as out:
        writer(code)(spec, out, progress)
    return rows[0]


def check_csv(path: Path, queries: list[tuple[str, str]], folder: Path) -> None:
    """The CSV export holds as many rows per CRF as the baseline (the same data, not just a file)."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for name, _sql in queries:
            if f"{name}.csv" not in names:
                continue
            with archive.open(f"{name}.csv") as member, (folder / f"{name}.csv").open("rb") as base:
                exported = sum(1 for _ in member)
                expected = sum(1 for _ in base)
            assert exported == expected, f"{name}: {exported} lines exported, {expected} in the baseline"


def count_tag(path: Path, tag: bytes) -> int:
    found, tail = 0, b""
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            data = tail + block
            found += data.count(tag)
            tail = data[-len(tag) + 1:]
    return found


# --- Memory, in a child process -----------------------------------------------------------------


def _status_kb(key: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, in kB.

    Not getrusage(RUSAGE_SELF).ru_maxrss: Linux carries the parent's peak over a fork + exec
    into the child's ru_maxrss, so every child would report at least the parent's size. VmHWM
    belongs to the child's own address space."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(code: str, trial_id: int, user_id: int) -> None:
    """Run one export and print {start_kb, peak_kb, seconds} as JSON."""
    writer(code)  # import the writer modules before measuring the starting size
    from trials.exports import selectors, tables  # noqa: F401

    connection.ensure_connection()
    start_kb = _status_kb("VmRSS")
    spec = export_spec(user_id, trial_id)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        started = time.perf_counter()
        rows = export_to(code, spec, Path(folder) / f"export.{code}")
        seconds = time.perf_counter() - started
        size = (Path(folder) / f"export.{code}").stat().st_size
    peak_kb = _status_kb("VmHWM")
    print(json.dumps({"start_kb": start_kb, "peak_kb": peak_kb, "seconds": seconds, "rows": rows, "bytes": size}))


def database_url() -> str:
    """The URL of the database this run made, for the child processes."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit((parts.scheme, parts.netloc, f"/{settings_dict['NAME']}", parts.query, parts.fragment))


def memory(code: str, trial_id: int, user_id: int) -> dict:
    env = dict(os.environ, DATABASE_URL=database_url(), DJANGO_DEBUG="0")
    done = subprocess.run(
        [sys.executable, __file__, "--child", code, str(trial_id), str(user_id)], env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child export {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Run --------------------------------------------------------------------------------------


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def profile(code: str, spec, folder: Path) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    export_to(code, spec, folder / f"profile.{code}")
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    print(f"\ncProfile of one {code} export, by own time:")
    stats.sort_stats("tottime").print_stats(25)
    print(f"cProfile of one {code} export, cumulative:")
    stats.sort_stats("cumulative").print_stats(30)


def main() -> None:
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        entries = PARTICIPANTS * VISITS * CRFS
        print(f"database: {connection.vendor}; trial: {PARTICIPANTS} participants x {VISITS} visits x {CRFS} CRFs x {ITEMS} items "
              f"= {entries:,} entries, {entries * ITEMS:,} values; repeats: {REPEATS}")
        trial_id, generated_s = generate(f"SYN-{PARTICIPANTS}", PARTICIPANTS)
        print(f"setup: synthetic trial generated in {generated_s:.1f} s ({entries / generated_s:,.0f} entries/s)")
        user_id = sponsor()
        grant(user_id, trial_id)
        spec = export_spec(user_id, trial_id)
        queries = baseline_queries(trial_id)
        codes = [code for code in FORMATS if writer(code) is not None]
        missing = [code for code in FORMATS if code not in codes]
        if missing:
            print(f"not registered yet (skipped): {', '.join(missing)}")
        with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
            folder = Path(scratch)
            (folder / "copy").mkdir()
            steps = {
                "copy": lambda: baseline_copy(queries, folder / "copy"),
                "copy+zip": lambda: baseline_zip(queries, folder / "copy.zip"),
            }
            for code in codes:
                steps[code] = lambda code=code: export_to(code, spec, folder / f"export.{code}")
            outputs = {name: fn() for name, fn in steps.items()}  # warm-up, and the sizes
            sizes = {
                "copy": outputs["copy"], "copy+zip": outputs["copy+zip"],
                **{code: (folder / f"export.{code}").stat().st_size for code in codes},
            }
            if "csv" in codes:
                check_csv(folder / "export.csv", queries, folder / "copy")
            if "odm" in codes:
                # The CRF forms only (F.<CRF code>.V<n>; visits, participants and AEs have forms of their own).
                forms = count_tag(folder / "export.odm", b'<FormData FormOID="F.SYN-')
                assert forms == entries, f"ODM: {forms} CRF FormData, {entries} entries"
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(REPEATS):
                for name, fn in steps.items():
                    times[name].append(timed(fn))
            if os.environ.get("BENCH_PROFILE") in codes:
                profile(os.environ["BENCH_PROFILE"], spec, folder)

        base = statistics.median(times["copy"])
        print(f"\n{'step':<10}{'median s':>10}{'x copy':>8}{'output MB':>11}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:<10}{median:>10.2f}{median / base:>8.2f}{sizes[name] / 1e6:>11.1f}")
        if "csv" in codes:
            ratio = statistics.median(times["csv"]) / base
            print(f"target csv <= {TARGET_RATIO:.1f}x copy: {'met' if ratio <= TARGET_RATIO else 'NOT met'} ({ratio:.2f}x)")

        trials = [(PARTICIPANTS, trial_id)]
        if DOUBLE and codes:
            double_id, double_s = generate(f"SYN-{2 * PARTICIPANTS}", 2 * PARTICIPANTS)
            grant(user_id, double_id)
            print(f"\nsetup: second trial of {2 * PARTICIPANTS} participants generated in {double_s:.1f} s")
            trials.append((2 * PARTICIPANTS, double_id))
        if codes:
            print("\nmemory: each export in a separate process (RSS after Django setup, peak during the export)")
            print(f"{'format':<8}{'participants':>13}{'start MB':>10}{'peak MB':>9}{'growth MB':>11}{'time s':>8}{'rows':>10}")
            peaks: dict[str, list[tuple[float, float]]] = {}
            for code in codes:
                for participants, tid in trials:
                    found = memory(code, tid, user_id)
                    start_mb, peak_mb = found["start_kb"] / 1024, found["peak_kb"] / 1024
                    peaks.setdefault(code, []).append((peak_mb, peak_mb - start_mb))
                    print(f"{code:<8}{participants:>13}{start_mb:>10.0f}{peak_mb:>9.0f}{peak_mb - start_mb:>11.0f}{found['seconds']:>8.1f}{found['rows']:>10}")
            for code, values in peaks.items():
                top = max(peak for peak, _growth in values)
                line = f"target {code} peak < {TARGET_MB} MB: {'met' if top < TARGET_MB else 'NOT met'} ({top:.0f} MB)"
                if len(values) > 1:
                    # Flat: the export's own growth may not follow the trial (a quarter more, or 5 MB, of slack).
                    (_p1, small), (_p2, large) = values
                    flat = large <= small * 1.25 + 5
                    line += f"; flat when the trial doubles: {'yes' if flat else 'NO'} (growth {small:.0f} -> {large:.0f} MB)"
                print(line)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
