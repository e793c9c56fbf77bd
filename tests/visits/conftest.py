from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site


@pytest.fixture
def coordinator(demo_users):
    return get_user_model().objects.get(username="coordinator.toulouse")


@pytest.fixture
def participant(demo_users):
    """A consented, enrolled participant at Toulouse (ASC-DU) with the schedule's visits."""
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    today = timezone.localdate()
    return participant_register(
        site=site, consent_date=today - timedelta(days=20),
        anchor_date=today - timedelta(days=10), user=system_user(),
    )


def visit_with(participant, crf_code: str):  # noqa: ANN001, ANN201
    """The first visit of the participant at which `crf_code` is due and not entered yet (the
    screening digital-ulcer assessment is entered at enrolment: lesion-level eligibility)."""
    return (
        participant.visits.filter(definition__visit_crfs__crf_code=crf_code)
        .exclude(crf_entries__crf_code=crf_code).order_by("order").first()
    )


def iso(days_ago: int) -> str:
    return (date.today() - timedelta(days=days_ago)).isoformat()
