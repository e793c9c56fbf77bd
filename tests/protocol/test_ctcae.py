"""CTCAE v5.0 (NCI, 27 Nov 2017) laboratory grades at the published band limits.

Each expectation is read off the CTCAE v5.0 table for the term (quoted in trials/protocol/ctcae.py):
a band ">3.0 - 5.0 x ULN" holds values above 3.0 and up to 5.0 x ULN, so a value AT a limit is in
the lower grade and the next representable value above it in the higher one.
"""

from decimal import Decimal as D

import pytest

from trials.protocol.ctcae import grade, indicator

ALT_ULN = D("40")  # a site's ALT range 0-40 U/L


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("40", 0),  # = ULN: normal
        ("41", 1),  # > ULN
        ("120", 1),  # 3.0 x ULN: still grade 1
        ("121", 2),  # > 3.0 x ULN
        ("200", 2),  # 5.0 x ULN
        ("201", 3),  # > 5.0 x ULN
        ("800", 3),  # 20.0 x ULN
        ("801", 4),  # > 20.0 x ULN
    ],
)
def test_alt_increased_with_a_normal_baseline(value, expected):
    result = grade("ALT", D(value), lln=None, uln=ALT_ULN)
    assert result.grade == expected
    assert result.term == ("Alanine aminotransferase increased" if expected else None)
    assert result.indicator == ("HIGH" if expected else "NORMAL")
    assert result.prompts_adverse_event is (expected >= 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90", 0),  # 1.5 x baseline 60: below the grade 1 band of an abnormal baseline
        ("91", 1),  # > 1.5 x baseline ("1.5 - 3.0 x baseline if baseline was abnormal")
        ("180", 1),  # 3.0 x baseline
        ("181", 2),
        ("301", 3),  # > 5.0 x baseline (not x ULN: 301 would be 7.5 x ULN either way)
        ("1201", 4),  # > 20.0 x baseline
    ],
)
def test_alt_increased_with_an_abnormal_baseline_uses_multiples_of_the_baseline(value, expected):
    assert grade("AST", D(value), lln=None, uln=ALT_ULN, baseline=D("60")).grade == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.0", 0), ("11.9", 1), ("10.0", 1), ("9.9", 2), ("8.0", 2), ("7.9", 3), ("4.0", 3)],
)
def test_anemia_bands_below_lln_in_g_dl(value, expected):
    # Anemia: 1 <LLN - 10.0 g/dL; 2 <10.0 - 8.0; 3 <8.0 g/dL (grade 4 is "life-threatening", not a value).
    result = grade("HGB", D(value), lln=D("12.0"), uln=D("16.0"))
    assert result.grade == expected
    assert result.indicator == ("LOW" if expected else "NORMAL")


def test_anemia_uses_the_female_or_male_lln_it_is_given():
    # 12.5 g/dL is normal against a female LLN of 12.0 and grade 1 against a male LLN of 13.0.
    assert grade("HGB", D("12.5"), lln=D("12.0"), uln=D("16.0")).grade == 0
    assert grade("HGB", D("12.5"), lln=D("13.0"), uln=D("17.0")).grade == 1


@pytest.mark.parametrize(
    ("test", "lln", "cases"),
    [
        # Neutrophil count decreased: <LLN - 1.5; <1.5 - 1.0; <1.0 - 0.5; <0.5 x 10e9/L.
        ("NEUT", "1.8", [("1.8", 0), ("1.79", 1), ("1.5", 1), ("1.49", 2), ("1.0", 2), ("0.99", 3), ("0.5", 3), ("0.49", 4)]),
        # Platelet count decreased: <LLN - 75.0; <75.0 - 50.0; <50.0 - 25.0; <25.0 x 10e9/L.
        ("PLAT", "150", [("150", 0), ("149", 1), ("75", 1), ("74", 2), ("50", 2), ("49", 3), ("25", 3), ("24", 4)]),
        # White blood cell decreased: <LLN - 3.0; <3.0 - 2.0; <2.0 - 1.0; <1.0 x 10e9/L.
        ("WBC", "4.0", [("3.0", 1), ("2.99", 2), ("2.0", 2), ("1.99", 3), ("0.99", 4)]),
        # Lymphocyte count decreased: <LLN - 0.8; <0.8 - 0.5; <0.5 - 0.2; <0.2 x 10e9/L.
        ("LYM", "1.0", [("0.8", 1), ("0.79", 2), ("0.5", 2), ("0.49", 3), ("0.19", 4)]),
    ],
)
def test_count_decreases_at_their_band_limits(test, lln, cases):
    for value, expected in cases:
        assert grade(test, D(value), lln=D(lln), uln=D("400")).grade == expected, (test, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    # Blood bilirubin increased (ULN 21 µmol/L): >ULN - 1.5; >1.5 - 3.0; >3.0 - 10.0; >10.0 x ULN.
    [("21", 0), ("21.1", 1), ("31.5", 1), ("31.6", 2), ("63", 2), ("63.1", 3), ("210", 3), ("210.1", 4)],
)
def test_bilirubin_increased(value, expected):
    assert grade("BILI", D(value), lln=D("3"), uln=D("21")).grade == expected


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [
        # Creatinine increased (ULN 100 µmol/L): >ULN - 1.5; >1.5 - 3.0; >3.0 - 6.0; >6.0 x ULN.
        ("150", None, 1), ("151", None, 2), ("300", None, 2), ("301", None, 3), ("600", None, 3), ("601", None, 4),
        # ... or >1.5 - 3.0 x baseline (grade 2), >3.0 x baseline (grade 3), whichever is higher.
        ("120", "70", 2),  # 1.2 x ULN but 1.71 x baseline
        ("220", "70", 3),  # 2.2 x ULN but 3.14 x baseline
    ],
)
def test_creatinine_increased_by_uln_or_baseline(value, baseline, expected):
    result = grade("CREAT", D(value), lln=D("50"), uln=D("100"), baseline=D(baseline) if baseline else None)
    assert result.grade == expected


def test_alkaline_phosphatase_bands():
    # >ULN - 2.5 x ULN; >2.5 - 5.0; >5.0 - 20.0; >20.0 (ULN 120 U/L).
    cases = [("300", 1), ("301", 2), ("600", 2), ("601", 3), ("2400", 3), ("2401", 4)]
    assert [grade("ALP", D(v), lln=D("40"), uln=D("120")).grade for v, _ in cases] == [g for _, g in cases]


def test_indicator_is_lbnrind():
    assert indicator(D("3"), D("4"), D("10")) == "LOW"
    assert indicator(D("4"), D("4"), D("10")) == "NORMAL"
    assert indicator(D("10"), D("4"), D("10")) == "NORMAL"
    assert indicator(D("10.1"), D("4"), D("10")) == "HIGH"
    assert indicator(D("10.1"), None, None) is None
