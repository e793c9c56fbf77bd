from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site

PASSWORD = "demo-Coord-Toulouse-26"  # fixtures/demo_users.yaml (public demo password)


@pytest.fixture
def coordinator(demo_users):
    return get_user_model().objects.get(username="coordinator.toulouse")


def register(days_since_treatment: int = 56):  # noqa: ANN201
    """A consented participant at Toulouse (ASC-DU), first treated `days_since_treatment` days ago
    (56: today is the planned day of Week 8, whose CRFs include HAQDI, COCHIN, PAIN_VAS and RCS)."""
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    today = site.today()  # the site's date: the visit windows and the links' validity are in site time
    treated = today - timedelta(days=days_since_treatment)
    return participant_register(
        site=site, consent_date=treated - timedelta(days=5), anchor_date=treated - timedelta(days=4),
        first_treatment_date=treated, user=system_user(),
    )


@pytest.fixture
def participant(demo_users):
    return register()


@pytest.fixture
def w8(participant):
    return participant.visits.get(definition__code="W8")
