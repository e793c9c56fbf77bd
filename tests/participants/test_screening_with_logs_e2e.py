"""End to end (issue 15, "screens a man truthfully; medications gate the criteria"): an ASC-DU man
is screened through the services, his medication log is entered on its pages, and the
eligibility page records I04 "not applicable" and answers the medication criteria from the log.
Runs on SQLite by default and on PostgreSQL with DATABASE_URL (CI)."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from django.urls import reverse

from tests.participants.conftest import TLS, checklist, consent, demog, enter, enter_ulcers, screen, ssc_screen, ulcer, user
from trials.participants import eligibility, services
from trials.participants.models import ParticipantStatus
from trials.visits.models import CrfEntry, RecordKind

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def noon():
    with time_machine.travel("2026-03-16T11:00:00+00:00", tick=False):
        yield


def test_an_asc_du_man_with_a_medication_log_is_screened_and_enrolled(demo, client):  # noqa: ARG001
    coordinator = user("coordinator.toulouse")
    man = consent(screen(TLS, coordinator), coordinator)
    enter(man, "DEMOG", demog(age=58, sex="M"), coordinator)
    enter(man, "SSC_SCREEN", ssc_screen(), coordinator)
    enter_ulcers(man, [ulcer()], coordinator)

    client.force_login(coordinator)
    # His medication log, on its pages: a calcium channel blocker for 9 months, unchanged.
    response = client.post(reverse("log_record_add", args=[man.pk, "CONMED"]))
    record = man.visits.get(record_kind=RecordKind.LOG, log_crf_code="CONMED")
    assert response["Location"] == reverse("crf_entry", args=[record.pk, "CONMED"])
    answers = {"medication": "nifedipine", "drug_class": "calcium_channel_blocker", "indication": "Raynaud's phenomenon",
               "dose": "30", "dose_unit": "mg", "route": "oral", "frequency": "QD", "start_date": "2025-06-01", "ongoing": "true"}
    saved = client.post(reverse("crf_entry", args=[record.pk, "CONMED"]),
                        {**{f"crf-{k}": v for k, v in answers.items()}, "revision": "0", "action": "complete"})
    assert saved.status_code == 302
    assert CrfEntry.objects.get(visit=record).answers["medication"] == "nifedipine"

    page = client.get(reverse("participant_eligibility", args=[man.pk])).content.decode()
    assert 'data-criterion="I04"' in page and "does not apply: age_years = 58, sex = M" in page
    evaluation = eligibility.evaluate(man)
    # I04 concerns women; E03 (no statin) and E05 (no DMARD) are "Excluded: no" from the log; E04: the
    # vasodilator has been taken unchanged for 288 days (> 3 months, > 1 month).
    assert {code: evaluation.answers[(code, "")].answer for code in ("I04", "E03", "E04", "E05")} == {
        "I04": "na", "E03": "not_met", "E04": "not_met", "E05": "not_met"}

    form = {}
    for (code, lesion), (answer, note) in checklist(man).items():
        name = f"c-{code}-{lesion}" if lesion else f"c-{code}"
        form[name], form[f"{name}-note"] = answer, note
    response = client.post(reverse("participant_eligibility", args=[man.pk]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    man.refresh_from_db()
    assert eligibility.assess(man).eligible is True
    services.participant_enrol(participant=man, user=coordinator, enrolment_date=date(2026, 3, 16))
    man.refresh_from_db()
    assert man.status == ParticipantStatus.ENROLLED

    # His page lists the log, with the medication and an empty medical history.
    dashboard = client.get(reverse("participant_dashboard", args=[man.pk])).content.decode()
    assert "nifedipine" in dashboard and 'data-testid="log-MEDHIST"' in dashboard
