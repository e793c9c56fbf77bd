"""Imported first by every benchmark script: Django on a fresh database of its own.

`python tests/bench/bench_x.py` puts tests/bench/ on sys.path, so `import benchenv` finds this
file. The project root is added to sys.path and Django is set up on a fresh SQLite file under a
temporary folder, unless DATABASE_URL is set (then each benchmark makes a fresh test database on
that server)."""

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edc.settings")
if not os.environ.get("DATABASE_URL"):
    os.environ["EDC_VAR_DIR"] = tempfile.mkdtemp(prefix="edc-bench-")

import django  # noqa: E402

django.setup()



def timed(fn) -> tuple[float, object]:  # noqa: ANN001
    """Seconds taken by `fn()` and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
