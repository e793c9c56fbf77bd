"""The CRF engine's rules, applied to plain dicts (no request, no database writes)."""

from decimal import Decimal

import pytest

from trials.protocol.models import CrfDefinition
from trials.protocol.engine import schema_for, validate_answers

pytestmark = pytest.mark.django_db

CONTEXT = {"today": "2026-11-21", "visit_date": "2026-11-21", "consent_date": "2026-11-01"}


def schema(code):  # noqa: ANN001, ANN201
    return schema_for(CrfDefinition.objects.filter(code=code).order_by("-version").first())


VITALS = {"height_cm": Decimal("165"), "weight_kg": Decimal("60"), "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70}


def test_complete_vitals_are_stored_with_bmi(seeds):
    outcome = validate_answers(schema("VITALS"), VITALS, context=CONTEXT)
    assert outcome.is_valid, outcome.errors
    assert outcome.answers["bmi"] == "22.0"  # 60 / 1.65² = 22.04
    assert outcome.answers["weight_kg"] == "60.0" and outcome.answers["heart_rate"] == 70


def test_required_item_needs_an_answer_or_a_missing_code_with_reason(seeds):
    answers = {**VITALS, "heart_rate": None}
    outcome = validate_answers(schema("VITALS"), answers, context=CONTEXT)
    assert "heart_rate" in outcome.errors and "required" in outcome.errors["heart_rate"][0]
    no_reason = validate_answers(schema("VITALS"), answers, missing={"heart_rate": {"code": "not_done"}}, context=CONTEXT)
    assert no_reason.errors["heart_rate"] == ["Give a reason why this item is missing."]
    ok = validate_answers(
        schema("VITALS"), answers, missing={"heart_rate": {"code": "not_done", "reason": "device broken"}}, context=CONTEXT
    )
    assert ok.is_valid and ok.missing == {"heart_rate": {"code": "not_done", "reason": "device broken"}}


def test_range_and_cross_field_hard_check(seeds):
    outcome = validate_answers(schema("VITALS"), {**VITALS, "weight_kg": Decimal("900"), "diastolic_bp": 130}, context=CONTEXT)
    assert outcome.errors["weight_kg"][0].startswith("Must be at most")
    assert "lower than the systolic" in outcome.errors["diastolic_bp"][0]
    assert "E+" not in outcome.errors["weight_kg"][0]


def test_branching_clears_hidden_items_and_does_not_validate_them(seeds):
    demog = schema("DEMOG")
    base = {"date_of_birth": "1960-05-01", "sex": "F", "initials": "AB"}
    former = validate_answers(demog, {**base, "smoking_status": "former", "smoking_stop_date": "2030-01-01"}, context=CONTEXT)
    assert "smoking_stop_date" in former.errors  # shown: validated (a date in the future)
    never = validate_answers(demog, {**base, "smoking_status": "never", "smoking_stop_date": "2030-01-01"}, context=CONTEXT)
    assert "smoking_stop_date" in never.hidden
    assert "smoking_stop_date" not in never.errors and "smoking_stop_date" not in never.answers


def test_dates_not_in_future_nor_before_consent_unless_history(seeds):
    du = schema("DU_ASSESS")
    future = validate_answers(du, {"assessment_date": "2026-12-01", "number_active_du": 0}, context=CONTEXT)
    assert future.errors["assessment_date"][0] == "This date is in the future."
    before = validate_answers(du, {"assessment_date": "2026-10-01", "number_active_du": 0}, context=CONTEXT)
    assert "before the participant's consent (2026-11-01)" in before.errors["assessment_date"][0]
    # A date of birth is history: it may (must) precede consent.
    dob = validate_answers(schema("DEMOG"), {"date_of_birth": "1960-05-01"}, context=CONTEXT)
    assert "date_of_birth" not in dob.errors
    assert dob.answers["age_years"] == 66


ULCER = {
    "ulcer_id": "U1", "hand": "right", "location": "distal_to_pip", "finger": 2, "beyond_pip": True, "ischemic": True,
    "over_calcinosis": False, "active": True, "refractory": True, "due_to_other_condition": False,
    "osteomyelitis_or_uncontrolled_infection": False, "infected_requiring_systemic_antibiotics": False,
    "requires_urgent_surgery": False, "healed": False,
}


def test_repeating_group_rows_are_validated_one_by_one_and_keep_their_identity(seeds):
    du = schema("DU_ASSESS")
    rows = [{**ULCER, "_row_id": "0" * 31 + "1"}, {**ULCER, "ulcer_id": "X9", "hand": None}]
    outcome = validate_answers(du, {"assessment_date": "2026-11-20", "number_active_du": 2, "ulcers": rows}, context=CONTEXT)
    assert 0 not in outcome.row_errors.get("ulcers", {})
    assert set(outcome.row_errors["ulcers"][1]) == {"ulcer_id", "hand"}
    assert outcome.answers["ulcers"][0]["_row_id"] == "0" * 31 + "1"  # kept
    new_id = outcome.answers["ulcers"][1]["_row_id"]
    assert len(new_id) == 32 and new_id != "0" * 31 + "1"  # a new row gets a fresh identity


def test_tampered_row_identity_and_unknown_names_are_not_stored(seeds):
    du = schema("DU_ASSESS")
    rows = [{**ULCER, "_row_id": "<script>"}]
    outcome = validate_answers(du, {"assessment_date": "2026-11-20", "number_active_du": 1, "ulcers": rows, "is_admin": True}, context=CONTEXT)
    assert outcome.is_valid, (outcome.errors, outcome.row_errors)
    assert "is_admin" not in outcome.answers
    assert outcome.answers["ulcers"][0]["_row_id"] != "<script>"


def test_soft_check_is_a_warning_not_an_error(seeds):
    du = schema("DU_ASSESS")
    soft = [r for item in du.items for c in item.children for r in c.rules if r.severity == "soft"]
    assert soft, "DU_ASSESS declares soft checks"
    # beyond_pip must agree with a finger location (a soft check in the CRF library).
    row = {**ULCER, "location": "palm", "finger": None, "beyond_pip": True}
    outcome = validate_answers(du, {"assessment_date": "2026-11-20", "number_active_du": 1, "ulcers": [row]}, context=CONTEXT)
    assert outcome.is_valid
    assert outcome.warnings and outcome.warnings[0]["field"] == "beyond_pip"


def test_cochin_total_only_when_all_items_answered(seeds):
    cochin = schema("COCHIN")
    answers = {f"cochin_{i:02d}": 2 for i in range(1, 19)}
    assert validate_answers(cochin, answers, context=CONTEXT).answers["cochin_total"] == 36
    answers["cochin_18"] = None
    outcome = validate_answers(cochin, answers, context=CONTEXT)
    assert outcome.answers["cochin_total"] is None and "cochin_18" in outcome.errors


def test_das28_category_uses_the_trials_cut_offs(seeds):
    das28 = schema("DAS28")
    joints = {f"{kind}_{joint}_{side}": False for kind in ("tender", "swollen") for side in "rl"
              for joint in ("shoulder", "elbow", "wrist", "knee", *(f"mcp{i}" for i in range(1, 6)), *(f"pip{i}" for i in range(1, 6)))}
    answers = {**joints, "tender_knee_r": True, "esr_mm_h": 10, "patient_global_vas": 20}
    # 0.56·√1 + 0 + 0.70·ln(10) + 0.014·20 = 0.56 + 1.6118 + 0.28 = 2.45
    default = validate_answers(das28, answers, context=CONTEXT)
    assert default.answers["das28_esr"] == "2.45" and default.notes["das28_esr"].startswith("remission")
    strict = validate_answers(das28, answers, context={**CONTEXT, "das28_cutoffs": {"remission": "2.3", "low": "3.2", "moderate": "5.1"}})
    assert strict.notes["das28_esr"].startswith("low")
