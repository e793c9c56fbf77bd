"""The visit schedule: plans and windows from the seed trials, calendar states by each site's local
date (frozen clocks), people's changes audited, reminders sent once, the calendar feed."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from edc.audit import AuditError, system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site, VisitDefinition
from trials.visits import reminders, schedule
from trials.visits.models import CalendarFeed, ReminderLog, Visit, VisitStatus

pytestmark = pytest.mark.django_db


def enrolled(trial: str, site: str, *, enrolment: date, treated: date | None = None):  # noqa: ANN201
    return participant_register(
        site=Site.objects.get(trial__code=trial, code=site), user=system_user(),
        consent_date=enrolment - timedelta(days=3), anchor_date=enrolment, first_treatment_date=treated,
    )


@pytest.mark.parametrize(
    ("trial", "site", "treated"),
    [("ASC-DU", "TLS", 21), ("ADSVF-SSC-HANDS", "INCMNSZ", None), ("SSC-FATGRAFT-REG", "MEX", 1), ("EASC-RA", "MAD-LP", 1)],
)
def test_every_seed_trial_gets_its_visits_with_the_right_windows(demo_users, trial, site, treated):
    enrolment = date.today() - timedelta(days=2)
    first_treatment = enrolment + timedelta(days=treated) if treated is not None and treated <= 2 else None
    participant = enrolled(trial, site, enrolment=enrolment, treated=first_treatment)
    definitions = {d.pk: d for d in VisitDefinition.objects.filter(trial=participant.trial, is_active=True)}
    visits = list(participant.visits.filter(definition__isnull=False))
    assert {v.definition_id for v in visits} == set(definitions)  # every visit, once
    for visit in visits:
        definition = definitions[visit.definition_id]
        if definition.kind == "screening":
            anchor = participant.screening_date
        elif definition.anchor == "first_treatment":
            anchor = participant.first_treatment_date
        else:
            anchor = participant.enrolment_date
        if anchor is None:
            assert visit.planned_date is None and visit.window_start is None
            continue
        planned = anchor + timedelta(days=0 if definition.kind == "screening" else definition.day_offset)
        assert visit.planned_date == planned, definition.code
        assert visit.window_start == planned - timedelta(days=definition.window_before_days)
        assert visit.window_end == planned + timedelta(days=definition.window_after_days)


def test_generating_twice_creates_nothing_and_takes_constant_queries(demo_users):
    participant = enrolled("ASC-DU", "TLS", enrolment=date.today())
    before = participant.visits.count()
    assert schedule.schedule_generate(participant, user=system_user(), reason="again") == 0
    assert participant.visits.count() == before
    # A participant whose schedule is missing: the same number of queries for 1 or 8 visits.
    Visit.objects.filter(participant=participant).count()
    other = enrolled("EASC-RA", "MAD-LP", enrolment=date.today())
    with CaptureQueriesContext(connection) as queries:
        schedule.schedule_generate(other, user=system_user(), reason="again")
    assert len(queries) <= 4


def test_the_first_treatment_plans_the_visits_anchored_at_it_and_moving_it_replans_them(demo_users):
    from trials.participants.services import participant_start_treatment

    participant = enrolled("EASC-RA", "MAD-LP", enrolment=date.today() - timedelta(days=10))
    infusion = participant.visits.filter(definition__anchor="first_treatment").order_by("order").first()
    assert infusion.planned_date is None
    participant_start_treatment(participant=participant, user=system_user(), first_treatment_date=date.today() - timedelta(days=5))
    infusion.refresh_from_db()
    assert infusion.planned_date == date.today() - timedelta(days=5) + timedelta(days=infusion.definition.day_offset)
    assert infusion.history.first().history_change_reason  # audited with a reason


@time_machine.travel(datetime(2026, 3, 10, 3, 0, tzinfo=UTC), tick=False)
def test_states_follow_each_sites_local_date(demo_users):
    """At 03:00 UTC it is 04:00 on 10 March in Toulouse and 21:00 on 9 March in Mexico City."""
    paris = enrolled("SSC-FATGRAFT-REG", "TLS", enrolment=date(2026, 2, 1))
    mexico = enrolled("SSC-FATGRAFT-REG", "MEX", enrolment=date(2026, 2, 1))
    for participant in (paris, mexico):
        visit = participant.visits.exclude(definition__kind="screening").order_by("order").first()
        visit.window_start, visit.window_end = date(2026, 3, 10), date(2026, 3, 12)
        visit.status = VisitStatus.OVERDUE  # wrong on purpose: the refresh must fix it
        from edc.audit import audited_save

        audited_save(visit, user=system_user(), reason="test window")
    schedule.visit_states_refresh()
    paris_visit = paris.visits.get(window_start=date(2026, 3, 10))
    mexico_visit = mexico.visits.get(window_start=date(2026, 3, 10))
    assert paris_visit.status == VisitStatus.OPEN
    assert mexico_visit.status == VisitStatus.UPCOMING
    with time_machine.travel(datetime(2026, 3, 13, 12, 0, tzinfo=UTC), tick=False):
        assert schedule.visit_states_refresh() >= 2
        assert Visit.objects.get(pk=paris_visit.pk).status == VisitStatus.OVERDUE
        assert Visit.objects.get(pk=mexico_visit.pk).status == VisitStatus.OVERDUE
        assert schedule.visit_states_refresh() == 0  # only rows whose state changes are touched


def test_done_missed_and_withdrawn_visits_do_not_move(demo_users):
    participant = enrolled("ADSVF-SSC-HANDS", "INCMNSZ", enrolment=date.today() - timedelta(days=200))
    visits = list(participant.visits.exclude(definition__kind="screening").exclude(window_start=None).order_by("order"))
    done = schedule.visit_record_date(visits[0], user=system_user(), visit_date=visits[0].window_start)
    assert done.status == VisitStatus.DONE and not done.out_of_window
    schedule.visit_states_refresh()
    assert Visit.objects.get(pk=done.pk).status == VisitStatus.DONE


def test_a_visit_outside_its_window_is_flagged(demo_users):
    participant = enrolled("ADSVF-SSC-HANDS", "INCMNSZ", enrolment=date.today() - timedelta(days=200))
    visit = participant.visits.exclude(definition__kind="screening").exclude(window_start=None).order_by("order").first()
    visit = schedule.visit_record_date(visit, user=system_user(), visit_date=visit.window_end + timedelta(days=1))
    assert visit.out_of_window and visit.status == VisitStatus.DONE
    with pytest.raises(ValidationError, match="give a reason"):
        schedule.visit_record_date(visit, user=system_user(), visit_date=visit.window_end)


def test_missed_needs_an_overdue_visit_and_a_reason(demo_users):
    participant = enrolled("ADSVF-SSC-HANDS", "INCMNSZ", enrolment=date.today() - timedelta(days=400))
    schedule.visit_states_refresh()
    overdue = participant.visits.filter(status=VisitStatus.OVERDUE).first()
    upcoming = participant.visits.filter(status=VisitStatus.UPCOMING).first() or participant.visits.filter(status=VisitStatus.OPEN).first()
    with pytest.raises(ValidationError, match="reason"):
        schedule.visit_mark(overdue, user=system_user(), status=VisitStatus.MISSED, reason=" ")
    if upcoming is not None:
        with pytest.raises(ValidationError, match="overdue"):
            schedule.visit_mark(upcoming, user=system_user(), status=VisitStatus.MISSED, reason="x")
    missed = schedule.visit_mark(overdue, user=system_user(), status=VisitStatus.MISSED, reason="Patient hospitalised")
    assert missed.status == VisitStatus.MISSED and missed.history.first().history_change_reason == "Patient hospitalised"


def test_an_unscheduled_visit_can_be_added_with_a_reason(late_evening_utc, demo_users):
    """At 23:30 UTC it is already tomorrow in Toulouse: a visit planned for the site's today is open."""
    site_today = Site.objects.get(trial__code="ASC-DU", code="TLS").today()
    participant = enrolled("ASC-DU", "TLS", enrolment=site_today)
    visit = schedule.visit_add_unscheduled(participant, user=system_user(), label="AE follow-up", planned_date=site_today, reason="AE 3")
    assert visit.definition is None and visit.status == VisitStatus.OPEN
    with pytest.raises(ValidationError):
        schedule.visit_add_unscheduled(participant, user=system_user(), label="", planned_date=site_today, reason="x")


def test_calendar_states_are_the_only_unaudited_write():
    with pytest.raises(AuditError):
        Visit.objects.all().derived_update(visit_date=date.today())
    with pytest.raises(AuditError):
        Visit.objects.all().update(status=VisitStatus.OPEN)


def test_the_reminder_digest_is_sent_once_even_when_the_task_runs_twice(demo_users, mailoutbox, django_capture_on_commit_callbacks):
    participant = enrolled("ASC-DU", "TLS", enrolment=date.today() - timedelta(days=60))
    schedule.visit_states_refresh()
    assert participant.visits.filter(status=VisitStatus.OVERDUE).exists()
    coordinator = get_user_model().objects.get(username="coordinator.toulouse")
    with django_capture_on_commit_callbacks(execute=True):
        sent = reminders.reminder_digest_send(coordinator.pk)
    with django_capture_on_commit_callbacks(execute=True):
        again = reminders.reminder_digest_send(coordinator.pk)
    assert sent > 0 and again == 0
    assert len(mailoutbox) == 1 and participant.number in mailoutbox[0].body
    assert ReminderLog.objects.filter(user=coordinator).count() == sent
    # Another coordinator's digest never lists Toulouse's participant.
    madrid = get_user_model().objects.get(username="coordinator.madrid")
    assert all(v.participant.site.code == "MAD-LP" for v, _r in reminders.reminder_items(madrid))


def test_the_calendar_page_and_the_secret_feed(demo_users, client):
    participant = enrolled("ASC-DU", "TLS", enrolment=date.today())
    coordinator = get_user_model().objects.get(username="coordinator.toulouse")
    client.force_login(coordinator)
    assert client.get(reverse("coordinator_calendar")).status_code == 200
    assert client.post(reverse("coordinator_calendar")).status_code == 302
    token = CalendarFeed.objects.get(user=coordinator).token
    client.logout()
    response = client.get(reverse("calendar_feed", args=[token]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/calendar")
    body = response.content.decode()
    assert "BEGIN:VEVENT" in body and participant.number in body
    assert client.get(reverse("calendar_feed", args=["not-a-token"])).status_code == 404


def test_correcting_the_enrolment_date_replans_only_visits_not_done(demo_users):
    from trials.participants.services import participant_anchor_change

    participant = enrolled("ADSVF-SSC-HANDS", "INCMNSZ", enrolment=date.today() - timedelta(days=100))
    visits = list(participant.visits.exclude(definition__kind="screening").exclude(window_start=None).order_by("order"))
    done = schedule.visit_record_date(visits[0], user=system_user(), visit_date=visits[0].planned_date)
    moved = participant_anchor_change(
        participant=participant, user=system_user(), anchor="enrolment", new_date=participant.enrolment_date + timedelta(days=2),
        reason="Typo in the enrolment date",
    )
    assert moved == len(visits) - 1
    assert Visit.objects.get(pk=done.pk).planned_date == done.planned_date  # a done visit keeps its plan
    later = Visit.objects.get(pk=visits[1].pk)
    assert later.planned_date == visits[1].planned_date + timedelta(days=2)
    assert later.history.first().history_change_reason == "Typo in the enrolment date"
    with pytest.raises(ValidationError, match="reason"):
        participant_anchor_change(participant=participant, user=system_user(), anchor="enrolment", new_date=date.today(), reason="")


def test_the_correct_a_date_page_shows_errors_on_the_field_and_replans(demo_users, client):
    participant = enrolled("ADSVF-SSC-HANDS", "INCMNSZ", enrolment=date.today() - timedelta(days=20))
    client.force_login(get_user_model().objects.get(username="coordinator.mexico"))
    url = reverse("participant_anchor", args=[participant.pk])
    response = client.post(url, {"anchor": "enrolment", "new_date": (date.today() + timedelta(days=5)).isoformat(), "reason": "typo"})
    assert response.status_code == 200 and "in the future" in response.content.decode()
    response = client.post(url, {"anchor": "enrolment", "new_date": (date.today() - timedelta(days=15)).isoformat(), "reason": "typo"})
    assert response.status_code == 302
    participant.refresh_from_db()
    assert participant.enrolment_date == date.today() - timedelta(days=15)
    other = get_user_model().objects.get(username="coordinator.toulouse")
    client.force_login(other)
    assert client.get(url).status_code == 404  # another site's participant
