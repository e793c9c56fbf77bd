"""Probe (issue 17): what would the SDTM findings cost if PostgreSQL extracted them, as the CSV
export extracts its items? Not the package: a bound on the SQL route, measured before building it.

On a synthetic trial of BENCH_PARTICIPANTS (default 1,000; `synth_trial`'s generator, a blinded
sponsor export as in bench_sdtm.py), in the same run, interleaved, medians of BENCH_REPEATS:
  csv     - the CSV export (the baseline of bench_sdtm.py);
  orm     - the findings' input as the package reads it now: every CRF's entries through the ORM,
            JSON answers decoded (selectors.export_entries), nothing else done with them;
  sql     - the findings' rows of every CRF as PostgreSQL would give them: one row per answered
            item of the findings plan (jsonb_each over the answers joined to a VALUES list of
            (CRF version, item, test index)), ordered by subject, visit and test, through
            `COPY … TO STDOUT (FORMAT csv)` and read into columns by pandas.read_csv;
  sqlcopy - the sql step's COPY alone (no pandas parse);
  unsorted - the same COPY without its ORDER BY;
  wide    - the CSV export's extraction instead: one row per entry in key order, one column per
            plain item (`(answers -> item)::text`, a string quoted), read by pandas.read_csv and
            melted to (entry, test, text) with numpy; the entries sorted in USUBJID order, not the answers;
  xpt     - the SDTM package as it is (the Python path).
The sql step's text of a value is jsonb's (a string's own text; a number's jsonb spelling, which
is not always odm._plain's), so its output is not the package's: it times the extraction only.

PROBE_STEPS=csv,wide runs only those steps. PostgreSQL only: DATABASE_URL=postgres://… DATABASE_TEST_NAME=<unused name> python tests/bench/probe_sdtm_sql.py
"""

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("BENCH_PARTICIPANTS", "1000")

import bench_export as common
import benchenv  # noqa: F401 - the project root on sys.path, Django set up
from django.db import connection


def orm_read(spec) -> int:
    from trials.exports import selectors

    n = 0
    for code in selectors.export_crf_codes(spec):
        for row in selectors.export_entries(spec, code):
            n += len(row.answers or {})
    return n


def findings_sql(spec, crf_code: str, order: bool = True) -> tuple[str, list]:
    """The findings rows of one CRF: (subject order, visit order, visit sequence, test index, value text)."""
    from trials.exports import sdtm, selectors

    versions = selectors.export_crf_versions(crf_code)
    plans = sdtm.findings_plan(crf_code, versions, set(), spec.identifiers)
    mapping, params = [], []
    t = 0
    for crf_id, plan in plans.items():
        for test in plan:
            if test.group is None and test.option is None:
                mapping.append("(%s::bigint, %s::text, %s::int)")
                params += [crf_id, test.item.name, t]
            t += 1
    entries = selectors.export_entries(spec, crf_code).queryset.values_list(
        "participant_id", "trial_code", "subject", "visit_order", "visit_sequence", "crf_id", "answers")
    inner, inner_params = entries.query.sql_with_params()
    sql = (
        f"SELECT q.trial_code, q.subject, q.visit_order, q.visit_sequence, m.t, "
        f"CASE jsonb_typeof(a.value) WHEN 'string' THEN a.value #>> '{{}}' ELSE a.value::text END "
        f"FROM ({inner}) q(participant_id, trial_code, subject, visit_order, visit_sequence, crf_id, answers) "
        f"CROSS JOIN LATERAL jsonb_each(q.answers) a "
        f"JOIN (VALUES {', '.join(mapping)}) m(crf_id, name, t) ON m.crf_id = q.crf_id AND m.name = a.key "
        f"WHERE jsonb_typeof(a.value) NOT IN ('null', 'array', 'object') "
        + ("ORDER BY q.trial_code, q.subject, q.visit_order, q.visit_sequence, m.t" if order else "")
    )
    return sql, [*inner_params, *params]


def sql_read(spec, order: bool = True, parse: bool = True) -> int:
    import pandas as pd

    from trials.exports import selectors

    n = 0
    for code in selectors.export_crf_codes(spec):
        sql, params = findings_sql(spec, code, order)
        with connection.cursor() as cursor:
            query = cursor.mogrify(sql, params) if hasattr(cursor, "mogrify") else cursor.cursor.mogrify(sql, params)
            buffer = io.BytesIO()
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
                for block in copy:
                    buffer.write(block)
        if not parse:
            n += buffer.getvalue().count(b"\n")
            continue
        buffer.seek(0)
        frame = pd.read_csv(buffer, header=None, dtype=str, keep_default_na=False, na_filter=False)
        n += len(frame)
    return n


def wide_sql(spec, crf_code: str) -> tuple[str, list, list[str]]:
    """The CRF's entries in the export's order (subject, visit), one column per plain item of the
    findings plan (the union of the versions' items): the item's answer as jsonb text (a string
    quoted, so that the type shows in its first character), as the CSV export extracts its items."""
    from trials.exports import sdtm, selectors

    versions = selectors.export_crf_versions(crf_code)
    plans = sdtm.findings_plan(crf_code, versions, set(), spec.identifiers)
    names = list(dict.fromkeys(t.item.name for plan in plans.values() for t in plan if t.group is None and t.option is None))
    entries = selectors.export_entries(spec, crf_code).queryset.values_list(
        "participant_id", "crf_id", "answers", "trial_code", "subject", "visit_order", "visit_sequence")
    inner, inner_params = entries.query.sql_with_params()
    cells = ", ".join("(q.answers -> %s)::text" for _name in names)
    # USUBJID order (trial, subject), not the CSV export's (site first): a sort of the entries, not of the answers.
    sql = (f"SELECT q.participant_id, q.crf_id, {cells} FROM ({inner}) "
           f"q(participant_id, crf_id, answers, trial_code, subject, visit_order, visit_sequence) "
           f"ORDER BY q.trial_code, q.subject, q.visit_order, q.visit_sequence")
    return sql, [*names, *inner_params], names


def wide_read(spec) -> int:
    """wide_sql through COPY, read by pandas, then melted to one row per answered item with numpy
    (the long form of the findings: entry, test, value text)."""
    import numpy as np
    import pandas as pd

    from trials.exports import selectors

    n = 0
    for code in selectors.export_crf_codes(spec):
        sql, params, names = wide_sql(spec, code)
        with connection.cursor() as cursor:
            query = cursor.cursor.mogrify(sql, params)
            buffer = io.BytesIO()
            with cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
                for block in copy:
                    buffer.write(block)
        buffer.seek(0)
        frame = pd.read_csv(buffer, header=None, dtype=str, keep_default_na=False, na_filter=False)
        values = frame.iloc[:, 2:].to_numpy(dtype=object)  # entries x items, in key order
        flat = values.ravel()  # row-major: entry by entry, item by item: the findings' order
        kept = np.flatnonzero(flat != "")
        entry = kept // len(names)
        test = kept % len(names)
        texts = flat[kept]
        n += len(texts) + 0 * (len(entry) + len(test))  # entry, test: the columns the findings would take
    return n


def main() -> None:
    from django.test.utils import setup_test_environment

    if connection.vendor != "postgresql":
        sys.exit("PostgreSQL only")
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        user_id = common.sponsor()
        trial_id, seconds = common.generate(f"SYN-{common.PARTICIPANTS}", common.PARTICIPANTS)
        common.grant(user_id, trial_id)
        print(f"setup: {common.PARTICIPANTS} participants generated in {seconds:.1f} s")
        spec = common.export_spec(user_id, trial_id)
        with tempfile.TemporaryDirectory(prefix="probe-sdtm-") as scratch:
            folder = Path(scratch)
            counts = {}
            steps = {
                "csv": lambda: common.export_to("csv", spec, folder / "export.csv"),
                "orm": lambda: counts.__setitem__("orm", orm_read(spec)),
                "sql": lambda: counts.__setitem__("sql", sql_read(spec)),
                "sqlcopy": lambda: sql_read(spec, parse=False),  # the COPY alone, no parse
                "unsorted": lambda: sql_read(spec, order=False, parse=False),  # the COPY without ORDER BY
                "wide": lambda: counts.__setitem__("wide", wide_read(spec)),
                "xpt": lambda: common.export_to("xpt", spec, folder / "export.xpt"),
            }
            wanted = [name for name in os.environ.get("PROBE_STEPS", "").split(",") if name]
            steps = {name: fn for name, fn in steps.items() if not wanted or name in wanted}
            for fn in steps.values():
                fn()  # warm-up
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(common.REPEATS):
                for name, fn in steps.items():
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        csv_s = statistics.median(times["csv"])
        print(f"rows: {counts}")
        print(f"{'step':<8}{'median s':>10}{'x csv':>8}")
        for name, found in times.items():
            print(f"{name:<8}{statistics.median(found):>10.2f}{statistics.median(found) / csv_s:>8.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    sys.exit(main())
