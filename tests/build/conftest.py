"""Participants of ASC-DU enrolled through the services, at a fixed moment (time-machine)."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from edc.audit import system_user
from trials.demo import participants as synthetic
from trials.participants.models import Participant
from trials.protocol.models import Site

PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 3, 2)


@pytest.fixture
def frozen():
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=PARIS), tick=True) as traveller:
        yield traveller


@dataclass
class DuParticipants:
    treated_w2_done: Participant   # A: Week 2 took place (done): untouched by a window change
    treated_w2_ahead: Participant  # C: Week 2 not yet done: re-planned
    thumb_ulcer: Participant       # B: enrolled, not treated; her only ulcer is on the thumb


@pytest.fixture
def du_participants(frozen, demo_users, monkeypatch) -> DuParticipants:  # noqa: ANN001
    from trials.visits.schedule import visit_record_date

    user = system_user()
    tls = Site.objects.get(trial__code="ASC-DU", code="TLS")
    gre = Site.objects.get(trial__code="ASC-DU", code="GRE")
    a = synthetic.participant_register(site=tls, user=user, consent_date=TODAY - timedelta(days=40),
                                       anchor_date=TODAY - timedelta(days=38), first_treatment_date=TODAY - timedelta(days=30))
    w2 = a.visits.get(definition__code="W2")
    visit_record_date(w2, user=user, visit_date=TODAY - timedelta(days=16))
    c = synthetic.participant_register(site=tls, user=user, consent_date=TODAY - timedelta(days=20),
                                       anchor_date=TODAY - timedelta(days=18), first_treatment_date=TODAY - timedelta(days=10))
    monkeypatch.setattr(synthetic, "ELIGIBLE_ULCER", {**synthetic.ELIGIBLE_ULCER, "finger": 1})
    b = synthetic.participant_register(site=gre, user=user, consent_date=TODAY - timedelta(days=20),
                                       anchor_date=TODAY - timedelta(days=18))
    return DuParticipants(treated_w2_done=a, treated_w2_ahead=c, thumb_ulcer=b)
