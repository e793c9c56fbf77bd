"""Locks and freezes: only a data manager applies and releases them, with a reason, audited; each
level covers what it should and nothing more; a freeze stops data changes but not queries.

The helpers here are shared by the other lock, signature and deviation tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.utils import timezone

from edc.audit import system_user
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from tests.shown_dates import english_date
from trials.records import locks
from trials.records.models import Lock, LockKind, LockLevel
from trials.monitoring.queries.services import query_raise
from trials.demo.participants import participant_register
from trials.protocol.models import Site, Trial
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save


pytestmark = pytest.mark.django_db

REASON = "Database lock for the interim analysis"


def today():  # noqa: ANN201
    return timezone.localdate()


def registered(site_code: str = "TLS", *, trial: str = "ASC-DU", enrolled_days_ago: int = 10):  # noqa: ANN201
    """A consented, enrolled (and randomized) participant, her screening visit done."""
    return participant_register(
        site=Site.objects.get(trial__code=trial, code=site_code),
        user=system_user(),
        consent_date=today() - timedelta(days=enrolled_days_ago + 10),
        anchor_date=today() - timedelta(days=enrolled_days_ago),
    )


def visit_of(participant, code: str) -> Visit:  # noqa: ANN001
    return participant.visits.get(definition__code=code)


def vitals(revision: int = 0, **overrides) -> QueryDict:
    data = QueryDict(mutable=True)
    data.update(
        {
            "crf-height_cm": "165",
            "crf-weight_kg": "60",
            "crf-systolic_bp": "120",
            "crf-diastolic_bp": "80",
            "crf-heart_rate": "70",
            "crf-temperature_c": "",
            "revision": str(revision),
            "action": "complete",
            **{f"crf-{k}": v for k, v in overrides.items()},
        }
    )
    return data


def save_vitals(visit: Visit, actor, *, revision: int = 0, reason: str = "", **overrides) -> CrfEntry:  # noqa: ANN001
    result = crf_entry_save(
        user=actor,
        visit=visit,
        crf_code="VITALS",
        data=vitals(revision, **overrides),
        expected_revision=revision,
        complete=True,
        reason=reason,
    )
    assert result.saved, result.outcome.errors or result.outcome.warnings
    return result.entry


def lock(level: str, target, kind: str = LockKind.LOCK, reason: str = REASON) -> Lock:  # noqa: ANN001
    return locks.lock_apply(level=level, target=target, kind=kind, user=user("datamanager"), reason=reason)


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201
    return registered()


def test_only_a_data_manager_locks_and_releases_with_a_reason_and_both_are_audited(participant):
    for name in ("coordinator.toulouse", "investigator.toulouse", "monitor.du", "sponsor.toulouse"):
        with pytest.raises(PermissionDenied):
            locks.lock_apply(
                level=LockLevel.PARTICIPANT, target=participant, kind=LockKind.LOCK, user=user(name), reason=REASON
            )
    with pytest.raises(ValidationError) as refused:
        locks.lock_apply(
            level=LockLevel.PARTICIPANT, target=participant, kind=LockKind.LOCK, user=user("datamanager"), reason="  "
        )
    assert "reason" in refused.value.message_dict
    assert not Lock.objects.exists()

    applied = lock(LockLevel.PARTICIPANT, participant)
    record = applied.history.get()
    assert (record.history_user.username, record.history_change_reason) == ("datamanager", f"Locked: {REASON}")
    assert (applied.trial_id, applied.participant_id, applied.locked_by.username) == (
        participant.trial_id,
        participant.pk,
        "datamanager",
    )

    for name in ("coordinator.toulouse", "monitor.du"):
        with pytest.raises(PermissionDenied):
            locks.lock_release(lock=applied, user=user(name), reason="Correction needed")
    with pytest.raises(ValidationError):
        locks.lock_release(lock=applied, user=user("datamanager"), reason="")
    assert Lock.objects.get(pk=applied.pk).released_at is None

    released = locks.lock_release(lock=applied, user=user("datamanager"), reason="Query on VITALS needs a correction")
    assert (
        released.released_by.username == "datamanager"
        and released.release_reason == "Query on VITALS needs a correction"
    )
    latest = released.history.first()
    assert (latest.history_user.username, latest.history_change_reason) == (
        "datamanager",
        "Released: Query on VITALS needs a correction",
    )
    with pytest.raises(ValidationError, match="already released"):
        locks.lock_release(lock=released, user=user("datamanager"), reason="again")
    locks.assert_writable(trial=participant.trial_id, participant=participant)  # writable again


def test_the_message_says_who_locked_what_when_and_why(participant):
    visit = visit_of(participant, "LIPO")
    # 23:30 UTC on 9 March is already 10 March in Toulouse: the moment is given in UTC, labelled,
    # never a bare date that a site would read as its own day.
    with time_machine.travel(datetime(2026, 3, 9, 23, 30, tzinfo=UTC), tick=False):
        lock(LockLevel.VISIT, visit)
    with pytest.raises(ValidationError) as refused:
        locks.assert_writable(trial=participant.trial_id, participant=participant, visit=visit)
    assert refused.value.messages == [
        f"This visit is locked by Sophie Laurent on {english_date(date(2026, 3, 9))} 23:30 UTC: {REASON}"
    ]


def test_each_level_covers_its_data_and_nothing_else(participant):
    other = registered()
    lipo, w1 = visit_of(participant, "LIPO"), visit_of(participant, "W1")
    entry = save_vitals(lipo, user("coordinator.toulouse"))

    def writable(**target) -> bool:  # noqa: ANN003
        try:
            locks.assert_writable(**target)
        except ValidationError:
            return False
        return True

    entry_lock = lock(LockLevel.ENTRY, entry)
    assert not writable(participant=participant, visit=lipo, entry=entry)
    assert writable(participant=participant, visit=lipo)  # another CRF of the visit
    locks.lock_release(lock=entry_lock, user=user("datamanager"), reason="done")

    visit_lock = lock(LockLevel.VISIT, lipo)
    assert not writable(participant=participant, visit=lipo, entry=entry)
    assert not writable(participant=participant, visit=lipo)
    assert writable(participant=participant, visit=w1)
    assert writable(participant=participant)
    locks.lock_release(lock=visit_lock, user=user("datamanager"), reason="done")

    participant_lock = lock(LockLevel.PARTICIPANT, participant)
    assert not writable(participant=participant, visit=w1)
    assert not writable(participant=participant, visit=lipo, entry=entry)
    assert writable(participant=other, visit=visit_of(other, "LIPO"))
    locks.lock_release(lock=participant_lock, user=user("datamanager"), reason="done")

    lock(LockLevel.TRIAL, participant.trial)
    assert not writable(participant=other)
    assert not writable(participant=participant, visit=lipo, entry=entry)
    registry = registered(trial="SSC-FATGRAFT-REG", site_code="TLS")
    assert writable(participant=registry)  # another trial


def test_a_freeze_stops_data_changes_but_not_queries_a_lock_stops_both(participant):
    entry = save_vitals(visit_of(participant, "LIPO"), user("coordinator.toulouse"))
    freeze = lock(LockLevel.PARTICIPANT, participant, kind=LockKind.FREEZE, reason="Source data verification visit")
    with pytest.raises(ValidationError, match="frozen by Sophie Laurent .* queries remain possible"):
        locks.assert_writable(participant=participant, entry=entry)
    locks.assert_queries_allowed(participant=participant, entry=entry)  # does not raise
    query = query_raise(
        user=user("monitor.du"), entry=entry, item="heart_rate", text="Please check against the source."
    )
    assert query.pk is not None

    lock(LockLevel.PARTICIPANT, participant, kind=LockKind.LOCK)  # a lock on top of the freeze
    with pytest.raises(ValidationError, match="locked by Sophie Laurent"):
        locks.assert_queries_allowed(participant=participant, entry=entry)
    with pytest.raises(ValidationError, match="locked by Sophie Laurent"):
        query_raise(user=user("monitor.du"), entry=entry, item="weight_kg", text="Please check.")
    assert freeze.released_at is None


def test_the_same_lock_twice_is_refused(participant):
    lock(LockLevel.PARTICIPANT, participant)
    with pytest.raises(ValidationError, match="Already done"):
        lock(LockLevel.PARTICIPANT, participant)
    assert Lock.objects.filter(participant=participant).count() == 1


def test_a_trial_lock_needs_an_all_sites_data_manager(participant):
    from trials.protocol.services import study_role_grant

    site_manager = type(user("datamanager")).objects.create_user("dm.toulouse", password="x-long-password-1")
    study_role_grant(
        user=site_manager,
        trial=participant.trial,
        site=participant.site,
        role="data_manager",
        granted_by=system_user(),
        reason="t",
    )
    locks.lock_apply(
        level=LockLevel.PARTICIPANT, target=participant, kind=LockKind.FREEZE, user=site_manager, reason=REASON
    )
    with pytest.raises(PermissionDenied):
        locks.lock_apply(
            level=LockLevel.TRIAL,
            target=Trial.objects.get(code="ASC-DU"),
            kind=LockKind.LOCK,
            user=site_manager,
            reason=REASON,
        )
    grenoble = registered("GRE")
    with pytest.raises(PermissionDenied):
        locks.lock_apply(
            level=LockLevel.PARTICIPANT, target=grenoble, kind=LockKind.LOCK, user=site_manager, reason=REASON
        )
