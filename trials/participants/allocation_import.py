"""Checks of an allocation list made elsewhere (CSV), before allocation_list_import writes it.

A pure function over the file's bytes and the trial's design, shared by the service and its
tests: it returns the slots (with the blocks found in them) or every problem, each naming the
line. The list must be usable exactly as the generated one is: every stratum of the trial
present, sequences 1, 2, 3… without gaps per stratum, only the trial's active arms, kit codes
unique in the whole list, and each stratum cut into consecutive blocks of the protocol's block
sizes that hold the arms in the trial's ratio (REDCap's allocation-table upload checks the
columns and values in the same way; the block check is ours, the protocol's permuted blocks).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

HEADER = ("stratum", "sequence", "arm", "kit_code")
MAX_BYTES = 5_000_000
MAX_ERRORS = 20
KIT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,19}$")


@dataclass(frozen=True)
class ImportedSlot:
    line: int
    stratum: str
    sequence: int
    arm: str
    kit_code: str
    block: int = 0
    block_size: int = 0


@dataclass
class ParsedList:
    rows: list[ImportedSlot] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # slots per stratum


class _TooMany(Exception):
    pass


def _blocks(arms_in_order: list[str], *, arms: list[str], ratio: list[int], block_sizes: list[int]) -> tuple[list[int], int]:
    """Cut one stratum's arms into consecutive blocks of `block_sizes` holding `ratio`.

    Returns (block ends, 0) when it can be done, else ([], the 0-based position from which no
    block fits). Any cut will do when several exist (ABBA is one block of 4 or two of 2)."""
    unit = sum(ratio)
    wanted = {size: Counter({arm: share * size // unit for arm, share in zip(arms, ratio, strict=True) if share * size // unit}) for size in block_sizes}
    n = len(arms_in_order)
    previous: dict[int, int] = {0: -1}
    for start in range(n):
        if start not in previous:
            continue
        for size in sorted(set(block_sizes)):
            end = start + size
            if end <= n and end not in previous and Counter(arms_in_order[start:end]) == wanted[size]:
                previous[end] = start
    if n not in previous:
        return [], max(previous)
    ends = []
    at = n
    while at > 0:
        ends.append(at)
        at = previous[at]
    return sorted(ends), 0


def parse(content: bytes, *, strata: list[str], arms: list[str], ratio: list[int], block_sizes: list[int]) -> ParsedList:
    """The slots of an allocation-list CSV, or every problem found in it (line by line)."""
    result = ParsedList()

    def problem(message: str) -> None:
        result.errors.append(message)
        if len(result.errors) >= MAX_ERRORS:
            result.errors.append(_("… and possibly more: correct these first."))
            raise _TooMany

    try:
        _parse(content, result, problem, strata=strata, arms=arms, ratio=ratio, block_sizes=block_sizes)
    except _TooMany:
        pass
    if result.errors:
        result.rows = []
    return result


def _parse(content: bytes, result: ParsedList, problem, *, strata: list[str], arms: list[str], ratio: list[int], block_sizes: list[int]) -> None:  # noqa: ANN001, C901, PLR0912
    if len(content) > MAX_BYTES:
        problem(_("the file is larger than %(mb)s MB.") % {"mb": MAX_BYTES // 1_000_000})
        return
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problem(_("the file is not UTF-8 text (byte %(at)s).") % {"at": error.start})
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or tuple(header) != HEADER:
        problem(_("line 1: the header must be exactly %(expected)s (found %(found)s).") % {
            "expected": ",".join(HEADER), "found": ",".join(header or []) or _("an empty file")})
        return
    known_strata = set(strata)
    known_arms = set(arms)
    kit_lines: dict[str, int] = {}
    position_lines: dict[tuple[str, int], int] = {}
    rows: list[ImportedSlot] = []
    for values in reader:
        line = reader.line_num
        if not values or values == [""]:
            continue
        if len(values) != len(HEADER):
            problem(_("line %(line)s: %(count)s values, expected %(expected)s (%(header)s).") % {
                "line": line, "count": len(values), "expected": len(HEADER), "header": ",".join(HEADER)})
            continue
        stratum, sequence_text, arm, kit = (v.strip() for v in values)
        ok = True
        if stratum not in known_strata:
            problem(_("line %(line)s: %(stratum)s is not a stratum of the trial (its strata: %(strata)s).") % {
                "line": line, "stratum": stratum or '""', "strata": ", ".join(strata)})
            ok = False
        sequence = int(sequence_text) if sequence_text.isdigit() else 0
        if sequence < 1:
            problem(_("line %(line)s: the sequence %(value)s is not a whole number from 1.") % {"line": line, "value": sequence_text or '""'})
            ok = False
        if arm not in known_arms:
            problem(_("line %(line)s: %(arm)s is not an arm of the trial (its arms: %(arms)s).") % {
                "line": line, "arm": arm or '""', "arms": ", ".join(arms)})
            ok = False
        if not KIT_CODE.match(kit):
            problem(_("line %(line)s: the kit code %(kit)s is not 1 to 20 letters, digits or hyphens.") % {"line": line, "kit": kit or '""'})
            ok = False
        elif kit.upper() in kit_lines:
            problem(_("line %(line)s: the kit code %(kit)s is already on line %(first)s.") % {"line": line, "kit": kit, "first": kit_lines[kit.upper()]})
            ok = False
        else:
            kit_lines[kit.upper()] = line
        if ok and (stratum, sequence) in position_lines:
            problem(_("line %(line)s: %(stratum)s sequence %(sequence)s is already on line %(first)s.") % {
                "line": line, "stratum": stratum, "sequence": sequence, "first": position_lines[(stratum, sequence)]})
            ok = False
        if ok:
            position_lines[(stratum, sequence)] = line
            rows.append(ImportedSlot(line, stratum, sequence, arm, kit))
    if result.errors:
        return
    by_stratum: dict[str, list[ImportedSlot]] = {s: [] for s in strata}
    for row in rows:
        by_stratum[row.stratum].append(row)
    for stratum in strata:
        slots = sorted(by_stratum[stratum], key=lambda r: r.sequence)
        if not slots:
            problem(_("stratum %(stratum)s of the trial has no line in the file: every stratum needs its slots.") % {"stratum": stratum})
            continue
        missing = next((n for n, row in enumerate(slots, start=1) if row.sequence != n), None)
        if missing is not None:
            problem(_("stratum %(stratum)s: sequence %(sequence)s is missing (sequences run 1, 2, 3… without gaps; line %(line)s has %(found)s).") % {
                "stratum": stratum, "sequence": missing, "line": slots[missing - 1].line, "found": slots[missing - 1].sequence})
            continue
        ends, stuck = _blocks([r.arm for r in slots], arms=arms, ratio=ratio, block_sizes=block_sizes)
        if not ends:
            problem(_("line %(line)s (%(stratum)s sequence %(sequence)s): no block of %(sizes)s slots from here holds the arms %(arms)s in the ratio %(ratio)s; the lines before it are whole blocks.") % {
                "line": slots[stuck].line, "stratum": stratum, "sequence": slots[stuck].sequence,
                "sizes": _(" or ").join(map(str, sorted(set(block_sizes)))), "arms": ":".join(arms), "ratio": ":".join(map(str, ratio))})
            continue
        start = 0
        for block, end in enumerate(ends, start=1):
            result.rows.extend(
                ImportedSlot(r.line, r.stratum, r.sequence, r.arm, r.kit_code, block, end - start) for r in slots[start:end]
            )
            start = end
        result.counts[stratum] = len(slots)
