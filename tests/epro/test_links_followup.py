"""After a personal link is made (issue 20): the coordinator may withdraw it with a reason (audited,
410 for the participant, shown in the links list); an unanswered link is listed once in its
creator's daily digest (window closing within EDC_PRO_REMINDER_HOURS, or created over 24 hours ago),
never for a used, withdrawn or expired link; the participant's initials greet her only if the
trial file allows it."""

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.core.cache import cache
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from edc.audit import system_user
from tests.epro.conftest import register
from tests.epro.test_epro import COCHIN, english, new_link, walk
from trials.epro.models import ProLink
from trials.protocol.loader import ProtocolLoadError, protocol_check, protocol_load
from trials.protocol.models import Trial
from trials.visits import tasks
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
PARIS = ZoneInfo("Europe/Paris")
DEMOG = {
    "initials": "MRL", "date_of_birth": date(1970, 5, 4), "sex": "F", "dominant_hand": "right",
    "smoking_status": "never", "alcohol_use_disorder": False, "drug_abuse": False,
}


@pytest.fixture(autouse=True)
def clear_rate_limits():
    cache.clear()


# --- Withdrawing a link -------------------------------------------------------------------------


def test_the_coordinator_withdraws_an_unanswered_link_with_a_reason(coordinator, w8, client):
    english(client)  # the participant reads English (her Toulouse site is French)
    link, token = new_link(coordinator, w8, "COCHIN")
    url = reverse("epro_link", args=[token])
    assert client.get(url).status_code == 200
    staff = type(client)()
    staff.force_login(coordinator)
    page = reverse("epro_visit", args=[w8.pk])
    # A reason is required.
    refused = staff.post(page, {"action": "revoke", "link": link.pk, "reason": "  "}, follow=True)
    assert "Say why the link is withdrawn." in refused.content.decode()
    link.refresh_from_db()
    assert not link.revoked
    staff.post(page, {"action": "revoke", "link": link.pk, "reason": "Sent to the wrong address"})
    link.refresh_from_db()
    assert link.revoked and link.revoked_by == coordinator and link.revoked_reason == "Sent to the wrong address"
    last = link.history.first()
    assert last.history_user == coordinator and "withdrawn: Sent to the wrong address" in last.history_change_reason
    gone = client.get(url)
    assert gone.status_code == 410 and "withdrawn by the study team" in gone.content.decode()
    # Answers posted through the withdrawn link are not saved.
    assert client.post(url, {**COCHIN, "step": "0", "action": "submit"}).status_code == 410
    listing = staff.get(page).content.decode()
    assert 'data-state="revoked"' in listing and "Sent to the wrong address" in listing
    assert f'data-testid="revoke-{link.pk}"' not in listing  # nothing left to withdraw
    again = staff.post(page, {"action": "revoke", "link": link.pk, "reason": "twice"}, follow=True)
    assert "already withdrawn" in again.content.decode()


def test_an_answered_link_is_not_withdrawn_and_other_sites_cannot(coordinator, w8, client, django_user_model):
    link, token = new_link(coordinator, w8, "COCHIN")
    walk(client, reverse("epro_link", args=[token]), COCHIN)
    staff = type(client)()
    staff.force_login(coordinator)
    response = staff.post(reverse("epro_visit", args=[w8.pk]), {"action": "revoke", "link": link.pk, "reason": "x"}, follow=True)
    assert "answered questionnaire is not withdrawn" in response.content.decode()
    link.refresh_from_db()
    assert not link.revoked
    other_link, _token = new_link(coordinator, w8, "PAIN_VAS")
    madrid = type(client)()
    madrid.force_login(django_user_model.objects.get(username="coordinator.madrid"))
    assert madrid.post(reverse("epro_visit", args=[w8.pk]), {"action": "revoke", "link": other_link.pk, "reason": "x"}).status_code == 404
    assert madrid.post(reverse("epro_visit", args=[w8.pk]), {"action": "revoke", "link": "abc", "reason": "x"}).status_code == 404
    other_link.refresh_from_db()
    assert not other_link.revoked


# --- Reminders through the digest ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def eager(monkeypatch):  # noqa: ANN001, ANN201
    """The scan and the digests it enqueues run in this process, in the test's transaction (with
    REDIS_URL set, as in CI, they would go to the worker, which cannot see the test's rows; the
    worker's own path is tested in tests/test_schedule_worker.py)."""
    from edc.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


def scan(capture) -> list:  # noqa: ANN001
    """The beat's daily scan, run as Celery runs it, in-process (the `eager` fixture)."""
    from django.core import mail

    before = len(mail.outbox)
    with capture(execute=True):
        tasks.reminders_scan.delay()
    return [m for m in mail.outbox[before:] if m.to == ["coordinator.toulouse@example.org"]]


def test_an_unanswered_link_is_reminded_once_never_when_used_or_withdrawn(coordinator, client, django_capture_on_commit_callbacks):
    start = datetime(2026, 3, 2, 10, 0, tzinfo=PARIS)
    with time_machine.travel(start, tick=False) as traveller:
        visit = register(days_since_treatment=56).visits.get(definition__code="W8")  # W8 planned today, window +-7 days
        waiting, _t = new_link(coordinator, visit, "COCHIN")
        answered, answered_token = new_link(coordinator, visit, "PAIN_VAS")
        withdrawn, _t = new_link(coordinator, visit, "RCS")
        from trials.epro.services import link_revoke

        link_revoke(user=coordinator, link=withdrawn, reason="Participant asked for paper")
        walk(client, reverse("epro_link", args=[answered_token]), {"pain_vas": "40"})
        # Created a moment ago, window closing in 8 days: nothing to remind yet.
        assert not any("COCHIN" in m.body for m in scan(django_capture_on_commit_callbacks))
        # Over 24 hours later: the unanswered link, in its creator's digest, once.
        traveller.move_to(start + timedelta(hours=24, minutes=1))
        mails = scan(django_capture_on_commit_callbacks)
        assert len(mails) == 1
        body = mails[0].body
        line = next(line for line in body.splitlines() if "COCHIN" in line)
        assert visit.participant.number in line and "Week 8" in line
        # Valid until the end of the window's last day, Toulouse time (W8 planned 2 March, + 7 days, 23:59),
        # in the coordinator's language: she never chose one, and her site is French (`language: fr`
        # for TLS in seeds/001_nct04356755_du.yaml); CLDR's French date: "9 mars 2026".
        assert "9 mars 2026 23:59" in line
        assert "PAIN_VAS" not in body and "RCS" not in body
        waiting.refresh_from_db()
        assert waiting.reminded_at == start + timedelta(hours=24, minutes=1)
        with translation.override("fr"):
            stamped = gettext("Listed once in %(user)s's reminder digest") % {"user": coordinator.get_username()}
        assert "reminder digest" not in stamped  # the catalogue has it in French
        assert waiting.history.first().history_change_reason == stamped
        traveller.move_to(start + timedelta(days=2))
        assert not any("COCHIN" in m.body for m in scan(django_capture_on_commit_callbacks))
    assert ProLink.objects.filter(reminded_at__isnull=False).count() == 1


def test_a_link_whose_window_closes_soon_is_reminded_at_once_never_once_expired(coordinator, settings, django_capture_on_commit_callbacks):
    start = datetime(2026, 3, 2, 10, 0, tzinfo=PARIS)
    with time_machine.travel(start, tick=False) as traveller:
        visit = register(days_since_treatment=56).visits.get(definition__code="W8")
        # The window's last day (planned + 7), 06:00 in Toulouse: 18 hours before it closes.
        last_day = visit.window_end
        traveller.move_to(datetime.combine(last_day, time(6, 0), tzinfo=PARIS))
        soon, _t = new_link(coordinator, visit, "COCHIN")
        settings.EDC_PRO_REMINDER_HOURS = 12  # closes in 18 h: not yet
        assert not any("COCHIN" in m.body for m in scan(django_capture_on_commit_callbacks))
        settings.EDC_PRO_REMINDER_HOURS = 24  # the default: closes within 24 h
        assert sum("COCHIN" in m.body for m in scan(django_capture_on_commit_callbacks)) == 1
        late, _t = new_link(coordinator, visit, "HAQDI")
        # After the window: expired, never reminded.
        traveller.move_to(datetime.combine(last_day + timedelta(days=1), time(0, 0), tzinfo=PARIS))
        assert not any("HAQDI" in m.body for m in scan(django_capture_on_commit_callbacks))
    late.refresh_from_db()
    assert late.reminded_at is None


# --- The participant's initials -----------------------------------------------------------------


def load_du_trial(tmp_path: Path, epro: dict | None) -> None:
    spec = yaml.safe_load((SEEDS / "001_nct04356755_du.yaml").read_text())
    if epro is not None:
        spec["epro"] = epro
    path = tmp_path / "001_nct04356755_du.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    protocol_load([path], user=system_user())


@pytest.mark.parametrize(("epro", "shown"), [(None, False), ({"show_initials": False}, False), ({"show_initials": True}, True)])
def test_initials_only_when_the_trial_file_allows(coordinator, w8, client, tmp_path, epro, shown):
    load_du_trial(tmp_path, epro)
    assert Trial.objects.get(code="ASC-DU").epro_settings == {"show_initials": shown}
    screening = w8.participant.visits.get(definition__code="SCREEN")
    crf_entry_save_answers(user=coordinator, visit=screening, crf_code="DEMOG", answers=DEMOG, complete=True, reason="typed")
    _link, token = new_link(coordinator, w8, "COCHIN")
    page = client.get(reverse("epro_link", args=[token])).content.decode()
    assert ('data-testid="participant-initials"' in page) is shown and ("MRL" in page) is shown
    assert w8.participant.number not in page
    staff = type(client)()
    staff.force_login(coordinator)
    staff.post(reverse("epro_visit", args=[w8.pk]), {"action": "handover"})
    assert ("MRL" in staff.get(reverse("epro_tablet")).content.decode()) is shown


@pytest.mark.parametrize(("epro", "message"), [
    ({"show_initials": "maybe"}, "epro.show_initials"),
    ({"show_name": True}, "epro.show_name"),
])
def test_the_loader_refuses_a_bad_epro_block(demo_users, tmp_path, epro, message):
    spec = yaml.safe_load((SEEDS / "001_nct04356755_du.yaml").read_text())
    spec["epro"] = epro
    path = tmp_path / "du.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    with pytest.raises(ProtocolLoadError) as error:
        protocol_check([path])
    assert message in str(error.value)
