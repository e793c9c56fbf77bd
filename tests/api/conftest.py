from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from edc.audit import system_user
from trials.api.services import token_create
from trials.demo.participants import participant_register
from trials.protocol.models import Site, Trial

ROLE_USERS = {
    "coordinator": "coordinator.toulouse",
    "monitor": "monitor.du",
    "sponsor": "sponsor.toulouse",
    "dsmb": "dsmb.statistician",
}


def register(trial: str, site: str):
    site = Site.objects.get(trial__code=trial, code=site)
    today = site.today()  # the site's date, which its windows and checks use (not the server's UTC date)
    return participant_register(
        site=site, consent_date=today - timedelta(days=20),
        anchor_date=today - timedelta(days=10), user=system_user(),
    )


@pytest.fixture
def user_of(demo_users):
    return lambda role: get_user_model().objects.get(username=ROLE_USERS.get(role, role))


@pytest.fixture
def token_for(user_of):
    """A raw token of a role's demo user, for her trials (or those named), read or write."""
    def make(role: str, *, scope: str = "read", trials: list[str] | None = None, days: int = 30) -> str:
        user = user_of(role)
        chosen = Trial.objects.filter(code__in=trials) if trials else Trial.objects.filter(study_roles__user=user).distinct()
        return token_create(user=user, name=f"{role} test", scope=scope, trials=chosen, days=days).raw
    return make


@pytest.fixture
def client_for(token_for):
    def make(role: str, **kwargs) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(role, **kwargs)}")
        return client
    return make


@pytest.fixture
def tls(demo_users):
    """A consented, enrolled, randomised participant at Toulouse (ASC-DU)."""
    return register("ASC-DU", "TLS")


@pytest.fixture
def mrs(demo_users):
    """A participant at Marseille (ASC-DU): no demo coordinator or monitor works there."""
    return register("ASC-DU", "MRS")


@pytest.fixture
def other_trial(demo_users):
    """A participant of ADSVF-SSC-HANDS (Mexico): a trial none of the four roles works in."""
    return register("ADSVF-SSC-HANDS", "INCMNSZ")
