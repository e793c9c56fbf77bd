"""`respondent: participant` and `prefer_not_to_answer` in CRF files: checked at load, honoured by the engine."""

import copy

import pytest

from tests.protocol.test_loader import CRF, assert_rejected, mutate, write
from trials.protocol.engine import DECLINED, schema_for, validate_answers
from trials.protocol.models import CrfDefinition

pytestmark = pytest.mark.django_db

NO_GROUP = {**copy.deepcopy(CRF), "fields": CRF["fields"][:3]}


@pytest.mark.parametrize(("crf", "path", "message"), [
    (mutate(CRF, "respondent", "patient"), "respondent", "'participant' or 'staff'"),
    (mutate(CRF, "respondent", "participant"), "", "cannot have a repeating_group"),
    (mutate(CRF, "fields.2.prefer_not_to_answer", True), "", "'prefer_not_to_answer' is for participant-reported CRFs"),
    (mutate({**NO_GROUP, "respondent": "participant", "fields": [*NO_GROUP["fields"], {"name": "note", "label": "Note", "type": "descriptive", "prefer_not_to_answer": True}]},
            "code", "MINI"), "fields[3]", "'prefer_not_to_answer' does not apply to a descriptive field"),
], ids=["unknown respondent", "participant CRF with a group", "decline on a staff CRF", "decline on a descriptive"])
def test_bad_respondent_declarations_are_refused_at_load(tmp_path, crf, path, message):
    assert_rejected(write(tmp_path, crf=crf), "mini.yaml", path, message)


def test_the_seed_questionnaires_are_participant_reported(seeds):
    respondents = {code: CrfDefinition.objects.filter(code=code).latest("version").definition.get("respondent", "staff")
                   for code in ("HAQDI", "PAIN_VAS", "COCHIN", "RCS", "VITALS", "DAS28")}
    assert respondents == {"HAQDI": "participant", "PAIN_VAS": "participant", "COCHIN": "participant", "RCS": "participant",
                           "VITALS": "staff", "DAS28": "staff"}


def test_declined_is_accepted_only_where_the_item_allows_it(seeds):
    haq = schema_for(CrfDefinition.objects.filter(code="HAQDI").latest("version"))
    outcome = validate_answers(haq, {}, missing={"haq_reach_1": {"code": DECLINED}})
    assert "haq_reach_1" not in outcome.errors and outcome.missing["haq_reach_1"]["code"] == DECLINED
    assert "haq_dressing_aid" in outcome.errors  # aids: the instrument asks yes or no
    outcome = validate_answers(haq, {}, missing={"haq_dressing_aid": {"code": DECLINED}})
    assert "Unknown missing-data code." in str(outcome.errors["haq_dressing_aid"])
