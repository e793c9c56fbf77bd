"""SDTM SAS transport (XPT version 5) datasets: a zip with one .xpt file per dataset, define.xml
(Define-XML 2.1) describing them, and the manifest.

Datasets (docs/exports.md): the trial design TS, TA, TE, TV, TI from the trial file; DM (with
SUPPDM), AE (with SUPPAE), DS, EX (one record per administration), CM and MH (the logs), PR
(the fat-grafting procedure), IE (criteria not satisfied), SV; the CRF items as findings routed by
the mapping table in trials/exports/sdtm_terms.py: VS (VITALS), LB (LABS), SC (DEMOG, less its
DM and SU items), SU (smoking, alcohol), QS (questionnaires only) and FA (other assessments),
a split domain getting one dataset per CRF ("QSCO", "FADU" …, DOMAIN stays "QS"/"FA") with
--SEQ unique per subject across the splits (SDTMIG 3.4 §4.1.7). Variable names and labels are
SDTM's; dates ISO 8601 text; character values ASCII (transliterated with anyascii; a character
with no ASCII spelling is dropped and reported in the manifest's warnings); a value longer than 200
characters keeps its first 200 in the variable and the rest in SUPP-- records (QNAM = variable
name + 1, 2 …, SDTMIG 3.4 §4.5.3.2), so no character is lost.

USUBJID is "<study>-<screening number>": the screening number is given at screening and never
changes, so a subject keeps one identifier across transfers; the subject number given at
enrolment is SUPPDM.SUBJNUM.

Blinded (the default): DM keeps ARMCD/ARM/ACTARMCD/ACTARM with the value "BLINDED" for every
allocated subject (ARMNRS says why an unallocated one has none), TA collapses the arms into one
"BLINDED" arm, and EX names the treatment "BLINDED TREATMENT" with no dose; define.xml says so.
Unblinded: the arm code and label, and in EX the dose administered (PLACEBO, dose 0, for a placebo).

Memory: a findings dataset (one row per answered item, the biggest) is produced in key order: a
CRF's entries are read a batch of subjects at a time in USUBJID order, and its rows are spilled a
chunk at a time (SpilledDataset) then written with the final lengths, so memory does not grow with
the trial. The other datasets are built column-wise (character columns as category codes, 4 bytes
a cell; one copy of each distinct value) and written by the streaming XPT writer
(trials.exports.xpt) a chunk of sorted rows at a time, without a DataFrame; their cells are
released once written.

Speed: on PostgreSQL the findings' entries take the SQL route (Findings.wide_rows): read by COPY
as one row per entry and a column per item (as the CSV export reads them), melted to rows with
numpy, each distinct answer shaped once by the same code as the Python route, which the entries
it does not fit (missing-data codes, odd answers, lab tests, groups) and SQLite keep.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
from concurrent.futures import Future, ThreadPoolExecutor
import re
from contextvars import ContextVar
import tempfile
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from functools import partial as functools_partial
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from anyascii import anyascii
import pandas as pd
import pycountry
import pyreadstat
from django.db import connection, connections

from trials.exports import csvzip, manifest, odm, sdtm_terms, selectors, xpt
from trials.exports.sdtm_terms import EPOCHS, TESTS
from trials.exports.spec import ExportSpec, Progress
from trials.protocol.models import Arm, Criterion, FieldDefinition, Trial, VisitCrf, VisitDefinition
from trials.protocol.engine import ROW_ID, Item, schema_for
from trials.protocol.labs import grade_answers

CHAR, NUM = "char", "num"
XPT_CHUNK = 20_000  # rows per chunk of the streaming XPT writer
KNOWN_RESULTS = 50_000  # (test, answer) records remembered across a CRF's chunks (Findings.write)
UNMASKED = frozenset({"STUDYID", "DOMAIN", "RDOMAIN", "USUBJID", "SUBJID", "SITEID", "IDVAR", "IDVARVAL", "QNAM"})
MAX_CHAR = 200  # XPT v5: character values of at most 200 bytes
FINDINGS_LABELS = {
    "QS": ("Questionnaires", "Question"),
    "VS": ("Vital Signs", "Vital Signs Test"),
    "LB": ("Laboratory Test Results", "Lab Test or Examination"),
    "SC": ("Subject Characteristics", "Subject Characteristic"),
    "FA": ("Findings About", "Findings About Test"),
}
FINDINGS_ORDER = ("SC", "VS", "LB", "QS", "FA")
BASELINE_DOMAINS = {"VS", "LB", "QS"}  # --LOBXFL: last observation before exposure (SDTMIG 3.4)
BLINDED_ARM = "BLINDED"
# CDISC controlled terminology for our codes (AE outcome, action taken; NCOMPLT for disposition).
OUTCOME = {
    "recovered": "RECOVERED/RESOLVED", "recovering": "RECOVERING/RESOLVING", "not_recovered": "NOT RECOVERED/NOT RESOLVED",
    "sequelae": "RECOVERED/RESOLVED WITH SEQUELAE", "fatal": "FATAL", "unknown": "UNKNOWN",
}
ACTION = {
    "none": "DOSE NOT CHANGED", "dose_delayed": "DRUG INTERRUPTED", "dose_reduced": "DOSE REDUCED",
    "withdrawn": "DRUG WITHDRAWN", "not_applicable": "NOT APPLICABLE",
}
CAUSALITY = {
    "not_related": "NOT RELATED", "unlikely": "UNLIKELY RELATED", "possible": "POSSIBLY RELATED",
    "probable": "PROBABLY RELATED", "definite": "RELATED",
}
DISPOSITION = {  # NCOMPLT (C66727); a withdrawal for an adverse event is "ADVERSE EVENT" (see disposition())
    "completed": "COMPLETED", "withdrawn": "WITHDRAWAL BY SUBJECT", "lost_to_follow_up": "LOST TO FOLLOW-UP",
    "died": "DEATH", "screen_failure": "SCREEN FAILURE",
}
# ARMNRS (C142179): why a subject has no arm.
ARM_NOT_ASSIGNED = {"screen_failure": "SCREEN FAILURE"}
SERIOUSNESS_FLAGS = {
    "death": "AESDTH", "life_threatening": "AESLIFE", "hospitalisation": "AESHOSP", "disability": "AESDISAB",
    "congenital_anomaly": "AESCONG", "other_important": "AESMIE",
}
BLINDED_TREATMENT = "BLINDED TREATMENT"
# Signs that have an ASCII spelling in units and labels (°C is "C" in CDISC's UNIT terminology).
ASCII_SIGNS = {"°C": "C", "°": "deg", "µ": "u", "μ": "u", "²": "2", "³": "3", "×": "x", "–": "-", "—": "-", "’": "'",
               "‘": "'", "“": '"', "”": '"', "≥": ">=", "≤": "<=", "…": "..."}


# --- Values ---------------------------------------------------------------------------------


# Characters changed or dropped while writing one export: (kind, character) -> count; the manifest
# lists them (a context variable: one export per task, whatever the worker's concurrency).
TEXT_REPORT: ContextVar[dict | None] = ContextVar("sdtm_text_report", default=None)


def ascii_text(value: Any, limit: int | None = None) -> str:
    """A character value as transport files want it: ASCII (transliterated: "πυρετός" is
    "pyretos", "発熱" is "HatsuNetsu"), cut to `limit` only where a name or label has a fixed width.
    A character with no ASCII spelling is dropped and counted in TEXT_REPORT."""
    if value is None:
        return ""
    text = str(value)
    if text.isascii() and text.isprintable():  # nearly every value: nothing to fold
        return text[:limit] if limit else text
    for sign, spelling in ASCII_SIGNS.items():
        text = text.replace(sign, spelling)
    report = TEXT_REPORT.get()
    folded = []
    for character in text:
        if character.isascii():
            folded.append(character)
            continue
        spelling = anyascii(character)
        folded.append(spelling)
        if report is not None:
            key = ("dropped" if not spelling else "transliterated", character)
            report[key] = report.get(key, 0) + 1
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", "".join(folded))
    return text[:limit] if limit else text


def split_text(text: str, width: int = MAX_CHAR) -> list[str]:
    """A long text in pieces of at most `width` characters, cut after a space where there is one
    (SDTMIG 3.4 §4.5.3.2: the first piece in the variable, the others in SUPP--); joined again
    they give the text."""
    pieces = []
    while len(text) > width:
        # Cut before a space: the space opens the next piece (XPT drops trailing blanks, not leading ones).
        cut = text.rfind(" ", 0, width + 1)
        cut = cut if cut > width // 2 else width
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def ascii_mask(spec: ExportSpec) -> Callable[[str], str]:
    """selectors.arm_mask for ASCII-folded texts: the arm codes and labels folded the same way
    (an arm "Bras placebo – dose élevée" is masked in "Bras placebo - dose elevee" too)."""
    source = selectors.arm_mask_pattern(spec)
    if source is None:
        def identity(text: str) -> str:
            return text

        identity.identity = True  # Dataset.add skips the call
        return identity
    pattern = re.compile(ascii_text(source, limit=None), re.IGNORECASE)

    @lru_cache(maxsize=100_000)
    def mask(text: str) -> str:
        return pattern.sub(selectors.BLINDED_WORD, text) if text else text

    return mask


def iso(value: Any) -> str:
    """An ISO 8601 date (or date-time, without a time zone: SDTM --DTC has none) as text."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, microsecond=0).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def study_day(value: Any, reference: date | None) -> float:
    """SDTM study day: day 1 is the reference start date, the day before is -1 (there is no day 0)."""
    day = as_date(value)
    if day is None or reference is None:
        return np.nan
    delta = (day - reference).days
    return float(delta + 1 if delta >= 0 else delta)


def number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return np.nan
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return np.nan


def yn(flag: Any) -> str:
    if flag is None:
        return ""
    return "Y" if flag else "N"


def short_name(text: str, taken: set[str], width: int = 8) -> str:
    """An upper-case SAS name of at most `width` characters, starting with a letter, unique in
    `taken`: the name itself when it fits, else the first letters of each word (NUMBER_ACTIVE_DU
    -> NUMACTDU), then digits on a clash."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", ascii_text(text).upper()) if w] or ["X"]
    joined = "".join(words)
    if len(joined) <= width:
        candidate = joined
    else:  # a prefix of each word, lengthened one letter at a time, word after word
        shares = [1] * len(words) if len(words) <= width else [1] * width
        words = words[: len(shares)]
        while sum(shares) < width:
            grown = False
            for index, word in enumerate(words):
                if sum(shares) < width and shares[index] < len(word):
                    shares[index] += 1
                    grown = True
            if not grown:
                break
        candidate = "".join(word[:share] for word, share in zip(words, shares, strict=True))
    if not candidate[0].isalpha():
        candidate = ("X" + candidate)[:width]
    base, counter = candidate, 1
    while candidate in taken:
        counter += 1
        suffix = str(counter)
        candidate = base[: width - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


# --- Column-wise datasets ---------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    name: str
    label: str
    type: str = CHAR
    origin: str = "Derived"  # Define-XML def:Origin Type: Collected, Derived, Assigned, Protocol
    codelist: str = ""  # the CDISC codelist (name) the values come from, for define.xml


def _dataset_head(dataset, name: str, label: str, variables: Iterable[Var], mask: Callable[[str], str] | None,  # noqa: ANN001, PLR0913
                  domain: str | None, keys: tuple[str, ...]) -> None:
    """What Dataset and SpilledDataset both are: a name, its domain, the mask of its texts, its
    (masked) label, its variables and its sort order (SDTMIG: the dataset's key variables)."""
    dataset.name = name
    dataset.domain = domain or name[:2]
    dataset.mask = mask or (lambda text: text)
    dataset.label = dataset.mask(label)
    dataset.variables = list(variables)
    dataset.keys = keys


class Dataset:
    """A dataset built row by row, kept column-wise: character columns as category codes (one
    copy of each distinct value), numeric columns as doubles. A character value longer than 200
    characters keeps its first piece; the others wait in `overflow` for the SUPP-- dataset."""

    def __init__(self, name: str, label: str, variables: Iterable[Var], mask: Callable[[str], str] | None = None,
                 *, domain: str | None = None, keys: tuple[str, ...] = ("USUBJID",)) -> None:
        _dataset_head(self, name, label, variables, mask, domain, keys)
        # Identifiers and test codes are never masked (they name no arm); every other text is.
        self._masked = {
            v.name for v in self.variables
            if v.type == CHAR and v.name not in UNMASKED and not v.name.endswith("TESTCD")
        }
        self.rows = 0
        self._codes = {v.name: array("i") for v in self.variables if v.type == CHAR}
        self._categories: dict[str, dict[str, int]] = {v.name: {} for v in self.variables if v.type == CHAR}
        self._numbers = {v.name: array("d") for v in self.variables if v.type == NUM}
        self._seq = f"{self.domain}SEQ" if f"{self.domain}SEQ" in self._numbers else None
        self.overflow: list[tuple[str, str, str, str, list[str]]] = []  # (USUBJID, IDVAR, IDVARVAL, variable, pieces)
        self._columns: list[tuple] | None = None
        self._number_columns: list[tuple] = []
        self.widths: dict[str, int] = {}  # longest value per character variable (define.xml Length)
        self._value_levels: dict[str, tuple[str, int, bool, int]] | None = None

    def add(self, **values: Any) -> None:
        get, mask = values.get, self.mask
        if self._columns is None:  # (name, codes, categories, masked) of each character variable, bound once
            identity = getattr(mask, "identity", False)
            self._columns = [(name, codes, self._categories[name], name in self._masked and not identity)
                             for name, codes in self._codes.items()]
            self._number_columns = list(self._numbers.items())
        for name, codes, categories, masked in self._columns:
            value = get(name)
            if not value:
                codes.append(-1)
                continue
            if masked:
                value = mask(value)
            if len(value) > MAX_CHAR:
                pieces = split_text(value)
                value = pieces[0]
                seq = get(self._seq) if self._seq else None
                self.overflow.append((get("USUBJID", ""), self._seq or "", "" if seq is None else odm._plain(seq), name, pieces[1:]))
            code = categories.get(value)
            if code is None:
                code = categories[value] = len(categories)
                if len(value) > self.widths.get(name, 0):
                    self.widths[name] = len(value)
            codes.append(code)
        nan = np.nan
        for name, numbers in self._number_columns:
            value = get(name)
            numbers.append(nan if value is None else float(value))
        self.rows += 1

    def set(self, row: int, name: str, value: str) -> None:
        """Change one character cell (flags known only when a subject's rows are all read)."""
        categories = self._categories[name]
        code = categories.get(value)
        if code is None:
            code = categories[value] = len(categories)
            self.widths[name] = max(self.widths.get(name, 0), len(value))
        self._codes[name][row] = code

    def frame(self) -> pd.DataFrame:
        columns = {}
        for var in self.variables:
            if var.type == CHAR:
                codes = np.frombuffer(self._codes[var.name], dtype=np.int32) if self.rows else np.array([], dtype=np.int32)
                columns[var.name] = pd.Categorical.from_codes(codes, categories=list(self._categories[var.name]))
            else:
                columns[var.name] = np.frombuffer(self._numbers[var.name], dtype=np.float64) if self.rows else np.array([], dtype=np.float64)
        data = pd.DataFrame(columns)
        keys = [key for key in self.keys if key in data.columns]
        if keys and self.rows:  # sorted by the keys (a category sorts by its value once the categories are)
            for key in keys:
                if key in self._codes:
                    data[key] = data[key].cat.reorder_categories(sorted(data[key].cat.categories))
            data = data.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
        return data

    def labels(self) -> dict[str, str]:
        return {v.name: v.label[:40] for v in self.variables}

    def order(self) -> np.ndarray:
        """The rows in key order, as frame() sorts them (stable; a missing key first)."""
        sort_keys = []
        for key in self.keys:
            if key in self._codes:
                categories = list(self._categories[key])
                rank = np.empty(len(categories) + 1, dtype=np.int64)
                rank[0] = -1
                for position, index in enumerate(sorted(range(len(categories)), key=categories.__getitem__)):
                    rank[index + 1] = position
                sort_keys.append(rank[np.frombuffer(self._codes[key], dtype=np.int32).astype(np.int64) + 1])
            elif key in self._numbers:
                sort_keys.append(np.nan_to_num(np.frombuffer(self._numbers[key], dtype=np.float64), nan=-np.inf))
        if not sort_keys or not self.rows:
            return np.arange(self.rows)
        return np.lexsort(sort_keys[::-1])

    def write_xpt(self, out: BinaryIO, chunk: int = XPT_CHUNK) -> None:
        """The dataset as an XPT v5 file, written a chunk of rows at a time in key order
        (trials.exports.xpt): no DataFrame of the whole dataset."""
        lengths = self.lengths()
        variables = [(v.name, ascii_text(v.label, 40), v.type, lengths[v.name]) for v in self.variables]
        writer = xpt.XptWriter(out, self.name, ascii_text(self.label, 40), variables)
        order = self.order()
        # Each distinct value once, as bytes in an object array (not a fixed-width array of every
        # distinct value: a column of 200-byte results would take 200 bytes per distinct value).
        texts = {}
        for v in self.variables:
            if v.type == CHAR:
                values = np.empty(len(self._categories[v.name]) + 1, dtype=object)
                values[:] = [b"", *(t.encode("ascii", "replace") for t in self._categories[v.name])]
                texts[v.name] = values
        for start in range(0, self.rows, chunk):
            rows = order[start:start + chunk]
            columns = {}
            for v in self.variables:
                if v.type == CHAR:
                    codes = np.frombuffer(self._codes[v.name], dtype=np.int32)[rows].astype(np.int64) + 1
                    columns[v.name] = texts[v.name][codes].astype(f"S{lengths[v.name]}")
                else:
                    columns[v.name] = np.frombuffer(self._numbers[v.name], dtype=np.float64)[rows]
            writer.write_rows(columns)
        writer.close()

    def categories(self, name: str) -> list[str]:
        """The distinct values of a character variable (for a code list)."""
        return list(self._categories.get(name, {}))

    def value_levels(self) -> dict[str, tuple[str, int, bool, int]]:
        """A findings dataset's results per test, for define.xml's value-level metadata: test code
        -> (test name, longest --ORRES, whether every --ORRES is a number, most decimal places). Empty when the
        dataset has no --TESTCD/--ORRES; kept when the cells are released."""
        if self._value_levels is not None:
            return self._value_levels
        testcd, test, orres = f"{self.domain}TESTCD", f"{self.domain}TEST", f"{self.domain}ORRES"
        if testcd not in self._codes or orres not in self._codes:
            return {}
        names = {name: list(self._categories[name]) for name in (testcd, orres, test) if name in self._categories}
        found: dict[str, tuple[str, int, bool, int]] = {}
        test_codes = self._codes.get(test)
        for row, (code, result) in enumerate(zip(self._codes[testcd], self._codes[orres], strict=True)):
            if code < 0:
                continue
            test_code = names[testcd][code]
            value = names[orres][result] if result >= 0 else ""
            label, width, numeric, places = found.get(test_code, ("", 0, True, 0))
            if not label and test_codes is not None and test_codes[row] >= 0:
                label = names[test][test_codes[row]]
            number = bool(value) and _is_number(value)
            if number and "." in value:
                places = max(places, len(value.split(".", 1)[1]))
            found[test_code] = (label, max(width, len(value)), numeric and (not value or number), places)
        return found

    def release(self) -> None:
        """Drop the cells once written (the metadata stays for define.xml): memory holds one
        dataset's cells at a time, and the distinct values only of the variables with a code list."""
        self._value_levels = self.value_levels()
        self._codes, self._numbers = {}, {}
        self._categories = {v.name: self._categories[v.name] for v in self.variables if v.type == CHAR and v.codelist}

    def lengths(self) -> dict[str, int]:
        """The length of each variable as written: the longest value (at least 1) of a character
        variable, 8 for a number (SAS)."""
        return {v.name: (max(1, self.widths.get(v.name, 0)) if v.type == CHAR else 8) for v in self.variables}


class SpilledDataset:
    """A dataset produced in key order a chunk at a time (`append_chunk`) and spilled to a temporary
    file, so memory holds one chunk whatever the size of the trial: a CRF's findings (one row per
    answered item). The XPT header needs each character variable's length (its longest value)
    before the rows, known only once every row is produced: the chunks wait on disk, each column at
    the chunk's own width, and `write_xpt` writes the header then the chunks widened to the final
    lengths. The rest of its interface is Dataset's (define.xml, the SUPP-- overflow, the zip)."""

    def __init__(self, name: str, label: str, variables: Iterable[Var], mask: Callable[[str], str] | None = None,
                 *, domain: str | None = None, keys: tuple[str, ...] = ("USUBJID",)) -> None:
        _dataset_head(self, name, label, variables, mask, domain, keys)
        identity = getattr(self.mask, "identity", False)
        self._masked = {
            v.name for v in self.variables
            if v.type == CHAR and v.name not in UNMASKED and not v.name.endswith("TESTCD") and not identity
        }
        self.rows = 0
        self.overflow: list[tuple[str, str, str, str, list[str]]] = []
        self.widths: dict[str, int] = {}
        self._codelists: dict[str, dict[str, None]] = {v.name: {} for v in self.variables if v.type == CHAR and v.codelist}
        self._seq = f"{self.domain}SEQ"
        self._spill: Any = tempfile.TemporaryFile(prefix="sdtm-")
        self._chunks = 0
        # --TESTCD -> [label, longest --ORRES, every --ORRES a number, most decimal places, first row]
        self._levels: dict[str, list] = {}
        self._mask_test, self._mask_orres = f"{self.domain}TEST" in self._masked, f"{self.domain}ORRES" in self._masked

    def texts(self, name: str, table: list[str]) -> tuple[np.ndarray, dict[int, list[str]]]:
        """A character variable's distinct values as written (masked, the first 200 characters),
        fixed-width bytes with b"" last (the index -1 of a missing cell), and the rest of each long value."""
        masked, mask = name in self._masked, self.mask
        if not masked:
            try:  # numpy encodes ASCII str straight to bytes (several times faster than through a str array)
                texts = np.array([*table, ""], dtype="S")
            except UnicodeEncodeError:  # a character outside ASCII: "?" as below
                texts = None
            if texts is not None and (texts.dtype.itemsize <= MAX_CHAR or not (np.char.str_len(texts) > MAX_CHAR).any()):
                return texts, {}
        encoded, long = [], {}
        for index, value in enumerate(table):
            if not value:
                encoded.append(b"")
                continue
            if masked:
                value = mask(value)
            if len(value) > MAX_CHAR:
                pieces = split_text(value)
                value, long[index] = pieces[0], pieces[1:]
            encoded.append(value.encode("ascii", "replace"))
        encoded.append(b"")
        return np.array(encoded, dtype=bytes), long

    def append_chunk(self, chars: dict[str, tuple[list[str], np.ndarray]], numbers: dict[str, np.ndarray]) -> None:
        """Rows in key order: per character variable its distinct values and each row's index in
        them (-1: missing), per numeric variable its values (NaN: missing). A character column is
        spilled as its distinct values and the rows' indexes: widened to the final length once per
        distinct value when written."""
        seq = numbers[self._seq]
        size = len(seq)
        if not size:
            return
        subjects = None
        done: dict[tuple[int, bool], tuple[np.ndarray, dict]] = {}  # a table given for two variables (ORRES, STRESC) read once
        for var in self.variables:
            if var.type == NUM:
                np.save(self._spill, np.asarray(numbers.get(var.name, np.full(size, np.nan)), dtype=np.float64), allow_pickle=False)
                continue
            table, index = chars.get(var.name, ([], None))
            if index is None:
                index = np.full(size, -1, dtype=np.int64)
            key = (id(table), var.name in self._masked)
            if key not in done:
                done[key] = self.texts(var.name, table)
            texts, long = done[key]
            index = np.where(index < 0, len(texts) - 1, index).astype(np.int32)  # the last value is b"" (missing)
            seen = np.zeros(len(texts), dtype=bool)
            seen[index] = True
            used = np.nonzero(seen[:-1])[0]
            if len(used):
                self.widths[var.name] = max(self.widths.get(var.name, 0), int(np.char.str_len(texts[used]).max()))
                if var.name in self._codelists:
                    self._codelists[var.name].update(dict.fromkeys(t for t in texts[used].astype(str).tolist() if t))
            for position, pieces in long.items():  # SUPP-- (SDTMIG 3.4 §4.5.3.2), QNAM <variable>1, 2 …
                if subjects is None:
                    table_u, index_u = chars["USUBJID"]
                    subjects = [table_u[i] for i in index_u.tolist()]
                for row in np.nonzero(index == position)[0].tolist():
                    self.overflow.append((subjects[row], self._seq, str(int(seq[row])), var.name, pieces))
            np.save(self._spill, texts, allow_pickle=False)
            np.save(self._spill, index, allow_pickle=False)
        self.rows += size
        self._chunks += 1

    def name_test(self, testcd: str, label: str, first: tuple) -> None:
        """The test's name for value_levels: that of its first row in the database's order."""
        found = self._levels.get(testcd)
        if found is None:
            found = self._levels[testcd] = ["", 0, True, 0, None]
        if label and (not found[0] or first < found[4]):
            found[0], found[4] = (self.mask(label) if self._mask_test else label), first

    def level(self, testcd: str, result: str) -> None:
        """A result of a test, for value_levels (called once per distinct result of a chunk)."""
        found = self._levels.get(testcd)
        if found is None:
            found = self._levels[testcd] = ["", 0, True, 0, None]
        if result:
            if self._mask_orres:
                result = self.mask(result)
            if len(result) > MAX_CHAR:
                result = split_text(result)[0]
            if len(result) > found[1]:
                found[1] = len(result)
            dot = "." in result
            if found[2] or dot:  # a number's decimal places count even once the test is known not numeric
                number = _is_number(result)
                if number and dot:
                    found[3] = max(found[3], len(result.split(".", 1)[1]))
                if not number:
                    found[2] = False

    def numbers_level(self, testcd: str, values: list[str]) -> None:
        """level() of many texts known to be numbers (float() reads each), unmasked: longest, most decimals."""
        found = self._levels.get(testcd)
        if found is None:
            found = self._levels[testcd] = ["", 0, True, 0, None]
        texts = np.array(values)
        lengths = np.char.str_len(texts)
        if self._mask_orres or (lengths > MAX_CHAR).any():
            for value in values:
                self.level(testcd, value)
            return
        found[1] = max(found[1], int(lengths.max()))
        dots = np.char.find(texts, ".")
        if (dots >= 0).any():
            found[3] = max(found[3], int((lengths - dots - 1)[dots >= 0].max()))

    def value_levels(self) -> dict[str, tuple[str, int, bool, int]]:
        return {code: (label, width, numeric, places) for code, (label, width, numeric, places, _first) in self._levels.items()}

    def categories(self, name: str) -> list[str]:
        return list(self._codelists.get(name, {}))

    def labels(self) -> dict[str, str]:
        return {v.name: v.label[:40] for v in self.variables}

    def lengths(self) -> dict[str, int]:
        return {v.name: (max(1, self.widths.get(v.name, 0)) if v.type == CHAR else 8) for v in self.variables}

    def _chunks_read(self, lengths: dict[str, int] | None = None):  # noqa: ANN202
        """The spilled chunks, a column per variable: characters as fixed-width bytes (blank-padded
        to `lengths` when given, else NUL-padded), numbers as doubles."""
        self._spill.seek(0)
        for _chunk in range(self._chunks):
            columns = {}
            for v in self.variables:
                if v.type == NUM:
                    columns[v.name] = np.load(self._spill, allow_pickle=False)
                    continue
                texts = np.load(self._spill, allow_pickle=False)
                index = np.load(self._spill, allow_pickle=False)
                if lengths is not None:
                    texts = xpt.blank_padded(texts, lengths[v.name])
                columns[v.name] = texts[index]
            yield columns

    def write_xpt(self, out: BinaryIO, chunk: int = XPT_CHUNK) -> None:
        """The header with the final lengths, then the spilled chunks as they were produced (already in key order)."""
        lengths = self.lengths()
        variables = [(v.name, ascii_text(v.label, 40), v.type, lengths[v.name]) for v in self.variables]
        writer = xpt.XptWriter(out, self.name, ascii_text(self.label, 40), variables)
        for columns in self._chunks_read(lengths):
            writer.write_rows(columns, padded=True)
        writer.close()

    def frame(self) -> pd.DataFrame:
        """The whole dataset as a DataFrame (write_xpt_frame, the reference writer of the tests)."""
        parts: dict[str, list] = {v.name: [] for v in self.variables}
        for columns in self._chunks_read():
            for name, column in columns.items():
                parts[name].append(column)
        data = {}
        for v in self.variables:
            if v.type == NUM:
                data[v.name] = np.concatenate(parts[v.name]) if parts[v.name] else np.array([], dtype=np.float64)
            else:
                values = [t.decode("ascii") for column in parts[v.name] for t in column.tolist()]
                categories = list(dict.fromkeys(value for value in values if value))
                codes = {value: code for code, value in enumerate(categories)}
                data[v.name] = pd.Categorical.from_codes([codes.get(value, -1) for value in values], categories=categories)
        return pd.DataFrame(data)

    def release(self) -> None:
        self._spill.close()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_xpt(dataset: Dataset, path: Path) -> None:
    """One XPT v5 file (names ≤ 8 characters, labels ≤ 40), streamed a chunk of rows at a time."""
    with path.open("wb") as out:
        dataset.write_xpt(out)


def write_xpt_frame(dataset: Dataset, path: Path) -> None:
    """The same file through a whole-dataset DataFrame and pyreadstat.write_xport (the writer
    before the streaming one; tests/exports/test_xpt.py reads both back and compares them)."""
    pyreadstat.write_xport(
        dataset.frame(), str(path), file_label=ascii_text(dataset.label, 40), column_labels=dataset.labels(),
        table_name=dataset.name, file_format_version=5,
    )


def zip_file_member(archive: zipfile.ZipFile, path: Path, name: str, rows: int, label: str) -> dict:
    """Add a written file to the zip and describe it for the manifest (SHA-256 of its bytes)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source, archive.open(manifest.zip_member(archive, name), "w", force_zip64=True) as member:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            member.write(chunk)
    path.unlink()
    return {"name": name, "table": label, "rows": rows, "bytes": size, "sha256": digest.hexdigest()}


# --- Variables ------------------------------------------------------------------------------

KEYS = [Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
        Var("USUBJID", "Unique Subject Identifier", origin="Assigned")]
EPOCH = Var("EPOCH", "Epoch", codelist="EPOCH")


def dm_variables(spec: ExportSpec) -> list[Var]:
    variables = KEYS + [
        Var("SUBJID", "Subject Identifier for the Study", origin="Assigned"),
        Var("RFSTDTC", "Subject Reference Start Date/Time"),
        Var("RFENDTC", "Subject Reference End Date/Time"),
        Var("RFXSTDTC", "Date/Time of First Study Treatment"),
        Var("RFXENDTC", "Date/Time of Last Study Treatment"),
        Var("RFICDTC", "Date/Time of Informed Consent", origin="Collected"),
        Var("RFPENDTC", "Date/Time of End of Participation"),
        Var("DTHDTC", "Date/Time of Death", origin="Collected"),
        Var("DTHFL", "Subject Death Flag", codelist="NY"),
        Var("SITEID", "Study Site Identifier", origin="Assigned"),
    ]
    if spec.identifiers:
        variables.append(Var("BRTHDTC", "Date/Time of Birth", origin="Collected"))
    variables += [
        Var("AGE", "Age", NUM), Var("AGEU", "Age Units", codelist="AGEU"), Var("SEX", "Sex", origin="Collected", codelist="SEX"),
        Var("RACE", "Race", origin="Collected", codelist="RACE"), Var("ETHNIC", "Ethnicity", origin="Collected", codelist="ETHNIC"),
        Var("ARMCD", "Planned Arm Code", origin="Assigned"), Var("ARM", "Description of Planned Arm", origin="Assigned"),
        Var("ACTARMCD", "Actual Arm Code"), Var("ACTARM", "Description of Actual Arm"),
        Var("ARMNRS", "Reason Arm and/or Actual Arm is Null", codelist="ARMNULRS"),
        Var("COUNTRY", "Country", codelist="COUNTRY"),
    ]
    return variables


AE_VARIABLES = KEYS + [
    Var("AESEQ", "Sequence Number", NUM), Var("AESPID", "Sponsor-Defined Identifier", origin="Assigned"),
    Var("AETERM", "Reported Term for the Adverse Event", origin="Collected"), Var("AELLT", "Lowest Level Term", origin="Assigned"),
    Var("AELLTCD", "Lowest Level Term Code", origin="Assigned"), Var("AEDECOD", "Dictionary-Derived Term", origin="Assigned"),
    Var("AEPTCD", "Preferred Term Code", origin="Assigned"), Var("AEBODSYS", "Body System or Organ Class", origin="Assigned"),
    Var("AEBDSYCD", "Body System or Organ Class Code", origin="Assigned"),
    Var("AESOC", "Primary System Organ Class", origin="Assigned"),
    Var("AESOCCD", "Primary System Organ Class Code", origin="Assigned"), Var("AESER", "Serious Event", origin="Collected", codelist="NY"),
    Var("AEACN", "Action Taken with Study Treatment", origin="Collected", codelist="ACN"),
    Var("AEREL", "Causality", origin="Collected"), Var("AEOUT", "Outcome of Adverse Event", origin="Collected", codelist="OUT"),
    Var("AESCONG", "Congenital Anomaly or Birth Defect", origin="Collected", codelist="NY"),
    Var("AESDISAB", "Persist or Signif Disability/Incapacity", origin="Collected", codelist="NY"),
    Var("AESDTH", "Results in Death", origin="Collected", codelist="NY"),
    Var("AESHOSP", "Requires or Prolongs Hospitalization", origin="Collected", codelist="NY"),
    Var("AESLIFE", "Is Life Threatening", origin="Collected", codelist="NY"),
    Var("AESMIE", "Other Medically Important Serious Event", origin="Collected", codelist="NY"),
    Var("AECONTRT", "Concomitant or Additional Trtmnt Given", codelist="NY"),
    Var("AETOXGR", "Standard Toxicity Grade", origin="Collected"), EPOCH,
    Var("AESTDTC", "Start Date/Time of Adverse Event", origin="Collected"),
    Var("AEENDTC", "End Date/Time of Adverse Event", origin="Collected"),
    Var("AESTDY", "Study Day of Start of Adverse Event", NUM), Var("AEENDY", "Study Day of End of Adverse Event", NUM),
    Var("AEENRTPT", "End Relative to Reference Time Point", codelist="STENRF"), Var("AEENTPT", "End Reference Time Point"),
]
DS_VARIABLES = KEYS + [
    Var("DSSEQ", "Sequence Number", NUM), Var("DSTERM", "Reported Term for the Disposition Event", origin="Collected"),
    Var("DSDECOD", "Standardized Disposition Term", codelist="NCOMPLT"), Var("DSCAT", "Category for Disposition Event", codelist="DSCAT"),
    EPOCH, Var("DSSTDTC", "Start Date/Time of Disposition Event", origin="Collected"),
    Var("DSSTDY", "Study Day of Start of Disposition Event", NUM),
]
EX_VARIABLES = KEYS + [
    Var("EXSEQ", "Sequence Number", NUM), Var("EXSPID", "Sponsor-Defined Identifier", origin="Collected"),
    Var("EXTRT", "Name of Treatment", origin="Assigned"), Var("EXDOSE", "Dose", NUM, origin="Collected"),
    Var("EXDOSU", "Dose Units", origin="Assigned", codelist="UNIT"), Var("EXROUTE", "Route of Administration", origin="Assigned", codelist="ROUTE"),
    Var("EXVAMT", "Treatment Vehicle Amount", NUM, origin="Collected"), Var("EXVAMTU", "Treatment Vehicle Amount Units", origin="Assigned", codelist="UNIT"),
    Var("VISITNUM", "Visit Number", NUM, origin="Assigned"), Var("VISIT", "Visit Name", origin="Assigned"), EPOCH,
    Var("EXSTDTC", "Start Date/Time of Treatment", origin="Collected"), Var("EXENDTC", "End Date/Time of Treatment", origin="Collected"),
    Var("EXSTDY", "Study Day of Start of Treatment", NUM), Var("EXENDY", "Study Day of End of Treatment", NUM),
]
CM_VARIABLES = KEYS + [
    Var("CMSEQ", "Sequence Number", NUM), Var("CMSPID", "Sponsor-Defined Identifier", origin="Assigned"),
    Var("CMTRT", "Reported Name of Drug, Med, or Therapy", origin="Collected"),
    # WHODrug is licensed and not loaded: CMDECOD is present (SDTMIG: Expected) and null.
    Var("CMDECOD", "Standardized Medication Name", origin="Assigned"),
    Var("CMCLAS", "Medication Class", origin="Collected"), Var("CMINDC", "Indication", origin="Collected"),
    Var("CMDOSE", "Dose per Administration", NUM, origin="Collected"), Var("CMDOSU", "Dose Units", origin="Collected", codelist="UNIT"),
    Var("CMDOSFRQ", "Dosing Frequency per Interval", origin="Collected", codelist="FREQ"),
    Var("CMROUTE", "Route of Administration", origin="Collected", codelist="ROUTE"), EPOCH,
    Var("CMSTDTC", "Start Date/Time of Medication", origin="Collected"), Var("CMENDTC", "End Date/Time of Medication", origin="Collected"),
    Var("CMSTDY", "Study Day of Start of Medication", NUM), Var("CMENDY", "Study Day of End of Medication", NUM),
    Var("CMENRTPT", "End Relative to Reference Time Point", codelist="STENRF"), Var("CMENTPT", "End Reference Time Point"),
]
MH_VARIABLES = KEYS + [
    Var("MHSEQ", "Sequence Number", NUM), Var("MHSPID", "Sponsor-Defined Identifier", origin="Assigned"),
    Var("MHTERM", "Reported Term for the Medical History", origin="Collected"),
    Var("MHDECOD", "Dictionary-Derived Term", origin="Assigned"),
    Var("MHBODSYS", "Body System or Organ Class", origin="Assigned"),
    Var("MHSTDTC", "Start Date/Time of Medical History Event", origin="Collected"),
    Var("MHENDTC", "End Date/Time of Medical History Event", origin="Collected"),
    Var("MHENRTPT", "End Relative to Reference Time Point", codelist="STENRF"), Var("MHENTPT", "End Reference Time Point"),
]
PR_VARIABLES = KEYS + [
    Var("PRSEQ", "Sequence Number", NUM), Var("PRSPID", "Sponsor-Defined Identifier", origin="Assigned"),
    Var("PRTRT", "Reported Name of Procedure", origin="Collected"), Var("PRCAT", "Category", origin="Assigned"),
    Var("PRLOC", "Location of Procedure", origin="Collected"),
    Var("VISITNUM", "Visit Number", NUM, origin="Assigned"), Var("VISIT", "Visit Name", origin="Assigned"), EPOCH,
    Var("PRSTDTC", "Start Date/Time of Procedure", origin="Collected"), Var("PRSTDY", "Study Day of Start of Procedure", NUM),
]
IE_VARIABLES = KEYS + [
    Var("IESEQ", "Sequence Number", NUM), Var("IESPID", "Sponsor-Defined Identifier", origin="Collected"),
    Var("IETESTCD", "Inclusion/Exclusion Criterion Short Name", origin="Assigned"),
    Var("IETEST", "Inclusion/Exclusion Criterion", origin="Assigned"),
    Var("IECAT", "Inclusion/Exclusion Category", origin="Assigned", codelist="IECAT"),
    Var("IEORRES", "I/E Criterion Original Result", origin="Collected", codelist="NY"),
    Var("IESTRESC", "I/E Criterion Result in Std Format", codelist="NY"), EPOCH,
    Var("IEDTC", "Date/Time of Collection", origin="Collected"), Var("IEDY", "Study Day of Collection", NUM),
]
SV_VARIABLES = KEYS + [
    Var("VISITNUM", "Visit Number", NUM, origin="Assigned"), Var("VISIT", "Visit Name", origin="Assigned"),
    Var("VISITDY", "Planned Study Day of Visit", NUM, origin="Protocol"), EPOCH,
    Var("SVSTDTC", "Start Date/Time of Visit", origin="Collected"), Var("SVENDTC", "End Date/Time of Visit", origin="Collected"),
    Var("SVSTDY", "Study Day of Start of Visit", NUM), Var("SVENDY", "Study Day of End of Visit", NUM),
    Var("SVUPDES", "Description of Unplanned Visit", origin="Collected"),
]
SU_VARIABLES = KEYS + [
    Var("SUSEQ", "Sequence Number", NUM), Var("SUTRT", "Reported Name of Substance", origin="Assigned"),
    Var("SUCAT", "Category for Substance Use", origin="Assigned"), Var("SUPRESP", "SU Pre-Specified", codelist="NY"),
    Var("SUOCCUR", "SU Occurrence", origin="Collected", codelist="NY"), Var("SUSTAT", "Completion Status", codelist="ND"),
    Var("SUREASND", "Reason Substance Use Not Collected", origin="Collected"),
    Var("VISITNUM", "Visit Number", NUM, origin="Assigned"), Var("VISIT", "Visit Name", origin="Assigned"), EPOCH,
    Var("SUDTC", "Date/Time of Collection", origin="Collected"), Var("SUENDTC", "End Date/Time of Substance Use", origin="Collected"),
]
SUPP_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("RDOMAIN", "Related Domain Abbreviation", origin="Assigned"),
    Var("USUBJID", "Unique Subject Identifier", origin="Assigned"), Var("IDVAR", "Identifying Variable", origin="Assigned"),
    Var("IDVARVAL", "Identifying Variable Value", origin="Assigned"), Var("QNAM", "Qualifier Variable Name", origin="Assigned"),
    Var("QLABEL", "Qualifier Variable Label", origin="Assigned"), Var("QVAL", "Data Value"),
    Var("QORIG", "Origin", origin="Assigned"), Var("QEVAL", "Evaluator", origin="Assigned"),
]


def findings_variables(domain: str) -> list[Var]:
    label, test = FINDINGS_LABELS[domain]
    p = domain
    variables = KEYS + [
        Var(f"{p}SEQ", "Sequence Number", NUM), Var(f"{p}GRPID", "Group ID", origin="Assigned"),
        Var(f"{p}TESTCD", f"{test} Short Name", origin="Assigned", codelist=f"{p}TESTCD" if p in {"VS", "LB"} else ""),
        Var(f"{p}TEST", f"{test} Name", origin="Assigned", codelist=f"{p}TEST" if p in {"VS", "LB"} else ""),
    ]
    if p == "FA":
        variables.append(Var("FAOBJ", "Object of the Observation", origin="Assigned"))
    variables += [
        Var(f"{p}CAT", f"Category for {label}", origin="Assigned"), Var(f"{p}SCAT", f"Subcategory for {label}", origin="Assigned"),
        Var(f"{p}ORRES", "Result or Finding in Original Units", origin="Collected"),
        Var(f"{p}ORRESU", "Original Units", origin="Assigned", codelist="UNIT"),
    ]
    if p == "LB":
        variables += [Var("LBORNRLO", "Reference Range Lower Limit in Orig Unit", origin="Collected"),
                      Var("LBORNRHI", "Reference Range Upper Limit in Orig Unit", origin="Collected")]
    variables += [
        Var(f"{p}STRESC", "Character Result/Finding in Std Format"),
        Var(f"{p}STRESN", "Numeric Result/Finding in Standard Units", NUM), Var(f"{p}STRESU", "Standard Units", codelist="UNIT"),
    ]
    if p == "LB":
        variables += [Var("LBSTNRLO", "Reference Range Lower Limit-Std Units", NUM),
                      Var("LBSTNRHI", "Reference Range Upper Limit-Std Units", NUM),
                      Var("LBNRIND", "Reference Range Indicator", codelist="NRIND"),
                      Var("LBTOX", "Toxicity"), Var("LBTOXGR", "Standard Toxicity Grade")]
    variables += [Var(f"{p}STAT", "Completion Status", codelist="ND"), Var(f"{p}REASND", "Reason Not Performed", origin="Collected")]
    if p == "LB":
        variables.append(Var("LBSPEC", "Specimen Type", origin="Assigned", codelist="SPECTYPE"))
    if p in BASELINE_DOMAINS:
        variables.append(Var(f"{p}LOBXFL", "Last Observation Before Exposure Flag", codelist="NY"))
    variables += [
        Var("VISITNUM", "Visit Number", NUM, origin="Assigned"), Var("VISIT", "Visit Name", origin="Assigned"), EPOCH,
        Var(f"{p}DTC", "Date/Time of Collection", origin="Collected"), Var(f"{p}DY", "Study Day of Collection", NUM),
    ]
    return variables


# --- Participants: DM, DS, EX, SV, AE -----------------------------------------------------------


@dataclass
class Subject:
    usubjid: str
    reference: date | None  # RFSTDTC: the first treatment, else the enrolment
    treated: date | None  # RFXSTDTC: the first treatment (the epoch boundary)


def usubjid(trial_code: str, subject: str) -> str:
    """The subject's one identifier: the study and the screening number (never changes)."""
    return ascii_text(f"{trial_code}-{subject}")


def country_alpha3(alpha2: str) -> str:
    """DM.COUNTRY: ISO 3166-1 alpha-3 (SDTMIG; CT codelist COUNTRY) from the site's alpha-2 code."""
    found = pycountry.countries.get(alpha_2=(alpha2 or "").upper()) if alpha2 else None
    return found.alpha_3 if found else ""


def epoch_of(day: Any, treated: date | None) -> str:
    """EPOCH of a record dated outside a visit: SCREENING before the first treatment, TREATMENT from it."""
    when = as_date(day)
    if when is None:
        return ""
    if treated is None or when < treated:
        return "SCREENING"
    return "TREATMENT"


def sex_crf_code(spec: ExportSpec) -> str | None:
    """The trial's CRF with a top-level 'sex' item (DEMOG in the library): DM.SEX comes from it."""
    codes = set(FieldDefinition.objects.filter(name="sex", parent__isnull=True).values_list("crf__code", flat=True))
    scheduled = VisitCrf.objects.filter(visit_definition__trial_id=spec.trial_id, crf_code__in=codes)
    return scheduled.order_by("visit_definition__order", "order").values_list("crf_code", flat=True).first()


class _Visits:
    """VISITNUM of a visit: the visit definition's order; an unscheduled visit gets the number of
    the last scheduled visit before it plus 0.01 × its sequence (the usual SDTM convention).
    VISITDY, the planned study day, counts from RFSTDTC (the first treatment): a visit anchored at
    the first treatment is day offset + 1 (no day 0); a visit anchored at enrolment has a planned
    study day only when it falls before treatment (its negative offset), else none (SDTMIG: null
    when the planned day is not fixed relative to RFSTDTC)."""

    def __init__(self, spec: ExportSpec) -> None:
        definitions = list(VisitDefinition.objects.filter(trial_id=spec.trial_id))
        self.number = {d.code: float(d.order) for d in definitions}
        self.epoch = {d.code: EPOCHS.get(d.kind, "") for d in definitions}
        self.planned_day = {d.code: planned_study_day(d) for d in definitions}
        self.by_id: dict[int, float] = {}
        self.epoch_by_id: dict[int, str] = {}

    def assign(self, visits: list) -> None:
        """Number a participant's visits (kept by visit id for the findings)."""
        scheduled = sorted(
            (v.visit_date or v.planned_date or date.max, self.number.get(v.visit_code, 0.0), self.epoch.get(v.visit_code, ""))
            for v in visits if v.visit_code
        )
        for visit in visits:
            if visit.visit_code:
                self.by_id[visit.id] = self.number.get(visit.visit_code, float(visit.order))
                self.epoch_by_id[visit.id] = self.epoch.get(visit.visit_code, "")
                continue
            when = visit.visit_date or visit.planned_date or date.max
            before = [(num, epoch) for day, num, epoch in scheduled if day <= when]
            self.by_id[visit.id] = round((max(before)[0] if before else 0.0) + 0.01 * visit.sequence, 2)
            self.epoch_by_id[visit.id] = max(before)[1] if before else "SCREENING"


def planned_study_day(definition: VisitDefinition) -> float | None:
    offset = definition.day_offset
    if definition.anchor == "first_treatment":
        return float(offset + 1 if offset >= 0 else offset)
    return float(offset) if offset < 0 else None


class Supplements:
    """SUPP-- datasets, one per parent domain, filled as records ask for them."""

    def __init__(self, mask: Callable[[str], str]) -> None:
        self.mask = mask
        self.by_domain: dict[str, Dataset] = {}

    def add(self, study: str, domain: str, subject: str, idvar: str, idvarval: str, qnam: str, qlabel: str,
            value: str, origin: str = "CRF", evaluator: str = "") -> None:
        if not value:
            return
        dataset = self.by_domain.get(domain)
        if dataset is None:
            dataset = self.by_domain[domain] = Dataset(
                f"SUPP{domain}", f"Supplemental Qualifiers for {domain}", SUPP_VARIABLES, self.mask,
                domain=domain, keys=("USUBJID", "IDVAR", "IDVARVAL", "QNAM"),
            )
        dataset.add(STUDYID=study, RDOMAIN=domain, USUBJID=subject, IDVAR=idvar, IDVARVAL=idvarval, QNAM=qnam,
                    QLABEL=qlabel[:40], QVAL=value, QORIG=origin, QEVAL=evaluator)

    def overflow(self, study: str, dataset: Dataset, labels: dict[str, str]) -> None:
        """The long texts of a dataset: QNAM = variable + 1, 2 … (SDTMIG 3.4 §4.5.3.2)."""
        for subject, idvar, idvarval, variable, pieces in dataset.overflow:
            for index, piece in enumerate(pieces, 1):
                qnam = f"{variable[:7]}{index}" if len(variable) + len(str(index)) > 8 else f"{variable}{index}"
                self.add(study, dataset.domain, subject, idvar, idvarval, qnam, labels.get(variable, variable)[:36] + f" {index}",
                         piece, origin="CRF")


def coding_dictionary(trial_id: int) -> tuple[str, str] | None:
    """The coding dictionary (name, version) of the trial's coded adverse events (the most used),
    or the only one loaded; None when there is none or no way to choose."""
    from django.db.models import Count

    from trials.safety.models import AdverseEvent, CodingTerm

    used = (
        AdverseEvent.objects.filter(participant__trial_id=trial_id, coded_term__isnull=False)
        .order_by().values_list("coded_term__dictionary", "coded_term__version").annotate(n=Count("id")).order_by("-n")
    )
    for dictionary, version, _count in used[:1]:
        return dictionary, version
    loaded = list(CodingTerm.objects.order_by().values_list("dictionary", "version").distinct()[:2])
    return loaded[0] if len(loaded) == 1 else None


def mh_code(dataset: Dataset, terms: list[tuple[int, str]], trial_id: int, warnings: list[str]) -> None:
    """MHDECOD (preferred term) and MHBODSYS (system organ class) of each medical-history term
    that is, letter for letter (case aside), a lowest-level term of the trial's coding dictionary
    (the AEs' MedDRA version: trials.safety, CodingTerm), as a dictionary's autoencoder codes an
    exact verbatim. Any other term stays uncoded (both variables null) and is counted in the
    warnings: no term is guessed."""
    if not terms:
        return
    chosen = coding_dictionary(trial_id)
    found: dict[str, tuple[str, str]] = {}
    if chosen is not None:
        from django.db.models.functions import Lower

        from trials.safety.models import CodingTerm

        wanted = {term.strip().casefold() for _row, term in terms}
        for llt, pt, soc in (
            CodingTerm.objects.filter(dictionary=chosen[0], version=chosen[1]).annotate(key=Lower("llt"))
            .filter(key__in=wanted).order_by("llt_code").values_list("llt", "pt", "soc")
        ):
            found.setdefault(llt.strip().casefold(), (pt, soc))
    uncoded = 0
    for row, term in terms:
        coded = found.get(term.strip().casefold())
        if coded is None:
            uncoded += 1
            continue
        dataset.set(row, "MHDECOD", dataset.mask(ascii_text(coded[0])))
        dataset.set(row, "MHBODSYS", dataset.mask(ascii_text(coded[1])))
    if uncoded:
        where = f"{chosen[0]} {chosen[1]}" if chosen else "no coding dictionary loaded for the trial"
        warnings.append(
            f"MH: {uncoded} medical-history term(s) not coded ({where}): MHDECOD and MHBODSYS are null for a term "
            "that is not exactly a lowest-level term of the dictionary.")


class _SubjectDatasets:
    """DM, DS, EX, SV and AE, filled a participant at a time."""

    def __init__(self, spec: ExportSpec, visits: _Visits, mask: Callable[[str], str], supplements: Supplements,
                 warnings: list[str]) -> None:
        self.spec = spec
        self.visits = visits
        self.supplements = supplements
        self.warnings = warnings
        self.dm = Dataset("DM", "Demographics", dm_variables(spec), mask)
        self.ae = Dataset("AE", "Adverse Events", AE_VARIABLES, mask, keys=("USUBJID", "AESEQ"))
        self.ds = Dataset("DS", "Disposition", DS_VARIABLES, mask, keys=("USUBJID", "DSSEQ"))
        self.ex = Dataset("EX", "Exposure", EX_VARIABLES, mask, keys=("USUBJID", "EXSEQ"))
        self.sv = Dataset("SV", "Subject Visits", SV_VARIABLES, mask, keys=("USUBJID", "VISITNUM"))
        self.cm = Dataset("CM", "Concomitant/Prior Medications", CM_VARIABLES, mask, keys=("USUBJID", "CMSEQ"))
        self.mh = Dataset("MH", "Medical History", MH_VARIABLES, mask, keys=("USUBJID", "MHSEQ"))
        self.pr = Dataset("PR", "Procedures", PR_VARIABLES, mask, keys=("USUBJID", "PRSEQ"))
        self.ie = Dataset("IE", "Inclusion/Exclusion Criteria Not Met", IE_VARIABLES, mask, keys=("USUBJID", "IESEQ"))
        self.subjects: dict[int, Subject] = {}
        self.criteria = criterion_test_codes(spec.trial_id)
        self.choices: dict[tuple[int, str], dict[str, str]] = {}
        self.uncoded = 0
        self.mh_terms: list[tuple[int, str]] = []  # (MH row, verbatim term), coded once every row is read
        trial = Trial.objects.get(pk=spec.trial_id)
        self.randomized = trial.design == "randomized"

    def add(self, participant: Any, streams: dict[str, list]) -> None:
        p = participant
        study = ascii_text(p.trial_code)
        subject_id = usubjid(p.trial_code, p.subject)
        reference = p.first_treatment_date or p.enrolment_date
        treated = p.first_treatment_date
        self.subjects[p.id] = Subject(subject_id, reference, treated)
        keys = {"STUDYID": study, "USUBJID": subject_id}
        ended = p.status in DISPOSITION
        demog = next((e.answers for e in streams.get("sex", []) if e.answers), {}) or {}
        sex = sdtm_terms.SEX_CODES.get(str(demog.get("sex") or "").upper(), "U")  # SEX (C66731): U when unknown
        race, ethnic = sdtm_terms.RACE_ETHNIC.get(str(demog.get("ethnicity") or ""), ("", ""))
        visits = streams.get("visits", [])
        adverse_events = streams.get("adverse_events", [])
        died = p.status == "died"
        # RFPENDTC: the end of participation, else the last date the subject was seen (visit, AE).
        contacts = [as_date(v.visit_date) for v in visits if v.visit_date] + [as_date(a.onset_date) for a in adverse_events]
        contacts += [as_date(p.consent_date), as_date(p.status_date) if ended else None]
        last_contact = max((d for d in contacts if d), default=None)
        allocation = (streams.get("allocations") or [None])[0]
        self.visits.assign(visits)
        administrations = self.administrations(streams, allocation, treated, reference)
        exposed = [record["EXSTDTC"] for record in administrations if record["EXSTDTC"]]
        dm = {
            **keys, "DOMAIN": "DM", "SUBJID": ascii_text(p.subject), "RFSTDTC": iso(reference),
            "RFENDTC": iso(p.status_date) if ended else "",
            # SDTMIG 3.4 DM: RFXSTDTC/RFXENDTC are the first/last study treatment, the first/last EX record.
            "RFXSTDTC": min(exposed) if exposed else iso(treated), "RFXENDTC": max(exposed) if exposed else iso(treated),
            "RFICDTC": iso(p.consent_date), "RFPENDTC": iso(last_contact),
            "DTHDTC": iso(p.status_date) if died else "", "DTHFL": "Y" if died else "", "SITEID": ascii_text(p.site_code),
            "AGE": p.age_at_consent, "AGEU": "YEARS" if p.age_at_consent is not None else "", "SEX": sex,
            "RACE": race, "ETHNIC": ethnic, "COUNTRY": country_alpha3(p.site_country),
        }
        if self.spec.identifiers:
            dm["BRTHDTC"] = iso(p.date_of_birth)
        if p.allocated_at is None:  # no arm: say why (ARMNRS), ARMCD … stay null
            dm["ARMNRS"] = ARM_NOT_ASSIGNED.get(p.status, "NOT ASSIGNED")
        elif self.spec.blinded or allocation is None:
            actual = BLINDED_ARM if treated else ""
            dm.update(ARMCD=BLINDED_ARM, ARM=BLINDED_ARM, ACTARMCD=actual, ACTARM=actual)
            if not treated:
                dm["ARMNRS"] = "ASSIGNED, NOT TREATED"
        else:
            code, label = ascii_text(allocation.arm_code, 20), ascii_text(allocation.arm_label)
            dm.update(ARMCD=code, ARM=label, ACTARMCD=code if treated else "", ACTARM=label if treated else "")
            if not treated:
                dm["ARMNRS"] = "ASSIGNED, NOT TREATED"
        self.dm.add(**dm)
        if p.subject_number:
            self.supplements.add(study, "DM", subject_id, "", "", "SUBJNUM", "Subject Number Assigned at Enrolment",
                                 ascii_text(p.subject_number), origin="Assigned")

        seq = 0

        def disposition(term: str, decoded: str, category: str, when: Any) -> None:
            nonlocal seq
            seq += 1
            self.ds.add(**keys, DOMAIN="DS", DSSEQ=seq, DSTERM=term, DSDECOD=decoded, DSCAT=category,
                        EPOCH=epoch_of(when, treated), DSSTDTC=iso(when), DSSTDY=study_day(when, reference))

        if p.consent_date:
            disposition("INFORMED CONSENT OBTAINED", "INFORMED CONSENT OBTAINED", "PROTOCOL MILESTONE", p.consent_date)
        if self.randomized and p.allocated_at is not None:
            disposition("RANDOMIZED", "RANDOMIZED", "PROTOCOL MILESTONE", as_date(p.allocated_at))
        if ended:
            decoded = DISPOSITION[p.status]
            if p.status == "withdrawn" and any(getattr(ae, "leads_to_withdrawal", False) for ae in adverse_events):
                decoded = "ADVERSE EVENT"  # the AE that led to the withdrawal, not the subject's choice
            disposition(ascii_text(p.status_reason) or decoded, decoded, "DISPOSITION EVENT", p.status_date)

        if administrations:
            for seq_ex, record in enumerate(administrations, 1):
                self.ex.add(**keys, DOMAIN="EX", EXSEQ=seq_ex, **record)
        elif treated:  # no administration CRF: one record from the first treatment date
            treatment, dose, unit = BLINDED_TREATMENT, None, ""
            if not self.spec.blinded and allocation is not None:
                treatment, dose, unit = ascii_text(allocation.arm_label), number(allocation.dose), ascii_text(allocation.dose_unit)
            self.ex.add(**keys, DOMAIN="EX", EXSEQ=1, EXTRT=treatment, EXDOSE=dose, EXDOSU=unit, EPOCH="TREATMENT",
                        EXSTDTC=iso(treated), EXSTDY=study_day(treated, reference))
        self.logs(keys, streams, treated, reference)
        self.procedures(keys, streams, treated, reference)
        self.eligibility(keys, streams, p.screening_date, reference)

        for visit in visits:
            if visit.visit_date is None:
                continue  # SV records visits that took place
            day = study_day(visit.visit_date, reference)
            planned = self.visits.planned_day.get(visit.visit_code) if visit.visit_code else None
            self.sv.add(
                **keys, DOMAIN="SV", VISITNUM=self.visits.by_id[visit.id], VISIT=ascii_text(visit.label),
                VISITDY=planned, EPOCH=self.visits.epoch_by_id.get(visit.id, ""),
                SVSTDTC=iso(visit.visit_date), SVENDTC=iso(visit.visit_date), SVSTDY=day, SVENDY=day,
                SVUPDES="" if visit.visit_code else ascii_text(visit.status_reason or visit.label),
            )

        for ae in adverse_events:
            criteria = set(ae.seriousness or [])
            flags = {flag: ("Y" if code in criteria else "N") for code, flag in SERIOUSNESS_FLAGS.items()}
            if not ae.pt:
                self.uncoded += 1
            self.ae.add(
                **keys, DOMAIN="AE", AESEQ=ae.number, AESPID=str(ae.number), AETERM=ascii_text(ae.verbatim_term),
                AELLT=ascii_text(ae.llt), AELLTCD=ascii_text(ae.llt_code), AEDECOD=ascii_text(ae.pt),
                AEPTCD=ascii_text(ae.pt_code), AEBODSYS=ascii_text(ae.soc), AEBDSYCD=ascii_text(ae.soc_code),
                AESOC=ascii_text(ae.soc), AESOCCD=ascii_text(ae.soc_code), AESER=yn(ae.serious),
                AEACN=ACTION.get(ae.action_taken, ""), AEREL=CAUSALITY.get(ae.related_product, ""),
                AEOUT=OUTCOME.get(ae.outcome, ""), **flags, AECONTRT=yn(bool((ae.treatment_given or "").strip())),
                AETOXGR=str(ae.grade) if ae.grade is not None else "", EPOCH=epoch_of(ae.onset_date, treated),
                AESTDTC=iso(ae.onset_date), AEENDTC=iso(ae.end_date),
                AESTDY=study_day(ae.onset_date, reference), AEENDY=study_day(ae.end_date, reference),
                AEENRTPT="ONGOING" if ae.ongoing else "", AEENTPT="END OF DATA COLLECTION" if ae.ongoing else "",
            )
            supp = functools_partial(self.supplements.add, study, "AE", subject_id, "AESEQ", str(ae.number))
            supp("AEDLT", "Dose Limiting Toxicity", yn(ae.is_dlt))
            supp("AERELPR", "Relationship to Study Procedure", CAUSALITY.get(ae.related_procedure, ""))
            supp("AEEXPECT", "Expected Adverse Event", yn(ae.expected), origin="Assigned", evaluator="SPONSOR")
            supp("AEAWARDT", "Date/Time Site Aware of Event", iso(ae.aware_at))


    def label(self, entry: Any, item: str, value: Any) -> str:
        """The label of a choice code in the entry's CRF version."""
        key = (entry.crf_id, item)
        if key not in self.choices:
            crf = next((c for c in selectors.export_crf_versions(entry.crf_code) if c.pk == entry.crf_id), None)
            found = next((i for i in schema_for(crf).items if i.name == item), None) if crf else None
            self.choices[key] = {str(code): text for code, text in (found.choices if found else ())}
        return ascii_text(self.choices[key].get(str(value), value if value is not None else ""))

    def administrations(self, streams: dict[str, list], allocation: Any, treated: date | None,
                        reference: date | None) -> list[dict]:
        """The participant's EX records (SDTMIG 3.4 §6.1.3, one record per administration): one per
        infusion (INFUSION: the cells administered, the start and its duration) and, for the Day-0
        administration (DU_INJECTION), one per injected ulcer (administrations at different
        locations are separate records; EXSPID = the ulcer). Blinded: EXTRT "BLINDED TREATMENT"
        and no dose; unblinded: the arm, or PLACEBO with dose 0 for a placebo arm or a placebo
        slot within a dose cohort."""
        placebo = allocation is not None and (allocation.placebo or allocation.arm_type == "placebo_comparator")
        records = []
        for code in ("INFUSION", "DU_INJECTION"):
            for entry in streams.get(f"crf:{code}", []):
                answers = entry.answers or {}
                if code == "INFUSION":
                    start = answers.get("infusion_datetime")
                    doses = [(str(answers.get("infusion_number") or ""), answers.get("administered_cells_million"), answers.get("volume_ml"))]
                else:
                    start = answers.get("administration_datetime")
                    rows = [r for r in answers.get("ulcers_injected") or [] if isinstance(r, dict)]
                    doses = [(str(r.get("ulcer_id") or ""), r.get("labelled_cells_million"), r.get("volume_ml")) for r in rows]
                start = dtc(start) or iso(entry.visit_date)
                if not start:
                    continue
                end = start
                minutes = number(answers.get("infusion_duration_min")) if code == "INFUSION" else np.nan
                if not np.isnan(minutes) and "T" in start:
                    end = iso(datetime.fromisoformat(start) + timedelta(minutes=minutes))
                for spid, cells, volume in doses or [("", None, None)]:
                    if self.spec.blinded:
                        treatment, dose, unit = BLINDED_TREATMENT, None, ""
                    elif placebo:
                        treatment, dose, unit = "PLACEBO", 0.0, sdtm_terms.CELL_UNIT
                    else:
                        label = allocation.arm_label if allocation is not None else "STUDY TREATMENT"
                        treatment, dose, unit = ascii_text(label), number(cells), sdtm_terms.CELL_UNIT
                    records.append({
                        "EXSPID": ascii_text(spid), "EXTRT": treatment, "EXDOSE": dose, "EXDOSU": unit,
                        "EXROUTE": sdtm_terms.CELL_ROUTES[code], "EXVAMT": number(volume),
                        "EXVAMTU": "mL" if not np.isnan(number(volume)) else "",
                        "VISITNUM": self.visits.by_id.get(entry.visit_id, np.nan), "VISIT": ascii_text(entry.visit_label),
                        "EPOCH": self.visits.epoch_by_id.get(entry.visit_id) or "TREATMENT",
                        "EXSTDTC": start, "EXENDTC": end, "EXSTDY": study_day(start, reference), "EXENDY": study_day(end, reference),
                    })
        return sorted(records, key=lambda record: (record["EXSTDTC"], record["EXSPID"]))

    def logs(self, keys: dict, streams: dict[str, list], treated: date | None, reference: date | None) -> None:
        """CM from the medication log, MH from the medical history log (SDTMIG 3.4 §6.1.2, §6.2.5): one
        record per log record; an ongoing one has --ENRTPT = ONGOING against the end of data
        collection (--ENTPT), not an end date (SDTMIG 3.4 §4.4.7)."""
        for seq, entry in enumerate(streams.get("crf:CONMED", []), 1):
            a = entry.answers or {}
            ongoing = a.get("ongoing") is True
            start, stop = a.get("start_date"), None if ongoing else a.get("stop_date")
            frequency = str(a.get("frequency") or "")
            self.cm.add(
                **keys, DOMAIN="CM", CMSEQ=seq, CMSPID=str(entry.visit_sequence), CMTRT=ascii_text(a.get("medication")),
                CMCLAS=self.label(entry, "drug_class", a.get("drug_class")) if a.get("drug_class") else "",
                CMINDC=ascii_text(a.get("indication")), CMDOSE=number(a.get("dose")),
                CMDOSU=sdtm_terms.DOSE_UNITS.get(str(a.get("dose_unit") or ""), ""),
                CMDOSFRQ=frequency if frequency in sdtm_terms.FREQUENCIES else "",
                CMROUTE=sdtm_terms.ROUTES.get(str(a.get("route") or ""), ""), EPOCH=epoch_of(start, treated),
                CMSTDTC=iso(start), CMENDTC=iso(stop), CMSTDY=study_day(start, reference), CMENDY=study_day(stop, reference),
                CMENRTPT="ONGOING" if ongoing else "", CMENTPT="END OF DATA COLLECTION" if ongoing else "",
            )
        for seq, entry in enumerate(streams.get("crf:MEDHIST", []), 1):
            a = entry.answers or {}
            ongoing = a.get("ongoing") is True
            if a.get("condition"):
                self.mh_terms.append((self.mh.rows, str(a["condition"])))
            self.mh.add(
                **keys, DOMAIN="MH", MHSEQ=seq, MHSPID=str(entry.visit_sequence), MHTERM=ascii_text(a.get("condition")),
                MHSTDTC=iso(a.get("onset_date")), MHENDTC="" if ongoing else iso(a.get("end_date")),
                MHENRTPT="ONGOING" if ongoing else "", MHENTPT="END OF DATA COLLECTION" if ongoing else "",
            )

    def procedures(self, keys: dict, streams: dict[str, list], treated: date | None, reference: date | None) -> None:
        """PR from the fat-grafting procedure CRF (SDTMIG 3.4 §6.1.5): the fat harvest (PRLOC = the
        harvest site) and the graft itself (PRTRT = the technique), one record per treated area."""
        seq = 0
        for entry in streams.get("crf:FATGRAFT", []):
            a = entry.answers or {}
            when = a.get("procedure_date") or entry.visit_date
            common = {
                "PRCAT": "FAT GRAFTING", "PRSPID": str(entry.id), "VISITNUM": self.visits.by_id.get(entry.visit_id, np.nan),
                "VISIT": ascii_text(entry.visit_label), "EPOCH": self.visits.epoch_by_id.get(entry.visit_id) or epoch_of(when, treated),
                "PRSTDTC": iso(when), "PRSTDY": study_day(when, reference),
            }
            records = []
            if a.get("harvest_site") or a.get("harvest_method"):
                site = a.get("harvest_site_other") if a.get("harvest_site") == "other" else self.label(entry, "harvest_site", a.get("harvest_site"))
                records.append(("FAT HARVEST", ascii_text(site or "")))
            technique = self.label(entry, "technique", a.get("technique")) if a.get("technique") else "FAT GRAFTING"
            areas = a.get("treated_areas") if isinstance(a.get("treated_areas"), list) else []
            records += [(technique, self.label(entry, "treated_areas", area)) for area in areas] or [(technique, "")]
            for treatment, location in records:
                seq += 1
                self.pr.add(**keys, DOMAIN="PR", PRSEQ=seq, PRTRT=treatment, PRLOC=location.upper(), **common)

    def eligibility(self, keys: dict, streams: dict[str, list], screened: date | None, reference: date | None) -> None:
        """IE (SDTMIG 3.4 §6.3.4): only the criteria the subject did not satisfy, an inclusion
        criterion not met (IEORRES N) or an exclusion criterion met (IEORRES Y); a lesion-level
        criterion has the lesion in IESPID. Criteria met, unknown or not applicable make no record."""
        seq = 0
        for answer in streams.get("eligibility", []):
            inclusion = answer.kind == "inclusion"
            failed = answer.answer == "not_met" if inclusion else answer.answer == "met"
            if not failed or answer.criterion_code not in self.criteria:
                continue
            seq += 1
            testcd, text = self.criteria[answer.criterion_code]
            result = "N" if inclusion else "Y"
            self.ie.add(**keys, DOMAIN="IE", IESEQ=seq, IESPID=ascii_text(answer.lesion), IETESTCD=testcd, IETEST=text,
                        IECAT="INCLUSION" if inclusion else "EXCLUSION", IEORRES=result, IESTRESC=result,
                        EPOCH="SCREENING", IEDTC=iso(screened), IEDY=study_day(screened, reference))


def dtc(value: Any) -> str:
    """An ISO 8601 date-time answer as SDTM --DTC text: the wall-clock time as stored, no offset."""
    if isinstance(value, str) and "T" in value:
        try:
            return iso(datetime.fromisoformat(value))
        except ValueError:
            return value
    return iso(value)


def criterion_test_codes(trial_id: int | None) -> dict[str, tuple[str, str]]:
    """Criterion code -> (IETESTCD, IETEST), the same in TI and IE (SDTMIG 3.4 §7.4.1: IE's test
    codes are TI's)."""
    codes: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for criterion in Criterion.objects.filter(trial_id=trial_id, is_active=True).order_by("kind", "order", "code"):
        codes[criterion.code] = (short_name(criterion.code, taken), split_text(ascii_text(criterion.text))[0])
    return codes


# --- Findings: the CRF items --------------------------------------------------------------------


def crf_domain(crf_code: str) -> str:
    """The SDTM domain of a CRF's findings (sdtm_terms): its configured domain, QS for a
    questionnaire, FA (findings about) for any other CRF."""
    if crf_code in sdtm_terms.CRF_DOMAINS:
        return sdtm_terms.CRF_DOMAINS[crf_code]
    return "QS" if crf_code in sdtm_terms.QUESTIONNAIRES else "FA"


@dataclass(frozen=True)
class Test:
    """A findings test: one CRF item (or one option of a multiple choice)."""

    testcd: str
    test: str
    item: Item
    group: str | None  # the repeating group holding the item
    scat: str
    option: Any = None
    term: sdtm_terms.TestTerm | None = None  # CDISC controlled terminology, when the item has it


def findings_plan(crf_code: str, versions: list, taken: set[str], identifiers: bool) -> dict[int, list[Test]]:
    """Per CRF version (id), its tests in item order; a test code is shared by the versions that
    have the item. Items that go elsewhere (DM, SU, a collection date, a reference range) are left out."""
    codes: dict[tuple, str] = {}
    plans: dict[int, list[Test]] = {}
    terms = TESTS.get(crf_code, {})
    elsewhere = (set(sdtm_terms.DM_ITEMS.get(crf_code, {})) | set(sdtm_terms.SU_ITEMS.get(crf_code, {}))
                 | sdtm_terms.RANGE_ITEMS.get(crf_code, set()))
    if crf_code in sdtm_terms.COLLECTION_DATE_ITEMS:
        elsewhere.add(sdtm_terms.COLLECTION_DATE_ITEMS[crf_code])
    taken |= {term.testcd for term in terms.values()}
    for crf in sorted(versions, key=lambda c: c.version):
        schema = schema_for(crf)
        tests: list[Test] = []

        def add(item: Item, group: Item | None, tests: list[Test]) -> None:
            if item.type in {"descriptive", "repeating_group", "file"} or (item.identifier and not identifiers):
                return  # files travel in the CSV package (trials.exports.attachments), not in SDTM
            if group is None and item.name in elsewhere and not (item.identifier and identifiers and item.name != "date_of_birth"):
                return
            scat = ascii_text(group.label if group else item.section)
            term = terms.get(item.name) if group is None else None
            options = [(code, label) for code, label in item.choices] if item.type == "multiple_choice" else [(None, None)]
            for option, option_label in options:
                key = (group.name if group else None, item.name, option)
                if key not in codes:
                    codes[key] = term.testcd if term and option is None else short_name(
                        f"{item.name}_{option}" if option is not None else item.name, taken)
                if term and option is None:
                    test = term.test
                else:
                    test = item.label if option is None else f"{item.label}: {option_label}"
                tests.append(Test(codes[key], ascii_text(test, 40), item, group.name if group else None, scat, option, term))

        for item in schema.items:
            if item.type == "repeating_group":
                for child in item.children:
                    add(child, item, tests)
            else:
                add(item, None, tests)
        plans[crf.pk] = tests
    return plans


def finding(test: Test, value: Any) -> tuple[str, str, float | None] | None:
    """(ORRES, STRESC, STRESN) of a stored answer (None: no record)."""
    item = test.item
    if test.option is not None:
        if not isinstance(value, list):
            return None
        flag = "Y" if test.option in value or str(test.option) in map(str, value) else "N"
        return flag, flag, None
    if value is None or value == "":
        return None
    if isinstance(value, list | dict):  # stored for an item that takes one answer: its JSON text, reported
        report = TEXT_REPORT.get()
        if report is not None:
            key = ("json", item.name)
            report[key] = report.get(key, 0) + 1
        text = ascii_text(json.dumps(value, ensure_ascii=False))
        return text, text, None
    kind = item.type
    if kind in NUMERIC_ITEMS:
        text = odm._plain(value) if isinstance(value, Decimal | float | int) and not isinstance(value, bool) else str(value)
        return ascii_text(text), ascii_text(text), number(value)  # each spelling counted (TEXT_REPORT)
    if kind == "yes_no":
        flag = "Y" if value else "N"
        return flag, flag, None
    if kind == "single_choice":
        label = {str(code): text for code, text in item.choices}.get(str(value), str(value))
        numeric = number(value) if isinstance(value, int) else None
        return ascii_text(label), ascii_text(value), numeric
    return ascii_text(value), ascii_text(value), None


def findings_datasets(spec: ExportSpec) -> list[tuple[str, str, str]]:
    """(dataset name, domain, CRF code) of the findings datasets, in the export's CRF order."""
    codes = selectors.export_crf_codes(spec)
    by_domain: dict[str, list[str]] = {}
    for code in codes:
        by_domain.setdefault(crf_domain(code), []).append(code)
    datasets = []
    taken: set[str] = {"DM", "AE", "DS", "EX", "CM", "MH", "PR", "IE", "SV", "SU", "TS", "TA", "TE", "TV", "TI", *FINDINGS_ORDER}
    for domain in FINDINGS_ORDER:
        domain_codes = by_domain.get(domain, [])
        for code in domain_codes:
            if len(domain_codes) == 1 and domain not in {"QS", "FA"}:
                name = domain
            else:  # a split domain: the domain and two characters of the CRF code
                name = short_name(f"{domain}{ascii_text(code)[:2]}", taken, width=4)
                name = name if name.startswith(domain) else short_name(domain + "X", taken, width=4)
            datasets.append((name, domain, code))
    return datasets


def _missing_of(missing: dict, group: str | None, row: dict | None, name: str) -> dict | None:
    """The missing-data code {code, reason} of an item (of a repeating-group row), if any."""
    if group is None:
        found = missing.get(name)
    else:
        rows = missing.get(group) if isinstance(missing.get(group), dict) else {}
        found = (rows.get(str((row or {}).get(ROW_ID))) or {}).get(name) if rows else None
    return found if isinstance(found, dict) and found.get("code") else None


def _counted(fn: Callable[..., Any], *args: Any) -> tuple[Any, dict]:
    """fn(*args) and the characters it changed or dropped (TEXT_REPORT's counts), kept apart from
    the export's report: a value computed once and used on many rows adds them once per row."""
    report = TEXT_REPORT.get()
    if report is None:
        return fn(*args), {}
    token = TEXT_REPORT.set({})
    try:
        return fn(*args), TEXT_REPORT.get()
    finally:
        TEXT_REPORT.reset(token)


def _recount(delta: dict, times: int = 1) -> None:
    report = TEXT_REPORT.get()
    if report is not None:
        for key, found in delta.items():
            report[key] = report.get(key, 0) + found * times


NUMERIC_ITEMS = frozenset({"integer", "scale", "decimal", "calculated"})
PLAIN_TYPES = frozenset({int, float, bool, type(None), list})  # answers whose findings fold no character


class _Chunk:
    """The rows of a findings dataset waiting to be written, column-wise by reference: each row
    points at its entry (the visit's columns), its test (TESTCD, TEST, SCAT) and its result
    (ORRES … STRESU, one record per distinct answer of a test); the few cells of their own
    (GRPID, --STAT/--REASND, the lab ranges, --LOBXFL) are kept sparse."""

    def __init__(self) -> None:
        # STUDYID, USUBJID, VISIT, EPOCH, DTC, VISITNUM, DY, subject ordinal, first row, --SEQ before it,
        # the subject's place in the database's order
        self.entries: list[tuple] = []
        self.results: list[tuple] = []  # ORRES, STRESC, STRESN, ORRESU, STRESU, numeric
        self.cache: dict[tuple, int] = {}  # (test, value, type) -> result (-1: no record)
        self.counted: dict[int, dict] = {}  # result -> the characters its texts changed (TEXT_REPORT), added per row
        # Answers that are their own ORRES/STRESC (ASCII text of a text, date or number item), one per row:
        # a row's result -2 - i is verbatim[i] (numbers converted a chunk at a time).
        self.verbatim: list[str] = []
        self.row_test = array("i")
        self.row_result = array("i")
        self.sparse: dict[str, dict[int, Any]] = {}
        self.unsorted = False  # two subjects with one USUBJID (rows merged by --SEQ)

    def __len__(self) -> int:
        return len(self.row_test)


class _WidePlan(NamedTuple):
    """A CRF's findings read by the SQL route (Findings.wide_rows): the plain items of its versions
    (the union of their columns) and, per version (crf id), its tests' columns in plan order."""

    names: list[str]  # the items, a column each (the union of the versions' plain items)
    by_crf: dict[int, tuple[np.ndarray, np.ndarray]]  # crf id -> (column of each step, test of each step), padded
    width: int  # the most steps of a version
    as_is: np.ndarray  # per test: an ASCII answer is its own result (_Chunk.verbatim)


class _WideBatch:
    """A batch of entries read by COPY, in the order the findings take them (USUBJID, then visit):
    per entry and step of its version, its test and its answer's jsonb text as a code into the
    batch's distinct texts, each classified once (`_classify`): a record or none, a string of
    printable ASCII characters (`isv`: its own result for a verbatim test, else a key like any
    answer), the Python value otherwise (json.loads, as the ORM decodes a JSONField), or a list or
    an object (`odd`: the entry takes the Python route)."""

    __slots__ = ("codes", "counts", "isv", "kept", "odd", "tests", "texts", "values")

    def __init__(self, cells: np.ndarray, tests: np.ndarray, seen: dict) -> None:
        codes, distinct = pd.factorize(cells.ravel())
        kept, isv, odd, texts, values = _classify(distinct.tolist(), seen)
        self.codes, self.tests = codes.reshape(cells.shape), tests
        self.kept, self.isv, self.texts, self.values = kept, isv, texts, values
        kept_cells = kept[self.codes]
        self.counts = kept_cells.sum(axis=1).tolist()
        self.odd = odd[self.codes].any(axis=1).tolist()


def _classify(distinct: list[str], seen: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Per distinct jsonb text of a batch: a record (not SQL NULL, JSON null or ""), a non-empty
    string of printable ASCII characters, a list or an object, the string itself (else ""), the
    value; `seen` keeps them from batch to batch (bounded)."""
    found = []
    for text in distinct:
        known = seen.get(text)
        if known is None:
            first = text[:1]
            kept, odd = True, False
            if text in {"", "null", '""'}:
                kept, value = False, None
            elif first == '"' and "\\" not in text and text.isascii() and text.isprintable():
                value = text[1:-1]  # jsonb writes a string as is between quotes but for " and \ and control characters
            else:
                value = json.loads(text)
                odd = first in {"[", "{"}
            isv = value.__class__ is str and value.isascii() and value.isprintable()
            known = (kept, isv, odd, value if isv else "", value)
            if len(seen) >= KNOWN_RESULTS:
                seen.clear()
            seen[text] = known
        found.append(known)
    if not found:
        return (np.zeros(0, dtype=bool),) * 3 + (np.empty(0, dtype=object), [])
    kept, isv, odd, texts, values = zip(*found, strict=True)
    as_texts = np.empty(len(texts), dtype=object)
    as_texts[:] = texts
    return np.array(kept, dtype=bool), np.array(isv, dtype=bool), np.array(odd, dtype=bool), as_texts, list(values)


class _WideEntry(NamedTuple):
    """An entry of a _WideBatch whose records are made from the batch's arrays (the fields the
    findings read of an EntryRow; `answers` holds the collection date item only)."""

    trial_code: str
    visit_id: int
    visit_code: str
    visit_label: str
    visit_date: date | None
    crf_id: int
    answers: dict
    missing: dict
    batch: _WideBatch
    row: int


def _copy(cursor: Any, sql: str, params: list) -> io.BytesIO:
    """The rows of a query as CSV (COPY TO STDOUT), in memory."""
    buffer = io.BytesIO()
    with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, ENCODING 'UTF8')", params) as copy:
        for block in copy:
            buffer.write(block)
    return buffer


def _side_snapshot(alias: str) -> str | None:
    """How a second connection can read what the export's connection reads: "" when that one is in
    autocommit (each COPY then reads the data committed when it starts, as on one connection), the
    id of its snapshot (pg_export_snapshot) when it is in a REPEATABLE READ (or SERIALIZABLE) READ
    ONLY transaction (the export's snapshot: it has written nothing, so the snapshot shows all it
    sees; on a hot standby too, PostgreSQL >= 10), None otherwise (a transaction that may hold
    writes of its own, as a test's: no second connection)."""
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        return None
    if not wrapper.in_atomic_block and wrapper.get_autocommit():
        return ""
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')")
        isolation, read_only = cursor.fetchone()
        if isolation not in ("repeatable read", "serializable") or read_only != "on":
            return None
        cursor.execute("SELECT pg_export_snapshot()")
        return cursor.fetchone()[0]


def _copies(alias: str, queries: Iterator[tuple[Any, str, list]]) -> Iterator[tuple[Any, io.BytesIO]]:
    """(batch, its COPY's CSV) of each (batch, sql, params), in order. The next batch's COPY runs in
    a thread on a connection of its own while the caller works on this one (the server's time
    overlaps Python's) when that connection can see the same data (_side_snapshot); on the
    export's connection, one after the other, otherwise."""
    snapshot = _side_snapshot(alias)
    if snapshot is None:
        for batch, sql, params in queries:
            with connections[alias].cursor() as cursor:
                yield batch, _copy(cursor.cursor, sql, params)
        return
    side = connections.create_connection(alias)
    try:
        side.ensure_connection()
        raw = side.connection
        if snapshot:
            raw.autocommit = False
            with raw.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SET TRANSACTION SNAPSHOT %s" % _quote(snapshot))
        else:
            raw.autocommit = True

        def fetch(sql: str, params: list) -> io.BytesIO:
            with raw.cursor() as cursor:
                return _copy(cursor, sql, params)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdtm-copy") as pool:
            pending: tuple[Any, Future] | None = None
            try:
                for batch, sql, params in queries:
                    ahead = (batch, pool.submit(fetch, sql, params))
                    if pending is not None:
                        yield pending[0], pending[1].result()
                    pending = ahead
                if pending is not None:
                    yield pending[0], pending[1].result()
                    pending = None
            finally:
                if pending is not None:
                    pending[1].cancel()
                    try:
                        pending[1].result()
                    except Exception:  # noqa: BLE001, S110 - the export stops anyway: its own error tells
                        pass
    finally:
        side.close()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Findings:
    """The findings datasets of an export: --SEQ runs per subject and domain across the datasets
    of a split domain (SDTMIG 3.4 §4.1.7), SU gets the substance-use items of the CRFs that have some.

    A CRF's entries are read a batch of subjects at a time in USUBJID order (each subject's in
    visit order), so that its rows come in key order (USUBJID, --SEQ) and are spilled a chunk at a
    time (SpilledDataset): memory holds a batch of entries and a chunk of rows, whatever the trial."""

    BATCH = 250  # subjects whose entries are read by one query
    WIDE = True  # PostgreSQL: the SQL route (wide_rows) for the CRFs it fits; False: the Python route everywhere

    def __init__(self, spec: ExportSpec, subjects: dict[int, Subject], visits: _Visits, mask: Callable[[str], str]) -> None:
        self.spec, self.subjects, self.visits, self.mask = spec, subjects, visits, mask
        self.sequences: dict[str, dict[int, int]] = {}
        self.su = Dataset("SU", "Substance Use", SU_VARIABLES, mask, keys=("USUBJID", "SUSEQ"))
        self.not_done = 0
        self.position = {pid: index for index, pid in enumerate(subjects)}  # the order the database reads subjects in

    def next_seq(self, domain: str, participant_id: int) -> int:
        by_subject = self.sequences.setdefault(domain, {})
        seq = by_subject[participant_id] = by_subject.get(participant_id, 0) + 1
        return seq

    def _batches(self, entries: selectors.Rows):  # noqa: ANN202
        """The CRF's subjects as (USUBJID, place, participant id) in USUBJID order (ties in the
        database's order of subjects, as a stable sort of the rows would leave them), a batch at a time."""
        found = entries.queryset.order_by().values_list("participant_id", "trial_code", "subject").distinct()
        people = []
        for pid, trial_code, subject in found:
            known = self.subjects.get(pid)
            people.append((known.usubjid if known else usubjid(trial_code, subject), self.position.get(pid, len(self.position)), pid))
        people.sort()
        start = 0
        while start < len(people):
            end = min(start + self.BATCH, len(people))
            while end < len(people) and people[end][0] == people[end - 1][0]:
                end += 1  # one USUBJID in one batch
            yield people[start:end]
            start = end

    def entries_by_subject(self, crf_code: str):  # noqa: ANN201
        """(participant id, USUBJID, entries in visit order) of the CRF, in USUBJID order (ties in
        the database's order of subjects, as a stable sort of the rows would leave them)."""
        entries = selectors.export_entries(self.spec, crf_code)
        for batch in self._batches(entries):
            rows = selectors.Rows(entries.queryset.filter(participant_id__in=[pid for _u, _p, pid in batch]), entries.transform)
            by: dict[int, list] = {}
            for row in rows:
                by.setdefault(row.participant_id, []).append(row)
            for subject_id, _position, pid in batch:
                yield pid, subject_id, by.pop(pid, [])

    def wide_plan(self, versions: list, whole: dict, as_is: list[bool], domain: str, date_item: str | None,
                  su_items: dict) -> _WidePlan | None:
        """The SQL route's plan of a CRF (PostgreSQL), or None for the Python route: lab tests
        (ranges, grades), CRFs with substance-use items, and versions with a repeating group, a
        multiple choice or an item that goes elsewhere keep the Python route."""
        if not self.WIDE or connection.vendor != "postgresql" or domain == "LB" or su_items or not whole:
            return None
        if date_item and not self.spec.identifiers and any(
                item.name == date_item and item.identifier for crf in versions for item in schema_for(crf).items):
            return None  # the collection date is stripped from the answers (selectors.strip_identifiers)
        names = list(dict.fromkeys(name for _numbers, item_names, _as_is in whole.values() for name in item_names))
        column = {name: index for index, name in enumerate(names)}
        width = max(len(numbers) for numbers, _names, _as_is in whole.values())
        by_crf = {}
        for crf_id, (numbers, item_names, _as_is) in whole.items():
            columns = np.full(width, len(names), dtype=np.int64)  # the last column is empty (padding)
            columns[:len(item_names)] = [column[name] for name in item_names]
            steps = np.full(width, -1, dtype=np.int64)
            steps[:len(numbers)] = numbers
            by_crf[crf_id] = (columns, steps)
        return _WidePlan(names, by_crf, width, np.array(as_is, dtype=bool))

    @staticmethod
    def _wide_sql(queryset: Any, names: list[str], date_item: str | None) -> tuple[str, list]:
        """A batch's entries, one row per entry and a column per item, the answer's jsonb text (a
        string quoted, so that its type shows; as the CSV export extracts its items), with a flag
        for a missing-data code and the collection date item."""
        inner, params = queryset.order_by().values_list(
            "id", "participant_id", "crf_id", "trial_code", "visit_id", "visit_code", "visit_label", "visit_date",
            "visit_order", "visit_sequence", "answers", "missing").query.sql_with_params()

        def literal(text: str) -> str:
            return "'" + text.replace("'", "''").replace("%", "%%") + "'"

        cells = ", ".join(f"(q.answers -> {literal(name)})::text" for name in names)
        date_cell = f"(q.answers -> {literal(date_item)})::text" if date_item else "NULL"
        sql = (f"SELECT q.id, q.participant_id, q.crf_id, q.trial_code, q.visit_id, q.visit_code, q.visit_label, "
               f"to_char(q.visit_date, 'YYYY-MM-DD'), "
               f"CASE WHEN q.missing IS NOT NULL AND q.missing <> '{{}}'::jsonb THEN 1 ELSE 0 END, {date_cell}, {cells} "
               f"FROM ({inner}) q ORDER BY q.participant_id, q.visit_order, q.visit_sequence")
        return sql, list(params)

    def wide_rows(self, crf_code: str, plan: _WidePlan, baseline: bool, date_item: str | None):  # noqa: ANN201
        """entries_by_subject by the SQL route: each batch's entries read by one COPY (_wide_sql), an
        entry whose every answer is plain becoming a _WideEntry (its records made from the batch's
        arrays by Findings.write), the others (a missing-data code, a list or an object among its
        answers, a version with other tests, a record before the first exposure) read through the
        ORM for the Python route."""
        entries = selectors.export_entries(self.spec, crf_code)
        columns = 10 + len(plan.names)
        crf_index = {crf_id: index for index, crf_id in enumerate(plan.by_crf)}
        step_columns = np.array([columns for columns, _steps in plan.by_crf.values()], dtype=np.int64)
        step_tests = np.array([steps for _columns, steps in plan.by_crf.values()], dtype=np.int64)
        seen: dict[str, tuple] = {}  # _classify's texts, from batch to batch
        queries = ((batch, *self._wide_sql(entries.queryset.filter(participant_id__in=[pid for _u, _p, pid in batch]),
                                           plan.names, date_item)) for batch in self._batches(entries))
        for batch, buffer in _copies(entries.queryset.db, queries):
            by: dict[int, list] = {}
            if buffer.tell():
                buffer.seek(0)
                frame = pd.read_csv(buffer, header=None, dtype=str, keep_default_na=False, na_filter=False,
                                    names=range(columns))
                rank = {pid: index for index, (_u, _p, pid) in enumerate(batch)}
                pids = frame[1].astype(np.int64).to_numpy()
                order = np.argsort(np.array([rank[pid] for pid in pids.tolist()], dtype=np.int64), kind="stable")
                cells = frame.iloc[:, 10:].to_numpy(dtype=object)[order]
                cells = np.concatenate([cells, np.full((len(cells), 1), "", dtype=object)], axis=1)  # the padding column
                crf_ids = frame[2].astype(np.int64).to_numpy()[order]
                version = np.array([crf_index.get(crf_id, -1) for crf_id in crf_ids.tolist()], dtype=np.int64)
                at = step_columns[version]
                arrays = _WideBatch(cells[np.arange(len(cells))[:, None], at], step_tests[version], seen)
                python_route = (version < 0) | (frame[8].to_numpy()[order] != "0") | np.array(arrays.odd, dtype=bool)
                days = {text: date.fromisoformat(text) for text in frame[7].unique().tolist() if text}
                collected = ([{date_item: json.loads(text)} if text else {} for text in frame[9].to_numpy()[order].tolist()]
                             if date_item else None)
                pids = pids[order].tolist()
                if baseline:  # a record before the first exposure: the Python route (--LOBXFL)
                    for index, (pid, visit_date) in enumerate(zip(pids, frame[7].to_numpy()[order].tolist(), strict=True)):
                        subject = self.subjects.get(pid)
                        treated = subject.treated if subject else None
                        when = as_date((collected[index].get(date_item) if collected else None) or days.get(visit_date))
                        if when is not None and (treated is None or when <= treated):
                            python_route[index] = True
                ids = frame[0].astype(np.int64).to_numpy()[order]
                orm = {}
                if python_route.any():
                    orm = {row.id: row for row in selectors.Rows(
                        entries.queryset.filter(id__in=ids[python_route].tolist()), entries.transform)}
                heads = zip(ids.tolist(), pids, crf_ids.tolist(), *(frame[column].to_numpy()[order].tolist() for column in (3, 4, 5, 6, 7)),
                            python_route.tolist(), strict=True)
                empty: dict = {}
                for index, (entry_id, pid, crf_id, trial_code, visit_id, visit_code, visit_label, visit_date, python) in enumerate(heads):
                    entry = orm[entry_id] if python else _WideEntry(
                        trial_code, int(visit_id), visit_code, visit_label, days.get(visit_date), crf_id,
                        collected[index] if collected else empty, empty, arrays, index)
                    found = by.get(pid)
                    if found is None:
                        by[pid] = [entry]
                    else:
                        found.append(entry)
            for subject_id, _position, pid in batch:
                yield pid, subject_id, by.pop(pid, [])

    def write(self, name: str, domain: str, crf_code: str, progress: Progress) -> SpilledDataset:
        """One CRF's entries as a findings dataset."""
        spec, visits = self.spec, self.visits
        versions = selectors.export_crf_versions(crf_code)
        title = versions[0].title if versions else crf_code
        label, _test = FINDINGS_LABELS[domain]
        # A split dataset is named after its CRF (the label has 40 characters: "QS - Cochin Hand Function Scale").
        dataset = SpilledDataset(name, ascii_text(f"{domain} - {title}" if domain in {"QS", "FA"} else label, 40),
                                 findings_variables(domain), self.mask, domain=domain, keys=("USUBJID", f"{domain}SEQ"))
        plans = findings_plan(crf_code, versions, set(), spec.identifiers)
        tests: list[Test] = []
        units: list[str] = []
        compiled: dict[int, list[tuple]] = {}
        # The characters that the texts written once per entry change (the unit of each test, the
        # CRF code, FAOBJ), counted once per entry in the manifest as when each entry spelled them.
        _, per_entry = _counted(lambda: (ascii_text(crf_code), ascii_text(title) if domain == "FA" else ""))
        entry_counts: dict[int, dict] = {}
        plain: list[bool] = []
        whole: dict[int, tuple[list[int], list[str], list[bool]]] = {}
        as_is: list[bool] = []  # a plain item whose ASCII answer is its own result (see _Chunk.verbatim)
        numeric_tests: list[bool] = []
        masked_results = not getattr(self.mask, "identity", False)
        # Items whose answer (a non-empty ASCII string) is its own ORRES and STRESC: texts, dates; numbers with STRESN too.
        verbatim = {"yes_no": None, "single_choice": None}
        for crf_id, plan in plans.items():
            steps = []
            counts = dict(per_entry)
            for test in plan:
                tests.append(test)
                unit, changed = _counted(lambda test=test: test.term.unit if test.term and test.term.unit else ascii_text(test.item.unit))
                units.append(unit)
                for key, found in changed.items():
                    counts[key] = counts.get(key, 0) + found
                steps.append((len(tests) - 1, test, test.item.name, test.group, test.option,
                              test.group is None and test.option is None and domain != "LB"))
                # No text of the test's own to fold (its choices' labels are ASCII): a result's characters to count come from the value only.
                plain.append(test.item.type != "single_choice" or all(
                    str(label).isascii() and str(label).isprintable() for _code, label in test.item.choices))
                as_is.append(steps[-1][5] and test.item.type not in verbatim and not masked_results)
                numeric_tests.append(test.item.type in NUMERIC_ITEMS)
            compiled[crf_id] = steps
            entry_counts[crf_id] = counts
            if steps and all(step[5] for step in steps):  # every test a plain item: an entry's rows by list
                whole[crf_id] = ([step[0] for step in steps], [step[2] for step in steps], [as_is[step[0]] for step in steps])
        p = domain
        date_item = sdtm_terms.COLLECTION_DATE_ITEMS.get(crf_code)
        su_items = sdtm_terms.SU_ITEMS.get(crf_code, {})
        baseline = p in BASELINE_DOMAINS
        lab = p == "LB"
        grader = _LabGrader(spec, versions) if lab else None
        study_code = cat = ascii_text(crf_code)
        faobj = ascii_text(title)
        chunk = _Chunk()
        pending = 0
        ordinal, previous = 0, None
        sequences = self.sequences.setdefault(domain, {})
        empty = ("", "", np.nan, "", "", False)
        wide = self.wide_plan(versions, whole, as_is, domain, date_item, su_items)
        # The SQL route's entries waiting for their records: (batch, first entry, end, records), made
        # at once (take_wide) before a Python-route entry, a chunk's flush or another batch.
        waiting: list = [None, 0, 0, 0]

        def as_result(value: str) -> int:
            chunk.verbatim.append(value)
            return -1 - len(chunk.verbatim)

        # The record of a (test, answer) already met in an earlier chunk of this CRF: finding(), the
        # value level and the characters to count are the same every time (level() keeps maxima).
        known: dict[tuple, tuple] = {}

        def intern(t: int, test: Test, value: Any, key: tuple | None) -> int:
            if key is not None:
                seen = known.get(key)
                if seen is not None:
                    record, changed = seen
                    if record is None:
                        index = -1
                    else:
                        chunk.results.append(record)
                        index = len(chunk.results) - 1
                        if changed:
                            chunk.counted[index] = changed
                    chunk.cache[key] = index
                    return index
                if len(known) >= KNOWN_RESULTS:  # free texts all different: memory stays bounded
                    known.clear()
            kind = test.item.type
            if (value.__class__ is str and value and test.option is None and kind not in verbatim
                    and value.isascii() and value.isprintable()):  # finding() without its branches: the value as is
                numeric = kind in NUMERIC_ITEMS
                unit = units[t] if numeric else ""
                record = (value, value, number(value) if numeric else np.nan, unit, unit, numeric)
                chunk.results.append(record)
                index = chunk.cache[key] = len(chunk.results) - 1
                dataset.level(test.testcd, value)
                known[key] = (record, None)
                return index
            if plain[t] and (value.__class__ in PLAIN_TYPES or (value.__class__ is str and value.isascii() and value.isprintable())):
                result, changed = finding(test, value), None  # no text to fold: nothing to count
            else:
                result, changed = _counted(finding, test, value)
            record = None
            if result is None:
                index = -1
            else:
                orres, stresc, stresn = result
                numeric = stresn is not None
                unit = units[t] if numeric else ""
                record = (orres, stresc, stresn if numeric else np.nan, unit, unit, numeric)
                chunk.results.append(record)
                index = len(chunk.results) - 1
                dataset.level(test.testcd, orres)
                if changed:
                    chunk.counted[index] = changed
            if key is not None:
                chunk.cache[key] = index
                known[key] = (record, changed)
            return index

        def take_wide() -> None:
            """The records of the waiting SQL-route entries: the batch's answers melted (entry by
            entry, test by test in plan order, as the Python route makes them), a verbatim answer
            its own result, any other a result per distinct (test, answer) through `intern`, in
            the order of their first row (the same results table as the Python route's)."""
            arrays, lo, hi, _rows = waiting
            if arrays is None:
                return
            waiting[:] = [None, 0, 0, 0]
            codes = arrays.codes[lo:hi].ravel()
            kept = arrays.kept[codes]
            test = arrays.tests[lo:hi].ravel()[kept]
            if not len(test):
                return
            codes = codes[kept]
            verbatim_rows = arrays.isv[codes] & wide.as_is[test]
            result = np.empty(len(test), dtype=np.int64)
            count = int(verbatim_rows.sum())
            if count:
                base = len(chunk.verbatim)
                # One entry per distinct text (rows share it: the tables hold distinct values), unless
                # a text is long (its SUPP-- records follow the rows' order).
                inverse, distinct = pd.factorize(codes[verbatim_rows])
                texts = arrays.texts[distinct].tolist()
                if max(map(len, texts)) <= MAX_CHAR:
                    chunk.verbatim.extend(texts)
                    result[verbatim_rows] = -2 - base - inverse
                else:
                    chunk.verbatim.extend(arrays.texts[codes[verbatim_rows]].tolist())
                    result[verbatim_rows] = -2 - base - np.arange(count)
            if count < len(test):
                other = ~verbatim_rows
                keys, firsts = pd.factorize(codes[other].astype(np.int64) * len(tests) + test[other])
                found = np.empty(len(firsts), dtype=np.int64)
                cached = chunk.cache.get
                values = arrays.values
                for index, key in enumerate(firsts.tolist()):
                    t = key % len(tests)
                    value = values[key // len(tests)]
                    cache_key = (t, value, value.__class__)
                    answer = cached(cache_key)
                    found[index] = intern(t, tests[t], value, cache_key) if answer is None else answer
                if (found < 0).any():  # a record with no result: not an answer the SQL route takes
                    raise AssertionError(f"{crf_code}: an answer with no record in the SQL route")
                counted = chunk.counted
                if counted:
                    times = None
                    for index, answer in enumerate(found.tolist()):
                        if answer in counted:
                            times = np.bincount(keys, minlength=len(firsts)) if times is None else times
                            _recount(counted[answer], int(times[index]))
                result[other] = found[keys]
            chunk.row_test.frombytes(test.astype(np.int32).tobytes())
            chunk.row_result.frombytes(result.astype(np.int32).tobytes())

        source = self.wide_rows(crf_code, wide, baseline, date_item) if wide else self.entries_by_subject(crf_code)
        for participant_id, subject_id, entries in source:
            if subject_id != previous:
                if len(chunk) + waiting[3] >= XPT_CHUNK:
                    take_wide()
                    self._flush(dataset, chunk, tests, units, numeric_tests, domain, cat, faobj)
                    chunk = _Chunk()
                ordinal += 1
                previous = subject_id
            elif len(chunk) + waiting[3]:
                chunk.unsorted = True
            subject = self.subjects.get(participant_id)
            reference = subject.reference if subject else None
            treated = subject.treated if subject else None
            position = self.position.get(participant_id, len(self.position))
            seq = sequences.get(participant_id, 0)
            last_before: dict[str, int] = {}  # test -> row of the subject's last result before exposure
            cache, results, counted = chunk.cache, chunk.results, chunk.counted
            cached = cache.get
            row_test, row_result = chunk.row_test, chunk.row_result
            add_test, add_result = row_test.append, row_result.append
            for entry in entries:
                on_wide = entry.__class__ is _WideEntry
                if not on_wide and waiting[3]:
                    take_wide()
                study_code = ascii_text(entry.trial_code)
                answers = entry.answers or {}
                get = answers.get
                missing = entry.missing or {}
                grades = grader.grades(entry) if grader is not None else {}
                collected = answers.get(date_item) if date_item else None
                when = collected or entry.visit_date
                visitnum = visits.by_id.get(entry.visit_id, visits.number.get(entry.visit_code, np.nan))
                epoch = visits.epoch_by_id.get(entry.visit_id) or epoch_of(when, treated)
                visit_label = ascii_text(entry.visit_label)
                start = len(row_test) + waiting[3]
                chunk.entries.append((study_code, subject_id, visit_label, epoch, iso(when), visitnum,
                                      study_day(when, reference), ordinal, start, seq, position))
                if entry_counts.get(entry.crf_id):
                    _recount(entry_counts[entry.crf_id])
                if on_wide:  # its records made with those of the entries around it (take_wide)
                    rows = entry.batch.counts[entry.row]
                    if waiting[0] is not entry.batch or waiting[2] != entry.row:
                        take_wide()
                        waiting[:] = [entry.batch, entry.row, entry.row, 0]
                    waiting[2] += 1
                    waiting[3] += rows
                    seq += rows
                    pending += 1
                    if pending >= selectors.CHUNK_SIZE:
                        progress(pending)
                        pending = 0
                    continue
                before_exposure = baseline and as_date(when) is not None and (treated is None or as_date(when) <= treated)
                steps = compiled.get(entry.crf_id, ())
                if entry.crf_id in whole and not before_exposure:  # the entry's rows by list, when every answer has its record
                    numbers, names, verbatim_tests = whole[entry.crf_id]
                    values = [get(name) for name in names]
                    mark = len(chunk.verbatim)
                    try:
                        found_all = [
                            as_result(value) if as_is_test and value.__class__ is str and value and value.isascii() and value.isprintable()
                            else cached((t, value, value.__class__))
                            for t, value, as_is_test in zip(numbers, values, verbatim_tests, strict=True)
                        ]
                    except TypeError:  # a list where an item has a single answer: row by row (below)
                        found_all = None
                        del chunk.verbatim[mark:]  # the answers before it: taken again row by row
                if entry.crf_id in whole and not before_exposure and found_all is not None:
                    if None in found_all:
                        for index in [index for index, found in enumerate(found_all) if found is None]:
                            t, value = numbers[index], values[index]
                            found_all[index] = intern(t, tests[t], value, (t, value, value.__class__))
                    if -1 in found_all and not missing:  # unanswered items, none with a missing-data code: no record
                        kept = [(t, found) for t, found in zip(numbers, found_all, strict=True) if found != -1]
                        numbers, found_all = [t for t, _found in kept], [found for _t, found in kept]
                    if -1 not in found_all:
                        if counted:
                            for found in found_all:
                                if found in counted:
                                    _recount(counted[found])
                        row_test.extend(numbers)
                        row_result.extend(found_all)
                        steps = ()
                for t, test, item_name, group, option, simple in steps:
                    if simple:  # an item outside a group, not a lab test: most rows, the short way
                        value = get(item_name)
                        if as_is[t] and value.__class__ is str and value and value.isascii() and value.isprintable():
                            if before_exposure:
                                last_before[test.testcd] = len(row_test)
                            add_test(t)
                            add_result(as_result(value))
                            continue
                        try:
                            found = cached((t, value, value.__class__))
                        except TypeError:
                            found = None
                        if found is not None and found >= 0:
                            if counted and found in counted:
                                _recount(counted[found])
                            if before_exposure and results[found][0]:
                                last_before[test.testcd] = len(row_test)
                            add_test(t)
                            add_result(found)
                            continue
                        sources = ((None, None, value),)
                    elif group is None:
                        sources = ((None, None, get(item_name)),)
                    else:
                        group_rows = answers.get(group) if isinstance(answers.get(group), list) else []
                        sources = [(f"{group}-{index}", row, row.get(item_name)) for index, row in enumerate(group_rows, 1)]
                    for group_id, row, value in sources:
                        try:
                            key = (t, value, value.__class__)
                            found = cache.get(key)
                        except TypeError:  # a list (a multiple choice): not kept
                            key, found = None, None
                        if found is None:
                            found = intern(t, test, value, key)
                        extra: dict[str, Any] = {}
                        if found < 0:
                            code = _missing_of(missing, group, row, item_name) if option is None else None
                            if code is None:
                                continue
                            # Not done: a record with --STAT/--REASND and no result (SDTMIG 3.4 §4.5.1.2).
                            results.append(empty)
                            found = len(results) - 1
                            reason = sdtm_terms.NOT_DONE_REASONS.get(code["code"], "NOT DONE")
                            text = ascii_text(code.get("reason"))
                            extra = {f"{p}STAT": "NOT DONE", f"{p}REASND": f"{reason}: {text}" if text else reason}
                            self.not_done += 1
                        result = results[found]
                        if counted and found in counted:
                            _recount(counted[found])
                        if lab and test.term:
                            numeric = result[5]
                            extra["LBSPEC"] = test.term.specimen
                            if test.term.range_high_item:
                                high = number(answers.get(test.term.range_high_item))
                                if not np.isnan(high):
                                    extra.update(LBORNRHI=odm._plain(Decimal(str(answers[test.term.range_high_item]))),
                                                 LBSTNRHI=high)
                                    if numeric:
                                        extra["LBNRIND"] = "HIGH" if result[2] > high else "NORMAL"
                            if grader is not None and group is None:
                                # The site's normal range in force and the CTCAE v5.0 grade, as the CRF page shows them.
                                extra.update(_lb_grade(grades.get(item_name)))
                        row_index = len(row_test)
                        if group_id is not None:
                            extra[f"{p}GRPID"] = ascii_text(group_id)
                        for variable, cell in extra.items():
                            chunk.sparse.setdefault(variable, {})[row_index] = cell
                        add_test(t)
                        add_result(found)
                        if before_exposure and result[0] and group is None:
                            last_before[test.testcd] = row_index
                seq += len(row_test) - start  # --SEQ: one per record, in order (SDTMIG 3.4 §4.1.7)
                for item_name, (category, treatment, occurrence, end_item) in su_items.items():
                    value = answers.get(item_name)
                    code = _missing_of(missing, None, None, item_name)
                    if value is None and code is None:
                        continue
                    self.su.add(
                        STUDYID=study_code, DOMAIN="SU", USUBJID=subject_id, SUSEQ=self.next_seq("SU", participant_id),
                        SUTRT=treatment, SUCAT=category, SUPRESP="Y", SUOCCUR=occurrence.get(value, "") if value is not None else "",
                        SUSTAT="NOT DONE" if code else "", SUREASND=sdtm_terms.NOT_DONE_REASONS.get(code["code"], "") if code else "",
                        VISITNUM=visitnum, VISIT=visit_label, EPOCH=epoch, SUDTC=iso(entry.visit_date),
                        SUENDTC=iso(answers.get(end_item)) if end_item else "",
                    )
                pending += 1
                if pending >= selectors.CHUNK_SIZE:
                    progress(pending)
                    pending = 0
            sequences[participant_id] = seq
            if last_before:  # the last result of each test on or before the first exposure
                flags = chunk.sparse.setdefault(f"{p}LOBXFL", {})
                for row_index in last_before.values():
                    flags[row_index] = "Y"
        take_wide()
        self._flush(dataset, chunk, tests, units, numeric_tests, domain, cat, faobj)
        if pending:
            progress(pending)
        return dataset

    @staticmethod
    def _verbatim_levels(dataset: SpilledDataset, tests: list[Test], numeric_tests: list[bool], verbatim: list[str],
                         at: np.ndarray, test: np.ndarray) -> np.ndarray:
        """STRESN of the verbatim answers of a chunk's rows (`at`: their index in `verbatim`, `test`: their
        test), NaN for a text; their value levels, a test at a time. A number item's answers convert
        to doubles at once (float() of the text is float(Decimal(text)): both correctly rounded)."""
        stresn = np.full(len(at), np.nan)
        order = np.argsort(test, kind="stable")
        tests_used, starts = np.unique(test[order], return_index=True)
        for t, rows in zip(tests_used.tolist(), np.split(order, starts[1:]), strict=True):
            # Rows may share a verbatim entry (the SQL route keeps a text once): each distinct one converted once.
            positions, inverse = np.unique(at[rows], return_inverse=True)
            values = [verbatim[i] for i in positions.tolist()]
            testcd = tests[t].testcd
            if numeric_tests[t]:
                try:
                    converted = np.array(values, dtype=np.float64)
                except ValueError:  # a text that is no number: one at a time, as finding() does
                    converted = np.array([number(value) for value in values], dtype=np.float64)
                    for value in dict.fromkeys(values):
                        dataset.level(testcd, value)
                else:
                    dataset.numbers_level(testcd, values)
                stresn[rows] = converted[inverse]
            else:
                for value in dict.fromkeys(values):
                    dataset.level(testcd, value)
        return stresn

    @staticmethod
    def _flush(dataset: SpilledDataset, chunk: _Chunk, tests: list[Test], units: list[str], numeric_tests: list[bool],
               p: str, cat: str, faobj: str) -> None:
        size = len(chunk)
        if not size:
            return
        test = np.frombuffer(chunk.row_test, dtype=np.int32).astype(np.int64)
        result = np.frombuffer(chunk.row_result, dtype=np.int32).astype(np.int64)
        entries = list(zip(*chunk.entries, strict=True))
        first_row = np.array(entries[8], dtype=np.int64)
        counts = np.diff(np.append(first_row, size))
        entry = np.repeat(np.arange(len(first_row)), counts)
        # --SEQ: the entry's first record follows the subject's last one, then one per record.
        seq = (np.repeat(np.array(entries[9], dtype=np.int64) - first_row, counts) + np.arange(size) + 1).astype(np.float64)
        results = list(zip(*chunk.results, strict=True)) or [()] * 6
        stresn = np.array([*results[2], np.nan], dtype=np.float64)[np.where(result >= 0, result, -1)]
        # The verbatim answers: after the results in the ORRES/STRESC tables, their unit that of the test.
        as_is = result <= -2
        verbatim = chunk.verbatim
        if as_is.any():
            known = len(results[0])
            at = -2 - result[as_is]
            stresn[as_is] = Findings._verbatim_levels(dataset, tests, numeric_tests, verbatim, at, test[as_is])
            value_index = np.where(as_is, known - 2 - result, result)
            unit_index = np.where(as_is, known + test, result)
        else:
            value_index = unit_index = result
        verbatim_units = [units[t] if numeric else "" for t, numeric in enumerate(numeric_tests)]
        zeros = np.zeros(size, dtype=np.int64)
        orres, units_table = [*results[0], *verbatim], [*results[3], *verbatim_units]
        chars: dict[str, tuple[list[str], np.ndarray]] = {
            "STUDYID": (list(entries[0]), entry), "DOMAIN": ([p], zeros), "USUBJID": (list(entries[1]), entry),
            f"{p}TESTCD": ([t.testcd for t in tests], test), f"{p}TEST": ([t.test for t in tests], test),
            f"{p}CAT": ([cat], zeros), f"{p}SCAT": ([t.scat for t in tests], test),
            f"{p}ORRES": (orres, value_index), f"{p}ORRESU": (units_table, unit_index),
            f"{p}STRESC": (orres if results[1] == results[0] else [*results[1], *verbatim], value_index),
            f"{p}STRESU": (units_table if results[4] == results[3] else [*results[4], *verbatim_units], unit_index),
            "VISIT": (list(entries[2]), entry), "EPOCH": (list(entries[3]), entry), f"{p}DTC": (list(entries[4]), entry),
        }
        if p == "FA":
            chars["FAOBJ"] = ([faobj], zeros)
        numbers: dict[str, np.ndarray] = {
            f"{p}SEQ": seq, f"{p}STRESN": stresn,
            "VISITNUM": np.array(entries[5], dtype=np.float64)[entry], f"{p}DY": np.array(entries[6], dtype=np.float64)[entry],
        }
        kinds = {v.name: v.type for v in findings_variables(p)}
        for variable, cells in chunk.sparse.items():
            rows = np.fromiter(cells.keys(), dtype=np.int64, count=len(cells))
            if kinds[variable] == NUM:
                column = np.full(size, np.nan)
                column[rows] = [np.nan if cell is None else float(cell) for cell in cells.values()]
                numbers[variable] = column
            else:
                table: dict[str, int] = {}
                index = np.full(size, -1, dtype=np.int64)
                index[rows] = [table.setdefault(cell, len(table)) if cell else -1 for cell in cells.values()]
                chars[variable] = (list(table), index)
        tests_used, first_rows = np.unique(test, return_index=True)  # each test named by its first row (value levels)
        for t, row in zip(tests_used.tolist(), first_rows.tolist(), strict=True):
            dataset.name_test(tests[t].testcd, tests[t].test, (entries[10][entry[row]], int(entry[row])))
        if chunk.unsorted:  # rows of two subjects with one USUBJID: merged by --SEQ (a stable sort, as Dataset's)
            order = np.lexsort((seq, np.array(entries[7], dtype=np.int64)[entry]))
            chars = {name: (table, index[order]) for name, (table, index) in chars.items()}
            numbers = {name: column[order] for name, column in numbers.items()}
        dataset.append_chunk(chars, numbers)


# --- Trial design: TS, TA, TE, TV, TI ----------------------------------------------------------

TS_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
    Var("TSSEQ", "Sequence Number", NUM), Var("TSPARMCD", "Trial Summary Parameter Short Name", codelist="TSPARMCD"),
    Var("TSPARM", "Trial Summary Parameter", codelist="TSPARM"), Var("TSVAL", "Parameter Value", origin="Protocol"),
    Var("TSVALNF", "Parameter Null Flavor"), Var("TSVCDREF", "Name of the Reference Terminology"),
    Var("TSVCDVER", "Version of the Reference Terminology"),
]
TA_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
    Var("ARMCD", "Planned Arm Code", origin="Protocol"), Var("ARM", "Description of Planned Arm", origin="Protocol"),
    Var("TAETORD", "Planned Order of Element within Arm", NUM, origin="Protocol"),
    Var("ETCD", "Element Code", origin="Protocol"), Var("ELEMENT", "Description of Element", origin="Protocol"),
    Var("EPOCH", "Epoch", origin="Protocol", codelist="EPOCH"),
]
TE_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
    Var("ETCD", "Element Code", origin="Protocol"), Var("ELEMENT", "Description of Element", origin="Protocol"),
    Var("TESTRL", "Rule for Start of Element", origin="Protocol"), Var("TEENRL", "Rule for End of Element", origin="Protocol"),
]
TV_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
    Var("VISITNUM", "Visit Number", NUM, origin="Protocol"), Var("VISIT", "Visit Name", origin="Protocol"),
    Var("VISITDY", "Planned Study Day of Visit", NUM, origin="Protocol"),
    Var("TVSTRL", "Visit Start Rule", origin="Protocol"), Var("TVENRL", "Visit End Rule", origin="Protocol"),
]
TI_VARIABLES = [
    Var("STUDYID", "Study Identifier", origin="Assigned"), Var("DOMAIN", "Domain Abbreviation", origin="Assigned"),
    Var("IETESTCD", "Incl/Excl Criterion Short Name", origin="Protocol"),
    Var("IETEST", "Inclusion/Exclusion Criterion", origin="Protocol"),
    Var("IECAT", "Inclusion/Exclusion Category", origin="Protocol", codelist="IECAT"),
]
TS_PARAMETERS = {  # TSPARMCD (C66738) -> TSPARM (C67152)
    "TITLE": "Trial Title", "SPONSOR": "Clinical Study Sponsor", "TPHASE": "Trial Phase Classification",
    "STYPE": "Study Type", "TBLIND": "Trial Blinding Schema", "RANDOM": "Trial is Randomized",
    "PLANSUB": "Planned Number of Subjects", "ACTSUB": "Actual Number of Subjects", "AGEMIN": "Planned Minimum Age of Subjects",
    "AGEMAX": "Planned Maximum Age of Subjects", "SEXPOP": "Sex of Participants", "HLTSUBJI": "Healthy Subject Indicator",
    "REGID": "Registry Identifier", "SSTDTC": "Study Start Date", "INDIC": "Trial Disease/Condition Indication",
    "NARMS": "Planned Number of Arms", "SDTIGVER": "SDTM IG Version", "SDTMVER": "SDTM Version",
}


def trial_design(spec: ExportSpec, mask: Callable[[str], str], subjects: int, warnings: list[str]) -> list[Dataset]:
    """TS, TA, TE, TV and TI from the trial file (protocol rows). Blinded: TA has one "BLINDED" arm
    and TE one "BLINDED TREATMENT" element, so no arm is named."""
    trial = Trial.objects.get(pk=spec.trial_id)
    study = ascii_text(trial.code)
    common = {"STUDYID": study}
    arms = list(Arm.objects.filter(trial=trial, is_active=True).order_by("order", "code"))
    values: list[tuple[str, str, str, str]] = [  # (parameter, value, terminology, its version)
        ("TITLE", ascii_text(trial.title), "", ""), ("SPONSOR", ascii_text(trial.sponsor), "", ""),
        ("TPHASE", sdtm_terms.PHASES.get(trial.phase, ""), "CDISC CT", sdtm_terms.CT_VERSION),
        ("STYPE", trial.study_type.upper(), "CDISC CT", sdtm_terms.CT_VERSION),
        ("TBLIND", sdtm_terms.BLINDING.get(trial.masking, ""), "CDISC CT", sdtm_terms.CT_VERSION),
        ("RANDOM", "Y" if trial.design == "randomized" else "N", "CDISC CT", sdtm_terms.CT_VERSION),
        ("PLANSUB", str(trial.target_enrolment), "", ""), ("ACTSUB", str(subjects), "", ""),
        ("AGEMIN", f"P{trial.min_age_years}Y" if trial.min_age_years is not None else "", "ISO 8601", ""),
        ("AGEMAX", f"P{trial.max_age_years}Y" if trial.max_age_years is not None else "", "ISO 8601", ""),
        ("SEXPOP", {"all": "BOTH", "female": "F", "male": "M"}.get(trial.sex, "BOTH"), "CDISC CT", sdtm_terms.CT_VERSION),
        ("HLTSUBJI", "Y" if trial.healthy_volunteers else "N", "CDISC CT", sdtm_terms.CT_VERSION),
        ("REGID", trial.nct_id, "ClinicalTrials.gov", ""), ("SSTDTC", iso(trial.start_date), "ISO 8601", ""),
        ("NARMS", str(len(arms)), "", ""), ("SDTIGVER", sdtm_terms.SDTMIG_VERSION, "", ""),
        ("SDTMVER", sdtm_terms.SDTM_VERSION, "", ""),
    ]
    values += [("INDIC", ascii_text(condition), "", "") for condition in trial.conditions or []]
    # A value over 200 characters continues in TSVAL1, TSVAL2 … (SDTMIG 3.4 §7.6.1, TS has no SUPP--).
    pieces = {code: split_text(mask(value)) for code, value, _reference, _version in values}
    extra = max(len(split) for split in pieces.values()) - 1
    variables = list(TS_VARIABLES)
    at = next(i for i, v in enumerate(variables) if v.name == "TSVAL") + 1
    variables[at:at] = [Var(f"TSVAL{n}", f"Parameter Value {n}", origin="Protocol") for n in range(1, extra + 1)]
    ts = Dataset("TS", "Trial Summary", variables, mask, domain="TS", keys=())
    seq_of: dict[str, int] = {}
    for code, value, reference, version in values:
        seq_of[code] = seq_of.get(code, 0) + 1
        first, *rest = pieces[code]
        ts.add(**common, DOMAIN="TS", TSSEQ=seq_of[code], TSPARMCD=code, TSPARM=TS_PARAMETERS[code], TSVAL=first,
               **{f"TSVAL{n}": piece for n, piece in enumerate(rest, 1)},
               TSVALNF="" if value else "NI", TSVCDREF=reference if value else "", TSVCDVER=version if value else "")

    definitions = list(VisitDefinition.objects.filter(trial=trial, is_active=True).order_by("order"))
    epochs = []
    for definition in definitions:
        epoch = EPOCHS.get(definition.kind, "")
        if epoch and epoch not in epochs:
            epochs.append(epoch)
    te = Dataset("TE", "Trial Elements", TE_VARIABLES, mask, domain="TE", keys=())
    ta = Dataset("TA", "Trial Arms", TA_VARIABLES, mask, domain="TA", keys=())
    blinded_arms = spec.blinded or not arms
    arm_rows = [(BLINDED_ARM, BLINDED_ARM, BLINDED_TREATMENT)] if blinded_arms else [
        (ascii_text(arm.code, 20), ascii_text(arm.label), ascii_text(arm.intervention or arm.label)) for arm in arms
    ]
    elements = {}
    for epoch in epochs:
        if epoch == "TREATMENT":
            for index, (code, _label, treatment) in enumerate(arm_rows, 1):
                elements[("TREATMENT", code)] = (f"TRT{index}" if len(arm_rows) > 1 else "TRT", treatment)
        else:
            elements[(epoch, "")] = (short_name(epoch, set(), width=8), epoch.title())
    for (epoch, _arm), (etcd, element) in elements.items():
        start = "First treatment" if epoch == "TREATMENT" else f"Start of the {epoch.lower()} visits"
        te.add(**common, DOMAIN="TE", ETCD=etcd, ELEMENT=element[:40], TESTRL=start, TEENRL=f"End of the {epoch.lower()} epoch")
    for code, label, _treatment in arm_rows:
        for order, epoch in enumerate(epochs, 1):
            etcd, element = elements[(epoch, code)] if epoch == "TREATMENT" else elements[(epoch, "")]
            ta.add(**common, DOMAIN="TA", ARMCD=code, ARM=label, TAETORD=order, ETCD=etcd, ELEMENT=element[:40], EPOCH=epoch)

    tv = Dataset("TV", "Trial Visits", TV_VARIABLES, mask, domain="TV", keys=())
    for definition in definitions:
        anchor = "first treatment" if definition.anchor == "first_treatment" else "enrolment"
        tv.add(**common, DOMAIN="TV", VISITNUM=float(definition.order), VISIT=ascii_text(definition.label),
               VISITDY=planned_study_day(definition),
               TVSTRL=f"{definition.day_offset:+d} days from {anchor}, window -{definition.window_before_days}/+{definition.window_after_days} days")

    ti = Dataset("TI", "Trial Inclusion/Exclusion Criteria", TI_VARIABLES, mask, domain="TI", keys=())
    codes = criterion_test_codes(trial.pk)
    for criterion in Criterion.objects.filter(trial=trial, is_active=True).order_by("kind", "order", "code"):
        text = ascii_text(criterion.text)
        if len(text) > MAX_CHAR:
            # TI has no SUPP--: the full text stays in the protocol (SDTMIG 3.4 §7.4.1, IETEST ≤ 200).
            warnings.append(f"TI: criterion {criterion.code} is {len(text)} characters long; IETEST holds its first 200.")
        testcd, text = codes[criterion.code]
        ti.add(**common, DOMAIN="TI", IETESTCD=testcd, IETEST=text,
               IECAT="INCLUSION" if criterion.kind == "inclusion" else "EXCLUSION")
    return [ts, ta, te, tv, ti]


def _lb_grade(graded) -> dict:  # noqa: ANN001
    if graded is None:
        return {}
    return {
        "LBORNRLO": "" if graded.lln is None else odm._plain(graded.lln),
        "LBORNRHI": "" if graded.uln is None else odm._plain(graded.uln),
        "LBSTNRLO": np.nan if graded.lln is None else float(graded.lln),
        "LBSTNRHI": np.nan if graded.uln is None else float(graded.uln),
        "LBNRIND": graded.indicator or "", "LBTOX": ascii_text(graded.term or ""),
        "LBTOXGR": "" if graded.grade is None else str(graded.grade),
    }


class _LabGrader:
    """CTCAE v5.0 grades of a LABS entry against its site's normal ranges, as the CRF page shows them
    (trials.protocol.labs), with the participant's first entry of the CRF as baseline."""

    def __init__(self, spec: ExportSpec, versions: list) -> None:
        self.people, self.ranges = selectors.lab_grading_context(spec)
        self.schemas = {crf.pk: schema_for(crf) for crf in versions}
        self.baseline: dict[int, dict] = {}

    def grades(self, entry) -> dict:  # noqa: ANN001
        site_id, sex, born = self.people.get(entry.participant_id, (None, None, None))
        answers = entry.answers or {}
        baseline = self.baseline.setdefault(entry.participant_id, answers)  # entries come in visit order
        on = _date_or_none(answers.get("sample_date")) or entry.visit_date
        schema = self.schemas.get(entry.crf_id)
        if site_id is None or on is None or schema is None:
            return {}
        birth = _date_or_none(born)
        age = None if birth is None else on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
        return grade_answers(
            schema, answers, ranges=self.ranges.get(site_id, []), sex=sex, age=age, on=on,
            baseline=None if baseline is answers else baseline,
        )


def _date_or_none(value) -> date | None:  # noqa: ANN001
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


# --- The export ---------------------------------------------------------------------------------


def count(spec: ExportSpec) -> int:
    """Rows read: participants, visits, adverse events and CRF entries."""
    return (
        selectors.export_participants(spec).count() + selectors.export_visits(spec).count()
        + selectors.export_adverse_events(spec).count() + selectors.export_entries(spec).count()
    )


def _subject_streams(spec: ExportSpec) -> dict[str, selectors.Rows]:
    streams: dict[str, selectors.Rows] = {
        "visits": selectors.export_visits(spec), "adverse_events": selectors.export_adverse_events(spec),
    }
    sex = sex_crf_code(spec)
    if sex:
        streams["sex"] = selectors.export_entries(spec, sex)
    exported = set(selectors.export_crf_codes(spec))
    for code in sdtm_terms.INTERVENTIONS:  # EX, CM, MH and PR records, read with the participant
        if code in exported:
            streams[f"crf:{code}"] = selectors.export_entries(spec, code)
    streams["eligibility"] = selectors.export_eligibility(spec)
    if not spec.blinded:
        streams["allocations"] = selectors.export_allocations(spec)
    return streams


def text_warnings(report: dict) -> list[str]:
    """The manifest's lines about characters changed or dropped on the way to ASCII."""
    lines = []
    transliterated = {c: n for (kind, c), n in report.items() if kind == "transliterated"}
    dropped = {c: n for (kind, c), n in report.items() if kind == "dropped"}
    if transliterated:
        lines.append("Non-ASCII characters transliterated to ASCII (XPT v5 is ASCII): " + ", ".join(
            f"{c!r}→{anyascii(c)!r} ×{n}" for c, n in sorted(transliterated.items())[:50]))
    if dropped:
        lines.append("Characters with no ASCII spelling dropped: " + ", ".join(
            f"U+{ord(c):04X} ×{n}" for c, n in sorted(dropped.items())[:50]))
    as_json = {name: n for (kind, name), n in report.items() if kind == "json"}
    if as_json:
        lines.append("A list or an object stored for an item that takes one answer, written as its JSON text: " + ", ".join(
            f"{name} ×{n}" for name, n in sorted(as_json.items())[:50]))
    return lines


@dataclass
class Package:
    """What was written, for define.xml: the datasets in order and the warnings."""

    datasets: list[Dataset] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """The zip: the trial design, DM, AE, DS, EX, SV, the findings and SU, the SUPP-- datasets,
    each an .xpt file, define.xml and the manifest (with its warnings).

    The cyclic garbage collector is paused while the package is made: the findings create and drop
    millions of small tuples (records, distinct answers), and each full collection walked every
    object of the process (a fifth of the package's time at 1,000 participants); the package
    makes few reference cycles, collected after each findings dataset and when the collector resumes."""
    paused = gc.isenabled()
    gc.disable()
    try:
        _write(spec, out, progress)
    finally:
        if paused:
            gc.enable()


def _write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    from trials.exports import define  # define.xml reads this module's Var/Dataset

    if spec.trial_id is None:
        raise ValueError("SDTM datasets describe one study: a pooled export is not offered in this format.")
    header = manifest.manifest_header(spec, format_code="xpt")
    files = []
    report: dict = {}
    token = TEXT_REPORT.set(report)
    package = Package()
    try:
        visits = _Visits(spec)
        mask = ascii_mask(spec)
        supplements = Supplements(mask)
        subject_datasets = _SubjectDatasets(spec, visits, mask, supplements, package.warnings)
        # The zip's deflate runs in a thread of its own (zlib releases the GIL): a dataset's file is
        # compressed while the next dataset is built; only that thread writes to the archive until
        # the datasets are done.
        with tempfile.TemporaryDirectory(prefix="xpt-") as scratch, \
                zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=csvzip.COMPRESS_LEVEL) as archive, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="xpt-zip") as zipper:
            folder = Path(scratch)
            zipped: list[Future] = []

            def emit(dataset: Dataset | SpilledDataset) -> None:
                supplements.overflow(ascii_text(header.get("trial") or ""), dataset, dataset.labels())
                path = folder / f"{dataset.name.lower()}.xpt"
                write_xpt(dataset, path)
                zipped.append(zipper.submit(zip_file_member, archive, path, path.name, dataset.rows, dataset.label))
                dataset.release()
                package.datasets.append(dataset)

            for participant, streams in odm.rows_by_participant(selectors.export_participants(spec), _subject_streams(spec)):
                subject_datasets.add(participant, streams)
                logs = len(streams.get("crf:CONMED", [])) + len(streams.get("crf:MEDHIST", []))  # not findings
                progress(1 + len(streams["visits"]) + len(streams["adverse_events"]) + logs)
            for dataset in trial_design(spec, mask, subject_datasets.dm.rows, package.warnings):
                emit(dataset)
            sd = subject_datasets
            mh_code(sd.mh, sd.mh_terms, spec.trial_id, package.warnings)
            if sd.cm.rows:
                package.warnings.append(
                    f"CM: {sd.cm.rows} medication record(s) with CMDECOD null: medications are coded with WHODrug, a "
                    "licensed dictionary not loaded in the EDC, and no code is invented (CMCLAS is the class collected).")
            for dataset in (sd.dm, sd.ae, sd.ds, sd.ex, sd.cm, sd.mh, sd.pr, sd.ie, sd.sv):
                emit(dataset)
            findings = Findings(spec, subject_datasets.subjects, visits, mask)
            for name, domain, code in findings_datasets(spec):
                emit(findings.write(name, domain, code, progress))
                gc.collect()  # the cycles a CRF left (the collector is paused: see write)
            if findings.su.rows or sdtm_terms.SU_ITEMS.keys() & set(selectors.export_crf_codes(spec)):
                emit(findings.su)
            for domain in sorted(supplements.by_domain):
                emit(supplements.by_domain[domain])
            if subject_datasets.uncoded:
                package.warnings.append(
                    f"AE: {subject_datasets.uncoded} adverse event(s) not coded yet: AEDECOD, AEBODSYS and their codes "
                    "are null until the event is coded (MedDRA).")
            if findings.not_done:
                package.warnings.append(
                    f"{findings.not_done} finding(s) not done: a record with --STAT = NOT DONE and --REASND from the "
                    "missing-data code, no result.")
            package.warnings.extend(text_warnings(report))
            files.extend(done.result() for done in zipped)  # every dataset in the zip before define.xml
            define_bytes = define.define_xml(spec, package.datasets)
            archive.writestr(manifest.zip_member(archive, define.DEFINE_NAME), define_bytes)
            files.append({"name": define.DEFINE_NAME, "table": "Define-XML 2.1", "rows": 0, "bytes": len(define_bytes),
                          "sha256": hashlib.sha256(define_bytes).hexdigest()})
            archive.writestr(manifest.zip_member(archive, manifest.MANIFEST_NAME),
                             manifest.manifest_bytes({**header, "warnings": package.warnings}, files))
    finally:
        TEXT_REPORT.reset(token)
