"""Locked data cannot be changed by anyone through any path: every write service refuses with the
lock's message and writes nothing; so do the CRF page, the AE form and the visit pages; the admin
never edits trial data at all. Data managers lock, freeze and release with the admin's actions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from edc.audit import system_user
from tests.monitoring.test_locks import REASON, lock, registered, save_vitals, today, visit_of, vitals
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.records.models import Lock, LockKind, LockLevel
from trials.participants import services as participants
from trials.participants.models import Allocation, Consent, EligibilityAnswer, Participant
from trials.protocol.models import Site, Trial
from trials.safety import services as safety
from trials.safety.models import AdverseEvent, ReportingClock
from trials.visits import schedule
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_migrate, crf_entry_save, crf_entry_save_answers

pytestmark = pytest.mark.django_db

AUDITED = (Participant, Visit, CrfEntry, AdverseEvent, Consent, EligibilityAnswer, Allocation)


def written() -> int:
    """All history rows of the trial data a refused change could have touched."""
    return sum(model.history.count() for model in AUDITED)


def an_ae(participant, **values) -> AdverseEvent:  # noqa: ANN001
    return AdverseEvent(
        participant=participant,
        verbatim_term="Headache",
        onset_date=today() - timedelta(days=3),
        ongoing=True,
        grade=2,
        related_product="not_related",
        aware_at=timezone.now() - timedelta(days=1),
        **{"procedure": "none", "related_procedure": "not_related", "action_taken": "none", "outcome": "not_recovered", **values},
    )


def screened(consented: bool = True) -> Participant:
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    participant = participants.participant_screen(
        site=site, user=system_user(), screening_date=today() - timedelta(days=5)
    )
    if consented:
        participants.participant_consent(
            participant=participant,
            document=participants.current_consent_document(participant.trial),
            user=system_user(),
            consented_at=datetime.combine(today() - timedelta(days=5), time(9), tzinfo=ZoneInfo("Europe/Paris")),
        )
        participant.refresh_from_db()
    return participant


# Each case: (name, setup(participant) -> (lock level, lock target, the refused call)).
def _crf_first_save(p):  # noqa: ANN001, ANN202
    visit = visit_of(p, "LIPO")
    return (
        LockLevel.VISIT,
        visit,
        lambda: crf_entry_save(
            user=user("coordinator.toulouse"),
            visit=visit,
            crf_code="VITALS",
            data=vitals(),
            expected_revision=0,
            complete=True,
        ),
    )


def _crf_later_save(p):  # noqa: ANN001, ANN202
    visit = visit_of(p, "LIPO")
    entry = save_vitals(visit, user("coordinator.toulouse"))
    return (
        LockLevel.ENTRY,
        entry,
        lambda: crf_entry_save(
            user=user("coordinator.toulouse"),
            visit=visit,
            crf_code="VITALS",
            data=vitals(1, heart_rate="72"),
            expected_revision=1,
            complete=True,
            reason="transcription error",
        ),
    )


def _crf_answers(p):  # noqa: ANN001, ANN202
    visit = visit_of(p, "LIPO")
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: crf_entry_save_answers(
            user=system_user(),
            visit=visit,
            crf_code="VITALS",
            complete=True,
            reason="import",
            answers={"height_cm": 165, "weight_kg": 60, "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
        ),
    )


def _crf_migrate(p):  # noqa: ANN001, ANN202
    entry = save_vitals(visit_of(p, "LIPO"), user("coordinator.toulouse"))
    return (
        LockLevel.VISIT,
        visit_of(p, "LIPO"),
        lambda: crf_entry_migrate(entry=entry, user=user("datamanager"), reason="amendment"),
    )


def _visit_date(p):  # noqa: ANN001, ANN202
    visit = visit_of(p, "LIPO")
    return (
        LockLevel.VISIT,
        visit,
        lambda: schedule.visit_record_date(
            visit, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=7)
        ),
    )


def _visit_mark(p):  # noqa: ANN001, ANN202
    visit = visit_of(p, "W1")
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: schedule.visit_mark(visit, user=user("coordinator.toulouse"), status="not_done", reason="withdrew"),
    )


def _unscheduled(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: schedule.visit_add_unscheduled(
            p, user=user("coordinator.toulouse"), label="AE follow-up", planned_date=today(), reason="headache"
        ),
    )


def _ae_new(p):  # noqa: ANN001, ANN202
    return LockLevel.PARTICIPANT, p, lambda: safety.ae_save(an_ae(p), user=user("coordinator.toulouse"))


def _ae_change(p):  # noqa: ANN001, ANN202
    ae = safety.ae_save(an_ae(p), user=user("coordinator.toulouse"))
    ae.grade = 3
    return LockLevel.TRIAL, p.trial, lambda: safety.ae_save(ae, user=user("coordinator.toulouse"), reason="worse")


def _transition(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_transition(
            participant=p, to="withdrawn", user=user("coordinator.toulouse"), reason="moved away"
        ),
    )


def _start_treatment(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_start_treatment(
            participant=p, user=user("coordinator.toulouse"), first_treatment_date=today() - timedelta(days=2)
        ),
    )


def _anchor_change(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_anchor_change(
            participant=p,
            user=user("coordinator.toulouse"),
            anchor="enrolment",
            new_date=today() - timedelta(days=9),
            reason="typo",
        ),
    )


def _anchor_change_visit_lock(p):  # noqa: ANN001, ANN202
    # The participant is not locked, but a visit the re-plan would move is.
    return (
        LockLevel.VISIT,
        visit_of(p, "LIPO"),
        lambda: participants.participant_anchor_change(
            participant=p,
            user=user("coordinator.toulouse"),
            anchor="enrolment",
            new_date=today() - timedelta(days=9),
            reason="typo",
        ),
    )


def _randomize(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_randomize(participant=p, user=user("coordinator.toulouse")),
    )


def _assign(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_assign(
            participant=p, arm=p.trial.arms.first(), user=system_user(), reason="open label"
        ),
    )


def _consent(_p):  # noqa: ANN001, ANN202
    p = screened(consented=False)
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_consent(
            participant=p,
            document=participants.current_consent_document(p.trial),
            user=user("coordinator.toulouse"),
            consented_at=timezone.now() - timedelta(hours=2),
        ),
    )


def _eligibility(_p):  # noqa: ANN001, ANN202
    p = screened()
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.eligibility_record(participant=p, answers={}, user=user("coordinator.toulouse")),
    )


def _enrol(_p):  # noqa: ANN001, ANN202
    p = screened()
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_enrol(participant=p, user=user("coordinator.toulouse")),
    )


def _screen_fail(_p):  # noqa: ANN001, ANN202
    p = screened()
    return (
        LockLevel.PARTICIPANT,
        p,
        lambda: participants.participant_screen_fail(
            participant=p, user=user("coordinator.toulouse"), reason="declined"
        ),
    )


def _screen(p):  # noqa: ANN001, ANN202
    return (
        LockLevel.TRIAL,
        p.trial,
        lambda: participants.participant_screen(site=p.site, user=user("coordinator.toulouse"), screening_date=today()),
    )


PATHS = {
    "crf first save": _crf_first_save,
    "crf later save": _crf_later_save,
    "crf answers (import)": _crf_answers,
    "crf migrate": _crf_migrate,
    "visit date": _visit_date,
    "visit missed/not done": _visit_mark,
    "unscheduled visit": _unscheduled,
    "new AE": _ae_new,
    "AE change": _ae_change,
    "end of participation": _transition,
    "first treatment": _start_treatment,
    "anchor change": _anchor_change,
    "anchor change re-plans a locked visit": _anchor_change_visit_lock,
    "randomize": _randomize,
    "assign": _assign,
    "consent": _consent,
    "eligibility": _eligibility,
    "enrol": _enrol,
    "screen failure": _screen_fail,
    "screen a new participant": _screen,
}


@pytest.mark.parametrize("kind", [LockKind.LOCK, LockKind.FREEZE])
@pytest.mark.parametrize("path", list(PATHS))
def test_every_write_service_refuses_locked_or_frozen_data_and_writes_nothing(demo, path, kind):
    participant = registered()
    level, target, call = PATHS[path](participant)
    lock(level, target, kind=kind)
    before = written()
    with pytest.raises(ValidationError) as refused:
        call()
    message = " ".join(refused.value.messages)
    assert re.search(
        r"is locked (\(database lock\) )?by Sophie Laurent" if kind == LockKind.LOCK else "is frozen by Sophie Laurent",
        message,
    ), message
    assert REASON in message
    assert written() == before


def test_the_crf_page_is_read_only_with_the_reason_and_a_post_saves_nothing(demo, client):
    participant = registered()
    visit = visit_of(participant, "LIPO")
    lock(LockLevel.VISIT, visit)
    client.force_login(user("coordinator.toulouse"))
    url = reverse("crf_entry", args=[visit.pk, "VITALS"])
    page = client.get(url).content.decode()
    assert 'data-testid="lock-banner"' in page and REASON in page
    assert 'value="complete"' not in page  # no save button
    response = client.post(url, {key: value for key, value in vitals().items()})
    assert response.status_code == 403 and REASON in response.content.decode()
    assert not CrfEntry.objects.filter(visit=visit).exists()
    # A later save of an existing entry, through the page, under an entry lock.
    other = visit_of(participant, "W1")
    entry = crf_entry_save(
        user=user("coordinator.toulouse"),
        visit=other,
        crf_code="VITALS",
        data=vitals(),
        expected_revision=0,
        complete=True,
    ).entry
    lock(LockLevel.ENTRY, entry)
    response = client.post(
        reverse("crf_entry", args=[other.pk, "VITALS"]), {**vitals(1, heart_rate="90").dict(), "reason": "typo"}
    )
    assert response.status_code == 403
    entry.refresh_from_db()
    assert (entry.revision, entry.answers["heart_rate"]) == (1, 70)


def test_the_ae_form_shows_the_lock_and_saves_nothing(demo, client):
    participant = registered()
    lock(LockLevel.PARTICIPANT, participant, kind=LockKind.FREEZE)
    client.force_login(user("coordinator.toulouse"))
    onset = (today() - timedelta(days=2)).isoformat()
    response = client.post(
        reverse("ae_new", args=[participant.pk]),
        {
            "verbatim_term": "Fever",
            "onset_date": onset,
            "ongoing": "on",
            "grade": "2",
            "related_product": "possible",
            "procedure": "injection",
            "related_procedure": "possible",
            "action_taken": "none",
            "outcome": "recovering",
            "aware_at": f"{onset}T10:00",
            "seriousness": [],
        },
    )
    assert response.status_code == 200 and "frozen by Sophie Laurent" in response.content.decode()
    assert not AdverseEvent.objects.filter(participant=participant).exists()


def test_the_visit_date_page_shows_the_lock_and_saves_nothing(demo, client):
    participant = registered()
    visit = visit_of(participant, "LIPO")
    lock(LockLevel.TRIAL, participant.trial)
    client.force_login(user("coordinator.toulouse"))
    url = reverse("visit_date", args=[visit.pk])
    assert "database lock" in client.get(url).content.decode()
    response = client.post(url, {"visit_date": (today() - timedelta(days=7)).isoformat()})
    assert (
        response.status_code == 200
        and "This trial is locked (database lock) by Sophie Laurent" in response.content.decode()
    )
    visit.refresh_from_db()
    assert visit.visit_date is None


@pytest.mark.parametrize("username", ["datamanager", "superuser"])
def test_the_admin_never_edits_trial_data(demo, client, username):
    participant = registered()
    entry = save_vitals(visit_of(participant, "LIPO"), user("coordinator.toulouse"))
    ae = safety.ae_save(an_ae(participant), user=user("coordinator.toulouse"))
    lock(LockLevel.PARTICIPANT, participant)
    if username == "superuser":
        type(user("datamanager")).objects.create_superuser("root", password="x-long-password-1")
    client.force_login(user("root" if username == "superuser" else username))
    before = written()
    for name, obj, data in (
        ("participants_participant", participant, {"status": "withdrawn", "status_reason": "x"}),
        ("visits_visit", visit_of(participant, "LIPO"), {"visit_date": today().isoformat()}),
        ("visits_crfentry", entry, {"answers": '{"heart_rate": 99}', "status": "in_progress"}),
        ("safety_adverseevent", ae, {"grade": "4"}),
    ):
        url = reverse(f"admin:{name}_change", args=[obj.pk])
        page = client.get(url).content.decode()
        assert client.get(url).status_code == 200 and 'name="_save"' not in page, name
        assert client.post(url, {**data, "_save": "Save"}).status_code == 403, name
        assert client.post(reverse(f"admin:{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403, name
    assert written() == before
    entry.refresh_from_db()
    assert entry.answers["heart_rate"] == 70


def test_data_managers_lock_freeze_and_release_in_the_admin_with_a_reason(demo, client):
    participant = registered()
    visit = visit_of(participant, "LIPO")
    changelist = reverse("admin:visits_visit_changelist")
    client.force_login(user("monitor.du"))
    assert "lock_visit" not in client.get(changelist).content.decode()  # monitors do not lock
    client.force_login(user("datamanager"))
    assert "lock_visit" in client.get(changelist).content.decode()

    form = {"action": "freeze_visit", "_selected_action": [visit.pk]}
    asked = client.post(changelist, form).content.decode()
    assert "Reason" in asked and str(visit) in asked and not Lock.objects.exists()  # asks first
    assert "This field is required" in client.post(changelist, {**form, "confirm": "1", "reason": ""}).content.decode()
    client.post(changelist, {**form, "confirm": "1", "reason": "Interim analysis"})
    freeze = Lock.objects.get()
    assert (freeze.level, freeze.kind, freeze.visit_id, freeze.reason) == (
        LockLevel.VISIT,
        LockKind.FREEZE,
        visit.pk,
        "Interim analysis",
    )

    participants_url = reverse("admin:participants_participant_changelist")
    client.post(
        participants_url,
        {"action": "lock_participant", "_selected_action": [participant.pk], "confirm": "1", "reason": REASON},
    )
    assert Lock.objects.filter(
        level=LockLevel.PARTICIPANT, participant=participant, kind=LockKind.LOCK, released_at__isnull=True
    ).exists()
    trials_url = reverse("admin:protocol_trial_changelist")
    client.post(
        trials_url,
        {"action": "lock_trial", "_selected_action": [participant.trial_id], "confirm": "1", "reason": REASON},
    )
    assert Lock.objects.filter(level=LockLevel.TRIAL, trial=participant.trial, released_at__isnull=True).exists()

    # Release: on the visit list (the visit's own locks), and on the lock list.
    client.post(
        changelist,
        {"action": "release_visit", "_selected_action": [visit.pk], "confirm": "1", "reason": "Interim done"},
    )
    freeze.refresh_from_db()
    assert (
        freeze.released_at is not None
        and freeze.release_reason == "Interim done"
        and freeze.released_by.username == "datamanager"
    )
    locks_url = reverse("admin:records_lock_changelist")
    active = list(Lock.objects.filter(released_at__isnull=True).values_list("pk", flat=True))
    client.post(
        locks_url,
        {
            "action": "release_selected",
            "_selected_action": active,
            "confirm": "1",
            "reason": "Database unlock: correction",
        },
    )
    assert not Lock.objects.filter(released_at__isnull=True).exists()
    assert (
        Lock.history.filter(
            history_change_reason="Released: Database unlock: correction", history_user__username="datamanager"
        ).count()
        == 2
    )


def test_locks_are_listed_only_within_the_users_sites(demo, client):
    toulouse, grenoble = registered("TLS"), registered("GRE")
    lock(LockLevel.PARTICIPANT, toulouse)
    lock(LockLevel.PARTICIPANT, grenoble)
    from trials.protocol.services import study_role_grant

    lille = type(user("datamanager")).objects.create_user("monitor.lille", password="x-long-password-1")
    study_role_grant(
        user=lille,
        trial=Trial.objects.get(code="ASC-DU"),
        site=Site.objects.get(trial__code="ASC-DU", code="LIL"),
        role="monitor",
        granted_by=system_user(),
        reason="t",
    )
    client.force_login(lille)
    page = client.get(reverse("admin:records_lock_changelist")).content.decode()
    assert toulouse.number not in page and grenoble.number not in page
    client.force_login(user("monitor.du"))  # Toulouse and Grenoble
    page = client.get(reverse("admin:records_lock_changelist")).content.decode()
    assert toulouse.number in page and grenoble.number in page


def test_reporting_a_serious_ae_and_the_schedule_scan_under_a_lock(demo):
    participant = registered()
    ae = safety.ae_save(an_ae(participant, seriousness=["hospitalisation"]), user=user("coordinator.toulouse"))
    clock = ReportingClock.objects.get(adverse_event=ae)
    lock(LockLevel.PARTICIPANT, participant)
    # Reporting an SAE is a regulatory deadline, not a data change: never blocked by a lock.
    safety.clock_report(clock, user=user("coordinator.toulouse"), reported_at=timezone.now().astimezone(UTC))
    assert ReportingClock.objects.get(pk=clock.pk).reported_at is not None
    # The schedule scan creates no visit for a locked participant (it finds her again once released).
    Visit.objects.filter(participant=participant).count()
    assert schedule.schedule_generate(participant, user=system_user(), reason="scan") == 0
