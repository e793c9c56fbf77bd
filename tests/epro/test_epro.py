"""ePRO: personal links (hashed, bound, single-use, expiring in the visit's window, rate-limited),
participant mode (locked session), the participant's answers saved as the CRF entry with its score,
audited with the participant as source, and read-only for staff."""

import hashlib
import re
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from tests.epro.conftest import PASSWORD, register
from trials.epro.models import Mode, ProLink, ProResponse
from trials.epro.services import link_create
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

SEEDS = Path(__file__).resolve().parents[2] / "seeds"

# HAQ-DI answers chosen for the hand calculation (Bruce & Fries 2003: a category scores its highest
# item; an aid or help raises a 0 or 1 to 2; the index is the mean of the answered categories, >= 6).
HAQ = {
    "haq_dressing_1": "1", "haq_dressing_2": "0",                           # 1, aid -> 2
    "haq_arising_1": "0", "haq_arising_2": "0",                             # 0, help -> 2
    "haq_eating_1": "2", "haq_eating_2": "1", "haq_eating_3": "0",          # 2
    "haq_walking_1": "3", "haq_walking_2": "0",                             # 3 (aid: stays 3)
    "haq_hygiene_1": "0", "haq_hygiene_2": "1", "haq_hygiene_3": "0",       # 1
    "haq_reach_1": "__declined__", "haq_reach_2": "__declined__",           # not answered: not scored
    "haq_grip_1": "0", "haq_grip_2": "0", "haq_grip_3": "0",                # 0
    "haq_activities_1": "1", "haq_activities_2": "2", "haq_activities_3": "1",  # 2
    **{f"haq_{c}_aid": "false" for c in ("arising", "eating", "hygiene", "reach", "grip", "activities")},
    "haq_dressing_aid": "true", "haq_walking_aid": "true",
    **{f"haq_{c}_help": "false" for c in ("dressing", "eating", "walking", "hygiene", "reach", "grip", "activities")},
    "haq_arising_help": "true",
}
# (2 + 2 + 2 + 3 + 1 + 0 + 2) / 7 categories = 12 / 7 = 1.714 (three decimals)
HAQ_DI_BY_HAND = "1.714"

COCHIN = {f"cochin_{n:02d}": str(n % 6) for n in range(1, 19)}


@pytest.fixture(autouse=True)
def clear_rate_limits():
    cache.clear()


def english(client):  # noqa: ANN001, ANN201
    """The participant picked English on the page's language buttons (the language cookie): her
    Toulouse site is French (seeds/001_nct04356755_du.yaml), and these tests read English pages."""
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    return client


def walk(client, url: str, answers: dict, *, max_steps: int = 30):  # noqa: ANN001, ANN201
    """Answer a questionnaire screen by screen (posting every answer each time: a screen reads its own
    items only) until the last screen is sent; returns the last response."""
    response = client.get(url)
    for _ in range(max_steps):
        assert response.status_code == 200, response.content.decode()[:500]
        page = response.content.decode()
        step = re.search(r'name="step" value="(\d+)"', page).group(1)
        action = "submit" if 'value="submit"' in page else "next"
        response = client.post(url, {**answers, "step": step, "action": action})
        if action == "submit":
            return response
        assert response.status_code == 302, response.content.decode()[:2000]
        response = client.get(response["Location"])
    raise AssertionError("the questionnaire never ended")


def new_link(coordinator, visit, crf_code: str, **kwargs) -> tuple[ProLink, str]:  # noqa: ANN001
    return link_create(user=coordinator, visit=visit, crf_code=crf_code, base_url="http://testserver/", **kwargs)


def test_token_is_random_hashed_at_rest_and_bound_to_its_questionnaire(coordinator, w8, client):
    link, token = new_link(coordinator, w8, "COCHIN", email="participant@example.org")
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert link.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    stored = [str(v) for row in ProLink.history.values() for v in row.values()] + [str(v) for v in ProLink.objects.values().get().values()]
    assert not any(token in value for value in stored)
    # E-mailed through Django's backend; the address is not kept.
    assert len(mail.outbox) == 1 and token in mail.outbox[0].body and mail.outbox[0].to == ["participant@example.org"]
    assert not any("participant@example.org" in value for value in stored)
    page = english(client).get(reverse("epro_link", args=[token])).content.decode()
    assert "Cochin Hand Function Scale" in page and "Health Assessment" not in page
    # Nothing about the participant, her site or her arm.
    assert w8.participant.screening_number not in page and "Toulouse" not in page and "ADSVF" not in page.upper()
    assert client.get(reverse("epro_link", args=[token[:-1] + ("A" if token[-1] != "A" else "B")])).status_code == 404
    walk(client, reverse("epro_link", args=[token]), COCHIN)
    entry = CrfEntry.objects.get(visit=w8, crf_code="COCHIN")
    assert entry.participant == w8.participant and entry.status == "complete"
    assert not CrfEntry.objects.filter(crf_code="COCHIN").exclude(pk=entry.pk).exists()


def test_a_link_is_used_once(coordinator, w8, client):
    _link, token = new_link(coordinator, w8, "COCHIN")
    url = reverse("epro_link", args=[token])
    response = walk(english(client), url, COCHIN)
    assert response.status_code == 200 and "Thank you" in response.content.decode()
    entry = CrfEntry.objects.get(visit=w8, crf_code="COCHIN")
    # Cochin total: the sum of the 18 items (Duruoz 1996): 1+2+3+4+5+0 three times = 45.
    assert entry.answers["cochin_total"] == 45
    again = client.get(url)
    assert again.status_code == 410 and "already been answered" in again.content.decode()
    replay = client.post(url, {**COCHIN, "step": "0", "action": "submit"})
    assert replay.status_code == 410
    assert CrfEntry.objects.get(pk=entry.pk).revision == 1
    # Another browser, same link: used.
    from django.test import Client
    assert Client().get(url).status_code == 410
    page = Client()
    page.force_login(coordinator)
    states = page.get(reverse("epro_visit", args=[w8.pk])).content.decode()
    assert 'data-state="used"' in states


def test_a_link_expires_with_the_visits_window_from_the_trial_file(demo_users, coordinator, client):
    english(client)
    trial = yaml.safe_load((SEEDS / "001_nct04356755_du.yaml").read_text())
    w8_spec = next(v for v in trial["visits"] if v["code"] == "W8")
    paris = ZoneInfo("Europe/Paris")
    start = datetime(2026, 3, 2, 10, 0, tzinfo=paris)
    with time_machine.travel(start, tick=False) as traveller:
        participant = register(days_since_treatment=0)  # first treatment today: W8 is planned 56 days on
        visit = participant.visits.get(definition__code="W8")
        planned = start.date() + timedelta(days=w8_spec["day_offset"])
        opens = datetime.combine(planned - timedelta(days=w8_spec["window_before_days"]), time.min, tzinfo=paris)
        closes = datetime.combine(planned + timedelta(days=w8_spec["window_after_days"] + 1), time.min, tzinfo=paris)
        _link, token = new_link(coordinator, visit, "PAIN_VAS")
        url = reverse("epro_link", args=[token])
        response = client.get(url)
        assert response.status_code == 410 and "not open yet" in response.content.decode()
        traveller.move_to(opens - timedelta(seconds=1))
        assert client.get(url).status_code == 410
        traveller.move_to(opens)
        assert client.get(url).status_code == 200
        # Open, unanswered after the planned day: "late" for the coordinator.
        traveller.move_to(datetime.combine(planned + timedelta(days=1), time(12, 0), tzinfo=paris))
        client.force_login(coordinator)
        assert 'data-state="late"' in client.get(reverse("epro_visit", args=[visit.pk])).content.decode()
        client.logout()
        english(client)  # a logout drops the cookies, her choice of English with them
        traveller.move_to(closes - timedelta(seconds=1))  # 23:59:59 on the window's last day, in Toulouse
        assert client.get(url).status_code == 200
        traveller.move_to(closes)
        response = client.get(url)
        assert response.status_code == 410 and "expired" in response.content.decode()
        client.force_login(coordinator)
        assert 'data-state="expired"' in client.get(reverse("epro_visit", args=[visit.pk])).content.decode()


def test_wrong_tokens_are_404_then_rate_limited(client):
    for _ in range(10):
        response = client.get(reverse("epro_link", args=["not-a-token"]))
        assert response.status_code == 404 and "not valid" in response.content.decode()
    assert client.get(reverse("epro_link", args=["another-guess"])).status_code == 429


def test_tablet_haq_di_is_scored_audited_with_the_participant_as_source_and_read_only_for_staff(coordinator, w8, client):
    english(client).force_login(coordinator)
    response = client.post(reverse("epro_visit", args=[w8.pk]), {"action": "handover"})
    assert response["Location"] == reverse("epro_tablet")
    home = client.get(reverse("epro_tablet")).content.decode()
    assert all(code in home for code in ("tablet-HAQDI", "tablet-COCHIN", "tablet-PAIN_VAS", "tablet-RCS"))
    assert w8.participant.screening_number not in home
    # Within the session's idle limit (an hour's jump would log the coordinator out).
    moment = timezone.now().replace(microsecond=0) + timedelta(minutes=1)
    url = reverse("epro_tablet_answer", args=["HAQDI"])
    # A required item left unanswered: the screen asks for it, nothing is saved.
    client.get(url)
    first = client.post(url, {"step": "1", "action": "next"})
    assert first.status_code == 200 and "Please answer this question" in first.content.decode()
    with time_machine.travel(moment, tick=False):
        response = walk(client, url, HAQ)
    assert response["Location"] == reverse("epro_tablet")
    entry = CrfEntry.objects.get(visit=w8, crf_code="HAQDI")
    assert str(entry.answers["haq_di"]) == HAQ_DI_BY_HAND
    assert entry.answers["haq_dressing_1"] == 1 and entry.answers["haq_walking_aid"] is True
    assert entry.missing["haq_reach_1"]["code"] == "declined"
    source = ProResponse.objects.get(entry=entry)
    assert (source.mode, source.completed_at, source.handed_over_by) == (Mode.TABLET, moment, coordinator)
    record = entry.history.get()
    assert record.history_user.username == "edc-system"
    assert "Answered by the participant" in record.history_change_reason and moment.strftime("%Y-%m-%d %H:%M:%S") in record.history_change_reason
    # The staff take the tablet back and may read, never change, her answers.
    assert client.post(reverse("epro_tablet_exit"), {"password": PASSWORD})["Location"] == reverse("epro_visit", args=[w8.pk])
    crf_page = client.get(reverse("crf_entry", args=[w8.pk, "HAQDI"])).content.decode()
    assert 'data-testid="participant-sourced"' in crf_page and 'value="complete"' not in crf_page
    assert 'data-testid="calc-haq_di">1.714' in crf_page
    post = client.post(reverse("crf_entry", args=[w8.pk, "HAQDI"]), {"crf-haq_dressing_1": "3", "revision": "1", "action": "complete", "reason": "typo"})
    assert post.status_code == 403
    with pytest.raises(PermissionDenied):
        crf_entry_save_answers(user=coordinator, visit=w8, crf_code="HAQDI", answers={"haq_dressing_1": 3}, complete=True, reason="typo")
    entry.refresh_from_db()
    assert entry.revision == 1 and entry.answers["haq_dressing_1"] == 1


def test_participant_mode_cannot_reach_staff_pages(coordinator, w8, client):
    other = register(days_since_treatment=50)
    client.force_login(coordinator)
    client.post(reverse("epro_visit", args=[w8.pk]), {"action": "handover"})
    staff_pages = [
        reverse("participant_dashboard", args=[w8.participant_id]),
        reverse("participant_dashboard", args=[other.pk]),
        reverse("crf_entry", args=[w8.pk, "VITALS"]),
        reverse("epro_visit", args=[other.visits.get(definition__code="W8").pk]),
        "/admin/", "/monitoring/", reverse("logout"),
    ]
    for page in staff_pages:
        response = client.get(page)
        assert response.status_code == 302 and response["Location"] == reverse("epro_tablet"), page
    assert client.post(reverse("logout"))["Location"] == reverse("epro_tablet")
    wrong = client.post(reverse("epro_tablet_exit"), {"password": "guess"})
    assert wrong.status_code == 403 and "not the PIN or the password" in wrong.content.decode()
    assert client.get(staff_pages[0])["Location"] == reverse("epro_tablet")
    client.post(reverse("epro_tablet_exit"), {"password": PASSWORD})
    assert client.get(staff_pages[0]).status_code == 200
