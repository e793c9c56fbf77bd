"""Benchmark of the REDCap import on a generated dictionary of real-world size (run with `make bench`).

The dictionary (tests/protocol/redcap_large.py) has 612 fields and 492 rules (branching logic and
calculations). Reports, on the same run and machine, the median time of:
  yaml      - protocol_check of the YAML the import produced (the loader's validation of the same
              trial: the baseline, since the import ends with it)
  import    - import_redcap: read the CSV, translate every rule, write and validate the YAML
and the import as a ratio to the baseline. The issue's budget: the import under 10 s.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchenv  # noqa: F401 - the project root on sys.path, Django set up
from django.db import connection
from django.test.utils import setup_test_environment

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
BUDGET_S = 10.0


def main() -> None:
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from tests.protocol.redcap_large import write_large_dictionary
        from trials.protocol.imports.redcap import import_redcap
        from trials.protocol.loader import protocol_check

        folder = Path(tempfile.mkdtemp(prefix="bench-redcap-"))
        dictionary = folder / "large.dictionary.csv"
        counts = write_large_dictionary(dictionary)
        imports, checks = [], []
        for _ in range(REPEATS):
            start = time.perf_counter()
            result = import_redcap([dictionary])
            imports.append(time.perf_counter() - start)
            if result.problems:
                sys.exit("the generated dictionary did not import: " + "; ".join(map(str, result.problems[:3])))
            out = folder / "out"
            (out / "crfs").mkdir(parents=True, exist_ok=True)
            for relative, text in result.files.items():
                (out / relative).write_text(text, encoding="utf-8")
            start = time.perf_counter()
            protocol_check([out])
            checks.append(time.perf_counter() - start)
        base, took = statistics.median(checks), statistics.median(imports)
        print(f"database: {connection.vendor}, repeats: {REPEATS}, fields: {counts['fields']}, rules: {counts['rules']}, "
              f"translated: {result.rules_translated}")
        print(f"{'step':<10}{'median s':>10}{'x yaml':>10}")
        print(f"{'yaml':<10}{base:>10.3f}{1:>10.2f}")
        print(f"{'import':<10}{took:>10.3f}{took / base:>10.2f}")
        print(f"budget {BUDGET_S:.0f} s: {'met' if took < BUDGET_S else 'MISSED'}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
