"""Derived RA and SSc endpoints of issue 15, against their published definitions and tables.

Expected values come from the publications (tables, cut-offs, definitions), worked by hand; none is
computed by the code under test.
"""

from decimal import Decimal

import pytest

from trials.protocol.scores import compute, eular_response_level

# --- EULAR response: van Gestel 1996 (Arthritis Rheum 39:34-40), DAS28 thresholds of van Gestel 1998 /
# Fransen & van Riel 2005. The published table, one row per cell, with values on both sides of each limit.
#   present DAS28 \ improvement    > 1.2       > 0.6 to <= 1.2    <= 0.6
#   <= 3.2                          good        moderate           none
#   > 3.2 to <= 5.1                 moderate    moderate           none
#   > 5.1                           moderate    none               none


@pytest.mark.parametrize(
    ("baseline", "current", "expected"),
    [
        # Row DAS28 <= 3.2
        ("4.41", "3.20", 2),  # improvement 1.21 (> 1.2), present 3.20 (<= 3.2): good
        ("4.40", "3.20", 1),  # improvement 1.20 (not > 1.2, > 0.6): moderate
        ("3.81", "3.20", 1),  # improvement 0.61: moderate
        ("3.80", "3.20", 0),  # improvement 0.60 (<= 0.6): none
        # Row 3.2 < DAS28 <= 5.1
        ("4.42", "3.21", 1),  # improvement 1.21, present 3.21 (> 3.2): moderate, not good
        ("6.31", "5.10", 1),  # improvement 1.21, present 5.10: moderate
        ("5.71", "5.10", 1),  # improvement 0.61, present 5.10 (<= 5.1): moderate
        ("5.70", "5.10", 0),  # improvement 0.60: none
        # Row DAS28 > 5.1
        ("6.32", "5.11", 1),  # improvement 1.21, present 5.11 (> 5.1): moderate
        ("6.31", "5.11", 0),  # improvement 1.20, present 5.11: none
        ("5.72", "5.11", 0),  # improvement 0.61, present 5.11: none
        # Worse than baseline
        ("3.00", "4.00", 0),
    ],
)
def test_eular_response_follows_the_published_table_at_its_limits(baseline, current, expected):
    assert eular_response_level(Decimal(baseline), Decimal(current)) == expected
    result = compute("eular_response", {"now": current, "then": baseline}, {"das28": "now", "das28_baseline": "then"}, {})
    assert result.value == expected
    assert result.category == {2: "good response", 1: "moderate response", 0: "no response"}[expected]


def test_eular_response_reads_the_baseline_crf_and_says_what_is_missing():
    inputs = {"das28": "visit.DAS28.das28_esr", "das28_baseline": "baseline.DAS28.das28_esr"}
    crfs = {"visit": {"DAS28": {"das28_esr": 3.1}}, "baseline": {"DAS28": {"das28_esr": 5.6}}}
    assert compute("eular_response", {}, inputs, {"crfs": crfs}).value == 2  # 2.5 better, at 3.1: good
    no_baseline = compute("eular_response", {}, inputs, {"crfs": {"visit": crfs["visit"]}})
    assert no_baseline.value is None
    assert no_baseline.missing == ("baseline.DAS28.das28_esr",)
    assert "baseline DAS28" in no_baseline.note


# --- CDAI and SDAI: Aletaha & Smolen 2005 (Clin Exp Rheumatol 23 Suppl 39:S100-8).
# CDAI = TJC28 + SJC28 + PtGA (0-10 cm) + EGA (0-10 cm); remission <= 2.8, low <= 10, moderate <= 22.
# SDAI = CDAI + CRP (mg/dL); remission <= 3.3, low <= 11, moderate <= 26.

CDAI_INPUTS = {"tjc28": "t", "sjc28": "s", "patient_global_vas": "p", "physician_global_vas": "e"}


def _cdai(tender, swollen, patient_mm, evaluator_mm):
    return compute("cdai", {"t": tender, "s": swollen, "p": patient_mm, "e": evaluator_mm}, CDAI_INPUTS, {})


def test_cdai_is_the_sum_of_counts_and_globals_in_cm():
    # 4 tender + 3 swollen + 5.0 cm + 4.0 cm = 16.0 (by hand), moderate (> 10, <= 22).
    result = _cdai(4, 3, 50, 40)
    assert (result.value, result.category) == (Decimal("16.0"), "moderate")


@pytest.mark.parametrize(
    ("tender", "swollen", "patient_mm", "evaluator_mm", "category"),
    [
        (1, 0, 10, 8, "remission"),  # 1 + 0 + 1.0 + 0.8 = 2.8
        (1, 0, 10, 9, "low"),  # 2.9
        (5, 3, 10, 10, "low"),  # 10.0
        (5, 3, 10, 11, "moderate"),  # 10.1
        (10, 8, 20, 20, "moderate"),  # 22.0
        (10, 8, 20, 21, "high"),  # 22.1
        (28, 28, 100, 100, "high"),  # 76, the maximum
    ],
)
def test_cdai_categories_at_the_published_cutoffs(tender, swollen, patient_mm, evaluator_mm, category):
    assert _cdai(tender, swollen, patient_mm, evaluator_mm).category == category


@pytest.mark.parametrize(
    ("crp_mg_l", "value", "category"),
    [
        ("3.0", Decimal("3.30"), "remission"),  # CDAI 3.0 (1 + 0 + 1.0 + 1.0) + 0.30 mg/dL = 3.3
        ("3.1", Decimal("3.31"), "low"),
        ("80.0", Decimal("11.00"), "low"),  # 3.0 + 8.0
        ("80.1", Decimal("11.01"), "moderate"),
        ("230.0", Decimal("26.00"), "moderate"),  # 3.0 + 23.0
        ("230.1", Decimal("26.01"), "high"),
    ],
)
def test_sdai_adds_the_crp_in_mg_dl_and_uses_its_own_cutoffs(crp_mg_l, value, category):
    answers = {"t": 1, "s": 0, "p": 10, "e": 10, "c": crp_mg_l}
    result = compute("sdai", answers, {**CDAI_INPUTS, "crp_mg_l": "c"}, {})
    assert (result.value, result.category) == (value, category)


def test_cdai_and_sdai_name_what_is_missing():
    result = _cdai(4, None, 50, 40)
    assert result.value is None and result.missing == ("s",)
    sdai = compute("sdai", {"t": 4, "s": 3, "p": 50, "e": 40}, {**CDAI_INPUTS, "crp_mg_l": "c"}, {})
    assert sdai.value is None and sdai.missing == ("c",)


# --- ACR20/50/70 through the CRF: Felson 1995 (Arthritis Rheum 38:727-35): >= x % improvement in the
# tender AND swollen counts AND in >= 3 of pain, patient global, physician global, HAQ-DI, APR.

ACR_MEASURES = {
    "tjc28": "DAS28", "sjc28": "DAS28", "pain_vas": "PAIN_VAS", "patient_global_vas": "DAS28",
    "physician_global_vas": "PHYS_GLOBAL", "haq_di": "HAQDI", "esr_mm_h": "DAS28", "crp_mg_l": "DAS28",
}
ACR_INPUTS = {
    name: f"{namespace}.{crf}.{measure}"
    for measure, crf in ACR_MEASURES.items()
    for name, namespace in ((measure, "visit"), (f"{measure}_baseline", "baseline"))
}


def _crfs(values: dict) -> dict:
    out: dict = {}
    for measure, value in values.items():
        out.setdefault(ACR_MEASURES[measure], {})[measure] = value
    return out


def _acr(level, baseline, current):
    context = {"crfs": {"baseline": _crfs(baseline), "visit": _crfs(current)}}
    return compute(f"acr{level}", {}, ACR_INPUTS, context)


BASELINE = {"tjc28": 10, "sjc28": 10, "pain_vas": 60, "patient_global_vas": 60, "physician_global_vas": 60,
            "haq_di": 2.0, "esr_mm_h": 50}


def test_acr_levels_from_the_baseline_crfs_follow_felsons_definition():
    # Counts 10 -> 3 (70 %); pain 60 -> 18 (70 %), patient global 60 -> 30 (50 %), physician 60 -> 48 (20 %),
    # HAQ-DI 2.0 -> 1.9 (5 %), ESR 50 -> 40 (20 %). ACR20: counts and pain, patient, physician, ESR (4 >= 3);
    # ACR50: counts and pain, patient only (2 < 3): not met; ACR70: not met.
    current = {"tjc28": 3, "sjc28": 3, "pain_vas": 18, "patient_global_vas": 30, "physician_global_vas": 48,
               "haq_di": 1.9, "esr_mm_h": 40}
    assert [_acr(level, BASELINE, current).value for level in (20, 50, 70)] == [1, 0, 0]
    assert _acr(20, BASELINE, current).category == "ACR20 met"


def test_acr_at_exactly_the_threshold_is_met_and_just_below_is_not():
    # 10 -> 8 is exactly 20 % (met, "at least 20 %"); 10 -> 9 is 10 % (not met).
    exact = {"tjc28": 8, "sjc28": 8, "pain_vas": 48, "patient_global_vas": 48, "physician_global_vas": 48,
             "haq_di": 2.0, "esr_mm_h": 50}
    assert _acr(20, BASELINE, exact).value == 1
    assert _acr(20, BASELINE, {**exact, "sjc28": 9}).value == 0


def test_acr_without_a_baseline_is_not_calculated():
    current = {"tjc28": 3, "sjc28": 3}
    result = compute("acr20", {}, ACR_INPUTS, {"crfs": {"visit": _crfs(current)}})
    assert result.value is None
    assert "missing at baseline" in result.note


# --- MHISS: Mouthon 2007 (Ann Rheum Dis 66:1651-5): 12 items, 5 levels 0-4, total 0-48.

MHISS = {f"mhiss_{n:02d}": 0 for n in range(1, 13)}


def test_mhiss_total_is_the_sum_of_the_twelve_items_0_to_48():
    assert compute("mhiss_total", MHISS, {}, {}).value == 0
    assert compute("mhiss_total", {name: 4 for name in MHISS}, {}, {}).value == 48
    answers = {**MHISS, "mhiss_01": 3, "mhiss_06": 2, "mhiss_12": 4}
    assert compute("mhiss_total", answers, {}, {}).value == 9


def test_mhiss_total_needs_every_item_and_refuses_a_5():
    missing = compute("mhiss_total", {**MHISS, "mhiss_07": None}, {}, {})
    assert missing.value is None and missing.missing == ("mhiss_07",)
    too_high = compute("mhiss_total", {**MHISS, "mhiss_03": 5}, {}, {})
    assert too_high.value is None and "outside 0-4" in too_high.note
