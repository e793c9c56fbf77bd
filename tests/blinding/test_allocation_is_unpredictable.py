"""Allocation concealment: a blinded data manager cannot predict the ASC-DU arms.

The attacker is a script that knows everything a blinded data manager of ASC-DU can see or set:

- the algorithm (`permuted_blocks` and the way the list is built are public, in this repository);
- the trial's arms, ratio, block sizes and strata (protocol pages; strata and slot counts on the
  allocation-list page);
- anything she can type on the allocation-list page when she generates the list (a seed, if the
  page lets her: she posts one whatever the form shows);
- every kit code with its stratum and position (coordinators and the audit trail show the kit of
  each randomized participant; she is given all of them, in the list's order).

She predicts the arm of each of the first 200 slots of the list (1:1, so chance is one half) and
the exact one-sided binomial test (H0: P(correct) = 1/2) must not reject chance at the stated
alpha. alpha = 1e-6, Bonferroni-split over the two attackers of this file: a list that is truly
unpredictable fails this test once in a million runs, and a predictable one (today's 200 of 200
before the fix) has a p-value of 2^-200.

The binomial tail is computed from its definition, P(X >= k) = sum_{i>=k} C(n, i) / 2^n.
"""

from __future__ import annotations

import math
import random
from itertools import islice

import pytest

from tests.participants.conftest import user
from trials.participants import services
from trials.participants.models import AllocationList
from trials.protocol.models import Trial

pytestmark = pytest.mark.django_db

TRIAL = "ASC-DU"
SLOTS = 200
ALPHA = 1e-6
ATTACKERS = 2
TYPED_SEED = "chosen-by-the-data-manager"


def binomial_p_value(correct: int, n: int) -> float:
    """Exact one-sided p-value of `correct` successes out of `n` under H0: p = 1/2."""
    return sum(math.comb(n, i) for i in range(correct, n + 1)) / 2**n


def chance_is_rejected(correct: int, n: int) -> bool:
    return binomial_p_value(correct, n) <= ALPHA / ATTACKERS


def test_the_binomial_bound_is_the_published_one():
    # The critical value at 1e-6 / 2 for n = 200 (exact binomial tail): 100 of 200 is chance,
    # 135 of 200 is not (P(X >= 135) = 4.2e-7), 200 of 200 is 2^-200.
    assert not chance_is_rejected(100, 200)
    assert not chance_is_rejected(130, 200)  # P(X >= 130) = 1.3e-5
    assert chance_is_rejected(135, 200)
    assert binomial_p_value(200, 200) == 2.0**-200


def _generate_as_the_data_manager(client, trial: Trial) -> AllocationList:  # noqa: ANN001
    strata = len(services._strata(trial))
    client.force_login(user("datamanager"))
    response = client.post(
        f"/trials/{trial.code}/allocation-list/",
        {"slots_per_stratum": math.ceil(SLOTS / strata), "seed": TYPED_SEED},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return AllocationList.objects.get(trial=trial)


def _what_she_sees(allocation_list: AllocationList) -> list[tuple[str, int, str]]:
    """(stratum, sequence, kit code) of the first SLOTS slots, in the order of the list's strata."""
    order = {stratum: index for index, stratum in enumerate(allocation_list.strata)}
    rows = sorted(allocation_list.slots.values_list("stratum", "sequence", "kit_code"), key=lambda r: (order[r[0]], r[1]))
    return rows[:SLOTS]


def _truth(allocation_list: AllocationList, seen: list[tuple[str, int, str]]) -> list[str]:
    arms = {(s, q): code for s, q, code in allocation_list.slots.values_list("stratum", "sequence", "arm__code")}
    return [arms[(s, q)] for s, q, _kit in seen]


def _arm_stream(seed: str, trial: Trial, strata: list[str]) -> dict[tuple[str, int], str]:
    arms = [a.code for a in trial.arms.filter(is_active=True).order_by("code")]
    stream = {}
    for stratum in strata:
        blocks = services.permuted_blocks(
            seed=seed, stratum=stratum, arms=arms, ratio=[1, 1], block_sizes=trial.randomization["block_sizes"], count=SLOTS
        )
        stream.update({(stratum, sequence): code for sequence, (_b, _s, code) in enumerate(blocks, start=1)})
    return stream


def _kit_stream(seed: str, count: int) -> list[str]:
    """The kit codes today's algorithm draws from a seed: K + 6 characters of KIT_ALPHABET each."""
    rng = random.Random(f"{seed}/kits")
    return ["K" + "".join(rng.choice(services.KIT_ALPHABET) for _ in range(6)) for _ in range(count)]


def _guess(stream: dict[tuple[str, int], str], stratum: str, sequence: int, fallback: str) -> str:
    return stream.get((stratum, sequence), fallback)


def test_a_blinded_data_manager_cannot_predict_the_arms(client, demo_users):
    trial = Trial.objects.get(code=TRIAL)
    allocation_list = _generate_as_the_data_manager(client, trial)
    seen = _what_she_sees(allocation_list)
    assert len(seen) == SLOTS
    truth = _truth(allocation_list, seen)
    assert set(truth) == {"ADMSC", "PLACEBO"}

    # Candidate seeds: the one she typed, and any seed she can confirm against the kit codes she
    # sees (today's kit codes are a function of the seed: a matching kit stream reveals it).
    candidates = [TYPED_SEED, "", "seed", trial.code]
    seed = next((c for c in candidates if list(islice(_kit_stream(c, 8), 8)) == [k for _s, _q, k in seen[:8]]), TYPED_SEED)
    stream = _arm_stream(seed, trial, allocation_list.strata)
    guesses = [_guess(stream, s, q, "ADMSC") for s, q, _kit in seen]
    correct = sum(g == t for g, t in zip(guesses, truth, strict=True))
    p_value = binomial_p_value(correct, SLOTS)
    assert not chance_is_rejected(correct, SLOTS), (
        f"a blinded data manager predicts {correct} of {SLOTS} arms (one-sided binomial p = {p_value:.3g}, alpha = {ALPHA / ATTACKERS:g})"
    )
    # She could not set the seed either.
    assert allocation_list.seed != TYPED_SEED


def test_a_kit_code_says_nothing_about_the_arm_even_with_the_seed(client, demo_users):
    """Someone who holds a kit (its code only, no position) and knows the algorithm, the order in
    which the list walks its strata, and even the list's seed, cannot tell the arm from the code."""
    trial = Trial.objects.get(code=TRIAL)
    allocation_list = _generate_as_the_data_manager(client, trial)
    seen = _what_she_sees(allocation_list)
    truth = dict(zip((kit for _s, _q, kit in seen), _truth(allocation_list, seen), strict=True))

    # All positions of the list in generation order (strata in the list's order, then sequence).
    order = {stratum: index for index, stratum in enumerate(allocation_list.strata)}
    positions = sorted(allocation_list.slots.values_list("stratum", "sequence"), key=lambda r: (order[r[0]], r[1]))
    stream = _arm_stream(allocation_list.seed, trial, allocation_list.strata)
    kit_to_position = dict(zip(_kit_stream(allocation_list.seed, len(positions)), positions, strict=True))

    kits = sorted(truth)  # the kits in a box, in no particular order
    random.Random(0).shuffle(kits)
    guesses = [_guess(stream, *kit_to_position.get(kit, ("", 0)), "ADMSC") for kit in kits]
    correct = sum(guesses[i] == truth[kit] for i, kit in enumerate(kits))
    assert not chance_is_rejected(correct, SLOTS), (
        f"the kit code gives away {correct} of {SLOTS} arms (one-sided binomial p = {binomial_p_value(correct, SLOTS):.3g})"
    )
