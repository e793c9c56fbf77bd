import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.utils import translation

from edc.audit import system_user
from trials.protocol.loader import protocol_load

SEEDS = Path(settings.BASE_DIR) / "seeds"


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.2) -> object:
    """Wait until `predicate()` is truthy (a condition, not a fixed delay); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        pause.wait(interval)


@pytest.fixture(autouse=True)
def default_language():
    """Each test starts in the default language: a request through the test client activates its
    language in this thread (LocaleMiddleware, an ePRO page its participant's) and nothing
    deactivates it, so a service called next would speak the previous test's language."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def trial_cache_cleared():
    """The trial cache (trials.protocol.trial_cache) keeps nothing from one test to the next: a
    rolled-back trial's id is reused on SQLite."""
    yield
    from trials.protocol.trial_cache import trial_cache_clear

    trial_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def travel_for_the_session():
    """EDC_TEST_NOW=<ISO date-time with offset> runs the whole suite at that moment (the clock ticks
    on from it): a test that compares with the wrong day fails at 23:30 UTC or 00:30 in Paris at any
    hour of the day. See docs/architecture.md, "Tests"."""
    moment = os.environ.get("EDC_TEST_NOW")
    if not moment:
        yield None
        return
    start = datetime.fromisoformat(moment)
    if start.tzinfo is None:
        raise pytest.UsageError("EDC_TEST_NOW needs a time zone offset, e.g. 2026-01-14T23:30:00+00:00")
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


@pytest.fixture
def late_evening_utc():
    """The test runs at 23:30 UTC today (00:30 or 01:30 tomorrow in Paris, 17:30 today in Mexico):
    the hour when the UTC date and a site's date differ. Ask for it before the fixtures that make
    the test's data, so they are made at that hour too."""
    start = datetime.combine(datetime.now(UTC).date(), dt_time(23, 30), tzinfo=UTC)
    with time_machine.travel(start, tick=True) as traveller:
        yield traveller


@pytest.fixture
def seeds(db):
    """The four seed trials and the CRF library, loaded the way `manage.py load_trials` does."""
    return protocol_load([SEEDS], user=system_user())


@pytest.fixture
def demo_users(seeds):
    """The demo accounts of fixtures/demo_users.yaml with their study roles (no demo participants:
    each test makes the participants it needs)."""
    call_command("load_demo", "--no-participants", verbosity=0)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Demo logins hash passwords in every test; the production hasher's cost is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
