"""Per-item SDV ticks (issue 21): each tick saved at once and audited, untick allowed (audited,
withdraws the form's verification), the form verified when every planned item with a value is
ticked (an item hidden by branching or left empty never blocks), a change of an item's value resets
that item's tick only, and the rows of a repeating group ticked item by item."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.monitoring.sdv.services import sdv_item_tick, sdv_plan_save, sdv_verify
from trials.protocol.models import Site, Trial
from trials.records.models import SdvItemTick, SdvMark, SdvState
from trials.visits.models import CrfEntry, EntryStatus, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
VITALS = {"height_cm": Decimal(165), "weight_kg": Decimal(60), "systolic_bp": 120, "diastolic_bp": 75, "heart_rate": 70}
REQUIRED = ["height_cm", "weight_kg", "systolic_bp", "diastolic_bp", "heart_rate"]  # seeds/crfs/vitals.yaml


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def register():  # noqa: ANN201
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    today = site.today()
    return participant_register(site=site, user=system_user(), consent_date=today - timedelta(days=10), anchor_date=today - timedelta(days=8))


def save_vitals(participant, **changes) -> CrfEntry:  # noqa: ANN001
    lipo = Visit.objects.get(participant=participant, definition__code="LIPO")
    crf_entry_save_answers(user=user("coordinator.toulouse"), visit=lipo, crf_code="VITALS", answers={**VITALS, **changes},
                           complete=True, reason="correction" if changes else "")
    return CrfEntry.objects.get(visit=lipo, crf_code="VITALS")


def resave(entry: CrfEntry, reason: str, **row) -> CrfEntry:  # noqa: ANN003
    """DU_ASSESS saved again by the coordinator, the first ulcer row changed."""
    answers = dict(entry.answers)
    answers["assessment_date"] = date.fromisoformat(answers["assessment_date"])
    answers["ulcers"] = [{**entry.answers["ulcers"][0], **row}, *entry.answers["ulcers"][1:]]
    crf_entry_save_answers(user=user("coordinator.toulouse"), visit=entry.visit, crf_code="DU_ASSESS", answers=answers, complete=True, reason=reason)
    return CrfEntry.objects.get(pk=entry.pk)


def tick(client, entry: CrfEntry, item: str, row_id: str = "", on: bool = True):  # noqa: ANN001, ANN201
    data = {"action": "tick", "item": item, "row_id": row_id, "ticked": ["0", "1"] if on else ["0"]}
    return client.post(reverse("form_review", args=[entry.pk]), data)


@pytest.fixture
def clock(demo_users):
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_untick_withdraws_the_verification_and_both_acts_are_audited(clock, client):
    entry = save_vitals(register())
    client.force_login(user("monitor.du"))
    for name in REQUIRED:
        assert tick(client, entry, name)["Location"].endswith(f"#sdv-{name}")
    mark = SdvMark.objects.get(entry=entry)
    assert (mark.state, mark.entry_revision) == (SdvState.VERIFIED, 1)
    # A second post of the same state (a double click) records nothing more.
    assert tick(client, entry, "heart_rate").status_code == 302
    assert SdvItemTick.objects.get(entry=entry, item="heart_rate").history.count() == 1

    clock.shift(timedelta(minutes=5))
    assert tick(client, entry, "heart_rate", on=False).status_code == 302
    heart = SdvItemTick.objects.get(entry=entry, item="heart_rate")
    assert not heart.ticked and heart.ticked_at == NOW + timedelta(minutes=5)
    reasons = [h.history_change_reason for h in heart.history.order_by("history_id")]
    assert reasons == ["SDV: Heart rate ticked against the source", "SDV: tick of Heart rate withdrawn"]
    mark.refresh_from_db()
    assert mark.state == SdvState.WITHDRAWN and mark.reset_by == user("monitor.du")
    html = client.get(reverse("form_review", args=[entry.pk])).content.decode()
    assert 'data-testid="form-verified"' not in html and "4 of 5 ticked." in html
    # Ticked again: verified again.
    assert tick(client, entry, "heart_rate").status_code == 302
    mark.refresh_from_db()
    assert mark.state == SdvState.VERIFIED


def test_a_change_resets_the_tick_of_the_changed_item_only(clock, client):
    participant = register()
    entry = save_vitals(participant)
    client.force_login(user("monitor.du"))
    for name in REQUIRED:
        tick(client, entry, name)
    clock.shift(timedelta(minutes=1))
    entry = save_vitals(participant, heart_rate=72)
    assert entry.revision == 2
    ticks = {t.item: t for t in SdvItemTick.objects.filter(entry=entry)}
    assert not ticks["heart_rate"].ticked and ticks["heart_rate"].reset_by == user("coordinator.toulouse")
    assert "reset by a change of its value (revision 1 → 2)" in ticks["heart_rate"].history.latest("history_id").history_change_reason
    assert all(ticks[name].ticked for name in REQUIRED if name != "heart_rate")
    assert SdvMark.objects.get(entry=entry).state == SdvState.RESET  # the form-level rule is unchanged
    # The monitor re-ticks the changed item only: verified at the new revision.
    assert tick(client, entry, "heart_rate")["Location"].endswith("#sdv-heart_rate")
    mark = SdvMark.objects.get(entry=entry)
    assert (mark.state, mark.entry_revision) == (SdvState.VERIFIED, 2)
    # A change of an item outside the plan: the mark is reset, every tick stays; "record" re-verifies.
    entry = save_vitals(participant, heart_rate=72, temperature_c=Decimal("36.8"))
    assert SdvMark.objects.get(entry=entry).state == SdvState.RESET
    assert SdvItemTick.objects.filter(entry=entry, ticked=True).count() == 5
    url = reverse("form_review", args=[entry.pk])
    assert 'data-testid="sdv-record"' in client.get(url).content.decode()
    assert client.post(url, {"action": "sdv"}).status_code == 302
    mark.refresh_from_db()
    assert (mark.state, mark.entry_revision) == (SdvState.VERIFIED, 3)


def test_an_empty_critical_item_does_not_block(clock, client):
    entry = save_vitals(register())  # no temperature: optional, left empty
    sdv_plan_save(trial=Trial.objects.get(code="ASC-DU"), user=user("datamanager"), scope="all",
                  critical_items={"VITALS": ["systolic_bp", "temperature_c"]}, reason="Critical items")
    client.force_login(user("monitor.du"))
    html = client.get(reverse("form_review", args=[entry.pk])).content.decode()
    assert 'data-testid="sdv-none-temperature_c"' in html and 'data-testid="sdv-tick-temperature_c"' not in html
    assert tick(client, entry, "temperature_c").status_code == 400  # nothing to verify
    tick(client, entry, "systolic_bp")
    assert SdvMark.objects.get(entry=entry).state == SdvState.VERIFIED


def test_repeating_group_rows_are_ticked_item_by_item_and_a_hidden_item_never_blocks(clock, client):
    participant = register()
    entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    assert entry.status == EntryStatus.COMPLETE
    rows = [row["_row_id"] for row in entry.answers["ulcers"]]
    assert rows and all(row.get("location") != "other" for row in entry.answers["ulcers"])
    # location_other is shown only when location == 'other' (seeds/crfs/du_assess.yaml): hidden in every row.
    sdv_plan_save(trial=Trial.objects.get(code="ASC-DU"), user=user("datamanager"), scope="all",
                  critical_items={"DU_ASSESS": ["assessment_date", "ulcer_id", "location_other"]}, reason="Critical items")
    monitor = user("monitor.du")
    client.force_login(monitor)
    url = reverse("form_review", args=[entry.pk])
    html = client.get(url).content.decode()
    for row_id in rows:
        assert f'data-testid="sdv-tick-ulcer_id@{row_id}"' in html
        assert f'data-testid="sdv-tick-location_other@{row_id}"' not in html
    # The monitor's older path (verify with the critical items ticked) is no longer blocked by the hidden item.
    assert tick(client, entry, "assessment_date").status_code == 302
    for row_id in rows[:-1]:
        tick(client, entry, "ulcer_id", row_id)
    assert not SdvMark.objects.filter(entry=entry).exists()  # one row still to tick
    tick(client, entry, "ulcer_id", rows[-1])
    mark = SdvMark.objects.get(entry=entry)
    assert mark.state == SdvState.VERIFIED
    assert sorted(mark.items) == sorted(["assessment_date", *[f"ulcer_id@{r}" for r in rows]])
    # A row item's value changes: that row's tick is reset, the others stay.
    entry = resave(entry, "identifier corrected", ulcer_id="U9")
    first = SdvItemTick.objects.get(entry=entry, item="ulcer_id", row_id=rows[0])
    assert not first.ticked and first.reset_at is not None
    assert SdvItemTick.objects.get(entry=entry, item="assessment_date").ticked
    assert all(SdvItemTick.objects.get(entry=entry, item="ulcer_id", row_id=r).ticked for r in rows[1:])


def test_the_admin_verify_is_not_blocked_by_a_hidden_critical_item(clock):
    entry = CrfEntry.objects.get(participant=register(), crf_code="DU_ASSESS")
    sdv_plan_save(trial=Trial.objects.get(code="ASC-DU"), user=user("datamanager"), scope="all",
                  critical_items={"DU_ASSESS": ["assessment_date", "location_other"]}, reason="Critical items")
    mark = sdv_verify(entry=entry, user=user("monitor.du"), items=["assessment_date"])
    assert mark.state == SdvState.VERIFIED


def test_only_the_sites_monitor_ticks(clock, client):
    entry = save_vitals(register())
    with pytest.raises(Exception):  # noqa: B017, PT011 - PermissionDenied from the service
        sdv_item_tick(entry=entry, user=user("coordinator.toulouse"), item="systolic_bp")
    client.force_login(user("coordinator.toulouse"))
    assert tick(client, entry, "systolic_bp").status_code == 403
    assert not SdvItemTick.objects.exists()
