"""Properties of the safety summary over random AE sets (hypothesis): in every arm, participants with
an AE never outnumber the safety population, the worst-grade counts add up to the participants with
an AE and the events of each grade to the events, and the blinded (pooled) and unblinded versions
agree on every total. An oracle written from the definitions (ICH E9, CDISC ADaM SAFFL / TRTEMFL)
checks the headline counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edc.audit import audited_bulk_create, system_user
from tests.participants.conftest import _seeded, days_ago, demo, site  # noqa: F401 - fixtures
from tests.safety.test_summary import MEXICO, enrolled_without_allocation, frozen, registered  # noqa: F401 - frozen: autouse
from trials.participants import services
from trials.demo.participants import participant_register
from trials.participants.models import ParticipantStatus
from trials.safety.models import AdverseEvent, CodingTerm
from trials.safety.summary import GRADES, compute_summary

COUNTS = ("enrolled", "safety_population", "with_ae", "with_sae", "with_related", "with_withdrawal", "deaths", "with_dlt", "events",
          "sae_events", "related_events", "severe_events", "with_severe", "followup_days", "pre_with_ae", "pre_events", "pre_with_sae")

ae_rows = st.lists(
    st.fixed_dictionaries({
        "who": st.integers(0, 6),
        "grade": st.sampled_from(GRADES),
        "onset": st.integers(0, 40),
        "serious": st.booleans(),
        "related_product": st.sampled_from(["not_related", "unlikely", "possible", "probable", "definite"]),
        "leads_to_withdrawal": st.booleans(),
        "is_dlt": st.booleans(),
        "outcome": st.sampled_from(["recovered", "not_recovered", "fatal"]),
        "term": st.sampled_from(["Headache", "Nausea", "Pain", "Bruising"]),
        "coded": st.booleans(),
    }),
    max_size=40,
)


@pytest.fixture
def cohort(demo):  # noqa: ANN001, ANN201, ARG001
    """ADSVF-SSC-HANDS: 2 + 2 participants in the arms (the ADSVF ones treated some days after
    enrolment, one withdrawn; CONTROL: no intervention), one not allocated, one enrolled recently
    (not treated), one in screening."""
    user = system_user()
    people = [registered(MEXICO, "ADSVF", treated_days_ago=25), registered(MEXICO, "ADSVF", treated_days_ago=20),
              registered(MEXICO, "CONTROL"), registered(MEXICO, "CONTROL")]
    services.participant_transition(participant=people[1], to=ParticipantStatus.WITHDRAWN, user=user, reason="Moved", on=days_ago(15))
    people.append(enrolled_without_allocation(MEXICO))
    people.append(registered(MEXICO, "ADSVF", enrolled_days_ago=3))
    people.append(participant_register(site=site(MEXICO), user=user, consent_date=days_ago(5), anchor_date=None))
    term = CodingTerm.objects.create(dictionary="TEST", version="1", llt_code="1", llt="Pain in hand", pt_code="2", pt="Pain in extremity",
                                     soc_code="3", soc="Musculoskeletal and connective tissue disorders")
    return people, term


def test_summary_properties_over_random_ae_sets(cohort) -> None:  # noqa: ANN001
    people, term = cohort
    trial = people[0].trial
    user = system_user()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=ae_rows, cutoff_days_ago=st.integers(0, 30))
    def check(rows: list[dict], cutoff_days_ago: int) -> None:
        with transaction.atomic():
            numbers: dict[int, int] = {}
            now = timezone.now()
            aes = []
            for row in rows:
                who = people[row["who"]]
                numbers[who.pk] = numbers.get(who.pk, 0) + 1
                aes.append(AdverseEvent(
                    participant=who, number=numbers[who.pk], verbatim_term=row["term"], coded_term=term if row["coded"] else None,
                    onset_date=days_ago(row["onset"]), grade=row["grade"], serious=row["serious"],
                    related_product=row["related_product"], leads_to_withdrawal=row["leads_to_withdrawal"],
                    is_dlt=row["is_dlt"], outcome=row["outcome"], aware_at=now, serious_aware_at=now if row["serious"] else None,
                    procedure="none", related_procedure="not_related", action_taken="none",
                ))
            audited_bulk_create(AdverseEvent, aes, user=user, reason="AE report")
            cutoff_at = timezone.now() - timedelta(days=cutoff_days_ago)
            unblinded = compute_summary(trial, cutoff_at=cutoff_at, blinded=False)
            blinded = compute_summary(trial, cutoff_at=cutoff_at, blinded=True)
            transaction.set_rollback(True)

        for group in unblinded["groups"] + blinded["groups"] + [{"counts": unblinded["total"]}]:
            counts = group["counts"]
            assert counts["safety_population"] <= counts["enrolled"]
            assert counts["with_ae"] <= counts["safety_population"]
            assert sum(counts["grades"].values()) == counts["with_ae"]
            assert sum(counts["grade_events"].values()) == counts["events"]
            assert counts["severe_events"] == sum(counts["grade_events"][g] for g in ("3", "4", "5"))
            for name in ("with_sae", "with_related", "with_withdrawal", "with_dlt", "with_severe"):
                assert counts[name] <= counts["with_ae"]
            for name, events in (("with_ae", "events"), ("with_sae", "sae_events"), ("pre_with_ae", "pre_events")):
                assert counts[name] <= counts[events]
            assert counts["deaths"] <= counts["safety_population"]
            assert counts["pre_with_ae"] <= counts["enrolled"]
        for name in COUNTS:
            assert blinded["total"][name] == unblinded["total"][name], name
            assert blinded["groups"][0]["counts"][name] == unblinded["total"][name], name
        assert blinded["total"]["grades"] == unblinded["total"]["grades"]
        assert blinded["total"]["grade_events"] == unblinded["total"]["grade_events"]
        assert [s["total"] for s in blinded["soc"]] == [s["total"] for s in unblinded["soc"]]
        assert [p["total"] for p in blinded["sae_timeline"]] == [p["total"] for p in unblinded["sae_timeline"]]

        # An oracle from the definitions: enrolled on or before the cut-off; observed from the first
        # dose (enrolment in the no-intervention arm) if that is on or before the cut-off; an AE is
        # treatment-emergent when its onset is on or after that start, pre-treatment otherwise.
        cutoff = timezone.localdate(cutoff_at)
        enrolled = {p.pk: p for p in people if p.enrolment_date and p.enrolment_date <= cutoff and p.status not in ("screening", "screen_failure")}
        start = {pk: p.first_treatment_date or (p.enrolment_date if pk in control else None) for pk, p in enrolled.items()}
        safety = {pk for pk, day in start.items() if day is not None and day <= cutoff}
        seen = [(people[r["who"]].pk, days_ago(r["onset"])) for r in rows if days_ago(r["onset"]) <= cutoff and people[r["who"]].pk in enrolled]
        teae = [(pk, onset) for pk, onset in seen if pk in safety and onset >= start[pk]]
        pre = [(pk, onset) for pk, onset in seen if (pk, onset) not in teae]
        assert unblinded["total"]["enrolled"] == len(enrolled)
        assert unblinded["total"]["safety_population"] == len(safety)
        assert unblinded["total"]["with_ae"] == len({pk for pk, _ in teae})
        assert unblinded["total"]["events"] == len(teae)
        assert unblinded["total"]["pre_with_ae"] == len({pk for pk, _ in pre})
        assert unblinded["total"]["pre_events"] == len(pre)

    for person in people:
        person.refresh_from_db()
    control = {p.pk for p in people if getattr(getattr(p, "allocation", None), "arm", None) and p.allocation.arm.code == "CONTROL"}
    check()
