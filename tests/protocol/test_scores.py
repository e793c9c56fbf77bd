"""The score library: hand-checked results, published boundaries, missing items and the registry."""

import datetime as dt
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
import yaml

from trials.protocol import scores
from trials.protocol.scores import (
    COCHIN_ITEMS,
    DAS28_JOINTS,
    HAQ_CATEGORIES,
    MRSS_AREAS,
    SCORE_LIBRARY_VERSION,
    SCORES,
    ScoreResult,
    acr_response,
    compute,
    das28_category,
    score_names,
)

CRFS = Path(__file__).resolve().parents[2] / "seeds" / "crfs"


def crf_fields(code: str) -> set[str]:
    """The field names of a seed CRF, repeating-group rows included."""
    definition = yaml.safe_load((CRFS / f"{code}.yaml").read_text(encoding="utf-8"))
    names: set[str] = set()

    def visit(fields: list[dict]) -> None:
        for field in fields:
            names.add(field["name"])
            visit(field.get("fields") or [])

    visit(definition["fields"])
    return names


def calculations() -> list[tuple[str, str, dict]]:
    """(CRF file, field, calculation) for every calculated field of the seed CRFs."""
    found = []

    def visit(path: Path, fields: list[dict]) -> None:
        for field in fields:
            if field.get("calculation"):
                found.append((path.name, field["name"], field["calculation"]))
            visit(path, field.get("fields") or [])

    for path in sorted(CRFS.glob("*.yaml")):
        visit(path, yaml.safe_load(path.read_text(encoding="utf-8"))["fields"])
    return found


def run(name: str, answers: dict, inputs: dict | None = None, context: dict | None = None) -> ScoreResult:
    return compute(name, answers, inputs or {}, context or {})


# --- Registry ---------------------------------------------------------------------------------------


def test_every_score_named_in_the_seed_crfs_is_registered():
    named = {calc["score"] for _, _, calc in calculations() if "score" in calc}
    assert named  # the seed CRFs do use scores
    assert named <= score_names(), f"not in the score library: {sorted(named - score_names())}"


def test_every_seed_crf_score_input_is_an_argument_of_its_score():
    for crf, field, calc in calculations():
        if "score" not in calc:
            continue
        declared = SCORES[calc["score"]].inputs
        given = set(calc.get("inputs") or {})
        if declared is None:
            assert not given, f"{crf} {field}: {calc['score']} takes no inputs"
        else:
            assert given <= set(declared), f"{crf} {field}: unknown inputs {given - set(declared)}"


def test_the_field_names_a_score_reads_are_those_of_the_seed_crfs():
    assert set(COCHIN_ITEMS) <= crf_fields("cochin")
    assert set(MRSS_AREAS) <= crf_fields("mrss")
    haq = {
        f"haq_{category}_{suffix}"
        for category, size in HAQ_CATEGORIES
        for suffix in [*map(str, range(1, size + 1)), "aid", "help"]
    }
    assert len(haq) == 20 + 16
    assert haq <= crf_fields("haqdi")
    das28 = crf_fields("das28")
    assert {f"{kind}_{joint}" for kind in ("tender", "swollen") for joint in DAS28_JOINTS} <= das28
    assert {"esr_mm_h", "crp_mg_l", "patient_global_vas"} <= das28
    # acr_response reads the measures by these CRF field names.
    assert {"tjc28", "sjc28", "haq_di"} <= das28 | crf_fields("haqdi")
    assert "pain_vas" in crf_fields("pain_vas")
    assert "physician_global_vas" in crf_fields("phys_global")


def test_registry_lists_each_score_with_version_source_and_description():
    expected = {
        "bmi",
        "age_years",
        "vas",
        "cochin_total",
        "haq_di",
        "tjc28",
        "sjc28",
        "das28_esr",
        "das28_crp",
        "mrss_total",
        "raynaud_condition_score",
        # Issue 15: derived RA endpoints (the ACR levels read baseline CRFs through their inputs) and MHISS.
        "acr20",
        "acr50",
        "acr70",
        "eular_response",
        "cdai",
        "sdai",
        "mhiss_total",
    }
    assert score_names() == expected
    assert "acr_response" not in SCORES  # the two-visit function; the acr<level> scores wrap it
    for name, definition in SCORES.items():
        assert definition.name == name
        assert definition.version and definition.source and definition.description
    assert SCORES["bmi"].inputs == ("weight_kg", "height_cm")
    assert SCORES["cochin_total"].inputs is None
    assert SCORE_LIBRARY_VERSION == "1.1.0"


def test_unknown_score_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="unknown score 'bmi_z'"):
        run("bmi_z", {})


def test_an_input_the_score_does_not_take_is_refused():
    with pytest.raises(ValueError, match="unknown: weight"):
        run("bmi", {}, {"weight": "weight_kg"})
    with pytest.raises(ValueError, match="takes no inputs"):
        run("cochin_total", {}, {"items": "cochin_01"})


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        scores.score("bmi", source="x")(lambda weight_kg, height_cm: ScoreResult(None))


def test_results_do_not_depend_on_the_callers_decimal_precision():
    with localcontext() as ctx:
        ctx.prec = 3
        assert scores.bmi(weight_kg=70, height_cm=175).value == Decimal("22.9")


# --- BMI --------------------------------------------------------------------------------------------

BMI_INPUTS = {"weight_kg": "weight_kg", "height_cm": "height_cm"}


def test_bmi_normal_values():
    # 70 / 1.75² = 70 / 3.0625 = 22.857… -> 22.9
    assert run("bmi", {"weight_kg": 70, "height_cm": 175}, BMI_INPUTS) == ScoreResult(Decimal("22.9"))
    # 58.5 / 1.62² = 58.5 / 2.6244 = 22.290… -> 22.3, from text and Decimal as the engine may pass them
    assert run("bmi", {"weight_kg": "58.5", "height_cm": Decimal(162)}, BMI_INPUTS).value == Decimal("22.3")


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        ("89.8", Decimal("22.5")),  # 89.8 / 2.00² = 22.45 exactly -> 22.5 half-up (banker's would give 22.4)
        (89.8, Decimal("22.5")),  # the same as a float: 89.8 is 89.7999… in binary, must not become 22.4
        ("90.2", Decimal("22.6")),  # 90.2 / 4 = 22.55 -> 22.6
        ("89.78", Decimal("22.4")),  # 89.78 / 4 = 22.445 -> 22.4
    ],
)
def test_bmi_rounds_half_up_to_one_decimal(weight, expected):
    assert run("bmi", {"weight_kg": weight, "height_cm": 200}, BMI_INPUTS).value == expected


def test_bmi_reads_the_fields_the_crf_maps_and_reports_them_missing():
    result = run("bmi", {"body_weight": 80}, {"weight_kg": "body_weight", "height_cm": "standing_height"})
    assert result.value is None
    assert result.missing == ("standing_height",)
    assert result.note == "BMI not calculated: the height is missing"
    both = run("bmi", {"weight_kg": None, "height_cm": ""}, BMI_INPUTS)
    assert both.missing == ("weight_kg", "height_cm")
    assert both.note == "BMI not calculated: the weight and the height are missing"


def test_bmi_with_unusable_values_has_no_value_and_says_why():
    assert run("bmi", {"weight_kg": "abc", "height_cm": 175}, BMI_INPUTS) == ScoreResult(
        None, note="weight_kg: 'abc' is not a number"
    )
    assert run("bmi", {"weight_kg": True, "height_cm": 175}, BMI_INPUTS).note == "weight_kg: True is not a number"
    assert run("bmi", {"weight_kg": 70, "height_cm": 0}, BMI_INPUTS).note == "BMI needs a weight and a height above 0"
    assert run("bmi", {"weight_kg": float("nan"), "height_cm": 175}, BMI_INPUTS).value is None


# --- Age --------------------------------------------------------------------------------------------

AGE_INPUTS = {"birth_date": "date_of_birth", "on_date": "visit_date"}


@pytest.mark.parametrize(
    ("born", "visit", "expected"),
    [
        ("1980-05-02", "2024-05-01", 43),  # the day before the 44th birthday
        ("1980-05-02", "2024-05-02", 44),  # on the birthday
        ("2000-02-29", "2023-02-28", 22),  # a 29 February birthday is reached on 1 March in a common year
        ("2000-02-29", "2023-03-01", 23),
        ("2000-02-29", "2024-02-29", 24),
        ("2024-01-10", "2024-01-10", 0),  # born on the visit date
    ],
)
def test_age_is_completed_years_on_the_visit_date(born, visit, expected):
    # The visit date is a context name, not an answer of the CRF (demog.yaml).
    assert run("age_years", {"date_of_birth": born}, AGE_INPUTS, {"visit_date": visit}).value == expected


def test_age_accepts_date_and_datetime_objects():
    born = dt.date(1990, 7, 15)
    assert scores.age_years(birth_date=born, on_date=dt.date(2025, 7, 14)).value == 34
    assert scores.age_years(birth_date=born, on_date=dt.datetime(2025, 7, 15, 9, 30, tzinfo=dt.UTC)).value == 35


def test_age_with_a_visit_before_birth_or_a_missing_date_has_no_value():
    before = run("age_years", {"date_of_birth": "2024-05-02"}, AGE_INPUTS, {"visit_date": "2024-05-01"})
    assert before.value is None
    assert before.note == "Age not calculated: the date 2024-05-01 is before the date of birth 2024-05-02"
    no_visit = run("age_years", {"date_of_birth": "1980-05-02"}, AGE_INPUTS, {})
    assert no_visit.missing == ("visit_date",)
    assert no_visit.note == "Age not calculated: the date is missing"
    assert run("age_years", {}, AGE_INPUTS, {"visit_date": "2024-05-01"}).missing == ("date_of_birth",)
    assert run("age_years", {"date_of_birth": "abc"}, AGE_INPUTS, {"visit_date": "2024-05-01"}) == ScoreResult(
        None, note="birth_date: 'abc' is not a date"
    )


# --- VAS and Raynaud Condition Score ---------------------------------------------------------------


@pytest.mark.parametrize(("entered", "expected"), [(0, 0), (100, 100), ("55", 55), ("42.5", Decimal("42.5"))])
def test_vas_passes_the_reading_through(entered, expected):
    assert run("vas", {"pain_vas": entered}, {"value": "pain_vas"}).value == expected


def test_vas_out_of_range_missing_or_not_a_number():
    assert run("vas", {"pain_vas": 101}, {"value": "pain_vas"}) == ScoreResult(None, note="VAS: 101 is outside 0-100")
    assert run("vas", {"pain_vas": -1}, {"value": "pain_vas"}).value is None
    assert run("vas", {}, {"value": "pain_vas"}).missing == ("pain_vas",)
    assert run("vas", {"pain_vas": "abc"}, {"value": "pain_vas"}).note == "VAS: 'abc' is not a number"


def test_raynaud_condition_score_passes_0_to_10_through():
    inputs = {"value": "raynaud_condition_score"}
    assert run("raynaud_condition_score", {"raynaud_condition_score": 0}, inputs).value == 0
    assert run("raynaud_condition_score", {"raynaud_condition_score": 10}, inputs).value == 10
    assert run("raynaud_condition_score", {"raynaud_condition_score": "7"}, inputs).value == 7
    too_high = run("raynaud_condition_score", {"raynaud_condition_score": 11}, inputs)
    assert too_high == ScoreResult(None, note="Raynaud Condition Score: 11 is outside 0-10")
    assert run("raynaud_condition_score", {}, inputs).missing == ("raynaud_condition_score",)


# --- Cochin Hand Function Scale --------------------------------------------------------------------


def cochin(*values) -> dict:
    return dict(zip(COCHIN_ITEMS, values, strict=True))


def test_cochin_total_is_the_sum_of_18_items():
    # (0+1+2+3+4+5) * 3 = 45
    assert run("cochin_total", cochin(*[0, 1, 2, 3, 4, 5] * 3)) == ScoreResult(45)
    # codes as text, as a form may post them: 2 * 18 = 36
    assert run("cochin_total", cochin(*["2"] * 18)).value == 36


def test_cochin_total_boundaries():
    assert run("cochin_total", cochin(*[0] * 18)).value == 0
    assert run("cochin_total", cochin(*[5] * 18)).value == 90


def test_cochin_total_needs_every_item():
    answers = cochin(*[1] * 18) | {"cochin_07": None}
    del answers["cochin_18"]
    result = run("cochin_total", answers)
    assert result.value is None
    assert result.missing == ("cochin_07", "cochin_18")
    assert result.note == "The Cochin total needs all 18 items; 2 are missing"


@pytest.mark.parametrize(
    ("bad", "note"),
    [
        ("abc", "cochin_03: 'abc' is not a number"),
        (6, "cochin_03: 6 is outside 0-5"),
        ("2.5", "cochin_03: 2.5 is not one of the answers 0-5"),
    ],
)
def test_cochin_total_with_an_unusable_answer(bad, note):
    assert run("cochin_total", cochin(*[1] * 18) | {"cochin_03": bad}) == ScoreResult(None, note=note)


# --- HAQ-DI -----------------------------------------------------------------------------------------


def haq(**by_category) -> dict:
    """HAQ answers: haq(dressing=(1, 0), ...) -> {"haq_dressing_1": 1, "haq_dressing_2": 0, ...}."""
    return {
        f"haq_{category}_{number}": value
        for category, values in by_category.items()
        for number, value in enumerate(values, start=1)
    }


# Category scores: dressing 1, arising 2, eating 1, walking 3, hygiene 0, reach 1, grip 2, activities 1.
HAQ_EXAMPLE = haq(
    dressing=(1, 0),
    arising=(2, 1),
    eating=(0, 0, 1),
    walking=(3, 0),
    hygiene=(0, 0, 0),
    reach=(1, 1),
    grip=(2, 0, 0),
    activities=(0, 1, 0),
)


def test_haq_di_is_the_mean_of_the_highest_item_per_category():
    # (1 + 2 + 1 + 3 + 0 + 1 + 2 + 1) / 8 = 11 / 8 = 1.375
    assert run("haq_di", HAQ_EXAMPLE) == ScoreResult(Decimal("1.375"))


def test_haq_di_boundaries():
    everything = [category for category, _ in HAQ_CATEGORIES]
    sizes = dict(HAQ_CATEGORIES)
    assert run("haq_di", haq(**{c: (0,) * sizes[c] for c in everything})).value == Decimal("0.000")
    assert run("haq_di", haq(**{c: (3,) * sizes[c] for c in everything})).value == Decimal("3.000")


def test_an_aid_raises_a_category_of_1_to_2():
    # dressing 1 -> 2: 12 / 8 = 1.5
    assert run("haq_di", HAQ_EXAMPLE | {"haq_dressing_aid": True}).value == Decimal("1.500")
    # help from another person does the same, and raises a 0: hygiene 0 -> 2: 13 / 8 = 1.625
    assert run("haq_di", HAQ_EXAMPLE | {"haq_hygiene_help": True}).value == Decimal("1.625")
    # "no" and unanswered aids leave the score alone: 11 / 8
    assert run("haq_di", HAQ_EXAMPLE | {"haq_dressing_aid": False, "haq_reach_help": None}).value == Decimal("1.375")


def test_an_aid_never_lowers_a_category_of_3():
    # walking is 3 with or without the aid: still 11 / 8
    assert run("haq_di", HAQ_EXAMPLE | {"haq_walking_aid": True, "haq_walking_help": True}).value == Decimal("1.375")


def test_an_unanswered_item_leaves_its_category_to_the_other_items():
    # eating from (0, 0): 0 instead of 1: 10 / 8 = 1.25
    result = run("haq_di", HAQ_EXAMPLE | {"haq_eating_3": None})
    assert result.value == Decimal("1.250")
    assert result.missing == ("haq_eating_3",)


def test_haq_di_with_exactly_6_categories_scored():
    answers = {k: v for k, v in HAQ_EXAMPLE.items() if not k.startswith(("haq_grip_", "haq_activities_"))}
    result = run("haq_di", answers)
    # (1 + 2 + 1 + 3 + 0 + 1) / 6 = 8 / 6 = 1.3333… -> 1.333
    assert result.value == Decimal("1.333")
    assert result.note == "Calculated from 6 of 8 categories (Stanford rules allow 6)"
    assert result.missing == (
        "haq_grip_1",
        "haq_grip_2",
        "haq_grip_3",
        "haq_activities_1",
        "haq_activities_2",
        "haq_activities_3",
    )


def test_haq_di_with_5_categories_scored_has_no_value():
    answers = {k: v for k, v in HAQ_EXAMPLE.items() if not k.startswith(("haq_grip_", "haq_activities_", "haq_reach_"))}
    # an aid alone does not score a category whose items are unanswered
    result = run("haq_di", answers | {"haq_grip_aid": True})
    assert result.value is None
    assert result.note == "HAQ-DI needs at least 6 of 8 categories scored; 5 are"
    assert "haq_reach_1" in result.missing and len(result.missing) == 8


def test_haq_di_with_7_categories_rounds_to_3_decimals():
    answers = {k: v for k, v in HAQ_EXAMPLE.items() if not k.startswith("haq_walking_")}
    # (1 + 2 + 1 + 0 + 1 + 2 + 1) / 7 = 8 / 7 = 1.142857… -> 1.143
    assert run("haq_di", answers).value == Decimal("1.143")


def test_haq_di_with_an_unusable_answer():
    assert run("haq_di", HAQ_EXAMPLE | {"haq_grip_2": 4}).note == "haq_grip_2: 4 is outside 0-3"
    assert run("haq_di", HAQ_EXAMPLE | {"haq_grip_aid": "perhaps"}) == ScoreResult(
        None, note="haq_grip_aid: 'perhaps' is not a yes/no answer"
    )


# --- Joint counts -----------------------------------------------------------------------------------


def joints(kind: str, marked: set[str] = frozenset()) -> dict:
    return {f"{kind}_{joint}": joint in marked for joint in DAS28_JOINTS}


def test_joint_counts_count_the_marked_joints():
    assert len(DAS28_JOINTS) == 28
    tender = joints("tender", {"wrist_r", "mcp2_r", "knee_l"})
    assert run("tjc28", tender) == ScoreResult(3)
    assert run("sjc28", joints("swollen", {"pip1_l"})) == ScoreResult(1)
    # yes/no as text also counts
    assert run("tjc28", tender | {"tender_knee_r": "yes", "tender_knee_l": "no"}).value == 3


def test_joint_count_boundaries():
    assert run("tjc28", joints("tender")).value == 0
    assert run("sjc28", joints("swollen", set(DAS28_JOINTS))).value == 28


def test_joint_count_needs_every_joint():
    answers = joints("tender", {"wrist_r"}) | {"tender_elbow_l": None}
    del answers["tender_pip5_r"]
    result = run("tjc28", answers)
    assert result.value is None
    assert result.missing == ("tender_elbow_l", "tender_pip5_r")
    assert result.note == "The tender joint count needs all 28 joints; 2 are missing"


def test_joint_count_with_an_unusable_answer():
    assert run("sjc28", joints("swollen") | {"swollen_knee_r": "abc"}).note == (
        "swollen_knee_r: 'abc' is not a yes/no answer"
    )


# --- DAS28 ------------------------------------------------------------------------------------------


def das28(tender: int, swollen: int, **labs) -> dict:
    """DAS28 answers with the first `tender` and `swollen` joints marked."""
    return joints("tender", set(DAS28_JOINTS[:tender])) | joints("swollen", set(DAS28_JOINTS[:swollen])) | labs


def test_das28_esr_normal_values():
    # 0.56·√4 + 0.28·√9 + 0.70·ln 20 + 0.014·50 = 1.12 + 0.84 + 2.097013 + 0.70 = 4.757013 -> 4.76
    result = run("das28_esr", das28(4, 9, esr_mm_h=20, patient_global_vas=50))
    assert result == ScoreResult(Decimal("4.76"), category="moderate")
    # 0 + 0 + 0.70·ln 10 + 0.014·10 = 1.611810 + 0.14 = 1.751810 -> 1.75
    assert run("das28_esr", das28(0, 0, esr_mm_h="10", patient_global_vas="10")) == ScoreResult(
        Decimal("1.75"), category="remission"
    )


def test_das28_crp_normal_values():
    # 0.56·√4 + 0.28·√9 + 0.36·ln(10 + 1) + 0.014·50 + 0.96 = 1.12 + 0.84 + 0.863242 + 0.70 + 0.96 = 4.483242 -> 4.48
    result = run("das28_crp", das28(4, 9, crp_mg_l="10.0", patient_global_vas=50))
    assert result == ScoreResult(Decimal("4.48"), category="moderate")


def test_das28_boundaries():
    # lowest: 0.36·ln 1 + 0.96 = 0.96
    assert run("das28_crp", das28(0, 0, crp_mg_l=0, patient_global_vas=0)).value == Decimal("0.96")
    # highest ESR on the CRF: 0.56·√28 + 0.28·√28 + 0.70·ln 150 + 0.014·100
    #   = 2.963242 + 1.481621 + 3.507445 + 1.40 = 9.352308 -> 9.35
    assert run("das28_esr", das28(28, 28, esr_mm_h=150, patient_global_vas=100)) == ScoreResult(
        Decimal("9.35"), category="high"
    )


@pytest.mark.parametrize(
    ("value", "category"),
    [
        ("2.59", "remission"),
        ("2.6", "low"),  # remission is < 2.6
        ("3.2", "low"),  # low is <= 3.2
        ("3.21", "moderate"),
        ("5.1", "moderate"),  # moderate is <= 5.1
        ("5.11", "high"),
    ],
)
def test_das28_category_at_the_cutoffs(value, category):
    assert das28_category(Decimal(value)) == category
    assert das28_category(float(value)) == category


def test_das28_category_follows_the_reported_two_decimal_value():
    # 0 + 0 + 0.70·ln 15 + 0.014·50 = 1.895635 + 0.70 = 2.595635 -> 2.60, which is "low", not remission
    assert run("das28_esr", das28(0, 0, esr_mm_h=15, patient_global_vas=50)) == ScoreResult(
        Decimal("2.60"), category="low"
    )
    # 0.56·√4 + 0 + 0.70·ln 44 + 0.014·95 = 1.12 + 2.648933 + 1.33 = 5.098933 -> 5.10, still moderate
    assert run("das28_esr", das28(4, 0, esr_mm_h=44, patient_global_vas=95)) == ScoreResult(
        Decimal("5.10"), category="moderate"
    )


def test_das28_cutoffs_can_be_set_by_the_trial():
    answers = das28(4, 9, esr_mm_h=20, patient_global_vas=50)  # 4.76
    context = {"das28_cutoffs": {"remission": 2.4, "low": 3.6, "moderate": 4.7}}
    assert run("das28_esr", answers, context=context).category == "high"
    assert das28_category(Decimal("2.5"), {"remission": 2.4}) == "low"  # the other cut-offs stay the defaults
    # A separate DAS28-CRP setting (Inoue 2007: remission < 2.3) wins over the shared one for CRP only.
    context = {
        "das28_cutoffs": {"remission": 2.6},
        "das28_crp_cutoffs": {"remission": 2.3, "low": 2.7, "moderate": 4.1},
    }
    crp = run("das28_crp", das28(0, 0, crp_mg_l=5, patient_global_vas=20), context=context)
    # 0.36·ln 6 + 0.014·20 + 0.96 = 0.645033 + 0.28 + 0.96 = 1.885033 -> 1.89
    assert crp == ScoreResult(Decimal("1.89"), category="remission")


def test_das28_cutoffs_out_of_order_are_a_configuration_error():
    with pytest.raises(ValueError, match="must ascend"):
        das28_category(3, {"low": 2.0})
    with pytest.raises(ValueError, match="unknown DAS28 cut-off 'very_high'"):
        das28_category(3, {"very_high": 6})


def test_das28_esr_of_zero_has_no_value():
    result = run("das28_esr", das28(4, 9, esr_mm_h=0, patient_global_vas=50))
    assert result == ScoreResult(None, note="DAS28-ESR needs an ESR above 0 mm/h (ln of 0 is undefined)")


def test_das28_missing_items_are_named():
    answers = das28(4, 9, esr_mm_h=20) | {"swollen_knee_l": None}
    result = run("das28_esr", answers)
    assert result.value is None
    assert result.missing == ("swollen_knee_l", "patient_global_vas")
    assert result.note == "DAS28-ESR needs the 56 joint answers, the ESR and the patient global; 2 are missing"
    # An ESR without a CRP gives DAS28-ESR only.
    assert run("das28_crp", das28(4, 9, esr_mm_h=20, patient_global_vas=50)).missing == ("crp_mg_l",)


def test_das28_with_unusable_values():
    not_a_number = run("das28_esr", das28(4, 9, esr_mm_h="abc", patient_global_vas=50))
    assert not_a_number == ScoreResult(None, note="esr_mm_h: 'abc' is not a number")
    assert run("das28_esr", das28(4, 9, esr_mm_h=20, patient_global_vas=120)).note == (
        "patient_global_vas: 120 is outside 0-100"
    )
    assert run("das28_crp", das28(4, 9, crp_mg_l=-1, patient_global_vas=50)).note == "crp_mg_l: -1 is below 0"


# --- mRSS -------------------------------------------------------------------------------------------


def test_mrss_total_is_the_sum_of_17_areas():
    assert len(MRSS_AREAS) == 17
    # face 2 + fingers 3 + 3 + hands 2 + 2 + forearms 1 + 1, the other ten areas 0 = 14
    answers = dict.fromkeys(MRSS_AREAS, 0) | {
        "mrss_face": 2,
        "mrss_fingers_r": 3,
        "mrss_fingers_l": 3,
        "mrss_hand_r": 2,
        "mrss_hand_l": 2,
        "mrss_forearm_r": 1,
        "mrss_forearm_l": "1",
    }
    assert run("mrss_total", answers) == ScoreResult(14)


def test_mrss_total_boundaries_and_missing_areas():
    assert run("mrss_total", dict.fromkeys(MRSS_AREAS, 0)).value == 0
    assert run("mrss_total", dict.fromkeys(MRSS_AREAS, 3)).value == 51
    result = run("mrss_total", dict.fromkeys(MRSS_AREAS, 1) | {"mrss_foot_l": None})
    assert result == ScoreResult(
        None, missing=("mrss_foot_l",), note="The modified Rodnan skin score needs all 17 items; 1 is missing"
    )
    assert run("mrss_total", dict.fromkeys(MRSS_AREAS, 1) | {"mrss_face": 4}).note == "mrss_face: 4 is outside 0-3"


# --- ACR response -----------------------------------------------------------------------------------

ACR_BASELINE = {
    "tjc28": 10,
    "sjc28": 8,
    "pain_vas": 60,
    "patient_global_vas": 50,
    "physician_global_vas": 40,
    "haq_di": "1.500",
    "esr_mm_h": 40,
}
# tender 50 %, swollen 50 %, pain 50 %, patient global 20 %, physician global 75 %, HAQ-DI 0 %, ESR 50 %
ACR_WEEK_12 = {
    "tjc28": 5,
    "sjc28": 4,
    "pain_vas": 30,
    "patient_global_vas": 40,
    "physician_global_vas": 10,
    "haq_di": "1.500",
    "esr_mm_h": 20,
}


def test_acr_response_levels():
    result = acr_response(ACR_BASELINE, ACR_WEEK_12)
    # ACR20: counts 50/50 and 4 of 5 others >= 20 (exactly 20 % counts); ACR50: 50/50 and pain,
    # physician, ESR = 3 of 5; ACR70: counts only 50 %.
    assert (result["acr20"], result["acr50"], result["acr70"]) == (True, True, False)
    assert result["improvements"] == {
        "tjc28": Decimal("50.0"),
        "sjc28": Decimal("50.0"),
        "pain_vas": Decimal("50.0"),
        "patient_global_vas": Decimal("20.0"),
        "physician_global_vas": Decimal("75.0"),
        "haq_di": Decimal("0.0"),
        "esr_mm_h": Decimal("50.0"),
    }
    assert result["note"] == ""


def test_acr_needs_both_joint_counts_improved():
    # swollen 8 -> 7 is 12.5 %: no ACR20 whatever the other measures do
    result = acr_response(ACR_BASELINE, ACR_WEEK_12 | {"sjc28": 7})
    assert (result["acr20"], result["acr50"], result["acr70"]) == (False, False, False)


def test_acr_a_worsening_is_a_negative_improvement():
    result = acr_response(ACR_BASELINE, ACR_WEEK_12 | {"pain_vas": 90})
    assert result["improvements"]["pain_vas"] == Decimal("-50.0")
    assert result["acr50"] is False  # physician and ESR only: 2 of 5


def test_acr_decides_on_the_exact_percentage():
    # pain 60 -> 48.03: 19.95 %, shown as 20.0 (1 dp) but not an improvement of 20 %
    result = acr_response(ACR_BASELINE, ACR_WEEK_12 | {"pain_vas": "48.03", "patient_global_vas": 45, "esr_mm_h": 39})
    assert result["improvements"]["pain_vas"] == Decimal("20.0")
    assert result["acr20"] is False  # only the physician global is >= 20 % among the other five


def test_acr_zero_baseline_joint_count_is_not_evaluable():
    result = acr_response(ACR_BASELINE | {"tjc28": 0}, ACR_WEEK_12 | {"tjc28": 0})
    assert (result["acr20"], result["acr50"], result["acr70"]) == (None, None, None)
    assert result["improvements"]["tjc28"] is None
    assert result["note"] == "Not evaluable: tjc28 is 0 at baseline"


def test_acr_zero_baseline_other_measure_counts_as_not_improved():
    # pain 0 -> 0 cannot improve by a percentage: not improved. The other four give patient 20 %,
    # physician 75 %, ESR 50 %: still 3 for ACR20, but only physician and ESR (2) for ACR50.
    result = acr_response(ACR_BASELINE | {"pain_vas": 0}, ACR_WEEK_12 | {"pain_vas": 0})
    assert (result["acr20"], result["acr50"]) == (True, False)
    assert result["improvements"]["pain_vas"] is None
    assert result["note"] == "pain_vas: baseline 0, no percentage improvement, counted as not improved"


def test_acr_missing_measure_only_matters_when_it_could_change_the_answer():
    no_haq = {k: v for k, v in ACR_WEEK_12.items() if k != "haq_di"}
    # ACR20: already 4 of the 4 known; ACR50: already 3; ACR70: the counts already fail.
    assert [acr_response(ACR_BASELINE, no_haq)[f"acr{n}"] for n in (20, 50, 70)] == [True, True, False]
    # Without the ESR either, ACR50 has 2 known improvements (pain, physician) and 2 unknown: still open.
    no_labs = no_haq | {"esr_mm_h": None}
    result = acr_response(ACR_BASELINE, no_labs)
    assert result["acr50"] is None
    assert result["note"] == "haq_di: missing at the current visit; esr_mm_h: missing at the current visit"
    # A missing tender count leaves the response open, unless the swollen count already fails it.
    assert acr_response(ACR_BASELINE | {"tjc28": None}, ACR_WEEK_12)["acr20"] is None
    assert acr_response(ACR_BASELINE | {"tjc28": None}, ACR_WEEK_12 | {"sjc28": 8})["acr20"] is False


def test_acr_uses_the_crp_when_only_the_crp_is_at_both_visits():
    baseline = ACR_BASELINE | {"esr_mm_h": None, "crp_mg_l": "20.0"}
    result = acr_response(baseline, ACR_WEEK_12 | {"crp_mg_l": 5})  # 75 %
    assert result["improvements"]["crp_mg_l"] == Decimal("75.0")
    assert "esr_mm_h" not in result["improvements"]
    chosen = acr_response(ACR_BASELINE, ACR_WEEK_12 | {"crp_mg_l": 1}, acute_phase_reactant="crp_mg_l")
    assert chosen["improvements"]["crp_mg_l"] is None  # no baseline CRP


def test_acr_unusable_value_is_treated_as_missing_not_an_exception():
    result = acr_response(ACR_BASELINE, ACR_WEEK_12 | {"physician_global_vas": "abc"})
    assert result["improvements"]["physician_global_vas"] is None
    assert result["acr20"] is True  # pain, patient global and ESR still make 3
    assert result["note"] == "physician_global_vas: 'abc' is not a number (treated as missing)"
