"""Import of an allocation list made elsewhere by the unblinded statistician (CSV: stratum,
sequence, arm, kit_code), as REDCap's allocation-table upload: checked whole, every problem named
with its line, nothing written when anything is wrong, audited with the reason and the file's hash.

Expected lists are written by hand from the protocol (ASC-DU: arms ADMSC and PLACEBO 1:1, permuted
blocks of 2 and 4, one stratum per active site), not produced by the code under test."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from edc.audit import system_user
from tests.participants.conftest import GRE, TLS, enrolled, site, user
from trials.participants import services
from trials.participants.models import AllocationList, AllocationSlot

pytestmark = pytest.mark.django_db

HEADER = "stratum,sequence,arm,kit_code"
REASON = "Made in SAS 9.4 PROC PLAN by the trial statistician; seed kept in the sponsor's TMF"
# Per stratum: a block of 4 (ABBA) then a block of 2 (BA).
BLOCKS = ["ADMSC", "PLACEBO", "PLACEBO", "ADMSC", "PLACEBO", "ADMSC"]


@pytest.fixture
def trial(demo):
    return site(TLS).trial


def strata(trial) -> list[str]:  # noqa: ANN001
    return [f"site={code}" for code in trial.sites.filter(is_active=True).order_by("code").values_list("code", flat=True)]


def good_lines(trial) -> list[str]:  # noqa: ANN001
    lines = [HEADER]
    for s_index, stratum in enumerate(strata(trial)):
        lines += [f"{stratum},{n},{arm},KIT-{s_index}{n:02d}" for n, arm in enumerate(BLOCKS, start=1)]
    return lines


def csv_bytes(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def do_import(trial, lines: list[str], *, actor=None, reason: str = REASON) -> AllocationList:  # noqa: ANN001
    return services.allocation_list_import(
        trial=trial, user=actor or user("dsmb.statistician"), content=csv_bytes(lines), file_name="list.csv", reason=reason
    )


def refused(trial, lines: list[str]) -> list[str]:  # noqa: ANN001
    with pytest.raises(ValidationError) as error:
        do_import(trial, lines)
    assert not AllocationList.objects.exists() and not AllocationSlot.objects.exists()
    assert not AllocationList.history.exists() and not AllocationSlot.history.exists()
    return error.value.message_dict["file"]


def test_the_unblinded_statistician_imports_a_list(trial):
    lines = good_lines(trial)
    allocation_list = do_import(trial, lines)
    assert (allocation_list.generated_by, allocation_list.seed, allocation_list.algorithm) == (user("dsmb.statistician"), "", "imported-csv")
    assert allocation_list.source_sha256 == hashlib.sha256(csv_bytes(lines)).hexdigest()
    assert allocation_list.strata == strata(trial)
    tls = list(allocation_list.slots.filter(stratum="site=TLS").order_by("sequence").values_list("sequence", "arm__code", "kit_code", "block", "block_size"))
    s_index = strata(trial).index("site=TLS")
    assert [row[:3] for row in tls] == [(n, arm, f"KIT-{s_index}{n:02d}") for n, arm in enumerate(BLOCKS, start=1)]
    # Blocks are found in the list (ABBA|BA or AB|BABA: either cut is whole blocks of 2 or 4, 1:1).
    blocks: dict[int, list[tuple[int, str]]] = {}
    for _n, arm, _kit, block, size in tls:
        blocks.setdefault(block, []).append((size, arm))
    assert sorted(blocks) == list(range(1, len(blocks) + 1))
    for rows in blocks.values():
        assert len(rows) == rows[0][0] in (2, 4) and [arm for _s, arm in rows].count("ADMSC") == len(rows) // 2
    reason = allocation_list.history.get().history_change_reason
    assert reason.startswith("Allocation list imported from list.csv (SHA-256 ") and reason.endswith(REASON)
    assert AllocationSlot.history.count() == len(lines) - 1  # every slot audited
    # Randomization takes the imported slots, and the kit code of the list.
    allocation = services.participant_randomize(participant=enrolled(TLS), user=user("coordinator.toulouse"))
    assert (allocation.slot.sequence, allocation.arm.code, allocation.kit_code) == (1, "ADMSC", f"KIT-{s_index}01")
    assert services.participant_randomize(participant=enrolled(GRE), user=system_user()).stratum == "site=GRE"


@pytest.mark.parametrize("username", ["datamanager", "coordinator.toulouse", "investigator.toulouse", "monitor.du", "sponsor.toulouse"])
def test_only_an_unblinded_role_imports(trial, username):
    with pytest.raises(PermissionDenied):
        do_import(trial, good_lines(trial), actor=user(username))
    assert not AllocationList.objects.exists()


def test_a_superuser_imports_and_the_list_is_never_replaced(trial, django_user_model):
    admin = django_user_model.objects.create_superuser("root.test", "root@example.org", "not-a-demo-password-26")
    do_import(trial, good_lines(trial), actor=admin)
    with pytest.raises(ValidationError) as error:
        do_import(trial, good_lines(trial))
    assert "never regenerated" in error.value.messages[0]
    with pytest.raises(ValidationError):
        services.allocation_list_generate(trial=trial, user=user("datamanager"), slots_per_stratum=4)
    assert AllocationList.objects.count() == 1


def test_a_reason_is_required(trial):
    with pytest.raises(ValidationError) as error:
        do_import(trial, good_lines(trial), reason="  ")
    assert "reason" in error.value.message_dict
    assert not AllocationList.objects.exists()


def test_the_header_must_be_exact(trial):
    lines = good_lines(trial)
    assert refused(trial, ["stratum,sequence,arm,kit", *lines[1:]]) == [
        "list.csv: line 1: the header must be exactly stratum,sequence,arm,kit_code (found stratum,sequence,arm,kit)."
    ]
    assert refused(trial, []) == ["list.csv: line 1: the header must be exactly stratum,sequence,arm,kit_code (found an empty file)."]


def test_each_bad_line_is_named(trial):
    lines = good_lines(trial)
    lines[2] = "site=TLX,2,PLACEBO,KX1"  # unknown stratum
    lines[3] = "site=GRE,three,PLACEBO,KX2"  # not a number
    lines[4] = lines[4].replace("ADMSC", "ACTIVE")  # not an arm of the trial
    lines[5] = lines[5].rsplit(",", 1)[0] + "," + lines[1].rsplit(",", 1)[1]  # kit code of line 2 again
    lines[6] = lines[6] + ",extra"
    errors = refused(trial, lines)
    assert errors[0].startswith("list.csv: line 3: site=TLX is not a stratum of the trial (its strata: site=")
    assert errors[1] == "list.csv: line 4: the sequence three is not a whole number from 1."
    assert errors[2] == "list.csv: line 5: ACTIVE is not an arm of the trial (its arms: ADMSC, PLACEBO)."
    assert errors[3] == f"list.csv: line 6: the kit code {lines[1].rsplit(',', 1)[1]} is already on line 2."
    assert errors[4] == "list.csv: line 7: 5 values, expected 4 (stratum,sequence,arm,kit_code)."
    assert len(errors) == 5


def test_every_stratum_of_the_trial_is_present(trial):
    lines = [line for line in good_lines(trial) if not line.startswith("site=GRE,")]
    assert refused(trial, lines) == ["list.csv: stratum site=GRE of the trial has no line in the file: every stratum needs its slots."]


def test_sequences_run_without_gaps_or_repeats(trial):
    lines = good_lines(trial)
    gre = [i for i, line in enumerate(lines) if line.startswith("site=GRE,")]
    lines[gre[2]] = lines[gre[2]].replace("site=GRE,3,", "site=GRE,7,")
    assert refused(trial, lines) == [
        f"list.csv: stratum site=GRE: sequence 3 is missing (sequences run 1, 2, 3… without gaps; line {gre[3] + 1} has 4)."
    ]
    lines = good_lines(trial)
    lines[gre[1]] = lines[gre[1]].replace("site=GRE,2,", "site=GRE,1,")
    assert refused(trial, lines) == [f"list.csv: line {gre[1] + 1}: site=GRE sequence 1 is already on line {gre[0] + 1}."]


def test_every_block_holds_the_arms_in_ratio(trial):
    # Toulouse A A P A P A: neither AA nor AAPA is 1:1, so no block can start at sequence 1.
    lines = good_lines(trial)
    tls = [i for i, line in enumerate(lines) if line.startswith("site=TLS,")]
    lines[tls[1]] = lines[tls[1]].replace(",PLACEBO,", ",ADMSC,")
    assert refused(trial, lines) == [
        f"list.csv: line {tls[0] + 1} (site=TLS sequence 1): no block of 2 or 4 slots from here holds the arms ADMSC:PLACEBO "
        "in the ratio 1:1; the lines before it are whole blocks."
    ]
    # A list that stops in the middle of a block.
    lines = good_lines(trial)
    del lines[tls[-1]]
    assert refused(trial, lines) == [
        f"list.csv: line {tls[4] + 1} (site=TLS sequence 5): no block of 2 or 4 slots from here holds the arms ADMSC:PLACEBO "
        "in the ratio 1:1; the lines before it are whole blocks."
    ]


def test_the_page_imports_for_the_statistician_and_names_the_problems(trial, client):
    client.force_login(user("dsmb.statistician"))
    page = client.get(f"/trials/{trial.code}/allocation-list/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="import-form"' in html and 'data-testid="generate-form"' not in html
    lines = good_lines(trial)
    lines[3] = lines[3].replace("ADMSC", "ACTIVE").replace("PLACEBO", "ACTIVE")
    response = client.post(
        f"/trials/{trial.code}/allocation-list/import/",
        {"file": SimpleUploadedFile("bad.csv", csv_bytes(lines), content_type="text/csv"), "reason": REASON},
    )
    assert response.status_code == 200
    assert "bad.csv: line 4: ACTIVE is not an arm of the trial" in response.content.decode()
    assert not AllocationList.objects.exists()
    response = client.post(
        f"/trials/{trial.code}/allocation-list/import/",
        {"file": SimpleUploadedFile("good.csv", csv_bytes(good_lines(trial)), content_type="text/csv"), "reason": REASON},
    )
    assert response.status_code == 302
    assert AllocationList.objects.get(trial=trial).generated_by == user("dsmb.statistician")


def test_the_data_manager_cannot_post_an_import(trial, client):
    client.force_login(user("datamanager"))
    html = client.get(f"/trials/{trial.code}/allocation-list/").content.decode()
    assert 'data-testid="generate-form"' in html and 'data-testid="import-form"' not in html and 'name="seed"' not in html
    response = client.post(
        f"/trials/{trial.code}/allocation-list/import/",
        {"file": SimpleUploadedFile("list.csv", csv_bytes(good_lines(trial)), content_type="text/csv"), "reason": REASON},
    )
    assert response.status_code == 403
    assert not AllocationList.objects.exists()
