"""SDTM-style SAS transport (XPT version 5) datasets: a zip with one .xpt file per dataset.

Datasets (docs/architecture.md, "Exports"): DM demographics, AE adverse events, DS disposition,
EX exposure (the first treatment), SV subject visits, and the CRF items as findings: VS (the
VITALS CRF), LB (LABS), SC (DEMOG: subject characteristics) and QS (every other CRF: scores,
scales and clinical assessments), QS split into one dataset per CRF ("QSCO", "QSHA" …, DOMAIN
stays "QS"), as SDTMIG allows for split domains. Variable names and labels are SDTM's; dates are
ISO 8601 text; character values are ASCII (transport files for regulators must be), at most 200
characters (the XPT v5 limit; longer free text is cut).

Blinded (the default): DM has no ARMCD/ARM/ACTARMCD/ACTARM columns at all (rather than
"BLINDED" values, so no program can mistake a placeholder for an arm), and EX names the
treatment "BLINDED TREATMENT" with no dose. Unblinded: the arm code and label, and the cohort's
dose in EX.

Memory: pyreadstat writes a whole dataset from a DataFrame, so one dataset is held in memory at a
time, column-wise (character columns as category codes, 4 bytes a cell). The rows are read in
chunks; the biggest dataset is one CRF's findings (rows = entries × items of that CRF).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import unicodedata
import zipfile
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyreadstat

from trials.exports import manifest, odm, selectors
from trials.exports.spec import ExportSpec, Progress
from trials.protocol.models import Arm, FieldDefinition, VisitCrf, VisitDefinition
from trials.protocol.engine import Item, schema_for
from trials.protocol.labs import grade_answers

CHAR, NUM = "char", "num"
UNMASKED = frozenset({"STUDYID", "DOMAIN", "USUBJID", "SUBJID", "SITEID"})
MAX_CHAR = 200  # XPT v5: character values of at most 200 bytes
# Findings domain of a CRF of the library; any other CRF goes to QS.
FINDINGS_DOMAINS = {"DEMOG": "SC", "VITALS": "VS", "LABS": "LB"}
FINDINGS_LABELS = {
    "QS": ("Questionnaires", "Question"),
    "VS": ("Vital Signs", "Vital Signs Test"),
    "LB": ("Laboratory Test Results", "Lab Test or Examination"),
    "SC": ("Subject Characteristics", "Subject Characteristic"),
}
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
DISPOSITION = {
    "completed": "COMPLETED", "withdrawn": "WITHDRAWAL BY SUBJECT", "lost_to_follow_up": "LOST TO FOLLOW-UP",
    "died": "DEATH", "screen_failure": "SCREEN FAILURE",
}
SERIOUSNESS_FLAGS = {
    "death": "AESDTH", "life_threatening": "AESLIFE", "hospitalisation": "AESHOSP", "disability": "AESDISAB",
    "congenital_anomaly": "AESCONG", "other_important": "AESMIE",
}
BLINDED_TREATMENT = "BLINDED TREATMENT"
# Signs that have an ASCII spelling in units and labels (°C is "C" in CDISC's UNIT terminology).
ASCII_SIGNS = {"°C": "C", "°": "deg", "µ": "u", "μ": "u", "²": "2", "³": "3", "×": "x", "–": "-", "—": "-", "’": "'",
               "‘": "'", "“": '"', "”": '"', "≥": ">=", "≤": "<=", "…": "..."}


# --- Values ---------------------------------------------------------------------------------


def ascii_text(value: Any, limit: int | None = MAX_CHAR) -> str:
    """A character value as transport files want it: ASCII, at most `limit` characters."""
    if value is None:
        return ""
    text = str(value)
    if text.isascii() and text.isprintable():  # nearly every value: nothing to fold
        return text[:limit]
    for sign, spelling in ASCII_SIGNS.items():
        text = text.replace(sign, spelling)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    return text[:limit]


def ascii_mask(spec: ExportSpec) -> Callable[[str], str]:
    """selectors.arm_mask for ASCII-folded texts: the arm codes and labels folded the same way
    (an arm "Bras placebo – dose élevée" is masked in "Bras placebo - dose elevee" too)."""
    source = selectors.arm_mask_pattern(spec)
    if source is None:
        return lambda text: text
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


class Dataset:
    """A dataset built row by row, kept column-wise: character columns as category codes (one
    copy of each distinct value), numeric columns as doubles."""

    def __init__(self, name: str, label: str, variables: Iterable[Var], mask: Callable[[str], str] | None = None) -> None:
        self.name = name
        self.mask = mask or (lambda text: text)
        self.label = self.mask(label)
        self.variables = list(variables)
        # Identifiers and test codes are never masked (they name no arm); every other text is.
        self._masked = {
            v.name for v in self.variables
            if v.type == CHAR and v.name not in UNMASKED and not v.name.endswith("TESTCD")
        }
        self.rows = 0
        self._codes = {v.name: array("i") for v in self.variables if v.type == CHAR}
        self._categories: dict[str, dict[str, int]] = {v.name: {} for v in self.variables if v.type == CHAR}
        self._numbers = {v.name: array("d") for v in self.variables if v.type == NUM}

    def add(self, **values: Any) -> None:
        masked, mask, categories_of = self._masked, self.mask, self._categories
        for name, codes in self._codes.items():
            value = values.get(name)
            if not value:
                codes.append(-1)
                continue
            if name in masked:
                value = mask(value)[:MAX_CHAR]
            categories = categories_of[name]
            code = categories.get(value)
            if code is None:
                code = categories[value] = len(categories)
            codes.append(code)
        nan = np.nan
        for name, numbers in self._numbers.items():
            value = values.get(name)
            numbers.append(nan if value is None else float(value))
        self.rows += 1

    def frame(self) -> pd.DataFrame:
        columns = {}
        for var in self.variables:
            if var.type == CHAR:
                codes = np.frombuffer(self._codes[var.name], dtype=np.int32) if self.rows else np.array([], dtype=np.int32)
                columns[var.name] = pd.Categorical.from_codes(codes, categories=list(self._categories[var.name]))
            else:
                columns[var.name] = np.frombuffer(self._numbers[var.name], dtype=np.float64) if self.rows else np.array([], dtype=np.float64)
        return pd.DataFrame(columns)

    def labels(self) -> dict[str, str]:
        return {v.name: v.label[:40] for v in self.variables}


def write_xpt(dataset: Dataset, path: Path) -> None:
    """One XPT v5 file (names ≤ 8 characters, labels ≤ 40)."""
    pyreadstat.write_xport(
        dataset.frame(), str(path), file_label=ascii_text(dataset.label, 40), column_labels=dataset.labels(),
        table_name=dataset.name, file_format_version=5,
    )


def zip_file_member(archive: zipfile.ZipFile, path: Path, name: str, rows: int, label: str) -> dict:
    """Add a written file to the zip and describe it for the manifest (SHA-256 of its bytes)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source, archive.open(name, "w", force_zip64=True) as member:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            member.write(chunk)
    path.unlink()
    return {"name": name, "table": label, "rows": rows, "bytes": size, "sha256": digest.hexdigest()}


# --- Variables ------------------------------------------------------------------------------

KEYS = [Var("STUDYID", "Study Identifier"), Var("DOMAIN", "Domain Abbreviation"), Var("USUBJID", "Unique Subject Identifier")]


def dm_variables(spec: ExportSpec) -> list[Var]:
    variables = KEYS + [
        Var("SUBJID", "Subject Identifier for the Study"),
        Var("RFSTDTC", "Subject Reference Start Date/Time"),
        Var("RFENDTC", "Subject Reference End Date/Time"),
        Var("RFXSTDTC", "Date/Time of First Study Treatment"),
        Var("RFICDTC", "Date/Time of Informed Consent"),
        Var("DTHFL", "Subject Death Flag"),
        Var("SITEID", "Study Site Identifier"),
    ]
    if spec.identifiers:
        variables.append(Var("BRTHDTC", "Date/Time of Birth"))
    variables += [Var("AGE", "Age", NUM), Var("AGEU", "Age Units"), Var("SEX", "Sex")]
    if not spec.blinded:  # blinded: no arm column at all
        variables += [
            Var("ARMCD", "Planned Arm Code"), Var("ARM", "Description of Planned Arm"),
            Var("ACTARMCD", "Actual Arm Code"), Var("ACTARM", "Description of Actual Arm"),
        ]
    return variables


AE_VARIABLES = KEYS + [
    Var("AESEQ", "Sequence Number", NUM), Var("AESPID", "Sponsor-Defined Identifier"),
    Var("AETERM", "Reported Term for the Adverse Event"), Var("AELLT", "Lowest Level Term"),
    Var("AELLTCD", "Lowest Level Term Code"), Var("AEDECOD", "Dictionary-Derived Term"),
    Var("AEPTCD", "Preferred Term Code"), Var("AEBODSYS", "Body System or Organ Class"),
    Var("AEBDSYCD", "Body System or Organ Class Code"), Var("AESOC", "Primary System Organ Class"),
    Var("AESOCCD", "Primary System Organ Class Code"), Var("AESER", "Serious Event"),
    Var("AEACN", "Action Taken with Study Treatment"), Var("AEREL", "Causality"), Var("AEOUT", "Outcome of Adverse Event"),
    Var("AESCONG", "Congenital Anomaly or Birth Defect"), Var("AESDISAB", "Persist or Signif Disability/Incapacity"),
    Var("AESDTH", "Results in Death"), Var("AESHOSP", "Requires or Prolongs Hospitalization"),
    Var("AESLIFE", "Is Life Threatening"), Var("AESMIE", "Other Medically Important Serious Event"),
    Var("AECONTRT", "Concomitant or Additional Trtmnt Given"), Var("AETOXGR", "Standard Toxicity Grade"),
    Var("AESTDTC", "Start Date/Time of Adverse Event"), Var("AEENDTC", "End Date/Time of Adverse Event"),
    Var("AESTDY", "Study Day of Start of Adverse Event", NUM), Var("AEENDY", "Study Day of End of Adverse Event", NUM),
    Var("AEENRTPT", "End Relative to Reference Time Point"), Var("AEENTPT", "End Reference Time Point"),
]
DS_VARIABLES = KEYS + [
    Var("DSSEQ", "Sequence Number", NUM), Var("DSTERM", "Reported Term for the Disposition Event"),
    Var("DSDECOD", "Standardized Disposition Term"), Var("DSCAT", "Category for Disposition Event"),
    Var("DSSTDTC", "Start Date/Time of Disposition Event"), Var("DSSTDY", "Study Day of Start of Disposition Event", NUM),
]
EX_VARIABLES = KEYS + [
    Var("EXSEQ", "Sequence Number", NUM), Var("EXTRT", "Name of Treatment"), Var("EXDOSE", "Dose", NUM),
    Var("EXDOSU", "Dose Units"), Var("EXSTDTC", "Start Date/Time of Treatment"),
    Var("EXSTDY", "Study Day of Start of Treatment", NUM),
]
SV_VARIABLES = KEYS + [
    Var("VISITNUM", "Visit Number", NUM), Var("VISIT", "Visit Name"), Var("VISITDY", "Planned Study Day of Visit", NUM),
    Var("SVSTDTC", "Start Date/Time of Visit"), Var("SVENDTC", "End Date/Time of Visit"),
    Var("SVSTDY", "Study Day of Start of Visit", NUM), Var("SVENDY", "Study Day of End of Visit", NUM),
    Var("SVUPDES", "Description of Unplanned Visit"),
]


def findings_variables(domain: str) -> list[Var]:
    label, test = FINDINGS_LABELS[domain]
    p = domain
    return KEYS + [
        Var(f"{p}SEQ", "Sequence Number", NUM), Var(f"{p}GRPID", "Group ID"),
        Var(f"{p}TESTCD", f"{test} Short Name"), Var(f"{p}TEST", f"{test} Name"),
        Var(f"{p}CAT", f"Category for {label}"), Var(f"{p}SCAT", f"Subcategory for {label}"),
        Var(f"{p}ORRES", "Result or Finding in Original Units"), Var(f"{p}ORRESU", "Original Units"),
        Var(f"{p}STRESC", "Character Result/Finding in Std Format"),
        Var(f"{p}STRESN", "Numeric Result/Finding in Standard Units", NUM), Var(f"{p}STRESU", "Standard Units"),
        *(LB_RANGE_VARIABLES if domain == "LB" else []),
        Var("VISITNUM", "Visit Number", NUM), Var("VISIT", "Visit Name"),
        Var(f"{p}DTC", "Date/Time of Collection"), Var(f"{p}DY", "Study Day of Collection", NUM),
    ]


# LB: the site laboratory's normal range and the CTCAE v5.0 grade of each graded result (SDTMIG 3.3 LB:
# LBORNRLO/LBORNRHI, LBNRIND LOW/NORMAL/HIGH, LBTOX the CTCAE term, LBTOXGR the grade 0-4).
LB_RANGE_VARIABLES = [
    Var("LBORNRLO", "Reference Range Lower Limit in Orig Unit"), Var("LBORNRHI", "Reference Range Upper Limit in Orig Unit"),
    Var("LBNRIND", "Reference Range Indicator"), Var("LBTOX", "Toxicity"), Var("LBTOXGR", "Standard Toxicity Grade"),
]


# --- Participants: DM, DS, EX, SV, AE -----------------------------------------------------------


@dataclass
class Subject:
    usubjid: str
    reference: date | None  # RFSTDTC: the first treatment, else the enrolment


def usubjid(trial_code: str, subject: str) -> str:
    return ascii_text(f"{trial_code}-{subject}")


def sex_crf_code(spec: ExportSpec) -> str | None:
    """The trial's CRF with a top-level 'sex' item (DEMOG in the library): DM.SEX comes from it."""
    codes = set(FieldDefinition.objects.filter(name="sex", parent__isnull=True).values_list("crf__code", flat=True))
    scheduled = VisitCrf.objects.filter(visit_definition__trial_id=spec.trial_id, crf_code__in=codes)
    return scheduled.order_by("visit_definition__order", "order").values_list("crf_code", flat=True).first()


class _Visits:
    """VISITNUM of a visit: the visit definition's order; an unscheduled visit gets the number of
    the last scheduled visit before it plus 0.01 × its sequence (the usual SDTM convention)."""

    def __init__(self, spec: ExportSpec) -> None:
        definitions = VisitDefinition.objects.filter(trial_id=spec.trial_id)
        self.number = {d.code: float(d.order) for d in definitions}
        self.planned_day = {d.code: float(d.day_offset + 1 if d.day_offset >= 0 else d.day_offset) for d in definitions}
        self.by_id: dict[int, float] = {}

    def assign(self, visits: list) -> None:
        """Number a participant's visits (kept by visit id for the findings)."""
        scheduled = sorted(
            (v.visit_date or v.planned_date or date.max, self.number.get(v.visit_code, 0.0)) for v in visits if v.visit_code
        )
        for visit in visits:
            if visit.visit_code:
                self.by_id[visit.id] = self.number.get(visit.visit_code, float(visit.order))
                continue
            when = visit.visit_date or visit.planned_date or date.max
            before = [num for day, num in scheduled if day <= when]
            self.by_id[visit.id] = round((max(before) if before else 0.0) + 0.01 * visit.sequence, 2)


class _SubjectDatasets:
    """DM, DS, EX, SV and AE, filled a participant at a time."""

    def __init__(self, spec: ExportSpec, visits: _Visits, mask: Callable[[str], str]) -> None:
        self.spec = spec
        self.visits = visits
        self.dm = Dataset("DM", "Demographics", dm_variables(spec), mask)
        self.ae = Dataset("AE", "Adverse Events", AE_VARIABLES, mask)
        self.ds = Dataset("DS", "Disposition", DS_VARIABLES, mask)
        self.ex = Dataset("EX", "Exposure", EX_VARIABLES, mask)
        self.sv = Dataset("SV", "Subject Visits", SV_VARIABLES, mask)
        self.subjects: dict[int, Subject] = {}
        self.arms = {arm.code: arm for arm in Arm.objects.filter(trial_id=spec.trial_id)} if not spec.blinded else {}

    def add(self, participant: Any, streams: dict[str, list]) -> None:
        p = participant
        study = ascii_text(p.trial_code)
        subject_id = usubjid(p.trial_code, p.subject)
        reference = p.first_treatment_date or p.enrolment_date
        self.subjects[p.id] = Subject(subject_id, reference)
        keys = {"STUDYID": study, "USUBJID": subject_id}
        ended = p.status in DISPOSITION
        sex = next((str(e.answers.get("sex")).upper() for e in streams.get("sex", []) if (e.answers or {}).get("sex")), "")
        dm = {
            **keys, "DOMAIN": "DM", "SUBJID": ascii_text(p.subject), "RFSTDTC": iso(reference),
            "RFENDTC": iso(p.status_date) if ended else "", "RFXSTDTC": iso(p.first_treatment_date),
            "RFICDTC": iso(p.consent_date), "DTHFL": "Y" if p.status == "died" else "", "SITEID": ascii_text(p.site_code),
            "AGE": p.age_at_consent, "AGEU": "YEARS" if p.age_at_consent is not None else "", "SEX": ascii_text(sex),
        }
        if self.spec.identifiers:
            dm["BRTHDTC"] = iso(p.date_of_birth)
        allocation = (streams.get("allocations") or [None])[0]
        if not self.spec.blinded and allocation is not None:
            dm.update(ARMCD=ascii_text(allocation.arm_code, 20), ARM=ascii_text(allocation.arm_label),
                      ACTARMCD=ascii_text(allocation.arm_code, 20), ACTARM=ascii_text(allocation.arm_label))
        self.dm.add(**dm)

        seq = 0
        if p.consent_date:
            seq += 1
            self.ds.add(**keys, DOMAIN="DS", DSSEQ=seq, DSTERM="INFORMED CONSENT OBTAINED", DSDECOD="INFORMED CONSENT OBTAINED",
                        DSCAT="PROTOCOL MILESTONE", DSSTDTC=iso(p.consent_date), DSSTDY=study_day(p.consent_date, reference))
        if ended:
            seq += 1
            decoded = DISPOSITION[p.status]
            self.ds.add(**keys, DOMAIN="DS", DSSEQ=seq, DSTERM=ascii_text(p.status_reason) or decoded, DSDECOD=decoded,
                        DSCAT="DISPOSITION EVENT", DSSTDTC=iso(p.status_date), DSSTDY=study_day(p.status_date, reference))

        if p.first_treatment_date:
            treatment, dose, unit = BLINDED_TREATMENT, None, ""
            if not self.spec.blinded and allocation is not None:
                treatment, dose, unit = ascii_text(allocation.arm_label), number(allocation.dose), ascii_text(allocation.dose_unit)
            self.ex.add(**keys, DOMAIN="EX", EXSEQ=1, EXTRT=treatment, EXDOSE=dose, EXDOSU=unit,
                        EXSTDTC=iso(p.first_treatment_date), EXSTDY=study_day(p.first_treatment_date, reference))

        visits = streams.get("visits", [])
        self.visits.assign(visits)
        for visit in visits:
            if visit.visit_date is None:
                continue  # SV records visits that took place
            day = study_day(visit.visit_date, reference)
            self.sv.add(
                **keys, DOMAIN="SV", VISITNUM=self.visits.by_id[visit.id], VISIT=ascii_text(visit.label),
                VISITDY=self.visits.planned_day.get(visit.visit_code) if visit.visit_code else None,
                SVSTDTC=iso(visit.visit_date), SVENDTC=iso(visit.visit_date), SVSTDY=day, SVENDY=day,
                SVUPDES="" if visit.visit_code else ascii_text(visit.status_reason or visit.label),
            )

        for ae in streams.get("adverse_events", []):
            criteria = set(ae.seriousness or [])
            flags = {flag: ("Y" if code in criteria else "N") for code, flag in SERIOUSNESS_FLAGS.items()}
            self.ae.add(
                **keys, DOMAIN="AE", AESEQ=ae.number, AESPID=str(ae.number), AETERM=ascii_text(ae.verbatim_term),
                AELLT=ascii_text(ae.llt), AELLTCD=ascii_text(ae.llt_code), AEDECOD=ascii_text(ae.pt),
                AEPTCD=ascii_text(ae.pt_code), AEBODSYS=ascii_text(ae.soc), AEBDSYCD=ascii_text(ae.soc_code),
                AESOC=ascii_text(ae.soc), AESOCCD=ascii_text(ae.soc_code), AESER=yn(ae.serious),
                AEACN=ACTION.get(ae.action_taken, ""), AEREL=CAUSALITY.get(ae.related_product, ""),
                AEOUT=OUTCOME.get(ae.outcome, ""), **flags, AECONTRT=yn(bool((ae.treatment_given or "").strip())),
                AETOXGR=str(ae.grade) if ae.grade is not None else "", AESTDTC=iso(ae.onset_date), AEENDTC=iso(ae.end_date),
                AESTDY=study_day(ae.onset_date, reference), AEENDY=study_day(ae.end_date, reference),
                AEENRTPT="ONGOING" if ae.ongoing else "", AEENTPT="END OF DATA COLLECTION" if ae.ongoing else "",
            )


# --- Findings: the CRF items --------------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """A findings test: one CRF item (or one option of a multiple choice)."""

    testcd: str
    test: str
    item: Item
    group: str | None  # the repeating group holding the item
    scat: str
    option: Any = None


def findings_plan(crf_code: str, versions: list, taken: set[str], identifiers: bool) -> dict[int, list[Test]]:
    """Per CRF version (id), its tests in item order; a test code is shared by the versions that
    have the item."""
    codes: dict[tuple, str] = {}
    plans: dict[int, list[Test]] = {}
    for crf in sorted(versions, key=lambda c: c.version):
        schema = schema_for(crf)
        tests: list[Test] = []

        def add(item: Item, group: Item | None, tests: list[Test]) -> None:
            if item.type in {"descriptive", "repeating_group"} or (item.identifier and not identifiers):
                return
            scat = ascii_text(group.label if group else item.section)
            options = [(code, label) for code, label in item.choices] if item.type == "multiple_choice" else [(None, None)]
            for option, option_label in options:
                key = (group.name if group else None, item.name, option)
                if key not in codes:
                    codes[key] = short_name(f"{item.name}_{option}" if option is not None else item.name, taken)
                test = item.label if option is None else f"{item.label}: {option_label}"
                tests.append(Test(codes[key], ascii_text(test, 40), item, group.name if group else None, scat, option))

        for item in schema.items:
            if item.type == "repeating_group":
                for child in item.children:
                    add(child, item, tests)
            else:
                add(item, None, tests)
        plans[crf.pk] = tests
    return plans


def finding(test: Test, value: Any) -> dict | None:
    """ORRES / STRESC / STRESN of a stored answer (None: no record)."""
    item = test.item
    if test.option is not None:
        if not isinstance(value, list):
            return None
        flag = "Y" if test.option in value or str(test.option) in map(str, value) else "N"
        return {"ORRES": flag, "STRESC": flag, "STRESN": None}
    if value is None or value == "" or isinstance(value, list):
        return None
    if item.type == "yes_no":
        flag = "Y" if value else "N"
        return {"ORRES": flag, "STRESC": flag, "STRESN": None}
    if item.type == "single_choice":
        label = {str(code): text for code, text in item.choices}.get(str(value), str(value))
        numeric = number(value) if isinstance(value, int) else None
        return {"ORRES": ascii_text(label), "STRESC": ascii_text(value), "STRESN": numeric}
    if item.type in {"integer", "scale", "decimal", "calculated"}:
        text = odm._plain(value) if isinstance(value, Decimal | float | int) and not isinstance(value, bool) else str(value)
        return {"ORRES": ascii_text(text), "STRESC": ascii_text(text), "STRESN": number(value)}
    return {"ORRES": ascii_text(value), "STRESC": ascii_text(value), "STRESN": None}


def findings_datasets(spec: ExportSpec) -> list[tuple[str, str, str]]:
    """(dataset name, domain, CRF code) of the findings datasets, in the export's CRF order."""
    codes = selectors.export_crf_codes(spec)
    by_domain: dict[str, list[str]] = {}
    for code in codes:
        by_domain.setdefault(FINDINGS_DOMAINS.get(code, "QS"), []).append(code)
    datasets = []
    taken: set[str] = {"DM", "AE", "DS", "EX", "SV", "VS", "LB", "SC", "QS"}
    for domain in ("SC", "VS", "LB", "QS"):
        domain_codes = by_domain.get(domain, [])
        for code in domain_codes:
            if len(domain_codes) == 1 and domain != "QS":
                name = domain
            else:  # a split domain: the domain and two characters of the CRF code
                name = short_name(f"{domain}{ascii_text(code)[:2]}", taken, width=4)
                name = name if name.startswith(domain) else short_name(domain + "X", taken, width=4)
            datasets.append((name, domain, code))
    return datasets


def findings_write(spec: ExportSpec, name: str, domain: str, crf_code: str, subjects: dict[int, Subject],
                   visits: _Visits, progress: Progress, mask: Callable[[str], str]) -> Dataset:
    """One CRF's entries as a findings dataset."""
    versions = selectors.export_crf_versions(crf_code)
    title = versions[0].title if versions else crf_code
    label, _test = FINDINGS_LABELS[domain]
    # A split QS dataset is named after its CRF (the label has 40 characters: "QS - Cochin Hand Function Scale").
    dataset = Dataset(name, ascii_text(f"QS - {title}" if domain == "QS" else label, 40), findings_variables(domain), mask)
    plans = findings_plan(crf_code, versions, set(), spec.identifiers)
    p = domain
    grader = _LabGrader(spec, versions) if domain == "LB" else None
    sequence: dict[int, int] = {}
    pending = 0
    for entry in selectors.export_entries(spec, crf_code):
        subject = subjects.get(entry.participant_id)
        usubj = subject.usubjid if subject else usubjid(entry.trial_code, entry.subject)
        reference = subject.reference if subject else None
        visitnum = visits.by_id.get(entry.visit_id, visits.number.get(entry.visit_code, np.nan))
        common = {
            "STUDYID": ascii_text(entry.trial_code), "DOMAIN": domain, "USUBJID": usubj, f"{p}CAT": ascii_text(crf_code),
            "VISITNUM": visitnum, "VISIT": ascii_text(entry.visit_label), f"{p}DTC": iso(entry.visit_date),
            f"{p}DY": study_day(entry.visit_date, reference),
        }
        answers = entry.answers or {}
        grades = grader.grades(entry) if grader is not None else {}
        for test in plans.get(entry.crf_id, []):
            if test.group is None:
                sources = [(None, answers.get(test.item.name))]
            else:
                rows = answers.get(test.group) if isinstance(answers.get(test.group), list) else []
                sources = [(f"{test.group}-{index}", row.get(test.item.name)) for index, row in enumerate(rows, 1)]
            unit = ascii_text(test.item.unit)
            for group_id, value in sources:
                result = finding(test, value)
                if result is None:
                    continue
                seq = sequence[entry.participant_id] = sequence.get(entry.participant_id, 0) + 1
                dataset.add(
                    **common, **{
                        f"{p}SEQ": seq, f"{p}GRPID": ascii_text(group_id), f"{p}TESTCD": test.testcd, f"{p}TEST": test.test,
                        f"{p}SCAT": test.scat, f"{p}ORRES": result["ORRES"], f"{p}ORRESU": unit if result["STRESN"] is not None else "",
                        f"{p}STRESC": result["STRESC"], f"{p}STRESN": result["STRESN"],
                        f"{p}STRESU": unit if result["STRESN"] is not None else "",
                        **(_lb_grade(grades.get(test.item.name)) if grader is not None and test.group is None else {}),
                    },
                )
        pending += 1
        if pending >= selectors.CHUNK_SIZE:
            progress(pending)
            pending = 0
    if pending:
        progress(pending)
    return dataset


def _lb_grade(graded) -> dict:  # noqa: ANN001
    if graded is None:
        return {}
    return {
        "LBORNRLO": "" if graded.lln is None else odm._plain(graded.lln),
        "LBORNRHI": "" if graded.uln is None else odm._plain(graded.uln),
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
    if not spec.blinded:
        streams["allocations"] = selectors.export_allocations(spec)
    return streams


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """The zip: DM, AE, DS, EX, SV, then a findings dataset per CRF, each an .xpt file, and the manifest."""
    if spec.trial_id is None:
        raise ValueError("SDTM datasets describe one study: a pooled export is not offered in this format.")
    header = manifest.manifest_header(spec, format_code="xpt")
    files = []
    visits = _Visits(spec)
    mask = ascii_mask(spec)
    subject_datasets = _SubjectDatasets(spec, visits, mask)
    with tempfile.TemporaryDirectory(prefix="xpt-") as scratch, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=5) as archive:
        folder = Path(scratch)
        for participant, streams in odm.rows_by_participant(selectors.export_participants(spec), _subject_streams(spec)):
            subject_datasets.add(participant, streams)
            progress(1 + len(streams["visits"]) + len(streams["adverse_events"]))
        for dataset in (subject_datasets.dm, subject_datasets.ae, subject_datasets.ds, subject_datasets.ex, subject_datasets.sv):
            files.append(_dataset_zip(archive, folder, dataset))
        subjects = subject_datasets.subjects
        for name, domain, code in findings_datasets(spec):
            dataset = findings_write(spec, name, domain, code, subjects, visits, progress, mask)
            files.append(_dataset_zip(archive, folder, dataset))
        archive.writestr(manifest.MANIFEST_NAME, manifest.manifest_bytes(header, files))


def _dataset_zip(archive: zipfile.ZipFile, folder: Path, dataset: Dataset) -> dict:
    path = folder / f"{dataset.name.lower()}.xpt"
    write_xpt(dataset, path)
    return zip_file_member(archive, path, path.name, dataset.rows, dataset.label)

