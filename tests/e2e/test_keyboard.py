import json
from datetime import timedelta

import pytest
from django.utils import timezone

from edc.audit import system_user
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import log_in
from trials.participants.demo import participant_register
from trials.protocol.models import Site

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FOCUSED = """() => { const e = document.activeElement; const s = getComputedStyle(e);
 return {tag: e.tagName, name: e.name || null, id: e.id || null, type: e.type || null, text: (e.innerText||'').slice(0,40),
   outline: s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor, shadow: s.boxShadow, fv: e.matches(':focus-visible')}; }"""


@pytest.fixture
def participant(demo_users):
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="TLS"), consent_date=today - timedelta(days=30), anchor_date=today - timedelta(days=7), user=system_user(),
    )


def test_explore(page, live_server, participant):
    visit = participant.visits.get(definition__code="SCREEN")
    log_in(page, live_server, "coordinator.toulouse")
    page.goto(f"{live_server.url}/visits/{visit.pk}/crf/VITALS/")
    print("plain expr:", page.evaluate("document.activeElement.tagName"))
    for i in range(30):
        page.keyboard.press("Tab")
        print(i, json.dumps(page.evaluate(FOCUSED)))
    screenshot(page, "keyboard-explore")
    print("console", page.console_errors)
