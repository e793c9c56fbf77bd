"""Allocation: the randomization list (data manager, once, permuted blocks per site stratum from a
secret seed that reproduces it), randomization from it, assignment in the open-label trial,
nothing in the registry. The import of a list made elsewhere: tests/participants/test_allocation_import.py."""

from collections import Counter, defaultdict

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from edc.audit import audited_save, system_user
from tests.participants.conftest import (
    GRE,
    MADRID,
    MEXICO,
    REGISTRY,
    TLS,
    consent,
    days_ago,
    enrolled,
    history_count,
    screen,
    site,
    user,
)
from trials.participants import services
from trials.participants.models import Allocation, AllocationList, AllocationSlot, Participant

pytestmark = pytest.mark.django_db



@pytest.fixture
def trial(demo):
    return site(TLS).trial


def generate(trial, *, slots: int = 8, actor=None) -> AllocationList:  # noqa: ANN001
    return services.allocation_list_generate(trial=trial, user=actor or user("datamanager"), slots_per_stratum=slots)


def arms_by_stratum(allocation_list: AllocationList) -> dict[str, list[str]]:
    arms = defaultdict(list)
    for slot in allocation_list.slots.order_by("stratum", "sequence").select_related("arm"):
        arms[slot.stratum].append(slot.arm.code)
    return dict(arms)


def randomize(participant: Participant, actor=None) -> Allocation:  # noqa: ANN001
    return services.participant_randomize(participant=participant, user=actor or user("coordinator.toulouse"))


def written() -> tuple[int, int]:
    return Allocation.objects.count(), Allocation.history.count()


# --- The list -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["coordinator.toulouse", "investigator.toulouse", "monitor.du", "sponsor.toulouse", "dsmb.statistician"])
def test_only_a_data_manager_generates_the_list(trial, username):
    with pytest.raises(PermissionDenied):
        generate(trial, actor=user(username))
    with pytest.raises(PermissionDenied):
        generate(trial, actor=system_user())
    assert not AllocationList.objects.exists() and not AllocationSlot.objects.exists()


@pytest.mark.parametrize("key", [MEXICO, REGISTRY])
def test_only_a_randomized_trial_has_a_list(demo, key):
    """(EASC-RA has a list since issue 15: placebo inside its dose cohorts, test_easc_ra_end_to_end.py.)"""
    with pytest.raises(ValidationError) as refused:
        generate(site(key).trial)
    assert "not randomized" in refused.value.messages[0]
    assert not AllocationList.objects.exists()


def test_the_list_is_never_regenerated(trial):
    first = generate(trial)
    slots = list(AllocationSlot.objects.order_by("pk").values_list("pk", "arm_id", "kit_code"))
    for count in (8, 12):
        with pytest.raises(ValidationError) as refused:
            generate(trial, slots=count)
        assert "never regenerated" in refused.value.messages[0]
    assert list(AllocationList.objects.all()) == [first]
    assert list(AllocationSlot.objects.order_by("pk").values_list("pk", "arm_id", "kit_code")) == slots


def test_the_list_is_stratified_by_site(trial):
    allocation_list = generate(trial, slots=4)
    sites = sorted(trial.sites.filter(is_active=True).values_list("code", flat=True))
    assert allocation_list.strata == [f"site={code}" for code in sites]
    assert "site=TLS" in allocation_list.strata and "site=GRE" in allocation_list.strata
    assert set(allocation_list.slots.values_list("stratum", flat=True)) == set(allocation_list.strata)
    assert allocation_list.generated_by == user("datamanager")
    assert allocation_list.history.get().history_user == user("datamanager")
    assert AllocationSlot.history.count() == allocation_list.slots.count()  # every slot audited


def test_the_stored_seed_reproduces_the_list(trial):
    arms = [a.code for a in trial.arms.filter(is_active=True).order_by("code")]
    allocation_list = generate(trial, slots=10)
    first = arms_by_stratum(allocation_list)
    for stratum, codes in first.items():
        expected = services.permuted_blocks(seed=allocation_list.seed, stratum=stratum, arms=arms, ratio=[1, 1], block_sizes=[2, 4], count=10)
        assert codes == [code for _block, _size, code in expected]
    # Each stratum has its own stream, and another seed gives another list.
    assert len({tuple(codes) for codes in first.values()}) > 1
    other = {
        stratum: [code for _b, _s, code in services.permuted_blocks(
            seed="another-seed", stratum=stratum, arms=arms, ratio=[1, 1], block_sizes=[2, 4], count=10)]
        for stratum in first
    }
    assert other != first


def test_the_seed_is_secret_and_nobody_sets_it(trial):
    """256 bits from the operating system (secrets.token_hex(32)): never a value a user typed, a
    default or one seed for every trial. Before this change the data manager typed it."""
    with pytest.raises(TypeError):
        services.allocation_list_generate(trial=trial, user=user("datamanager"), slots_per_stratum=8, seed="typed")  # noqa: E501
    assert not AllocationList.objects.exists()
    allocation_list = generate(trial)
    assert len(allocation_list.seed) == 64 and int(allocation_list.seed, 16) >= 0
    assert allocation_list.algorithm == "permuted-blocks/v2"
    kits = list(allocation_list.slots.values_list("kit_code", flat=True))
    assert len(set(kits)) == len(kits) and all(k[0] == "K" and len(k) == 7 for k in kits)


def test_every_block_holds_the_arms_in_ratio(trial):
    allocation_list = generate(trial, slots=30)
    assert allocation_list.block_sizes == [2, 4]
    blocks = defaultdict(list)
    for slot in allocation_list.slots.select_related("arm"):
        blocks[(slot.stratum, slot.block)].append((slot.block_size, slot.arm.code, slot.sequence))
    sizes = set()
    for (stratum, _block), rows in blocks.items():
        size = rows[0][0]
        sizes.add(size)
        assert all(r[0] == size for r in rows) and len(rows) == size  # whole blocks, also the last one
        assert Counter(r[1] for r in rows) == {"ADMSC": size // 2, "PLACEBO": size // 2}
    assert sizes == {2, 4}
    for stratum in allocation_list.strata:
        sequences = sorted(allocation_list.slots.filter(stratum=stratum).values_list("sequence", flat=True))
        assert sequences == list(range(1, len(sequences) + 1)) and len(sequences) >= 30


@pytest.mark.parametrize(("ratio", "block_sizes"), [([1, 1], [2, 4]), ([2, 1], [3, 6]), ([1, 2, 1], [4, 8])])
def test_permuted_blocks_keep_the_ratio_in_every_block(ratio, block_sizes):
    arms = ["A", "B", "C"][: len(ratio)]
    slots = services.permuted_blocks(seed="s", stratum="site=X", arms=arms, ratio=ratio, block_sizes=block_sizes, count=200)
    assert len(slots) >= 200
    by_block = defaultdict(list)
    for block, size, code in slots:
        by_block[block].append((size, code))
    assert sorted(by_block) == list(range(1, len(by_block) + 1))
    for rows in by_block.values():
        size = rows[0][0]
        assert len(rows) == size
        counts = Counter(code for _size, code in rows)
        assert [counts[a] for a in arms] == [share * size // sum(ratio) for share in ratio]
    assert {size for _b, size, _c in slots} == set(block_sizes)
    assert services.permuted_blocks(seed="s", stratum="site=X", arms=arms, ratio=ratio, block_sizes=block_sizes, count=200) == slots


def test_block_sizes_that_cannot_hold_the_ratio_are_refused(trial):
    trial.randomization = {"block_sizes": [3], "stratify_by_site": True}
    audited_save(trial, user=system_user(), reason="Block size of 3")
    with pytest.raises(ValidationError) as refused:
        generate(trial)
    assert "1:1" in refused.value.messages[0]
    assert not AllocationList.objects.exists()


# --- Randomization --------------------------------------------------------------------------


def test_randomization_takes_the_next_slot_of_the_participants_stratum(trial):
    allocation_list = generate(trial)
    participants = [enrolled(TLS) for _ in range(3)]
    grenoble = enrolled(GRE)
    allocations = [randomize(p) for p in participants]
    allocations.append(randomize(grenoble, system_user()))
    for allocation, sequence in zip(allocations[:3], (1, 2, 3), strict=True):
        slot = allocation_list.slots.get(stratum="site=TLS", sequence=sequence)
        assert (allocation.slot, allocation.arm, allocation.kit_code, allocation.stratum) == (slot, slot.arm, slot.kit_code, "site=TLS")
        assert allocation.method == "randomization" and allocation.allocated_by == user("coordinator.toulouse")
    assert allocations[3].slot == allocation_list.slots.get(stratum="site=GRE", sequence=1)
    # What is shown of an allocation in a blinded trial never names the arm.
    assert all(a.arm.code not in str(a) and a.arm.label not in str(a) for a in allocations)
    assert allocations[0].history.get().history_change_reason == f"Randomized (kit {allocations[0].kit_code})"


def test_randomizing_before_the_list_exists_is_refused(trial):
    participant = enrolled(TLS)
    with pytest.raises(ValidationError) as refused:
        randomize(participant)
    assert "not generated the allocation list" in refused.value.messages[0]
    assert written() == (0, 0)


def test_randomizing_twice_is_refused(trial):
    generate(trial)
    participant = enrolled(TLS)
    first = randomize(participant)
    before = written()
    with pytest.raises(ValidationError) as refused:
        randomize(participant)
    assert "already allocated" in refused.value.messages[0]
    assert written() == before
    assert Allocation.objects.get(participant=participant) == first


def test_randomization_stops_when_the_stratum_is_exhausted(trial):
    # A list ends on a whole block: with 2 slots asked, Toulouse has one block of 2 or of 4.
    allocation_list = generate(trial, slots=2)
    capacity = allocation_list.slots.filter(stratum="site=TLS").count()
    assert capacity in (2, 4)
    participants = [enrolled(TLS) for _ in range(capacity + 1)]
    for participant in participants[:capacity]:
        randomize(participant)
    before = (written(), history_count(participants[-1]))
    with pytest.raises(ValidationError) as refused:
        randomize(participants[-1])
    assert "exhausted for stratum site=TLS" in refused.value.messages[0]
    assert (written(), history_count(participants[-1])) == before
    # Other strata are not affected.
    assert randomize(enrolled(GRE), system_user()).stratum == "site=GRE"


def test_only_staff_of_the_participants_site_randomize(trial):
    generate(trial)
    grenoble = enrolled(GRE)
    before = (written(), history_count(grenoble))
    for outsider in ("coordinator.toulouse", "investigator.toulouse", "datamanager", "monitor.du"):
        with pytest.raises(PermissionDenied):
            randomize(grenoble, user(outsider))
    assert (written(), history_count(grenoble)) == before
    assert not AllocationSlot.objects.filter(allocation__isnull=False).exists()


def test_only_an_enrolled_participant_is_randomized(trial):
    generate(trial)
    screening = consent(screen(TLS))
    with pytest.raises(ValidationError) as refused:
        randomize(screening)
    assert "only an enrolled participant" in refused.value.messages[0]
    withdrawn = enrolled(TLS)
    services.participant_transition(participant=withdrawn, to="withdrawn", user=system_user(), reason="Withdrew")
    with pytest.raises(ValidationError):
        randomize(withdrawn)
    assert written() == (0, 0)


def test_treatment_does_not_start_before_allocation(trial):
    participant = enrolled(TLS)
    with pytest.raises(ValidationError) as refused:
        services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(1))
    assert "not allocated" in refused.value.messages[0]
    generate(trial)
    randomize(participant)
    participant = services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(1))
    assert participant.status == "on_treatment"
    day0 = participant.visits.get(definition__code="D0")
    assert day0.planned_date == days_ago(1)


# --- Open label and registry ------------------------------------------------------------------


def test_open_label_assignment_by_the_investigator(demo):
    participant = enrolled(MEXICO)
    arm = participant.trial.arms.get(code="ADSVF")
    investigator = user("investigator.mexico")
    with pytest.raises(PermissionDenied):
        services.participant_assign(participant=participant, arm=arm, user=user("coordinator.mexico"), reason="Most affected hand")
    assert written() == (0, 0)
    with pytest.raises(ValidationError) as refused:
        services.participant_assign(participant=participant, arm=arm, user=investigator, reason="  ")
    assert "reason" in refused.value.message_dict
    allocation = services.participant_assign(participant=participant, arm=arm, user=investigator, reason="Most affected hand: right")
    assert (allocation.arm, allocation.method, allocation.allocated_by, allocation.slot) == (arm, "assignment", investigator, None)
    assert allocation.history.get().history_change_reason == "Most affected hand: right"
    with pytest.raises(ValidationError) as refused:
        services.participant_assign(participant=participant, arm=participant.trial.arms.get(code="CONTROL"), user=investigator, reason="Changed my mind")
    assert "already allocated" in refused.value.messages[0]
    assert Allocation.objects.get(participant=participant).arm == arm


def test_open_label_assignment_takes_an_arm_of_the_trial_and_no_list(demo):
    participant = enrolled(MEXICO)
    foreign = site(TLS).trial.arms.get(code="ADMSC")
    with pytest.raises(ValidationError):
        services.participant_assign(participant=participant, arm=foreign, user=user("investigator.mexico"), reason="Wrong trial")
    with pytest.raises(ValidationError) as refused:
        services.participant_randomize(participant=participant, user=user("investigator.mexico"))
    assert "allocation list" in refused.value.messages[0]
    assert written() == (0, 0)


def test_a_blinded_randomized_trial_is_not_assigned_by_hand(trial):
    participant = enrolled(TLS)
    with pytest.raises(ValidationError):
        services.participant_assign(
            participant=participant, arm=trial.arms.get(code="ADMSC"), user=user("investigator.toulouse"), reason="Prefer cells"
        )
    assert written() == (0, 0)


def test_the_registry_enrols_without_allocation(demo):
    participant = enrolled(REGISTRY)
    assert participant.status == "enrolled" and participant.subject_number == "MES-001"
    assert not Allocation.objects.exists()
    with pytest.raises(ValidationError):
        services.participant_randomize(participant=participant, user=system_user())
    with pytest.raises(ValidationError):
        services.participant_assign(participant=participant, arm=site(MEXICO).trial.arms.first(), user=system_user(), reason="x")
    participant = services.participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=days_ago(2))
    assert participant.status == "on_treatment"
    assert not Allocation.objects.exists()
