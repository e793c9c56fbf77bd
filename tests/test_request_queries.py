"""Each request of the coordinator flow makes the same number of queries whatever the size of the
trial (issue 22): the counts are measured on a small and on a larger synthetic trial and compared."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from edc.audit import system_user
from tests.flow import STEPS, Flow
from trials.demo.synthetic import SynthParams, synth_trial_generate
from trials.protocol.models import Role
from trials.protocol.services import study_role_grant

pytestmark = pytest.mark.django_db

# A query reading the study roles themselves (not a subquery scoping another table by them).
ROLE_READ = re.compile(r'^SELECT [^()]*? FROM "protocol_studyrole"')


def coordinator_flow(client, code: str, participants: int, visits: int) -> dict[str, int]:  # noqa: ANN001
    """The queries of each step for a coordinator at the first site of a new synthetic trial."""
    trial = synth_trial_generate(SynthParams(code=code, participants=participants, visits=visits, crfs=2, items=8, sites=2, aes_per_participant=0)).trial
    site = trial.sites.order_by("code").first()
    user = get_user_model().objects.create_user(f"coord-{code.lower()}", password="x")
    study_role_grant(user=user, trial=trial, role=Role.COORDINATOR, site=site, granted_by=system_user(), reason="test")
    participant = trial.participants.filter(site=site).order_by("screening_number").first()
    visit = participant.visits.order_by("order").last()
    client.force_login(user)
    steps = Flow.at(client, participant, visit, f"{code}-C01").steps()
    counts = {}
    for name in STEPS:
        steps[name]()  # once to warm the per-process caches, as a running server has them
        with CaptureQueriesContext(connection) as queries:
            steps[name]()
        counts[name] = len(queries)
        # One read of the user's roles per request, reused by every check of the request.
        role_reads = [q["sql"] for q in queries.captured_queries if ROLE_READ.match(q["sql"])]
        assert len(role_reads) <= 1, (name, role_reads)
    return counts


# The most queries each step may make (session and user are one query): lowered as requests get
# lighter (issue 22), never raised without saying why in docs/architecture.md "Light requests".
# Third pass: the session and the user (with her study-builder row, the menu's) are one query
# (trials.accounts.session_store): one fewer in every step, two in the pages with the menu; the
# list reads its site by key and its page with its total (7 -> 4); the participant page reads
# values (15 -> 9 before the session change); the CRF page, the live update and the save read
# their checks with the entry (12 -> 6, 8 -> 5, 19 -> 12 before the session change).
CEILING = {"list": 4, "participant": 7, "crf": 4, "live": 4, "save": 11}


def test_query_count_per_step_does_not_grow_with_the_trial(client):
    small = coordinator_flow(client, "FLOW-S", participants=20, visits=2)
    large = coordinator_flow(client, "FLOW-L", participants=200, visits=5)
    print("queries per step, small / large:", small, large)
    assert small == large
    assert all(large[step] <= CEILING[step] for step in STEPS), (large, CEILING)
