"""Concurrent enrolment, randomization and cohort filling on PostgreSQL: row locks make numbers and
slots unique and gap-free. Each thread has its own database connection, so the data are committed
(transactional tests) and SQLite, which serialises writers with a database lock, is not the case
under test."""

import threading
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from edc.audit import system_user
from tests.participants.conftest import MADRID, TLS, consent, enrolled, make_eligible, screen, site, user
from trials.participants import services
from trials.participants.models import Allocation, NumberKind, NumberSequence, Participant

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks under concurrency are tested on PostgreSQL (set DATABASE_URL; CI runs PostgreSQL)",
    ),
]

THREADS = 20


def in_threads(count: int, work: Callable[[int, threading.Barrier], object]) -> tuple[list, list[BaseException]]:
    """Run work(i, barrier) in `count` threads that start together; results and errors."""
    barrier = threading.Barrier(count, timeout=60)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index, barrier)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a thread is still waiting (lock not released?)"
    return results, errors


def test_concurrent_enrolments_at_one_site_get_distinct_gap_free_numbers(demo_users):
    coordinator = user("coordinator.toulouse")

    def work(_index: int, barrier: threading.Barrier) -> tuple[str, str]:
        participant = consent(screen(TLS, coordinator), coordinator)
        make_eligible(participant, coordinator)
        barrier.wait()  # all enrol at once
        participant = services.participant_enrol(participant=participant, user=coordinator)
        return participant.screening_number, participant.subject_number

    results, errors = in_threads(THREADS, work)
    assert errors == []
    assert sorted(s for s, _ in results) == [f"TLS-S{n:03d}" for n in range(1, THREADS + 1)]
    assert sorted(n for _, n in results) == [f"TLS-{n:03d}" for n in range(1, THREADS + 1)]
    assert sorted(Participant.objects.filter(site=site(TLS), status="enrolled").values_list("subject_number", flat=True)) == sorted(
        n for _, n in results
    )
    sequences = dict(NumberSequence.objects.filter(site=site(TLS)).values_list("kind", "last"))
    assert sequences == {NumberKind.SCREENING: THREADS, NumberKind.SUBJECT: THREADS}


def test_concurrent_randomizations_take_distinct_slots_without_gaps(demo_users):
    trial = site(TLS).trial
    services.allocation_list_generate(trial=trial, user=user("datamanager"), slots_per_stratum=THREADS)
    participants = [enrolled(TLS) for _ in range(THREADS)]
    coordinator = user("coordinator.toulouse")

    def work(index: int, _barrier: threading.Barrier) -> int:
        return services.participant_randomize(participant=participants[index], user=coordinator).slot_id

    results, errors = in_threads(THREADS, work)
    assert errors == []
    assert len(set(results)) == THREADS
    allocations = Allocation.objects.filter(participant__in=participants).select_related("slot")
    assert allocations.count() == THREADS
    assert sorted(a.slot.sequence for a in allocations) == list(range(1, THREADS + 1))
    assert {a.slot.stratum for a in allocations} == {"site=TLS"}
    assert all(a.arm_id == a.slot.arm_id and a.kit_code == a.slot.kit_code for a in allocations)


def test_concurrent_enrolments_do_not_overfill_a_dose_cohort(demo_users):
    actor = system_user()
    # EASC-RA conceals placebo inside each cohort: enrolment takes the cohort's next slot of its list.
    services.allocation_list_generate(trial=site(MADRID).trial, user=user("datamanager"))
    waiting = [make_eligible(consent(screen(MADRID, actor), actor), actor) for _ in range(6)]

    def work(index: int, _barrier: threading.Barrier) -> str:
        try:
            return services.participant_enrol(participant=waiting[index], user=actor).subject_number
        except ValidationError as refused:
            return "refused: " + " ".join(refused.messages)

    results, errors = in_threads(len(waiting), work)
    assert errors == []
    enrolled_numbers = sorted(r for r in results if not r.startswith("refused"))
    assert enrolled_numbers == ["MAD-LP-001", "MAD-LP-002", "MAD-LP-003"], results
    assert all("paused" in r for r in results if r.startswith("refused"))
    assert Allocation.objects.filter(arm__code="COHORT1", arm__trial=site(MADRID).trial).count() == 3
