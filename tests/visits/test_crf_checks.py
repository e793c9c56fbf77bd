"""Checks across items, rows and CRFs (issue 13, data consistency): calculated values are
range-checked, counts agree with their rows, and checks may read other CRFs of the participant."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from edc.audit import system_user
from tests.visits.test_engine import CONTEXT, ULCER, VITALS, schema
from trials.protocol.models import CrfDefinition
from trials.protocol.engine import schema_for, validate_answers
from trials.visits.services import crf_entry_save_answers, entry_context, other_crf_answers

pytestmark = pytest.mark.django_db


# --- Calculated items are range-checked ---------------------------------------------------------


def test_an_impossible_bmi_blocks_the_save_naming_weight_and_height(seeds):
    # WHO: BMI = weight (kg) / height (m)²; 140 kg at 100 cm is 140 kg/m², above the CRF's hard maximum
    # of 100, although weight (max 250) and height (min 100) are each within their own ranges.
    outcome = validate_answers(schema("VITALS"), {**VITALS, "weight_kg": Decimal("140"), "height_cm": Decimal("100")}, context=CONTEXT)
    assert not outcome.is_valid
    [message] = outcome.errors["bmi"]
    assert message == (
        "Body mass index 140 kg/m² is above the maximum 100 kg/m²: check Body weight 140 kg, Height 100 cm."
    )


def test_a_bmi_in_range_is_stored(seeds):
    # WHO worked example: 70 kg, 1.75 m -> 22.9 kg/m².
    outcome = validate_answers(schema("VITALS"), {**VITALS, "weight_kg": Decimal("70"), "height_cm": Decimal("175")}, context=CONTEXT)
    assert outcome.is_valid and not outcome.warnings
    assert outcome.answers["bmi"] == "22.9"


def test_a_calculated_value_below_its_minimum_blocks_the_save(seeds):
    # 25 kg at 230 cm: 25 / 2.3² = 4.7 kg/m², below the CRF's minimum of 8.
    outcome = validate_answers(schema("VITALS"), {**VITALS, "weight_kg": Decimal("25"), "height_cm": Decimal("230")}, context=CONTEXT)
    assert outcome.errors["bmi"] == [
        "Body mass index 4.7 kg/m² is below the minimum 8 kg/m²: check Body weight 25 kg, Height 230 cm."
    ]


def test_a_bmi_of_obesity_class_three_warns(seeds):
    # WHO: 40 kg/m² or more is obesity class III; 130 kg at 170 cm is 45.0 kg/m².
    outcome = validate_answers(schema("VITALS"), {**VITALS, "weight_kg": Decimal("130"), "height_cm": Decimal("170")}, context=CONTEXT)
    assert outcome.is_valid
    assert [w["field"] for w in outcome.warnings] == ["bmi"]


def test_a_calculated_range_is_enforced_by_the_service(participant, coordinator):
    from django.core.exceptions import ValidationError

    visit = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order").first()
    with pytest.raises(ValidationError) as excinfo:
        crf_entry_save_answers(
            user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="",
            answers={**VITALS, "weight_kg": Decimal("140"), "height_cm": Decimal("100")},
        )
    assert "check Body weight 140 kg, Height 100 cm" in excinfo.value.message_dict["bmi"][0]
    assert not visit.crf_entries.filter(crf_code="VITALS").exists()


# --- A count and its rows agree ---------------------------------------------------------------


def healed(ulcer_id: str) -> dict:
    return {**ULCER, "ulcer_id": ulcer_id, "active": False, "healed": True, "healing_date": "2026-11-10"}


def test_five_active_ulcers_with_both_rows_healed_is_refused(seeds):
    du = schema("DU_ASSESS")
    answers = {"assessment_date": "2026-11-20", "number_active_du": 5, "ulcers": [healed("U1"), healed("U2")]}
    outcome = validate_answers(du, answers, context=CONTEXT)
    assert outcome.errors["number_active_du"] == [
        "The number of active digital ulcers does not match the ulcer rows marked active. "
        "Correct the number or the rows (one row per ulcer)."
    ]


def test_a_count_matching_its_rows_passes(seeds):
    du = schema("DU_ASSESS")
    rows = [healed("U1"), {**ULCER, "ulcer_id": "U2"}]
    assert validate_answers(du, {"assessment_date": "2026-11-20", "number_active_du": 1, "ulcers": rows}, context=CONTEXT).is_valid
    assert validate_answers(du, {"assessment_date": "2026-11-20", "number_active_du": 0, "ulcers": []}, context=CONTEXT).is_valid


# --- Aggregates and other CRFs in CEL ------------------------------------------------------------


def adhoc(definition: dict) -> CrfDefinition:
    """A CRF version that is never saved (the engine needs only its definition)."""
    return CrfDefinition(pk=-len(str(definition)), code=definition["code"], version=1, title="t", definition=definition,
                         content_sha256=str(hash(str(definition))))


INJECTIONS = {
    "code": "INJ",
    "fields": [
        {"name": "total_volume_ml", "label": "Total volume", "type": "decimal", "unit": "mL"},
        {"name": "injections", "label": "Injections", "type": "repeating_group", "fields": [
            {"name": "volume_ml", "label": "Volume", "type": "decimal", "unit": "mL"}]},
    ],
    "checks": [
        {"expression": "total_volume_ml == null || total_volume_ml == injections.map(r, r.volume_ml).sum()",
         "message": "The total is not the sum of the injections.", "field": "total_volume_ml"},
        {"expression": "visit.VITALS.weight_kg == null || total_volume_ml == null || total_volume_ml < visit.VITALS.weight_kg",
         "message": "More millilitres than kilograms.", "field": "total_volume_ml"},
    ],
}


def test_sum_over_rows_in_a_check():
    schema_ = schema_for(adhoc(INJECTIONS))
    rows = [{"volume_ml": Decimal("1.5")}, {"volume_ml": Decimal("2")}]
    assert validate_answers(schema_, {"total_volume_ml": Decimal("3.5"), "injections": rows}, context=CONTEXT).is_valid
    wrong = validate_answers(schema_, {"total_volume_ml": Decimal("4"), "injections": rows}, context=CONTEXT)
    assert wrong.errors["total_volume_ml"] == ["The total is not the sum of the injections."]


def test_a_check_reading_a_crf_not_entered_is_not_applied():
    schema_ = schema_for(adhoc(INJECTIONS))
    answers = {"total_volume_ml": Decimal("80"), "injections": [{"volume_ml": Decimal("80")}]}
    assert schema_.references == {"visit": frozenset({"VITALS"})}
    assert validate_answers(schema_, answers, context=CONTEXT).is_valid  # no VITALS at this visit: skipped
    with_vitals = {**CONTEXT, "crfs": {"visit": {"VITALS": {"weight_kg": 60.0}}}}
    assert validate_answers(schema_, answers, context=with_vitals).errors["total_volume_ml"] == ["More millilitres than kilograms."]


def vitals_visits(participant):  # noqa: ANN001, ANN201
    return list(participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order", "sequence"))


def save_vitals(visit, weight: str):  # noqa: ANN001, ANN201
    return crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="",
        answers={**VITALS, "weight_kg": Decimal(weight)},
    )


def test_weight_change_since_the_previous_visit_warns(participant):
    screening, lipo, day0 = vitals_visits(participant)[:3]
    first = save_vitals(screening, "60")
    assert first.warnings == []  # no previous visit: the check is not applied
    same = save_vitals(lipo, "62")  # +3%
    assert same.warnings == []
    heavier = save_vitals(day0, "70")  # +12.9% on the previous visit (62 kg)
    assert [w["field"] for w in heavier.warnings] == ["weight_kg"]
    assert "more than 10% from the previous visit" in heavier.warnings[0]["message"]


def test_other_crfs_are_read_in_one_query_previous_and_baseline(participant):
    screening, lipo, day0, week1 = vitals_visits(participant)[:4]
    save_vitals(screening, "60")
    save_vitals(lipo, "62")
    save_vitals(day0, "64")
    cross = schema_for(adhoc({**INJECTIONS, "checks": [
        {"expression": "previous.VITALS.weight_kg - baseline.VITALS.weight_kg < 10.0", "message": "m"},
        {"expression": "visit.VITALS.weight_kg > 0.0", "message": "m"},
    ]}))
    week1.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        found = other_crf_answers(week1, cross)
    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert found["previous"]["VITALS"]["weight_kg"] == 64.0  # day 0, the latest before week 1
    assert found["baseline"]["VITALS"]["weight_kg"] == 60.0  # screening, the first
    assert found["visit"] == {}  # not entered at week 1 yet
    # A CRF that reads no other CRF loads none.
    assert "crfs" not in entry_context(week1, schema("PAIN_VAS"))


# --- Issue 15: score inputs from other CRFs, and a descriptive text's branching ---------------------

RESPONSE = {
    "code": "RESP",
    "fields": [
        {"name": "note", "label": "No baseline yet.", "type": "descriptive", "show_if": "!has(baseline.VITALS)"},
        {"name": "eular", "label": "EULAR", "type": "calculated",
         "calculation": {"score": "eular_response", "inputs": {"das28": "visit.VITALS.weight_kg",
                                                               "das28_baseline": "baseline.VITALS.weight_kg"}}},
    ],
}


def test_a_score_input_reads_another_crf_and_is_a_reference_of_the_schema():
    schema_ = schema_for(adhoc(RESPONSE))
    assert schema_.references == {"visit": frozenset({"VITALS"}), "baseline": frozenset({"VITALS"})}
    crfs = {"visit": {"VITALS": {"weight_kg": 3.0}}, "baseline": {"VITALS": {"weight_kg": 5.0}}}
    outcome = validate_answers(schema_, {}, context={**CONTEXT, "crfs": crfs})
    # 5.0 -> 3.0: improvement 2.0 (> 1.2) to 3.0 (<= 3.2): good (van Gestel table).
    assert outcome.answers["eular"] == 2 and outcome.notes["eular"].startswith("good response")
    assert "note" in outcome.hidden  # the descriptive text's show_if is false: not shown
    without = validate_answers(schema_, {}, context={**CONTEXT, "crfs": {"visit": crfs["visit"]}})
    assert without.answers["eular"] is None and "note" not in without.hidden
