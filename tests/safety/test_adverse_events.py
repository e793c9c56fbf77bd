"""Adverse events: validation, audit, reporting clocks (24 h, 7 d, 15 d) with frozen clocks and
alerts that never repeat, the coding dictionary load, and the AE pages."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from edc.audit import audited_save, system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.safety import alerts, services
from trials.safety.coding import CodingLoadError, coding_dictionary_load
from trials.safety.models import AdverseEvent, ClockAlert, ClockKind, CodingTerm, ReportingClock

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)


@pytest.fixture
def participant(demo_users):
    with time_machine.travel(NOW, tick=False):
        return participant_register(
            site=Site.objects.get(trial__code="ASC-DU", code="TLS"), user=system_user(),
            consent_date=date(2026, 5, 1), anchor_date=date(2026, 5, 10),
        )


@pytest.fixture
def coordinator():
    return get_user_model().objects.get(username="coordinator.toulouse")


def ae(participant, **values):  # noqa: ANN001, ANN201
    fields = {
        "verbatim_term": "Headache", "onset_date": date(2026, 6, 10), "ongoing": True, "grade": 2,
        "related_product": "not_related", "procedure": "none", "related_procedure": "not_related", "action_taken": "none",
        "outcome": "not_recovered", "aware_at": datetime(2026, 6, 14, 9, 0, tzinfo=UTC), **values,
    }
    return AdverseEvent(participant=participant, **fields)


def test_an_ae_is_numbered_audited_and_changes_need_a_reason(participant, coordinator):
    with time_machine.travel(NOW, tick=False):
        first = services.ae_save(ae(participant), user=coordinator)
        second = services.ae_save(ae(participant, verbatim_term="Nausea"), user=coordinator)
        assert (first.number, second.number) == (1, 2)
        first.grade = 3
        with pytest.raises(ValidationError, match="reason"):
            services.ae_save(first, user=coordinator)
        services.ae_save(first, user=coordinator, reason="Worsened")
    record = AdverseEvent.objects.get(pk=first.pk).history.first()
    assert record.grade == 3 and record.history_user == coordinator and record.history_change_reason == "Worsened"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"onset_date": date(2026, 4, 1)}, "onset_date"),  # before consent
        ({"onset_date": date(2026, 7, 1)}, "onset_date"),  # future
        ({"ongoing": False, "end_date": date(2026, 6, 5)}, "end_date"),  # end before onset
        ({"ongoing": True, "end_date": date(2026, 6, 12)}, "end_date"),
        ({"grade": 5}, "grade"),  # death without fatal outcome
        ({"outcome": "fatal", "ongoing": False, "end_date": date(2026, 6, 12)}, "outcome"),
        ({"aware_at": datetime(2026, 6, 1, 9, 0, tzinfo=UTC)}, "aware_at"),
        ({"seriousness": ["sometimes"]}, "seriousness"),
    ],
)
def test_bad_aes_are_refused_on_their_field_and_write_nothing(participant, coordinator, values, field):
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError) as refused:
        services.ae_save(ae(participant, **values), user=coordinator)
    assert field in refused.value.message_dict
    assert not AdverseEvent.objects.filter(participant=participant).exists()


def test_another_sites_coordinator_cannot_record(participant):
    madrid = get_user_model().objects.get(username="coordinator.madrid")
    with pytest.raises(PermissionDenied):
        services.ae_save(ae(participant), user=madrid)


def test_a_serious_ae_starts_a_24_hour_clock_from_awareness(participant, coordinator):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    assert saved.serious and clock.kind == ClockKind.SAE_24H
    assert clock.due_at - clock.started_at == timedelta(hours=24) and clock.started_at == saved.aware_at


@pytest.mark.parametrize(
    ("criteria", "kind", "days"),
    [(["life_threatening"], ClockKind.SUSAR_7D, 7), (["hospitalisation"], ClockKind.SUSAR_15D, 15)],
)
def test_a_susar_gets_its_7_or_15_day_clock(participant, coordinator, criteria, kind, days):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=criteria, grade=4, related_product="probable"), user=coordinator)
        services.ae_expectedness_assess(saved, user=_user("sponsor.toulouse"), expected=False, reason="Not in the IB")
    kinds = {c.kind: c for c in saved.clocks.all()}
    assert set(kinds) == {ClockKind.SAE_24H, kind}
    assert kinds[kind].due_at - kinds[kind].started_at == timedelta(days=days)


def test_no_longer_serious_cancels_the_open_clock(participant, coordinator):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
        saved.seriousness = []
        services.ae_save(saved, user=coordinator, reason="Not hospitalised after all")
    assert saved.clocks.get().cancelled


def test_alerts_at_half_time_and_when_overdue_never_repeat(participant, coordinator, mailoutbox, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=6)) == 0  # a quarter of the time
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=13)) == 1  # past half time
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=14)) == 0  # not twice
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=25)) == 1  # overdue
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=30)) == 0
    assert list(ClockAlert.objects.filter(clock=clock).values_list("stage", flat=True).order_by("sent_at")) == ["elapsed_50", "overdue"]
    assert len(mailoutbox) == 2
    recipients = set(mailoutbox[0].to)
    assert "coordinator.toulouse@example.org" in recipients and "sponsor@example.org" in recipients
    assert "coordinator.madrid@example.org" not in recipients


def test_the_sponsor_safety_contacts_and_the_reminder_times_come_from_the_trial(participant, coordinator, mailoutbox, django_capture_on_commit_callbacks):
    trial = participant.trial
    trial.safety_reporting = {"contacts": ["pv-desk@sponsor.example.org"], "alerts_at": [0.25, 0.75]}
    audited_save(trial, user=coordinator, reason="Safety desk named by the sponsor")
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=5)) == 0
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=7)) == 1  # past 25 %
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=13)) == 0  # half time is not a stage here
        # The worker was down past 75 % and the deadline: only the overdue alert goes out.
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=26)) == 1
        assert alerts.clock_alerts_send(now=clock.started_at + timedelta(hours=27)) == 0
    assert list(ClockAlert.objects.filter(clock=clock).values_list("stage", flat=True).order_by("sent_at")) == ["elapsed_25", "overdue"]
    assert all("pv-desk@sponsor.example.org" in mail.to for mail in mailoutbox) and len(mailoutbox) == 2
    assert "25% of the time elapsed" in mailoutbox[0].subject and "OVERDUE" in mailoutbox[1].subject


def test_an_alert_whose_mail_server_refused_is_sent_at_the_next_tick_and_only_once(participant, coordinator, mailoutbox, settings):  # noqa: ANN001
    """The mail server down (a real SMTP connection to a closed port) when the half-time alert is
    raised: the alert is kept with the error, no e-mail; the next tick, the server back, sends it
    once; later ticks send nothing more."""
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2  # nothing listens on port 1
    with time_machine.travel(clock.started_at + timedelta(hours=13), tick=False):
        assert alerts.clock_alerts_send() == 1  # raised
    alert = ClockAlert.objects.get(clock=clock)
    assert alert.emailed_at is None and alert.email_claimed_at is None
    assert "ConnectionRefusedError" in alert.email_error or "Errno" in alert.email_error, alert.email_error
    assert len(mailoutbox) == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    with time_machine.travel(clock.started_at + timedelta(hours=13, minutes=15), tick=False):
        assert alerts.clock_alerts_send() == 0  # no new stage
    assert len(mailoutbox) == 1 and "50% of the time elapsed" in mailoutbox[0].subject
    alert.refresh_from_db()
    assert alert.emailed_at == clock.started_at + timedelta(hours=13, minutes=15) and alert.email_error == ""
    with time_machine.travel(clock.started_at + timedelta(hours=14), tick=False):
        alerts.clock_alerts_send()
    assert len(mailoutbox) == 1


def test_an_alert_claimed_by_a_lost_worker_is_sent_once_after_the_retry_delay(participant, coordinator, mailoutbox, settings):  # noqa: ANN001
    """A worker that claimed an alert's e-mail and died (the claim stays, no `emailed_at`): the
    next tick within CLOCK_ALERT_EMAIL_RETRY_MINUTES leaves it (the claim may be a live worker's),
    the first tick after sends it, once."""
    settings.CLOCK_ALERT_EMAIL_RETRY_MINUTES = 10
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    claimed = clock.started_at + timedelta(hours=13)
    alert = ClockAlert.objects.create(clock=clock, stage="elapsed_50")
    ClockAlert.objects.filter(pk=alert.pk).update(email_claimed_at=claimed)  # the lost worker's claim
    with time_machine.travel(claimed + timedelta(minutes=9), tick=False):
        assert alerts.clock_alert_emails_deliver() == 0
    assert len(mailoutbox) == 0
    with time_machine.travel(claimed + timedelta(minutes=11), tick=False):
        assert alerts.clock_alert_emails_deliver() == 1
        assert alerts.clock_alert_emails_deliver() == 0
    assert len(mailoutbox) == 1
    assert ClockAlert.objects.get(pk=alert.pk).emailed_at == claimed + timedelta(minutes=11)


def test_a_reported_clock_stops_and_is_not_alerted(participant, coordinator):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
        clock = services.clock_report(saved.clocks.get(), user=coordinator)
        assert clock.reported_at == timezone.now() and clock.reported_by == coordinator
        with pytest.raises(ValidationError, match="already recorded"):
            services.clock_report(clock, user=coordinator)
    assert alerts.clock_alerts_send(now=clock.due_at + timedelta(days=1)) == 0


def test_the_coding_dictionary_loads_all_or_nothing(tmp_path: Path):
    good = tmp_path / "terms.csv"
    good.write_text("llt_code,llt,pt_code,pt,soc_code,soc\nX1,Head pain,P1,Headache,S1,Nervous system disorders\n", encoding="utf-8")
    assert coding_dictionary_load(good, dictionary="T", version="1") == 1
    assert coding_dictionary_load(good, dictionary="T", version="1") == 0  # idempotent
    bad = tmp_path / "bad.csv"
    bad.write_text("llt_code,llt,pt_code,pt,soc_code,soc\nX2,Fever,P2,Pyrexia,S2,General\nX3,,P3,Nausea,S3,GI\nX2,Dup,P2,Pyrexia,S2,General\n", encoding="utf-8")
    with pytest.raises(CodingLoadError) as refused:
        coding_dictionary_load(bad, dictionary="T", version="1")
    assert f"{bad}:3: empty llt" in refused.value.problems and f"{bad}:4: duplicate llt_code X2" in refused.value.problems
    assert not CodingTerm.objects.filter(llt_code="X2").exists()


def test_the_ae_form_in_the_browser_flow(participant, coordinator, client):
    """The form re-renders with the message on the field, then saves; the log lists the AE."""
    url = reverse("ae_new", args=[participant.pk])
    with time_machine.travel(NOW, tick=False):  # log in when the pages are used (a session lasts 8 hours)
        client.force_login(coordinator)
        assert client.get(url).status_code == 200
    data = {
        "verbatim_term": "Fever", "onset_date": "2026-06-10", "ongoing": "on", "grade": "2", "related_product": "possible",
        "procedure": "injection", "related_procedure": "possible", "action_taken": "none",
        "outcome": "recovering", "aware_at": "2026-06-14T10:00", "seriousness": [],
    }
    with time_machine.travel(NOW, tick=False):
        response = client.post(url, {**data, "onset_date": "2026-04-01"})
        assert response.status_code == 200 and "medical history" in response.content.decode()
        assert client.post(url, data).status_code == 302
    saved = AdverseEvent.objects.get(participant=participant)
    assert saved.aware_at == datetime(2026, 6, 14, 8, 0, tzinfo=UTC)  # 10:00 in Toulouse (CEST) is 08:00 UTC
    with time_machine.travel(NOW, tick=False):
        page = client.get(reverse("participant_aes", args=[participant.pk])).content.decode()
    assert "Fever" in page and "AE1" in page


def test_the_clock_dashboard_lists_open_clocks_of_the_users_sites_only(participant, coordinator, client):
    with time_machine.travel(NOW, tick=False):
        services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    client.force_login(coordinator)
    assert "AE1" in client.get(reverse("clock_dashboard")).content.decode()
    client.force_login(get_user_model().objects.get(username="coordinator.madrid"))
    assert "AE1" not in client.get(reverse("clock_dashboard")).content.decode()
    assert ReportingClock.objects.count() == 1


def test_the_printable_sae_report_names_no_arm_for_a_blinded_user(participant, coordinator, client):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, treatment_given="IV antibiotics"), user=coordinator)
    client.force_login(coordinator)
    page = client.get(reverse("ae_report", args=[participant.pk, saved.number])).content.decode()
    assert "Headache" in page and "IV antibiotics" in page and "not reported yet" in page
    assert participant.allocation.kit_code in page
    for arm in participant.trial.arms.all():
        assert f">{arm.label}<" not in page and arm.code not in page


def test_alerts_go_only_to_this_trials_active_roles(participant, coordinator, mailoutbox, django_capture_on_commit_callbacks):
    """A sponsor of another trial who also monitors this one gets no alert of this trial."""
    from trials.protocol.models import Role, Trial
    from trials.protocol.services import study_role_grant

    other = get_user_model().objects.create_user("mixed.roles", email="mixed@example.org", password="x-long-password-1")
    study_role_grant(user=other, trial=Trial.objects.get(code="EASC-RA"), site=None, role=Role.SPONSOR, granted_by=system_user(), reason="t")
    study_role_grant(user=other, trial=participant.trial, site=None, role=Role.MONITOR, granted_by=system_user(), reason="t")
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    with django_capture_on_commit_callbacks(execute=True):
        alerts.clock_alerts_send(now=saved.clocks.get().due_at + timedelta(hours=1))
    assert mailoutbox and "mixed@example.org" not in mailoutbox[0].to


def test_a_coded_ae_is_edited_by_its_code_in_the_latest_dictionary(participant, coordinator, client, tmp_path: Path):
    for version in ("1", "2"):
        csv = tmp_path / f"v{version}.csv"
        csv.write_text(f"llt_code,llt,pt_code,pt,soc_code,soc\nZ1,Head pain v{version},P1,Headache,S1,Nervous system disorders\n", encoding="utf-8")
        coding_dictionary_load(csv, dictionary="T", version=version)
    data = {
        "verbatim_term": "Headache", "coded_term": "Z1", "onset_date": "2026-06-10", "ongoing": "on", "grade": "1",
        "related_product": "not_related", "procedure": "none", "related_procedure": "not_related",
        "action_taken": "none", "outcome": "not_recovered", "aware_at": "2026-06-14T10:00",
    }
    with time_machine.travel(NOW, tick=False):
        client.force_login(coordinator)  # at the time of the requests: a session lasts 8 hours
        assert client.post(reverse("ae_new", args=[participant.pk]), data).status_code == 302
        saved = AdverseEvent.objects.get(participant=participant)
        assert saved.coded_term.version == "2"
        form_page = client.get(reverse("ae_edit", args=[participant.pk, saved.number])).content.decode()
        assert 'value="Z1"' in form_page
        response = client.post(reverse("ae_edit", args=[participant.pk, saved.number]), {**data, "grade": "2", "reason": "Worse"})
        assert response.status_code == 302
    assert AdverseEvent.objects.get(pk=saved.pk).coded_term_id == saved.coded_term_id


def test_the_report_time_is_typed_in_site_time_or_is_now(participant, coordinator, client):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3), user=coordinator)
    clock = saved.clocks.get()
    url = reverse("clock_report", args=[clock.pk])
    with time_machine.travel(clock.started_at + timedelta(hours=20), tick=False):
        client.force_login(coordinator)  # at the time of the requests: a session lasts 8 hours
        page = client.post(url, {"reported_at": "yesterday"}, follow=True).content.decode()
        assert "is not a date and time" in page
        clock.refresh_from_db()
        assert clock.reported_at is None
        local = (clock.started_at + timedelta(hours=3)).astimezone(ZoneInfo("Europe/Paris"))
        client.post(url, {"reported_at": local.strftime("%Y-%m-%dT%H:%M")})
    clock.refresh_from_db()
    assert clock.reported_at == (clock.started_at + timedelta(hours=3)).replace(second=0, microsecond=0)
    assert clock.reported_by == coordinator


# --- Issue 13: safety reporting clocks -----------------------------------------------------------
# ICH E2A III.A / Regulation (EU) 536/2014 art. 42 / EU CT-3 7.2.3.3: a SUSAR is reported within
# 7 days if fatal or life-threatening, else 15 days, day 0 being the first awareness of the minimum
# criteria; expectedness is judged by the sponsor against the reference safety information. ICH
# E6(R2) 4.11.1: the investigator reports an SAE to the sponsor immediately (here: within 24 hours).


def _user(username: str):  # noqa: ANN202
    return get_user_model().objects.get(username=username)


def _select(page: str, name: str) -> str:
    import re

    found = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert found, name
    return found.group(1)


def test_the_new_ae_form_presets_no_answer(participant, coordinator, client):
    """Outcome, action taken, procedure and relations start unanswered; expectedness is not asked."""
    client.force_login(coordinator)
    page = client.get(reverse("ae_new", args=[participant.pk])).content.decode()
    for name in ("related_product", "procedure", "related_procedure", "action_taken", "outcome"):
        options = _select(page, name)
        assert "selected" not in options.replace('value="" selected', ""), name
        assert 'value=""' in options, name  # an explicit "---------" to move away from
    assert 'name="expected"' not in page


def test_an_ae_without_explicit_answers_is_refused_on_each_field(participant, coordinator):
    bare = AdverseEvent(
        participant=participant, verbatim_term="Headache", onset_date=date(2026, 6, 10), ongoing=True, grade=2,
        related_product="possible", aware_at=datetime(2026, 6, 14, 9, 0, tzinfo=UTC),
    )
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError) as refused:
        services.ae_save(bare, user=coordinator)
    assert {"procedure", "related_procedure", "action_taken", "outcome"} <= set(refused.value.message_dict)
    assert not AdverseEvent.objects.filter(participant=participant).exists()


@pytest.mark.parametrize(("criteria", "kind", "days"), [(["life_threatening"], ClockKind.SUSAR_7D, 7), (["hospitalisation"], ClockKind.SUSAR_15D, 15)])
def test_a_serious_related_ae_not_assessed_for_expectedness_starts_the_susar_clock(participant, coordinator, criteria, kind, days):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=criteria, grade=4, related_product="possible"), user=coordinator)
    assert saved.expected is None and saved.awaits_expectedness
    clocks = {c.kind: c for c in saved.clocks.all()}
    assert set(clocks) == {ClockKind.SAE_24H, kind}
    assert clocks[kind].started_at == saved.aware_at and clocks[kind].due_at - clocks[kind].started_at == timedelta(days=days)
    from trials.safety.selectors import aes_awaiting_expectedness

    assert list(aes_awaiting_expectedness(_user("sponsor.toulouse"))) == [saved]


def test_the_site_does_not_answer_expectedness(participant, coordinator):
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError) as refused:
        services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, related_product="possible", expected=True), user=coordinator)
    assert "expected" in refused.value.message_dict
    assert not AdverseEvent.objects.filter(participant=participant).exists()


def test_assessed_expected_closes_the_susar_clock_with_the_reason_and_unexpected_reopens_it(participant, coordinator):
    sponsor = _user("sponsor.toulouse")
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, related_product="probable"), user=coordinator)
        with pytest.raises(PermissionDenied):  # the site does not assess expectedness
            services.ae_expectedness_assess(saved, user=coordinator, expected=True, reason="IB lists it")
        with pytest.raises(ValidationError, match="reason"):
            services.ae_expectedness_assess(saved, user=sponsor, expected=True, reason=" ")
        services.ae_expectedness_assess(saved, user=sponsor, expected=True, reason="Listed in IB v4 section 6.2")
    susar = saved.clocks.get(kind=ClockKind.SUSAR_15D)
    assert susar.cancelled and "Listed in IB v4 section 6.2" in susar.cancel_reason  # closed, not deleted
    assert "Listed in IB v4 section 6.2" in susar.history.first().history_change_reason
    assert not saved.clocks.get(kind=ClockKind.SAE_24H).cancelled  # the SAE report is still due
    saved.refresh_from_db()
    assert saved.expected is True and saved.expectedness_assessed_by == sponsor
    assert "Listed in IB v4" in saved.history.first().history_change_reason
    from trials.safety.selectors import aes_awaiting_expectedness

    assert not aes_awaiting_expectedness(sponsor).exists()
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        services.ae_expectedness_assess(saved, user=_user("datamanager"), expected=False, reason="IB v5 no longer lists it")
    susar.refresh_from_db()
    assert not susar.cancelled and susar.due_at == saved.serious_aware_at + timedelta(days=15)
    saved.refresh_from_db()
    assert saved.is_susar


def test_a_sponsor_of_another_site_neither_sees_nor_assesses(participant, coordinator, client):
    from trials.protocol.models import Role
    from trials.protocol.services import study_role_grant

    other = get_user_model().objects.create_user("sponsor.grenoble", password="x-long-password-1")
    study_role_grant(user=other, trial=participant.trial, site=Site.objects.get(trial=participant.trial, code="GRE"),
                     role=Role.SPONSOR, granted_by=system_user(), reason="t")
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, related_product="possible"), user=coordinator)
    with pytest.raises(PermissionDenied):
        services.ae_expectedness_assess(saved, user=other, expected=True, reason="IB")
    client.force_login(other)
    assert "Headache" not in client.get(reverse("expectedness_list")).content.decode()
    assert client.post(reverse("expectedness_assess", args=[saved.pk]), {"expected": "expected", "reason": "IB"}).status_code == 404


def test_the_to_assess_page_assesses_and_names_no_arm(participant, coordinator, client):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, related_product="possible"), user=coordinator)
    client.force_login(_user("sponsor.toulouse"))
    home = client.get(reverse("home")).content.decode()
    assert reverse("expectedness_list") in home
    page = client.get(reverse("expectedness_list")).content.decode()
    assert "Headache" in page and f'data-testid="assess-{saved.pk}"' in page
    assert participant.allocation.kit_code not in page
    for arm in participant.trial.arms.all():
        assert f">{arm.label}<" not in page and arm.code not in page
    with time_machine.travel(NOW, tick=False):
        response = client.post(reverse("expectedness_assess", args=[saved.pk]), {"expected": "expected", "reason": ""}, follow=True)
        assert "Give the reason" in response.content.decode()
        client.post(reverse("expectedness_assess", args=[saved.pk]), {"expected": "expected", "reason": "IB v4 6.2"})
    assert AdverseEvent.objects.get(pk=saved.pk).expected is True
    assert "Headache" not in client.get(reverse("expectedness_list")).content.decode()
    client.force_login(coordinator)  # the site reads the list, without the assessment form
    with time_machine.travel(NOW, tick=False):
        second = services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, related_product="possible"), user=coordinator)
    page = client.get(reverse("expectedness_list")).content.decode()
    assert f"AE{second.number}" in page and f'data-testid="assess-{second.pk}"' not in page


def test_an_ae_that_becomes_serious_later_starts_its_clock_when_the_site_learns_of_the_seriousness(participant, coordinator):
    """Aware of the AE on 1 June, of its seriousness on 15 June at 07:00 UTC: due 16 June 07:00, not overdue."""
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, onset_date=date(2026, 6, 1), aware_at=datetime(2026, 6, 1, 9, 0, tzinfo=UTC)), user=coordinator)
        saved.seriousness, saved.grade = ["hospitalisation"], 3
        saved.serious_aware_at = datetime(2026, 6, 15, 7, 0, tzinfo=UTC)
        services.ae_save(saved, user=coordinator, reason="Hospitalised")
    clock = saved.clocks.get()
    assert clock.started_at == datetime(2026, 6, 15, 7, 0, tzinfo=UTC)
    assert clock.due_at == datetime(2026, 6, 16, 7, 0, tzinfo=UTC) and clock.due_at > NOW
    assert alerts.clock_alerts_send(now=NOW) == 0  # neither overdue nor past half time


def test_an_ae_that_becomes_serious_with_no_time_given_starts_its_clock_now(participant, coordinator):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, onset_date=date(2026, 6, 1), aware_at=datetime(2026, 6, 1, 9, 0, tzinfo=UTC)), user=coordinator)
        saved.seriousness, saved.grade = ["hospitalisation"], 3
        services.ae_save(saved, user=coordinator, reason="Hospitalised")
    assert saved.serious_aware_at == NOW and saved.clocks.get().due_at == NOW + timedelta(hours=24)  # NOW is a whole minute
    with time_machine.travel(NOW + timedelta(days=2), tick=False):  # a later follow-up keeps the time
        saved.grade = 4
        services.ae_save(saved, user=coordinator, reason="Worse")
    assert AdverseEvent.objects.get(pk=saved.pk).serious_aware_at == NOW and saved.clocks.get().started_at == NOW


@pytest.mark.parametrize(
    "serious_aware_at",
    [datetime(2026, 6, 14, 8, 0, tzinfo=UTC), datetime(2026, 6, 16, 8, 0, tzinfo=UTC)],  # before the AE's awareness; future
)
def test_the_seriousness_awareness_is_after_the_awareness_and_not_in_the_future(participant, coordinator, serious_aware_at):
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError) as refused:
        services.ae_save(ae(participant, seriousness=["hospitalisation"], grade=3, serious_aware_at=serious_aware_at), user=coordinator)
    assert "serious_aware_at" in refused.value.message_dict
    assert not AdverseEvent.objects.filter(participant=participant).exists()


def test_the_seriousness_awareness_is_typed_in_site_time(participant, coordinator, client):
    with time_machine.travel(NOW, tick=False):
        saved = services.ae_save(ae(participant, onset_date=date(2026, 6, 1), aware_at=datetime(2026, 6, 1, 9, 0, tzinfo=UTC)), user=coordinator)
    client.force_login(coordinator)
    data = {
        "verbatim_term": "Headache", "onset_date": "2026-06-01", "ongoing": "on", "grade": "3", "seriousness": ["hospitalisation"],
        "related_product": "not_related", "procedure": "none", "related_procedure": "not_related", "action_taken": "none",
        "outcome": "not_recovered", "aware_at": "2026-06-01T11:00", "serious_aware_at": "2026-06-15T09:00", "reason": "Hospitalised",
    }
    with time_machine.travel(NOW, tick=False):
        assert client.post(reverse("ae_edit", args=[participant.pk, saved.number]), data).status_code == 302
    saved.refresh_from_db()
    assert saved.serious_aware_at == datetime(2026, 6, 15, 7, 0, tzinfo=UTC)  # 09:00 in Toulouse (CEST) is 07:00 UTC
    assert saved.clocks.get().started_at == saved.serious_aware_at
