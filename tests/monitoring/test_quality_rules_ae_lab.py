"""Data-quality rules over the AE log and graded lab values (issue 21): "AE onset after end of study",
"lab value outside range without an AE" (the seed trials' rules), the loader's checks of the `aes`
and `lab` names at file:line, hits and non-hits on hand-built data, and the auto-close once corrected.

Expected hits are worked by hand from the rules (seeds/001_nct04356755_du.yaml) and the data:
- AE_ONSET_AFTER_STUDY_END holds when `onset_date <= study_end_date` (the completion date);
- LAB_GRADE3_WITHOUT_AE: ALT 250 U/L against ULN 40 is 6.25 x ULN, CTCAE v5.0 "Alanine
  aminotransferase increased" grade 3 (> 5.0 - 20.0 x ULN); ALT 100 U/L is 2.5 x ULN, grade 1
  (> ULN - 3.0 x ULN); the rule holds when no value is grade >= 3 or an AE is ongoing at the sample
  date (or starts within 14 days of it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.conf import settings

from edc.audit import SYSTEM_USERNAME, audited_save, system_user
from tests.participants.conftest import _seeded, demo  # noqa: F401 - fixtures
from tests.visits.test_derived_endpoints_flow import complete_answers
from trials.demo.participants import participant_register
from trials.monitoring.models import Query, QueryOrigin, QueryState
from trials.monitoring.quality.services import quality_rules_run
from trials.participants.services import participant_transition
from trials.protocol.loader import ProtocolLoadError, protocol_check
from trials.protocol.models import LabNormalRange, Site, Trial
from trials.protocol.services import lab_range_save
from trials.safety import services as safety
from trials.safety.models import AdverseEvent
from trials.visits.schedule import visit_record_date
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db
TODAY = date(2026, 9, 1)
NOW = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():  # noqa: ANN201
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def trial(demo):  # noqa: ANN001, ANN201, ARG001, F811
    return Trial.objects.get(code="ASC-DU")


@pytest.fixture
def participant(trial):  # noqa: ANN001, ANN201
    return participant_register(
        site=Site.objects.get(trial=trial, code="TLS"), user=system_user(),
        consent_date=TODAY - timedelta(days=60), anchor_date=TODAY - timedelta(days=50),
    )


def ae(participant, onset: date, **values) -> AdverseEvent:  # noqa: ANN001
    fields = {
        "verbatim_term": "Headache", "onset_date": onset, "ongoing": True, "grade": 2,
        "related_product": "not_related", "procedure": "none", "related_procedure": "not_related", "action_taken": "none",
        "outcome": "not_recovered", "aware_at": datetime.combine(onset, datetime.min.time(), tzinfo=UTC), **values,
    }
    return safety.ae_save(AdverseEvent(participant=participant, **fields), user=system_user())


def rule_queries(trial, code: str):  # noqa: ANN001, ANN201
    return Query.objects.filter(trial=trial, origin=QueryOrigin.QUALITY_RULE, rule_code=code).order_by("pk")


# --- AE log -----------------------------------------------------------------------------------


def test_an_ae_starting_after_the_end_of_participation_is_queried_on_the_ae_and_closed_once_corrected(trial, participant):
    before = ae(participant, TODAY - timedelta(days=20))  # before the end (day -10): not a hit
    after = ae(participant, TODAY - timedelta(days=5), verbatim_term="Nausea")
    participant_transition(
        participant=participant, to="completed", user=system_user(), reason="Follow-up completed", on=TODAY - timedelta(days=10),
    )

    result = quality_rules_run(trial)

    assert result.hits["AE_ONSET_AFTER_STUDY_END"] == 1 and result.hits["AE_ONSET_AFTER_DEATH"] == 0
    (query,) = rule_queries(trial, "AE_ONSET_AFTER_STUDY_END")
    assert (query.adverse_event_id, query.entry_id, query.item, query.state) == (after.pk, None, "onset_date", QueryState.OPEN)
    assert query.value_at_raise == {"value": (TODAY - timedelta(days=5)).isoformat()}
    assert before.pk != query.adverse_event_id
    assert quality_rules_run(trial).raised == 0  # raised once

    after.onset_date = TODAY - timedelta(days=12)  # the site corrects the date: before the end now
    audited_save(after, user=system_user(), reason="Onset date corrected (source: clinic letter)")
    result = quality_rules_run(trial)

    assert (result.hits["AE_ONSET_AFTER_STUDY_END"], result.closed) == (0, 1)
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED and query.closed_by.username == SYSTEM_USERNAME
    assert query.history.order_by("history_id").last().history_change_reason == (  # time frozen: by id
        "Closed automatically: the data no longer hit data-quality rule AE_ONSET_AFTER_STUDY_END."
    )


def test_an_ae_of_a_participant_still_in_the_study_or_dated_after_death_is_judged_by_its_own_rule(trial, participant):
    ae(participant, TODAY - timedelta(days=3))  # still in the study: no end date, no hit
    assert quality_rules_run(trial).hits["AE_ONSET_AFTER_STUDY_END"] == 0
    late = ae(participant, TODAY - timedelta(days=1), verbatim_term="Fall")
    participant_transition(participant=participant, to="died", user=system_user(), reason="Cardiac arrest", on=TODAY - timedelta(days=2))

    result = quality_rules_run(trial)

    # Died on day -2: the AE of day -1 starts after her death (and after her end of participation);
    # the one of day -3 before both.
    assert (result.hits["AE_ONSET_AFTER_DEATH"], result.hits["AE_ONSET_AFTER_STUDY_END"]) == (1, 1)
    assert rule_queries(trial, "AE_ONSET_AFTER_DEATH").get().adverse_event_id == late.pk


# --- Lab values and the AE log ----------------------------------------------------------------


@pytest.fixture
def labs_visit(participant):  # noqa: ANN001, ANN201
    """The screening visit (it holds LABS), dated, and the Toulouse laboratory's ALT range (ULN 40 U/L)."""
    visit = participant.visits.filter(definition__visit_crfs__crf_code="LABS").order_by("order").first()
    visit = visit_record_date(visit, user=system_user(), visit_date=participant.consent_date)
    lab_range_save(
        lab_range=LabNormalRange(site=participant.site, test="ALT", uln=Decimal("40"), effective_from=TODAY - timedelta(days=365)),
        user=system_user(), reason="Laboratory reference ranges 2026",
    )
    return visit


def save_alt(visit, alt: int):  # noqa: ANN001, ANN201
    answers = complete_answers(visit, "LABS", {"alt_u_l": alt, "sample_date": visit.visit_date})
    return crf_entry_save_answers(user=system_user(), visit=visit, crf_code="LABS", answers=answers, complete=True, reason="Test data")


def test_a_grade_3_lab_value_without_an_ae_is_queried_and_closes_when_the_ae_is_recorded(trial, participant, labs_visit):
    entry = save_alt(labs_visit, 250)  # 6.25 x ULN: grade 3

    result = quality_rules_run(trial)

    assert result.hits["LAB_GRADE3_WITHOUT_AE"] == 1
    (query,) = rule_queries(trial, "LAB_GRADE3_WITHOUT_AE")
    assert (query.entry_id, query.item) == (entry.pk, "")

    # The site records the AE, starting 3 days after the sample (within 14 days): no longer a hit.
    ae(participant, labs_visit.visit_date + timedelta(days=3), verbatim_term="ALT increased", grade=3)
    result = quality_rules_run(trial)
    assert (result.hits["LAB_GRADE3_WITHOUT_AE"], result.closed) == (0, 1)
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_lab_values_below_grade_3_or_without_a_range_or_with_an_ae_long_after_are_judged_as_written(trial, participant, labs_visit):
    save_alt(labs_visit, 100)  # 2.5 x ULN: grade 1, not a hit
    assert quality_rules_run(trial).hits["LAB_GRADE3_WITHOUT_AE"] == 0

    save_alt(labs_visit, 250)
    # An AE starting 20 days after the sample (beyond 14) does not account for it.
    ae(participant, labs_visit.visit_date + timedelta(days=20), verbatim_term="Headache")
    assert quality_rules_run(trial).hits["LAB_GRADE3_WITHOUT_AE"] == 1

    # Without a range at the site the value is not graded: the rule is not evaluated (no hit), and
    # the rule's query closes.
    for row in LabNormalRange.objects.filter(site=participant.site):
        row.is_active = False
        audited_save(row, user=system_user(), reason="Range entered for the wrong laboratory")
    result = quality_rules_run(trial)
    assert (result.hits["LAB_GRADE3_WITHOUT_AE"], result.closed) == (0, 1)


# --- Loader -------------------------------------------------------------------------------------

BAD_RULES = """
quality_rules:
  - code: AE_BAD_FIELD
    message: m
    subject: adverse_event
    item: onset_date
    expression: "aes.exists(a, a.onset_day > onset_date)"
  - code: AE_BAD_ITEM
    message: m
    subject: adverse_event
    item: weight_kg
    expression: "onset_date <= study_end_date"
  - code: LAB_NOT_A_LAB
    message: m
    crf: LABS
    expression: "lab.sample_date.grade < 3"
  - code: LAB_BAD_KEY
    message: m
    crf: LABS
    expression: "lab.alt_u_l.severity < 3"
  - code: AE_UNKNOWN_NAME
    message: m
    subject: adverse_event
    expression: "onset_date <= end_of_trial"
"""


def test_the_loader_checks_the_ae_and_lab_names_with_file_and_line(tmp_path: Path, demo):  # noqa: ARG001, F811
    seed = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
    text = seed.read_text().split("\nquality_rules:")[0].rsplit("\n# Data-quality rules", 1)[0]
    bad = tmp_path / "trial.yaml"
    bad.write_text(text + "\n" + BAD_RULES)
    lines = bad.read_text().splitlines()

    def line_of(fragment: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if fragment in line)

    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([bad, Path(settings.BASE_DIR) / "seeds" / "crfs"])
    problems = [str(p) for p in refused.value.problems]

    def said(fragment: str, message: str) -> bool:
        return any(f"trial.yaml:{line_of(fragment)}" in p and message in p for p in problems)

    assert said("a.onset_day", "'aes' events have no field(s) onset_day"), problems
    assert said("item: weight_kg", "an adverse event has no item 'weight_kg'"), problems
    assert said("lab.sample_date.grade", "CRF 'LABS' has no laboratory item 'sample_date'"), problems
    assert said("lab.alt_u_l.severity", "a graded value has no 'severity'"), problems
    assert said("end_of_trial", "unknown field name(s): end_of_trial"), problems


def test_the_loader_refuses_a_crf_on_a_rule_of_the_ae_log(tmp_path: Path, demo):  # noqa: ARG001, F811
    seed = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
    text = seed.read_text().split("\nquality_rules:")[0].rsplit("\n# Data-quality rules", 1)[0]
    bad = tmp_path / "trial.yaml"
    bad.write_text(text + "\nquality_rules:\n  - code: AE_WITH_CRF\n    message: m\n    subject: adverse_event\n    crf: VITALS\n    expression: 'true'\n")
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([bad, Path(settings.BASE_DIR) / "seeds" / "crfs"])
    assert any("trial.yaml:" in str(p) and "names no 'crf'" in str(p) for p in refused.value.problems)


def test_the_loader_refuses_visit_date_on_a_rule_of_the_ae_log(tmp_path: Path, demo):  # noqa: ARG001, F811
    """An adverse event has no visit: `visit_date` (or the allocation names of a CRF's context) in a
    rule on the AE log is refused with the file, the line, the rule and the name, not accepted and
    then never defined at run time."""
    seed = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
    text = seed.read_text().split("\nquality_rules:")[0].rsplit("\n# Data-quality rules", 1)[0]
    bad = tmp_path / "trial.yaml"
    bad.write_text(
        text + "\nquality_rules:\n"
        "  - code: AE_AFTER_VISIT\n    message: m\n    subject: adverse_event\n    item: onset_date\n"
        "    expression: \"onset_date >= visit_date\"\n"
        "  - code: AE_DOSE\n    message: m\n    subject: adverse_event\n"
        "    expression: \"planned_dose_per_kg == null || grade < 3\"\n"
        "  - code: AE_TODAY\n    message: m\n    subject: adverse_event\n"
        "    expression: \"onset_date <= today && onset_date >= consent_date\"\n"
    )
    lines = bad.read_text().splitlines()
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([bad, Path(settings.BASE_DIR) / "seeds" / "crfs"])
    problems = [str(p) for p in refused.value.problems]
    visit_line = next(i for i, line in enumerate(lines, 1) if "onset_date >= visit_date" in line)
    dose_line = next(i for i, line in enumerate(lines, 1) if "planned_dose_per_kg" in line)
    assert any(
        f"trial.yaml:{visit_line}" in p and "quality rule 'AE_AFTER_VISIT'" in p and "reads 'visit_date'" in p
        for p in problems
    ), problems
    assert any(f"trial.yaml:{dose_line}" in p and "'AE_DOSE'" in p and "reads 'planned_dose_per_kg'" in p for p in problems), problems
    # `today` and `consent_date` are in an AE's context: that rule is accepted.
    assert not any("AE_TODAY" in p or "today'" in p for p in problems), problems
    assert len(problems) == 2, problems
