"""Safety summaries: the counts on a small hand-built AE set, the safety population and
treatment-emergent AEs (pre-treatment AEs apart), the pooled (blinded) version, the data cut-off,
the coalesced recomputation, and the page as the DSMB statistician and as blinded users of the
quadruple-blind ASC-DU trial. The published AE table replayed: test_summary_published.py."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.http import HttpRequest
from django.utils import timezone

from edc.audit import audited_save, system_user
from tests.participants.conftest import _seeded, days_ago, demo, site  # noqa: F401 - fixtures
from trials.participants import eligibility, services
from trials.demo.participants import participant_register
from trials.participants.models import CriterionAnswer, Participant, ParticipantStatus
from trials.protocol.models import Arm, CriterionKind, Trial
from trials.safety.models import AdverseEvent, CodingTerm, SafetySummary, SummaryState
from trials.safety.summary import compute_summary, summary_refresh, summary_request_recompute

MEXICO = ("ADSVF-SSC-HANDS", "INCMNSZ")  # open label: arms assigned by hand
TOULOUSE = ("ASC-DU", "TLS")  # randomized, quadruple blind
PASSWORDS = {
    "dsmb.statistician": "demo-DSMB-Stat-26",
    "coordinator.toulouse": "demo-Coord-Toulouse-26",
    "sponsor.toulouse": "demo-Sponsor-26",
    "coordinator.mexico": "demo-Coord-Mexico-26",
}

EXPLICIT = {"procedure": "none", "related_procedure": "not_related", "action_taken": "none", "outcome": "not_recovered"}


def ae(participant: Participant, number: int, *, grade: int, onset: int = 5, term: str = "Headache", **fields) -> AdverseEvent:  # noqa: ANN003
    """An AE saved the audited way, with onset `onset` days ago."""
    now = timezone.now()
    return audited_save(
        AdverseEvent(
            participant=participant, number=number, verbatim_term=term, onset_date=days_ago(onset), grade=grade,
            related_product=fields.pop("related_product", "not_related"), aware_at=now,
            serious_aware_at=now if fields.get("serious") else None, **{**EXPLICIT, **fields},
        ),
        user=system_user(), reason="AE report",
    )


@pytest.fixture(autouse=True)
def frozen():  # noqa: ANN201
    """The clock stands still during each test (fixtures included): no test crosses midnight."""
    with time_machine.travel(timezone.now(), tick=False):
        yield


def registered(
    key: tuple[str, str], arm_code: str | None = None, *, enrolled_days_ago: int = 28, treated_days_ago: int | None = None,
) -> Participant:
    """Enrolled (and allocated) `enrolled_days_ago`; first treatment `treated_days_ago` if given."""
    return participant_register(
        site=site(key), user=system_user(), consent_date=days_ago(enrolled_days_ago + 2),
        anchor_date=days_ago(enrolled_days_ago), arm_code=arm_code,
        first_treatment_date=days_ago(treated_days_ago) if treated_days_ago is not None else None,
    )


def enrolled_without_allocation(key: tuple[str, str]) -> Participant:
    """Enrolled through the services, not (yet) assigned an arm."""
    user = system_user()
    participant = participant_register(site=site(key), user=user, consent_date=days_ago(30), anchor_date=None)
    evaluation = eligibility.evaluate(participant)
    answers = {
        (c.code, ""): (CriterionAnswer.MET if c.kind == CriterionKind.INCLUSION else CriterionAnswer.NOT_MET, "checked")
        for c in participant.trial.criteria.filter(is_active=True) if (c.code, "") not in evaluation.answers
    }
    services.eligibility_record(participant=participant, answers=answers, user=user)
    return services.participant_enrol(participant=participant, user=user, enrolment_date=days_ago(28))


@pytest.fixture
def hands(demo):  # noqa: ANN001, ANN201, ARG001
    """ADSVF-SSC-HANDS: 3 participants in ADSVF (treated on the day of enrolment), 2 in CONTROL
    (no intervention: observed from enrolment), 1 enrolled without an arm (never treated), 1 in
    screening (not enrolled), with AEs of every kind."""
    user = system_user()
    sepsis = CodingTerm.objects.create(dictionary="TEST", version="1", llt_code="1", llt="Sepsis", pt_code="10", pt="Sepsis",
                                       soc_code="100", soc="Infections and infestations")
    cellulitis = CodingTerm.objects.create(dictionary="TEST", version="1", llt_code="2", llt="Cellulitis of hand",
                                           pt_code="11", pt="Cellulitis", soc_code="100", soc="Infections and infestations")
    p1, p2, p3 = (registered(MEXICO, "ADSVF", treated_days_ago=28) for _ in range(3))
    p4, p5 = (registered(MEXICO, "CONTROL") for _ in range(2))
    p6 = enrolled_without_allocation(MEXICO)
    p7 = participant_register(site=site(MEXICO), user=user, consent_date=days_ago(5), anchor_date=None)  # screening
    ae(p1, 1, grade=1, term="Headache")
    ae(p1, 2, grade=3, term="Infected hand", coded_term=cellulitis, serious=True, related_product="possible")
    ae(p2, 1, grade=2, term="Bruising", related_product="probable", leads_to_withdrawal=True, onset=12)
    services.participant_transition(participant=p2, to=ParticipantStatus.WITHDRAWN, user=user, reason="AE", on=days_ago(10))
    ae(p4, 1, grade=5, term="Septic shock", coded_term=sepsis, serious=True, outcome="fatal")
    ae(p4, 2, grade=1, term="headache")
    ae(p5, 1, grade=2, term="Headache", onset=1)  # after a cut-off 3 days ago
    ae(p6, 1, grade=4, term="Pain", is_dlt=True, serious=True)  # never treated: a pre-treatment AE
    ae(p7, 1, grade=3, term="Fainting")  # not enrolled: never counted
    p8 = registered(MEXICO, "CONTROL")  # died without any AE recorded: a death, not a participant with an AE
    services.participant_transition(participant=p8, to=ParticipantStatus.DIED, user=user, reason="Cardiac arrest", on=days_ago(2))
    return {"trial": Trial.objects.get(code=MEXICO[0]), "participants": (p1, p2, p3, p4, p5, p6, p7)}


def by_key(content: dict) -> dict[str, dict]:
    return {g["code"] or g["key"]: g["counts"] for g in content["groups"]}


def test_counts_by_arm_on_a_hand_built_set(hands) -> None:  # noqa: ANN001
    content = compute_summary(hands["trial"], cutoff_at=timezone.now(), blinded=False)
    assert [g["code"] or g["kind"] for g in content["groups"]] == ["ADSVF", "CONTROL", "unallocated"]
    groups = by_key(content)
    adsvf, control, none = groups["ADSVF"], groups["CONTROL"], groups["unallocated"]
    assert (adsvf["enrolled"], control["enrolled"], none["enrolled"]) == (3, 3, 1)
    # p6 was never treated: enrolled, not in the safety population.
    assert (adsvf["safety_population"], control["safety_population"], none["safety_population"]) == (3, 3, 0)
    assert (adsvf["with_ae"], control["with_ae"], none["with_ae"]) == (2, 2, 0)
    assert adsvf["with_ae_pct"] == 66.7
    # Each participant once, at her worst grade: p1 at 3 (not 1), p4 at 5 (not 1); events of each grade beside.
    assert adsvf["grades"] == {"1": 0, "2": 1, "3": 1, "4": 0, "5": 0}
    assert adsvf["grade_events"] == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0}
    assert control["grades"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}
    assert control["grade_events"] == {"1": 1, "2": 1, "3": 0, "4": 0, "5": 1}
    assert none["grades"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0}
    assert (adsvf["with_severe"], adsvf["severe_events"], control["with_severe"], control["severe_events"]) == (1, 1, 1, 1)
    assert (adsvf["with_sae"], adsvf["sae_events"], control["with_sae"], none["with_sae"]) == (1, 1, 1, 0)
    assert (adsvf["with_related"], adsvf["related_events"], control["with_related"]) == (2, 2, 0)
    assert (adsvf["with_withdrawal"], adsvf["withdrawal_events"], adsvf["deaths"], control["deaths"]) == (1, 1, 0, 2)
    assert (control["fatal_events"], none["with_dlt"], adsvf["with_dlt"]) == (1, 0, 0)
    assert (adsvf["events"], control["events"], none["events"]) == (3, 3, 0)
    # p6's AE (grade 4, serious, DLT) is a pre-treatment AE, counted apart over the enrolled.
    assert (none["pre_with_ae"], none["pre_events"], none["pre_with_sae"], none["pre_with_severe"]) == (1, 1, 1, 1)
    assert none["pre_with_ae_pct"] == 100.0
    # Follow-up from the first dose (ADSVF, on the day of enrolment) or enrolment (no intervention):
    # 28 days each, except p2 (withdrawn 10 days ago: 18 days).
    assert adsvf["followup_days"] == 28 + 18 + 28
    assert adsvf["incidence_per_100py"] == round(100 * 3 / ((28 + 18 + 28) / 365.25), 1)
    assert control["followup_days"] == 28 + 28 + 26
    assert none["followup_days"] == 0
    total = content["total"]
    assert (total["enrolled"], total["safety_population"], total["not_treated"], total["with_ae"], total["events"]) == (7, 6, 1, 4, 6)
    # System organ classes: the coded ones first, uncoded AEs by verbatim term.
    infections = content["soc"][0]
    assert infections["soc"] == "Infections and infestations"
    assert infections["total"] == {"participants": 2, "events": 2}
    assert {t["term"] for t in infections["terms"]} == {"Sepsis", "Cellulitis"}
    uncoded = next(s for s in content["soc"] if not s["coded"])
    headache = next(t for t in uncoded["terms"] if t["term"] == "Headache")
    assert headache["groups"][f"arm-{Arm.objects.get(trial=hands['trial'], code='CONTROL').pk}"] == {"participants": 1, "events": 1}
    assert "Pain" not in {t["term"] for t in uncoded["terms"]}  # pre-treatment
    assert "Fainting" not in json.dumps(content)  # the participant in screening is not enrolled
    # Cumulative serious TEAEs by onset date.
    assert [point["total"] for point in content["sae_timeline"]] == [2]


def test_the_cut_off_leaves_out_later_aes_and_later_enrolments(hands) -> None:  # noqa: ANN001
    late = registered(MEXICO, "ADSVF", enrolled_days_ago=1, treated_days_ago=1)
    ae(late, 1, grade=3, onset=1)
    cutoff_at = timezone.now() - timedelta(days=3)
    groups = by_key(compute_summary(hands["trial"], cutoff_at=cutoff_at, blinded=False))
    assert groups["CONTROL"]["with_ae"] == 1  # p5's AE began after the cut-off
    assert groups["CONTROL"]["events"] == 2
    assert groups["CONTROL"]["deaths"] == 1  # p8 died after the cut-off
    assert groups["ADSVF"]["safety_population"] == 3  # enrolled after the cut-off: not at risk yet
    assert groups["ADSVF"]["followup_days"] == 25 + 18 + 25


def test_a_participant_enrolled_but_not_treated_is_not_at_risk(hands) -> None:  # noqa: ANN001
    """ICH E3 12.2 / ADaM SAFFL: the safety population is who received a dose, not who enrolled."""
    waiting = registered(MEXICO, "ADSVF", enrolled_days_ago=20)
    ae(waiting, 1, grade=2, term="Anxiety", onset=10)
    groups = by_key(compute_summary(hands["trial"], cutoff_at=timezone.now(), blinded=False))
    assert (groups["ADSVF"]["enrolled"], groups["ADSVF"]["safety_population"], groups["ADSVF"]["not_treated"]) == (4, 3, 1)
    assert (groups["ADSVF"]["with_ae"], groups["ADSVF"]["with_ae_pct"], groups["ADSVF"]["events"]) == (2, 66.7, 3)
    assert (groups["ADSVF"]["pre_with_ae"], groups["ADSVF"]["pre_events"], groups["ADSVF"]["pre_with_ae_pct"]) == (1, 1, 25.0)
    # Treated after the cut-off: still not at risk at that cut-off.
    services.participant_start_treatment(participant=waiting, user=system_user(), first_treatment_date=days_ago(4))
    before = by_key(compute_summary(hands["trial"], cutoff_at=timezone.now() - timedelta(days=6), blinded=False))
    assert before["ADSVF"]["safety_population"] == 3
    after = by_key(compute_summary(hands["trial"], cutoff_at=timezone.now(), blinded=False))
    assert after["ADSVF"]["safety_population"] == 4
    assert after["ADSVF"]["followup_days"] == 28 + 18 + 28 + 4  # from the first dose
    assert (after["ADSVF"]["events"], after["ADSVF"]["pre_events"]) == (3, 1)  # onset 10 days ago: before the dose


def test_aes_before_the_first_dose_are_pre_treatment_not_treatment_emergent(hands) -> None:  # noqa: ANN001
    """ADaM TRTEMFL: an AE is treatment-emergent when its onset is on or after the first dose."""
    treated = registered(MEXICO, "ADSVF", enrolled_days_ago=20, treated_days_ago=15)
    ae(treated, 1, grade=3, term="Syncope", serious=True, onset=16)  # the day before the first dose
    ae(treated, 2, grade=1, term="Bruising", onset=15)  # the day of the first dose: treatment-emergent
    content = compute_summary(hands["trial"], cutoff_at=timezone.now(), blinded=False)
    adsvf = by_key(content)["ADSVF"]
    assert (adsvf["safety_population"], adsvf["with_ae"], adsvf["events"]) == (4, 3, 4)
    assert adsvf["grades"] == {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0}  # her worst TEAE is grade 1
    assert (adsvf["with_sae"], adsvf["sae_events"]) == (1, 1)  # p1's only
    assert (adsvf["pre_with_ae"], adsvf["pre_events"], adsvf["pre_with_sae"], adsvf["pre_with_severe"]) == (1, 1, 1, 1)
    assert "Syncope" not in json.dumps(content["soc"])
    assert [point["total"] for point in content["sae_timeline"]] == [2]


def test_blinded_version_pools_the_arms_and_names_none(hands) -> None:  # noqa: ANN001
    trial = hands["trial"]
    now = timezone.now()
    blinded = compute_summary(trial, cutoff_at=now, blinded=True)
    unblinded = compute_summary(trial, cutoff_at=now, blinded=False)
    assert [g["kind"] for g in blinded["groups"]] == ["pooled"]
    assert blinded["groups"][0]["counts"]["safety_population"] == 6
    assert blinded["total"]["deaths"] == 2
    for name in ("enrolled", "safety_population", "with_ae", "grades", "grade_events", "with_sae", "deaths", "events",
                 "followup_days", "pre_with_ae", "pre_events", "severe_events"):
        assert blinded["total"][name] == unblinded["total"][name]
    text = json.dumps(blinded)
    for arm in Arm.objects.filter(trial=trial):
        assert arm.label not in text
        assert f"arm-{arm.pk}" not in text
        assert f'"{arm.code}"' not in text


def test_a_registry_counts_from_the_procedure(demo) -> None:  # noqa: ANN001, ARG001
    """The registry's "treatment" is the grafting (its first treatment date): without one a
    participant is enrolled, not in the safety population."""
    grafted = registered(("SSC-FATGRAFT-REG", "MES"), treated_days_ago=20)
    waiting = registered(("SSC-FATGRAFT-REG", "MES"))
    ae(grafted, 1, grade=2)
    ae(waiting, 1, grade=1)
    content = compute_summary(grafted.trial, cutoff_at=timezone.now(), blinded=False)
    [(kind, counts)] = [(g["kind"], g["counts"]) for g in content["groups"]]
    assert kind == "pooled"
    assert (counts["enrolled"], counts["safety_population"], counts["with_ae"], counts["pre_with_ae"]) == (2, 1, 1, 1)


@pytest.fixture
def in_process(monkeypatch):  # noqa: ANN001, ANN201
    """The tasks run in this process (as in the embedded default), also when CI has a broker and a
    worker: these tests' rows are not committed, a worker could not see them."""
    from edc.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


def test_a_hundred_requests_lead_to_at_most_two_runs(hands, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    trial = hands["trial"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        enqueued = [summary_request_recompute(trial.pk) for _ in range(100)]
    assert sum(enqueued) == 1 and len(callbacks) >= 1
    state = SummaryState.objects.get(trial=trial)
    assert 1 <= state.runs <= 2
    assert (state.queued, state.dirty) == (False, False)
    assert SafetySummary.objects.filter(trial=trial).count() == 2 * state.runs
    assert {s.blinded for s in SafetySummary.objects.filter(trial=trial)} == {True, False}
    # Once the queue is free, the next request enqueues again.
    with django_capture_on_commit_callbacks(execute=True):
        assert summary_request_recompute(trial.pk) is True
    assert SummaryState.objects.get(trial=trial).runs == state.runs + 1


def test_a_request_during_a_run_starts_one_more_run(hands, in_process, django_capture_on_commit_callbacks, monkeypatch) -> None:  # noqa: ANN001
    """An AE saved while the summary is being computed is counted by a second run."""
    from trials.safety import summary

    trial = hands["trial"]
    real_compute = summary.compute_summary
    saved_during_run = []

    def compute_and_meanwhile_an_ae_is_saved(trial, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if not saved_during_run:
            saved_during_run.append(ae(hands["participants"][2], 1, grade=4))
            assert summary_request_recompute(trial.pk) is False  # a run is queued: only marked dirty
        return real_compute(trial, **kwargs)

    monkeypatch.setattr(summary, "compute_summary", compute_and_meanwhile_an_ae_is_saved)
    with django_capture_on_commit_callbacks(execute=True):
        summary_request_recompute(trial.pk)
    state = SummaryState.objects.get(trial=trial)
    assert (state.runs, state.queued, state.dirty) == (2, False, False)
    latest = SafetySummary.objects.filter(trial=trial, blinded=True).order_by("-cutoff_at", "-pk").first()
    assert latest.content["total"]["with_ae"] == 5  # p3's AE is in the last summary


def test_refresh_without_a_request_releases_the_queue(hands) -> None:  # noqa: ANN001
    """The nightly refresh also frees a queue left marked by a lost message."""
    trial = hands["trial"]
    SummaryState.objects.create(trial=trial, queued=True, dirty=False)
    assert summary_refresh(trial.pk) is False
    state = SummaryState.objects.get(trial=trial)
    assert (state.queued, state.runs) == (False, 1)


def test_a_nightly_tick_delivered_twice_refreshes_each_trial_once(hands, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    """At-least-once delivery: the nightly tick may run twice (its worker killed after it ran, the
    message given again). Each trial gets one refresh that night: one blinded and one unblinded
    summary at one cut-off. The next night refreshes again."""
    from trials.safety.tasks import safety_summaries_nightly

    trials = Trial.objects.count()
    night = timezone.now().replace(hour=1, minute=30, second=0, microsecond=0)
    with time_machine.travel(night, tick=False):
        for _tick in range(2):
            with django_capture_on_commit_callbacks(execute=True):
                safety_summaries_nightly.apply()
    assert SafetySummary.objects.count() == 2 * trials
    assert set(SafetySummary.objects.values_list("cutoff_at", flat=True)) == {night}
    assert sorted(SafetySummary.objects.values_list("trial_id", "blinded")) == sorted(
        (pk, blinded) for pk in Trial.objects.values_list("pk", flat=True) for blinded in (False, True)
    )
    with time_machine.travel(night + timedelta(days=1), tick=False), django_capture_on_commit_callbacks(execute=True):
        safety_summaries_nightly.apply()
    assert SafetySummary.objects.count() == 4 * trials


def test_a_refresh_whose_worker_was_killed_is_found_by_the_stale_scan_and_run_once(hands, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001
    """A worker killed mid-refresh leaves the trial's state queued (its message comes back only after
    Redis's visibility timeout, 12 h). An AE save meanwhile only marks it dirty; after
    SAFETY_SUMMARY_STALE_MINUTES (10) the scan enqueues it again; it runs once; a second scan (or
    the old message delivered late, which finds the queue released) adds nothing."""
    from trials.safety.summary import summaries_stale_requeue

    trial = hands["trial"]
    start = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):  # the refresh's message went to the killed worker
        assert summary_request_recompute(trial.pk) is True
    assert SummaryState.objects.get(trial=trial).queued_at == start
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert summary_request_recompute(trial.pk) is False  # an AE saved: queued (not stale yet), only dirty
            assert summaries_stale_requeue() == 0
        assert callbacks == []
    with time_machine.travel(start + timedelta(minutes=10, seconds=1), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert summaries_stale_requeue() == 1
        with django_capture_on_commit_callbacks(execute=True):
            assert summaries_stale_requeue() == 0
    state = SummaryState.objects.get(trial=trial)
    assert (state.queued, state.dirty, state.runs) == (False, False, 1)
    assert SafetySummary.objects.filter(trial=trial).count() == 2
    from trials.safety.tasks import safety_summary_refresh

    with time_machine.travel(start + timedelta(hours=12, seconds=1), tick=False):
        assert safety_summary_refresh.apply(args=[trial.pk]).get() is False  # the killed worker's message, late
    assert SafetySummary.objects.filter(trial=trial).count() == 2 and SummaryState.objects.get(trial=trial).runs == 1


# --- The page -----------------------------------------------------------------------------------


@pytest.fixture
def du(demo):  # noqa: ANN001, ANN201, ARG001
    """ASC-DU: four randomized participants at Toulouse, treated, with AEs, one of them serious; a
    fifth randomized but not treated yet, with an AE."""
    participants = [registered(TOULOUSE, treated_days_ago=20) for _ in range(4)]
    ae(registered(TOULOUSE), 1, grade=2, term="Dizziness", onset=3)
    ae(participants[0], 1, grade=2, term="Injection site pain", related_product="definite")
    ae(participants[1], 1, grade=3, term="Infected ulcer", serious=True, onset=7)
    ae(participants[2], 1, grade=1, term="Nausea")
    return Trial.objects.get(code="ASC-DU")


def page(client, username: str, code: str = "ASC-DU"):  # noqa: ANN001, ANN201
    assert client.login(request=HttpRequest(), username=username, password=PASSWORDS[username])
    return client.get(f"/trials/{code}/safety/")


INLINE_SCRIPT_OR_STYLE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=")
ARM_WORDS = re.compile(r"\b(ADMSC|AdMSC|PLACEBO|Placebo)\b")


def test_the_dsmb_statistician_sees_the_arms(du, client) -> None:  # noqa: ANN001
    response = page(client, "dsmb.statistician")
    assert response.status_code == 200
    html = response.content.decode()
    assert "AdMSC" in html and "Placebo" in html
    assert "<svg" in html
    assert INLINE_SCRIPT_OR_STYLE.search(html) is None  # the CSP allows neither
    stored = SafetySummary.objects.get(trial=du)  # computed on the first visit, the unblinded version only
    assert stored.blinded is False
    assert "Infected ulcer" in html


@pytest.mark.parametrize("username", ["coordinator.toulouse", "sponsor.toulouse"])
def test_blinded_users_see_pooled_counts_and_no_arm(du, client, username: str) -> None:  # noqa: ANN001
    # The unblinded version exists already: a blinded user must still get the pooled one.
    summary_refresh(du.pk)
    response = page(client, username)
    assert response.status_code == 200
    html = response.content.decode()
    assert ARM_WORDS.search(html) is None, ARM_WORDS.search(html)
    for arm in Arm.objects.filter(trial=du):
        assert f"arm-{arm.pk}" not in html
    assert "All participants" in html
    assert "<svg" in html and "Infected ulcer" in html
    assert response.context["summary"].blinded is True


def test_the_page_is_only_for_the_trials_team(du, client) -> None:  # noqa: ANN001
    assert page(client, "coordinator.mexico").status_code == 404
    client.logout()
    response = client.get("/trials/ASC-DU/safety/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_shows_the_latest_stored_summary(du, client) -> None:  # noqa: ANN001
    summary_refresh(du.pk)
    latest = SafetySummary.objects.filter(trial=du, blinded=True).latest()
    response = page(client, "coordinator.toulouse")
    assert response.context["summary"].pk == latest.pk
    assert SafetySummary.objects.filter(trial=du).count() == 2  # nothing computed again


def test_the_page_says_the_definitions_and_gives_events_beside_participants(du, client) -> None:  # noqa: ANN001
    response = page(client, "coordinator.toulouse")
    html = response.content.decode()
    assert "Safety population" in html and "Treatment-emergent" in html and "Pre-treatment" in html
    assert "on or after the first dose" in html
    overview = re.search(r'data-testid="overview".*?</table>', html, re.S).group(0)
    # Pooled: enrolled 5, safety population 4, 3 with a TEAE (75 %) and their 3 events.
    assert re.search(r"Enrolled</th>\s*<td[^>]*>5</td>", overview)
    assert re.search(r"Safety population[^<]*</th>\s*<td[^>]*>4</td>", overview)
    assert re.search(r"≥ 1 treatment-emergent AE</th>\s*<td[^>]*>3 <span[^>]*>\(75.0 %\)</span></td>\s*<td[^>]*>3</td>", overview)
    pre = re.search(r'data-testid="pre-treatment".*?</table>', html, re.S).group(0)
    assert "Dizziness" not in overview and re.search(r"≥ 1 pre-treatment AE</th>\s*<td[^>]*>1 ", pre)


def test_a_summary_stored_under_the_old_conventions_is_not_shown(du, client) -> None:  # noqa: ANN001
    """Summaries stored before the safety population existed counted the enrolled as at risk: the
    page computes a current one instead of showing them."""
    old = SafetySummary.objects.create(trial=du, blinded=True, cutoff_at=timezone.now(), content={"format": 1, "groups": []})
    response = page(client, "coordinator.toulouse")
    assert response.status_code == 200
    assert response.context["summary"].pk != old.pk
    assert response.context["summary"].content["total"]["safety_population"] == 4


def test_the_csv_says_the_definitions_and_gives_events(du, client) -> None:  # noqa: ANN001
    import csv
    import io

    assert client.login(request=HttpRequest(), username="coordinator.toulouse", password=PASSWORDS["coordinator.toulouse"])
    response = client.get("/trials/ASC-DU/safety/summary.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    assert ARM_WORDS.search(text) is None  # blinded: pooled only
    lines = list(csv.reader(io.StringIO(text)))
    comments = " ".join(line[0] for line in lines if line and line[0].startswith("#"))
    assert "Safety population" in comments and "on or after the first dose" in comments and "Pre-treatment AE" in comments
    rows = {(r[0], r[1], r[2]): r[3:] for r in lines if r and not r[0].startswith("#")}
    assert rows[("Treatment-emergent AEs", "Participants with ≥ 1 treatment-emergent AE", "All participants")] == ["3", "75.0", "3"]
    assert rows[("Treatment-emergent AEs", "Participants with ≥ 1 TEAE of grade ≥ 3", "All participants")] == ["1", "25.0", "1"]
    assert rows[("Pre-treatment AEs", "Participants with ≥ 1 pre-treatment AE", "All participants")] == ["1", "20.0", "1"]
    client.logout()
    assert client.login(request=HttpRequest(), username="dsmb.statistician", password=PASSWORDS["dsmb.statistician"])
    text = client.get("/trials/ASC-DU/safety/summary.csv").content.decode()
    assert "AdMSC" in text and "Placebo" in text
