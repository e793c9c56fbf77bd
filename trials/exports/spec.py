"""What an export contains, shared by the export job and every format writer.

A writer is a function `write(spec, out, progress)` that streams one file into the binary file
object `out` (a zip when the format has several files) and calls `progress(rows)` after each
chunk with the number of rows written since its last call. `count(spec)` gives the total for the
progress bar. Writers read only through trials.exports.selectors, which apply the scope below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ExportSpec:
    user_id: int
    trial_id: int | None  # None: a pooled export of `pooled_crf` across every trial the user sees
    site_ids: tuple[int, ...]  # already limited to the requester's sites
    crf_codes: tuple[str, ...] = ()  # empty: every CRF of the trial
    cutoff: date | None = None  # data recorded up to the end of this day
    blinded: bool = True  # no arm, kit-to-arm mapping or unblinding event anywhere
    identifiers: bool = False  # date of birth, initials … (never by default; age at consent instead)
    pooled_crf: str | None = None
    options: dict = field(default_factory=dict, hash=False, compare=False)
