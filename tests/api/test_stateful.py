"""A stateful run of the CRF entry write (issue 19, "stateful where it helps"): a Hypothesis state
machine saves an entry with the revision it last read (each save: the next revision, the value
stored), and with a stale revision (409 with the current revision, nothing written), in any order.
Bounded (a few short runs) to keep CI fast."""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from tests.api.test_writes import VITALS, screening
from trials.visits.models import CrfEntry

HEART_RATES = st.integers(50, 110)  # vitals.yaml: 30-220, soft check outside 45-120


def test_saves_with_read_and_stale_revisions(client_for, tls):
    client = client_for("coordinator", scope="write")
    visit = screening(tls)

    class EntryRevisions(RuleBasedStateMachine):
        @initialize()
        def read(self):
            """Examples run on one database: start from what is stored."""
            entry = CrfEntry.objects.filter(visit=visit, crf_code="VITALS").first()
            self.id = entry.pk if entry else None
            self.revision = entry.revision if entry else 0
            self.heart_rate = entry.answers["heart_rate"] if entry else None

        def body(self, revision: int, heart_rate: int) -> dict:
            return {"visit": visit.pk, "crf_code": "VITALS", "expected_revision": revision,
                    "answers": {**VITALS, "heart_rate": heart_rate}, "reason": "Corrected (state machine)"}

        def send(self, revision: int, heart_rate: int):
            if self.id is None:
                return client.post("/api/v1/entries/", self.body(revision, heart_rate), format="json")
            return client.put(f"/api/v1/entries/{self.id}/", self.body(revision, heart_rate), format="json")

        @rule(heart_rate=HEART_RATES)
        def save_with_the_revision_read(self, heart_rate):
            answer = self.send(self.revision, heart_rate)
            assert answer.status_code == (201 if self.id is None else 200), answer.json()
            assert answer.json()["revision"] == self.revision + 1
            self.id, self.revision, self.heart_rate = answer.json()["id"], self.revision + 1, heart_rate

        @precondition(lambda self: self.revision > 0)
        @rule(behind=st.integers(1, 4), heart_rate=HEART_RATES)
        def save_with_a_stale_revision(self, behind, heart_rate):
            answer = self.send(max(0, self.revision - behind), heart_rate)
            assert answer.status_code == 409 and answer.json()["current_revision"] == self.revision, answer.json()

        @invariant()
        def stored_as_known(self):
            if self.id is not None:
                entry = CrfEntry.objects.get(pk=self.id)
                assert (entry.revision, entry.answers["heart_rate"]) == (self.revision, self.heart_rate)
                assert entry.history.count() == self.revision  # one audited save per revision, none for a 409

    run_state_machine_as_test(EntryRevisions, settings=settings(
        max_examples=4, stateful_step_count=6, deadline=None, database=None, suppress_health_check=list(HealthCheck),
    ))
