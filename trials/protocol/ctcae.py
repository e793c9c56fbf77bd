"""CTCAE v5.0 grading of laboratory values against a site's normal range.

Source: National Cancer Institute, Common Terminology Criteria for Adverse Events (CTCAE) v5.0,
published 27 November 2017 (U.S. Department of Health and Human Services, NIH/NCI). Each test below
quotes the CTCAE term and its grade limits; only the limits that are laboratory values are graded
(the clinical parts of a grade, e.g. "transfusion indicated" or "life-threatening", need the
investigator and stay on the adverse event form).

Reading the limits: CTCAE writes a grade as a band, ">3.0 - 5.0 x ULN" (above 3.0 and up to 5.0
times ULN) or "<10.0 - 8.0 g/dL" (below 10.0 and down to 8.0). A value at a limit belongs to the
lower grade: ALT exactly 5.0 x ULN is grade 2, haemoglobin exactly 8.0 g/dL is grade 2.

Pure Python, no Django: the CRF page, the save (the adverse-event prompt) and the exports call it
with the range a selector found for the participant's site, sex, age and sample date.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

CTCAE_VERSION = "5.0"
CTCAE_SOURCE = "NCI Common Terminology Criteria for Adverse Events (CTCAE) v5.0, 27 Nov 2017"

LOW, NORMAL, HIGH = "LOW", "NORMAL", "HIGH"  # CDISC LBNRIND terms


@dataclass(frozen=True)
class LabTest:
    """A laboratory test the EDC grades: its CDISC code, name, the unit its limits are written in,
    and its CTCAE terms for a low and a high value (None where CTCAE grades no lab value)."""

    code: str
    name: str
    unit: str
    low_term: str | None
    high_term: str | None


@dataclass(frozen=True)
class LabGrade:
    """A graded value: LBNRIND (LOW/NORMAL/HIGH against the range), the CTCAE term and grade
    (0 = within the range or not gradable as a lab value, 1-4), and the limits used."""

    test: str
    indicator: str | None
    grade: int | None
    term: str | None
    lln: Decimal | None
    uln: Decimal | None

    @property
    def prompts_adverse_event(self) -> bool:
        """A grade 3 or 4 abnormality asks the coordinator whether an adverse event is recorded."""
        return self.grade is not None and self.grade >= 3


LAB_TESTS: dict[str, LabTest] = {
    test.code: test
    for test in (
        LabTest("HGB", "Haemoglobin", "g/dL", "Anemia", "Hemoglobin increased"),
        LabTest("WBC", "White blood cells", "10^9/L", "White blood cell decreased", "Leukocytosis"),
        LabTest("NEUT", "Neutrophils", "10^9/L", "Neutrophil count decreased", None),
        LabTest("LYM", "Lymphocytes", "10^9/L", "Lymphocyte count decreased", "Lymphocyte count increased"),
        LabTest("PLAT", "Platelets", "10^9/L", "Platelet count decreased", None),
        LabTest("CREAT", "Creatinine", "µmol/L", None, "Creatinine increased"),
        LabTest("ALT", "Alanine aminotransferase", "U/L", None, "Alanine aminotransferase increased"),
        LabTest("AST", "Aspartate aminotransferase", "U/L", None, "Aspartate aminotransferase increased"),
        LabTest("ALP", "Alkaline phosphatase", "U/L", None, "Alkaline phosphatase increased"),
        LabTest("BILI", "Total bilirubin", "µmol/L", None, "Blood bilirubin increased"),
    )
}

D = Decimal

# Decreases graded by absolute limits in the test's unit, grade 1 starting below LLN:
# grade -> the value must be below this to reach the grade.
_LOW_LIMITS: dict[str, dict[int, Decimal]] = {
    # Anemia: 1 <LLN - 10.0 g/dL; 2 <10.0 - 8.0 g/dL; 3 <8.0 g/dL (4 and 5 are clinical).
    "HGB": {2: D("10.0"), 3: D("8.0")},
    # White blood cell decreased: 1 <LLN - 3.0; 2 <3.0 - 2.0; 3 <2.0 - 1.0; 4 <1.0 x 10e9/L.
    "WBC": {2: D("3.0"), 3: D("2.0"), 4: D("1.0")},
    # Neutrophil count decreased: 1 <LLN - 1.5; 2 <1.5 - 1.0; 3 <1.0 - 0.5; 4 <0.5 x 10e9/L.
    "NEUT": {2: D("1.5"), 3: D("1.0"), 4: D("0.5")},
    # Lymphocyte count decreased: 1 <LLN - 0.8; 2 <0.8 - 0.5; 3 <0.5 - 0.2; 4 <0.2 x 10e9/L.
    "LYM": {2: D("0.8"), 3: D("0.5"), 4: D("0.2")},
    # Platelet count decreased: 1 <LLN - 75.0; 2 <75.0 - 50.0; 3 <50.0 - 25.0; 4 <25.0 x 10e9/L.
    "PLAT": {2: D("75.0"), 3: D("50.0"), 4: D("25.0")},
}

# Increases graded by multiples of ULN (baseline normal) or of the baseline value (baseline above
# ULN): grade -> the value must be above this multiple to reach the grade; "start" is where grade 1
# begins when the baseline was abnormal.
_HIGH_MULTIPLES: dict[str, dict] = {
    # ALT / AST increased: 1 >ULN - 3.0 x ULN if baseline was normal, 1.5 - 3.0 x baseline if abnormal;
    # 2 >3.0 - 5.0; 3 >5.0 - 20.0; 4 >20.0 (x ULN, or x baseline if baseline was abnormal).
    "ALT": {"start": D("1.5"), 2: D("3.0"), 3: D("5.0"), 4: D("20.0")},
    "AST": {"start": D("1.5"), 2: D("3.0"), 3: D("5.0"), 4: D("20.0")},
    # Alkaline phosphatase increased: 1 >ULN - 2.5 x ULN if normal, 2.0 - 2.5 x baseline if abnormal;
    # 2 >2.5 - 5.0; 3 >5.0 - 20.0; 4 >20.0.
    "ALP": {"start": D("2.0"), 2: D("2.5"), 3: D("5.0"), 4: D("20.0")},
    # Blood bilirubin increased: 1 >ULN - 1.5 x ULN if normal, >1.0 - 1.5 x baseline if abnormal;
    # 2 >1.5 - 3.0; 3 >3.0 - 10.0; 4 >10.0.
    "BILI": {"start": D("1.0"), 2: D("1.5"), 3: D("3.0"), 4: D("10.0")},
}

# Creatinine increased: 1 >ULN - 1.5 x ULN; 2 >1.5 - 3.0 x baseline, >1.5 - 3.0 x ULN;
# 3 >3.0 x baseline, >3.0 - 6.0 x ULN; 4 >6.0 x ULN. The higher of the two readings applies.
_CREATININE_ULN = {2: D("1.5"), 3: D("3.0"), 4: D("6.0")}
_CREATININE_BASELINE = {2: D("1.5"), 3: D("3.0")}

# Increases graded by absolute limits or by the rise above ULN.
# Hemoglobin increased: increase in Hgb above ULN (or above baseline if baseline is above ULN):
# 1 >0 - 2 g/dL; 2 >2 - 4 g/dL; 3 >4 g/dL.
_HGB_RISE = {1: D("0"), 2: D("2"), 3: D("4")}
# Leukocytosis: 3 >100,000/mm3 (> 100 x 10e9/L); no lower grade is a lab value.
# Lymphocyte count increased: 2 >4000/mm3 - 20,000/mm3; 3 >20,000/mm3 (x 10e9/L: 4.0 and 20.0).
_ABSOLUTE_HIGH = {"WBC": {3: D("100")}, "LYM": {2: D("4.0"), 3: D("20.0")}}


def _highest(limits: dict[int, Decimal], passes) -> int:  # noqa: ANN001
    reached = [grade for grade, limit in limits.items() if passes(limit)]
    return max(reached, default=0)


def indicator(value: Decimal, lln: Decimal | None, uln: Decimal | None) -> str | None:
    """LBNRIND: LOW below the lower limit, HIGH above the upper, NORMAL between (None without a range)."""
    if lln is None and uln is None:
        return None
    if lln is not None and value < lln:
        return LOW
    if uln is not None and value > uln:
        return HIGH
    return NORMAL


def grade(
    test: str, value: Decimal, *, lln: Decimal | None, uln: Decimal | None, baseline: Decimal | None = None
) -> LabGrade:
    """The CTCAE v5.0 grade of one result against the site's range (and the participant's baseline,
    for the tests whose grades CTCAE relates to an abnormal baseline)."""
    spec = LAB_TESTS[test]
    flag = indicator(value, lln, uln)
    if flag == LOW and spec.low_term:
        limits = _LOW_LIMITS[test]
        level = max(1, _highest(limits, lambda limit: value < limit))
        return LabGrade(test, flag, level, spec.low_term, lln, uln)
    if flag == HIGH and spec.high_term:
        return LabGrade(test, flag, _high_grade(test, value, uln, baseline), spec.high_term, lln, uln)
    return LabGrade(test, flag, 0 if flag is not None else None, None, lln, uln)


def _high_grade(test: str, value: Decimal, uln: Decimal, baseline: Decimal | None) -> int:
    abnormal_baseline = baseline is not None and baseline > uln
    if test in _HIGH_MULTIPLES:
        limits = _HIGH_MULTIPLES[test]
        reference = baseline if abnormal_baseline else uln
        if abnormal_baseline and not value > limits["start"] * reference:
            # Below the grade 1 band of an abnormal baseline (e.g. ALT < 1.5 x baseline): not graded.
            return 0
        above = _highest({k: v for k, v in limits.items() if k != "start"}, lambda m: value > m * reference)
        return max(1, above)
    if test == "CREAT":
        by_uln = max(1, _highest(_CREATININE_ULN, lambda m: value > m * uln))
        by_baseline = _highest(_CREATININE_BASELINE, lambda m: value > m * baseline) if baseline else 0
        return max(by_uln, by_baseline)
    if test == "HGB":
        reference = baseline if abnormal_baseline else uln
        return _highest(_HGB_RISE, lambda rise: value - reference > rise)
    return _highest(_ABSOLUTE_HIGH[test], lambda limit: value > limit)
