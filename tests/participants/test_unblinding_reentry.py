"""Emergency unblinding's password re-entry is blocked after 3 wrong passwords, as e-signatures are
(21 CFR 11.300(d)). Before issue 16 it was unlimited: 10 wrong in a row, then the right one unblinded."""

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.participants.conftest import PASSWORDS, TLS, user
from tests.participants.test_unblinding import INVESTIGATOR, nothing_written, randomized, unblind
from trials.accounts.models import PasswordReentryFailure
from trials.participants.models import Unblinding

pytestmark = pytest.mark.django_db


def test_three_wrong_passwords_block_unblinding_even_with_the_right_one(demo):
    participant = randomized(TLS)
    for _ in range(3):
        with pytest.raises(ValidationError) as refused:
            unblind(participant, password="not-my-password")
        assert refused.value.message_dict["password"] == ["The password is not correct."]
    assert PasswordReentryFailure.objects.filter(user=user(INVESTIGATOR), purpose="unblind").count() == 3
    with pytest.raises(ValidationError) as blocked:
        unblind(participant, password=PASSWORDS[INVESTIGATOR])
    assert "Too many wrong passwords" in blocked.value.message_dict["password"][0]
    nothing_written(participant)


def test_the_block_ends_after_the_window(demo):
    participant = randomized(TLS)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(3):
            with pytest.raises(ValidationError):
                unblind(participant, password="not-my-password")
    with time_machine.travel(start + timedelta(minutes=16), tick=False):
        unblind(participant)
    assert Unblinding.objects.filter(participant=participant).count() == 1


def test_two_wrong_passwords_do_not_block(demo):
    participant = randomized(TLS)
    for _ in range(2):
        with pytest.raises(ValidationError):
            unblind(participant, password="not-my-password")
    unblind(participant)
    assert Unblinding.objects.filter(participant=participant).count() == 1
