"""In the browser (issue 21, done when): the data manager runs the data-quality rules from the
quality page and sees their hits and the queries they raised: a weight change over 10% between two
visits (WEIGHT_CHANGE_10PCT) and an adverse event starting after the end of participation
(AE_ONSET_AFTER_STUDY_END), both ASC-DU rules of seeds/001_nct04356755_du.yaml.

The Celery task runs in the server's process at the commit (no broker in the tests: Celery eager)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from tests.visits.test_engine import VITALS
from trials.demo.participants import participant_register
from trials.monitoring.models import Query, QueryOrigin, QueryState
from trials.participants.services import participant_transition
from trials.protocol.models import Site
from trials.safety import services as safety
from trials.safety.models import AdverseEvent
from trials.visits.services import crf_entry_save_answers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_data_manager_runs_the_rules_and_sees_their_queries(page, live_server, demo_users):  # noqa: ANN001, ARG001
    today = timezone.localdate()
    participant = participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
        consent_date=today - timedelta(days=40), anchor_date=today - timedelta(days=30),
    )
    first, second = participant.visits.filter(definition__visit_crfs__crf_code="VITALS").order_by("order", "sequence")[:2]
    for visit, weight in ((first, "70"), (second, "80")):  # +14.3%: a hit of the 10% rule
        crf_entry_save_answers(user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="Entered for the test",
                               answers={**VITALS, "weight_kg": Decimal(weight)})
    onset = today - timedelta(days=2)
    safety.ae_save(AdverseEvent(
        participant=participant, verbatim_term="Nausea", onset_date=onset, ongoing=True, grade=1,
        related_product="not_related", procedure="none", related_procedure="not_related", action_taken="none",
        outcome="not_recovered", aware_at=datetime.combine(onset, datetime.min.time(), tzinfo=UTC),
    ), user=system_user())
    participant_transition(participant=participant, to="completed", user=system_user(), reason="Follow-up completed",
                           on=today - timedelta(days=5))  # the AE starts 3 days after: a hit
    assert not Query.objects.filter(origin=QueryOrigin.QUALITY_RULE).exists()

    log_in(page, live_server, "datamanager")
    page.goto(f"{live_server.url}/trials/ASC-DU/quality/")
    weight = page.locator("tr[data-rule=WEIGHT_CHANGE_10PCT] [data-testid=rule-open]")
    expect(weight).to_have_text("0")
    go(page, "[data-testid=quality-run]")
    expect(page.locator(".alert, .messagelist").first).to_contain_text("running")
    page.reload()

    expect(weight).to_have_text("1")
    expect(page.locator("tr[data-rule=AE_ONSET_AFTER_STUDY_END] [data-testid=rule-open]")).to_have_text("1")
    expect(page.locator("tr[data-rule=LAB_GRADE3_WITHOUT_AE] [data-testid=rule-open]")).to_have_text("0")
    queries = page.locator("[data-testid=rule-query]")
    expect(queries).to_have_count(2)
    expect(queries.filter(has_text="AE 1 – onset_date")).to_have_count(1)
    expect(queries.filter(has_text="weight_kg")).to_have_count(1)
    screenshot(page, "quality-rules-report")
    assert page.console_errors == []

    raised = Query.objects.filter(origin=QueryOrigin.QUALITY_RULE, state=QueryState.OPEN)
    assert sorted(raised.values_list("rule_code", flat=True)) == ["AE_ONSET_AFTER_STUDY_END", "WEIGHT_CHANGE_10PCT"]

    # The query opens from the report (the reviewer's query page in the admin).
    go(page, "[data-testid=rule-query] >> text=weight_kg")
    expect(page.locator("body")).to_contain_text("Body weight changed by more than 10%")
