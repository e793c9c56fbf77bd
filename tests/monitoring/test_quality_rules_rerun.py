"""The data-quality rules run again after an amendment (issue 21): applied through the study build
(trials.build) or loaded with a changed `quality_rules:`, the trial's rules are requested through
the coalesced Celery task, and the queries of a rule the amendment rewrote or removed close.

The Celery task runs in this process (Celery's eager mode) when the transaction's on_commit
callbacks run (pytest-django's django_capture_on_commit_callbacks): the real request, the real
task. Expected hits: 70 kg then 80 kg is +14.3%: a hit of the 10% rule, not of a 20% one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model

from edc.audit import system_user
from tests.build.amended import W2_AFTER, W2_BEFORE
from tests.visits.test_engine import VITALS
from trials.build.services import amendment_apply, build_preview, impact_digest
from trials.demo.participants import participant_register
from trials.monitoring.models import QualityRunState, Query, QueryOrigin, QueryState
from trials.monitoring.quality.services import quality_rules_run
from trials.protocol.loader import protocol_load
from trials.protocol.models import Site, Trial
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db
PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 3, 2)
SEED = Path(settings.BASE_DIR) / "seeds" / "001_nct04356755_du.yaml"
RULE_10 = "weight_kg <= previous.VITALS.weight_kg * 1.1 && weight_kg >= previous.VITALS.weight_kg * 0.9"
RULE_20 = "weight_kg <= previous.VITALS.weight_kg * 1.2 && weight_kg >= previous.VITALS.weight_kg * 0.8"


@pytest.fixture
def eager(monkeypatch):  # noqa: ANN001, ANN201
    from edc.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture
def queried(demo_users, eager):  # noqa: ANN001, ANN201, ARG001
    """An ASC-DU participant whose weight went from 70 to 80 kg, queried by WEIGHT_CHANGE_10PCT."""
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=PARIS), tick=True):
        participant = participant_register(
            site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
            consent_date=TODAY - timedelta(days=20), anchor_date=TODAY - timedelta(days=10),
        )
        first, second = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order", "sequence")[:2]
        for visit, weight in ((first, "70"), (second, "80")):
            crf_entry_save_answers(
                user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="Entered for the test",
                answers={**VITALS, "weight_kg": Decimal(weight)},
            )
        trial = Trial.objects.get(code="ASC-DU")
        quality_rules_run(trial)
        query = Query.objects.get(trial=trial, origin=QueryOrigin.QUALITY_RULE, rule_code="WEIGHT_CHANGE_10PCT")
        assert query.state == QueryState.OPEN
        yield trial, query


def apply(text: str, trial: Trial, captured) -> None:  # noqa: ANN001
    datamanager = get_user_model().objects.get(username="datamanager")
    files = {SEED.name: text.encode()}
    _code, impact = build_preview(files, user=datamanager, trial=trial)
    with captured(execute=True):
        amendment_apply(files, user=datamanager, trial=trial, version="2.0", effective_date=TODAY,
                        reason="Amendment 1", previewed=impact_digest(impact))


def test_an_amendment_that_rewrites_a_rule_reruns_the_rules_and_closes_the_queries_no_longer_hit(
    queried, django_capture_on_commit_callbacks,  # noqa: ANN001
):
    trial, query = queried
    text = SEED.read_text(encoding="utf-8")
    assert text.count(RULE_10) == 1
    with time_machine.travel(datetime(2026, 3, 2, 11, 0, tzinfo=PARIS), tick=True):
        apply(text.replace(RULE_10, RULE_20), trial, django_capture_on_commit_callbacks)

    state = QualityRunState.objects.get(trial=trial)
    assert (state.runs, state.queued) == (1, False)  # the loader's and the build's requests: one run
    assert state.last_hits["hits"]["WEIGHT_CHANGE_10PCT"] == 0 and state.last_hits["closed"] == 1
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_an_amendment_that_keeps_the_rules_still_reruns_them(queried, django_capture_on_commit_callbacks):  # noqa: ANN001
    trial, query = queried
    text = SEED.read_text(encoding="utf-8")
    with time_machine.travel(datetime(2026, 3, 2, 11, 0, tzinfo=PARIS), tick=True):
        apply(text.replace(W2_BEFORE, W2_AFTER), trial, django_capture_on_commit_callbacks)

    state = QualityRunState.objects.get(trial=trial)
    assert state.runs == 1 and state.last_hits["hits"]["WEIGHT_CHANGE_10PCT"] == 1
    query.refresh_from_db()
    assert query.state == QueryState.OPEN  # still hit: still open, not raised twice
    assert Query.objects.filter(trial=trial, origin=QueryOrigin.QUALITY_RULE).count() == 1


def test_load_trials_with_a_removed_rule_closes_its_queries(queried, django_capture_on_commit_callbacks, tmp_path):  # noqa: ANN001
    trial, query = queried
    text = SEED.read_text(encoding="utf-8")
    start = text.index("  - code: WEIGHT_CHANGE_10PCT")
    end = text.index("  # Protocol: the safety of the injections")
    changed = tmp_path / SEED.name
    changed.write_text(text[:start] + text[end:], encoding="utf-8")
    with django_capture_on_commit_callbacks(execute=True):
        protocol_load([changed, SEED.parent / "crfs"], user=system_user())

    trial.refresh_from_db()
    assert "WEIGHT_CHANGE_10PCT" not in [rule["code"] for rule in trial.quality_rules]
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert QualityRunState.objects.get(trial=trial).runs == 1
