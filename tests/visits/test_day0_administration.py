"""ASC-DU's Day-0 study-product administration (DU_INJECTION, issue 15): the kit dispensed is the
kit of the allocation (compared by code, which says nothing of the arm), each injected ulcer is one
on the ulcer assessment of the visit, and each row is one administration."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from trials.protocol.engine import schema_for, validate_answers
from trials.protocol.models import CrfDefinition

pytestmark = pytest.mark.django_db

KIT = "K7QX2MP"
ASSESSED = {"visit": {"DU_ASSESS": {"ulcers": [{"ulcer_id": "U1"}, {"ulcer_id": "U2"}]}}}


@pytest.fixture
def schema(seeds):
    return schema_for(CrfDefinition.objects.filter(code="DU_INJECTION").latest("version"))


def answers(**overrides) -> dict:  # noqa: ANN003
    return {
        "administration_datetime": datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris")), "kit_code": KIT,
        "ulcers_injected": [
            {"ulcer_id": "U1", "volume_ml": Decimal("0.5"), "labelled_cells_million": Decimal("2")},
            {"ulcer_id": "U2", "volume_ml": Decimal("0.5"), "labelled_cells_million": Decimal("2")},
        ],
        "operator": "Dr Martin", "deviation": False, **overrides,
    }


def context(kit: str | None = KIT, crfs: dict | None = None) -> dict:
    return {"today": "2026-03-02", "visit_date": "2026-03-02", "allocation_kit_code": kit, "crfs": ASSESSED if crfs is None else crfs}


def test_the_allocated_kit_with_assessed_ulcers_is_accepted(schema):
    outcome = validate_answers(schema, answers(), context=context())
    assert outcome.is_valid, (outcome.errors, outcome.row_errors)
    assert [row["ulcer_id"] for row in outcome.answers["ulcers_injected"]] == ["U1", "U2"]


def test_another_kit_is_refused_on_the_kit_code(schema):
    outcome = validate_answers(schema, answers(kit_code="K7QX2MQ"), context=context())
    assert [str(m) for m in outcome.errors["kit_code"]] == [
        "This is not the kit allocated to the participant. Check the kit label against the allocation; do not inject another kit."
    ]


def test_an_ulcer_not_on_the_assessment_of_the_visit_is_refused(schema):
    rows = answers()["ulcers_injected"] + [{"ulcer_id": "U9", "volume_ml": Decimal("0.5"), "labelled_cells_million": Decimal("2")}]
    outcome = validate_answers(schema, answers(ulcers_injected=rows), context=context())
    assert list(outcome.row_errors["ulcers_injected"]) == [2]
    assert "not on the digital ulcer assessment of this visit" in str(outcome.row_errors["ulcers_injected"][2]["ulcer_id"][0])


def test_a_deviation_needs_its_description_and_at_least_one_ulcer_is_injected(schema):
    outcome = validate_answers(schema, answers(deviation=True, ulcers_injected=[]), context=context())
    assert "deviation_description" in outcome.errors and "ulcers_injected" in outcome.errors
