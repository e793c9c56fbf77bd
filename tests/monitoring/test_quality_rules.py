"""Data-quality rules over stored data (issue 21): a rule of the trial file runs over the entries,
each hit raises one query (never two), the query closes itself when the data no longer hit, the
loader refuses a malformed rule with file:line, and the Celery task runs (eager) coalesced.

Expected hits come from the rule's definition and the values entered: ASC-DU's
WEIGHT_CHANGE_10PCT holds when the weight stays within ±10% of the previous visit's weight."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from edc.audit import SYSTEM_USERNAME, audited_save, system_user
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from tests.visits.test_engine import VITALS
from trials.demo.participants import participant_register
from trials.monitoring.models import QualityRunState, Query, QueryMessageKind, QueryOrigin, QueryState
from trials.monitoring.quality.services import quality_rules_run, quality_run_request
from trials.monitoring.queries import services as q
from trials.monitoring.tasks import quality_rules_nightly, quality_rules_task
from trials.protocol.loader import ProtocolLoadError, protocol_check
from trials.protocol.models import Site, Trial
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db
RULE = "WEIGHT_CHANGE_10PCT"


@pytest.fixture
def trial(demo):  # noqa: ANN001, ANN201, ARG001
    return Trial.objects.get(code="ASC-DU")


@pytest.fixture
def participant(trial):  # noqa: ANN001, ANN201
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial=trial, code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=10),
    )


def vitals_visits(participant):  # noqa: ANN001, ANN201
    return list(participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order", "sequence"))


def save_weight(visit, weight: str):  # noqa: ANN001, ANN201
    return crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="Entered for the test",
        answers={**VITALS, "weight_kg": Decimal(weight)},
    )


def rule_queries(trial):  # noqa: ANN001, ANN201
    return Query.objects.filter(trial=trial, origin=QueryOrigin.QUALITY_RULE).order_by("pk")


def test_the_seed_trials_declare_rules_the_loader_stores(trial):
    assert [r["code"] for r in trial.quality_rules] == [
        "DU_ASSESS_CHRONOLOGY", RULE, "AE_ONSET_AFTER_STUDY_END", "AE_ONSET_AFTER_DEATH", "LAB_GRADE3_WITHOUT_AE",
    ]
    assert all(Trial.objects.get(code=code).quality_rules for code in Trial.objects.values_list("code", flat=True))


def test_a_weight_change_over_ten_percent_raises_one_query_on_the_item_once(trial, participant):
    first, second, third = vitals_visits(participant)[:3]
    save_weight(first, "70")
    over = save_weight(second, "80")  # +14.3% on 70 kg: a hit
    save_weight(third, "84")  # +5% on 80 kg: no hit
    assert not Query.objects.exists()  # entered by the service without a confirmation: no query yet

    result = quality_rules_run(trial)

    assert result.hits[RULE] == 1 and result.raised == 1
    (query,) = rule_queries(trial)
    assert (query.entry_id, query.item, query.rule_code, query.state) == (over.pk, "weight_kg", RULE, QueryState.OPEN)
    assert query.raised_by.username == SYSTEM_USERNAME
    # weight_kg has one decimal (seeds/crfs/vitals.yaml): stored as "80.0"
    assert query.value_at_raise == {"value": "80.0", "missing": None}
    assert query.history.get().history_change_reason == f"Query raised: data-quality rule {RULE}"

    again = quality_rules_run(trial)  # a second run: the same hit, no second query
    assert (again.hits[RULE], again.raised) == (1, 0)
    assert rule_queries(trial).count() == 1


def test_a_hit_already_queried_on_the_item_raises_no_second_query(trial, participant):
    first, second = vitals_visits(participant)[:2]
    save_weight(first, "70")
    over = save_weight(second, "80")
    q.query_raise(user=user("datamanager"), entry=over, item="weight_kg", text="80 kg after 70 kg?")
    result = quality_rules_run(trial)
    assert (result.hits[RULE], result.raised) == (1, 0)
    assert not rule_queries(trial).exists()


def test_a_correction_of_an_earlier_visit_is_caught_and_the_query_closes_when_corrected(trial, participant):
    first, second = vitals_visits(participant)[:2]
    save_weight(first, "70")
    later = save_weight(second, "76")  # +8.6%: no warning at entry
    assert later.warnings == []
    save_weight(first, "68")  # the earlier visit corrected: 76 is now +11.8% on 68
    quality_rules_run(trial)
    (query,) = rule_queries(trial)
    assert (query.entry_id, query.state) == (later.pk, QueryState.OPEN)

    save_weight(second, "72")  # +5.9% on 68: no longer a hit
    result = quality_rules_run(trial)

    assert (result.hits[RULE], result.closed) == (0, 1)
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED and query.closed_by.username == SYSTEM_USERNAME
    reason = f"Closed automatically: the data no longer hit data-quality rule {RULE}."
    assert query.history.latest("history_date").history_change_reason == reason
    assert query.messages.order_by("pk").last().kind == QueryMessageKind.CLOSE
    assert quality_rules_run(trial).closed == 0  # closed once


def test_a_rule_removed_by_an_amendment_has_its_open_queries_closed_at_the_next_run(trial, participant):
    first, second = vitals_visits(participant)[:2]
    save_weight(first, "70")
    save_weight(second, "80")
    quality_rules_run(trial)
    assert rule_queries(trial).get().state == QueryState.OPEN
    # What the loader stores when the amended trial file no longer declares the rule.
    trial.quality_rules = [r for r in trial.quality_rules if r["code"] != RULE]
    audited_save(trial, user=system_user(), reason="Amendment: rule withdrawn")
    assert quality_rules_run(trial).closed == 1
    assert rule_queries(trial).get().state == QueryState.CLOSED


def test_a_value_a_reviewer_accepted_is_not_queried_again(trial, participant):
    first, second, *_ = vitals_visits(participant)
    save_weight(first, "70")
    later = save_weight(second, "76")
    save_weight(first, "68")
    quality_rules_run(trial)
    (query,) = rule_queries(trial)
    q.query_close(query=query, user=user("datamanager"), justification="Source confirms 76 kg after a diet.")
    assert quality_rules_run(trial).raised == 0
    assert rule_queries(trial).count() == 1 and later.pk == query.entry_id


def test_the_celery_task_runs_coalesced_and_the_nightly_scan_requests_each_trial(trial, participant, monkeypatch):
    # The task runs in this process (Celery's own eager mode, as tests/safety/test_summary.py does):
    # the test's transaction never commits, so a worker of .ci/run could not see its data.
    from edc.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    first, second = vitals_visits(participant)[:2]
    save_weight(first, "70")
    later = save_weight(second, "76")
    save_weight(first, "68")
    assert quality_run_request(trial.pk) is True  # enqueued at the commit
    state = QualityRunState.objects.get(trial=trial)
    assert state.queued
    # The test's transaction never commits, so the on_commit enqueue does not fire: deliver the
    # task the way the broker would (eager Celery in tests, the real task code).
    assert quality_rules_task.delay(trial.pk).get() is False
    state.refresh_from_db()
    assert (state.queued, state.runs, state.last_hits["hits"][RULE]) == (False, 1, 1)
    assert rule_queries(trial).get().entry_id == later.pk
    requested = quality_rules_nightly.delay().get()
    assert requested == Trial.objects.exclude(quality_rules=[]).count() == 4


def test_a_request_during_a_run_is_coalesced_into_one_more_run(trial):
    assert quality_run_request(trial.pk) is True
    assert quality_run_request(trial.pk) is False  # queued: nothing more enqueued
    state = QualityRunState.objects.get(trial=trial)
    assert (state.queued, state.dirty) == (True, True)


def test_the_data_manager_runs_the_rules_and_sees_the_hits_scoped_to_her_trial(client, trial, participant):
    first, second = vitals_visits(participant)[:2]
    save_weight(first, "70")
    save_weight(second, "76")
    save_weight(first, "68")
    quality_rules_run(trial)
    client.force_login(user("datamanager"))
    page = client.get(reverse("quality_report", args=["ASC-DU"]))
    assert page.status_code == 200
    assert page.context["rows"][1].rule.code == RULE and page.context["rows"][1].open == 1
    assert client.post(reverse("quality_run", args=["ASC-DU"])).status_code == 302
    assert b'data-testid="quality-link"' in client.get(reverse("monitoring_dashboard")).content
    client.force_login(user("coordinator.toulouse"))
    assert client.get(reverse("quality_report", args=["ASC-DU"])).status_code == 403


BAD_RULE = """
quality_rules:
  - code: WEIGHT
    message: Weight jumped.
    crf: VITALS
    item: weight_kg
    expression: "weight_kilos <= previous.VITALS.weight_kg * 1.1"
  - code: MISSING_CRF
    message: x
    crf: NOPE
    expression: "true"
"""


def test_the_loader_refuses_a_malformed_rule_with_file_and_line(tmp_path: Path, demo):  # noqa: ARG001
    seed = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
    text = seed.read_text().split("\nquality_rules:")[0].rsplit("\n# Data-quality rules", 1)[0]
    bad = tmp_path / "trial.yaml"
    bad.write_text(text + "\n" + BAD_RULE)
    lines = bad.read_text().splitlines()
    expression_line = next(i for i, line in enumerate(lines, 1) if "weight_kilos" in line)
    crf_line = next(i for i, line in enumerate(lines, 1) if "crf: NOPE" in line)
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([bad, Path(settings.BASE_DIR) / "seeds" / "crfs"])
    problems = [str(p) for p in refused.value.problems]
    unknown_name = "unknown field name(s): weight_kilos"
    assert any(f"trial.yaml:{expression_line}" in p and unknown_name in p for p in problems), problems
    assert any(f"trial.yaml:{crf_line}" in p and "unknown CRF 'NOPE'" in p for p in problems), problems


def test_the_loader_refuses_a_rule_missing_its_expression(tmp_path: Path, demo):  # noqa: ARG001
    seed = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
    text = seed.read_text().split("\nquality_rules:")[0].rsplit("\n# Data-quality rules", 1)[0]
    bad = tmp_path / "trial.yaml"
    bad.write_text(text + "\nquality_rules:\n  - code: NO_EXPR\n    message: m\n    crf: VITALS\n")
    with pytest.raises(ProtocolLoadError) as refused:
        protocol_check([bad, Path(settings.BASE_DIR) / "seeds" / "crfs"])
    assert any("trial.yaml:" in str(p) and "expression" in str(p) for p in refused.value.problems)
