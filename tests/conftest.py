import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

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
