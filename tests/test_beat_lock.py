"""The beat lock (edc.beat_lock): one holder at a time; a clean stop hands over at once, a dead
holder's lock expires after its TTL, and a holder that lost the lock learns it when it renews (and
then stops beat). Against a real Redis (REDIS_URL)."""

import os
import threading
import uuid

import pytest

from edc.beat_lock import BeatLock

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")


@pytest.fixture
def key():
    name = f"edc:test-beat-lock:{uuid.uuid4().hex}"
    yield name
    BeatLock(REDIS_URL, key=name).client.delete(name)


def test_one_holder_and_a_clean_handover(key):
    first, second = BeatLock(REDIS_URL, ttl=30, key=key), BeatLock(REDIS_URL, ttl=30, key=key)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.holder() == first.token
    assert first.renew() is True
    first.release()  # beat stopped cleanly
    assert second.acquire() is True
    assert first.renew() is False  # the old holder may not renew what it no longer holds
    assert second.holder() == second.token


def test_a_dead_holders_lock_expires_and_the_holder_learns_it_lost_it(key):
    first, second = BeatLock(REDIS_URL, ttl=0.5, key=key), BeatLock(REDIS_URL, ttl=0.5, key=key)
    assert first.acquire() is True
    assert second.acquire() is False
    threading.Event().wait(0.8)  # the holder was killed: no renewal for longer than the TTL
    assert second.acquire() is True
    assert first.renew() is False  # came back after a pause: it must stop, the other runs beat
    first.release()  # releasing someone else's lock does nothing
    assert second.holder() == second.token
