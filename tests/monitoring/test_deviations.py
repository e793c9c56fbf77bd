"""Protocol deviations: a visit done outside its window proposes one (once, whatever the number of
saves); the site's staff and monitors record, confirm and dismiss them, audited; monitors read
them in the admin; a freeze allows them, a lock does not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from tests.monitoring.test_locks import lock, registered, today, visit_of
from tests.participants.conftest import _seeded, demo, user  # noqa: F401 - fixtures
from trials.monitoring.deviations import services as deviations
from trials.monitoring.models import DeviationCategory, DeviationState, ProtocolDeviation
from trials.records.models import LockKind, LockLevel
from trials.visits import schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def participant(demo):  # noqa: ANN001, ANN201
    return registered()  # enrolled 10 days ago: the liposuction window is [-10, -3] days


def record_date(visit, days_ago: int, reason: str = ""):  # noqa: ANN001, ANN201
    return schedule.visit_record_date(
        visit, user=user("coordinator.toulouse"), visit_date=today() - timedelta(days=days_ago), reason=reason
    )


def test_an_out_of_window_visit_proposes_one_deviation_and_twice_is_still_one(participant):
    visit = visit_of(participant, "LIPO")
    record_date(visit, 1)  # after the window closed
    proposed = ProtocolDeviation.objects.get(visit=visit)
    assert (proposed.category, proposed.state, proposed.severity) == (
        DeviationCategory.VISIT_WINDOW,
        DeviationState.PROPOSED,
        "minor",
    )
    assert proposed.occurred_on == today() - timedelta(days=1) and "outside its window" in proposed.description
    assert proposed.history.get().history_change_reason == "Proposed: visit done outside its window"
    record_date(visit, 1)  # the same date again
    record_date(visit, 2, reason="The source says the day before")  # another date, still outside
    assert ProtocolDeviation.objects.filter(visit=visit).count() == 1
    assert ProtocolDeviation.objects.get(visit=visit).occurred_on == today() - timedelta(days=2)


def test_a_visit_in_its_window_proposes_nothing_and_a_correction_into_the_window_dismisses_the_proposal(participant):
    record_date(visit_of(participant, "LIPO"), 7)
    assert not ProtocolDeviation.objects.exists()
    other = registered()
    visit = visit_of(other, "LIPO")
    record_date(visit, 1)
    record_date(visit, 6, reason="Typo in the visit date")
    deviation = ProtocolDeviation.objects.get(visit=visit)
    assert deviation.state == DeviationState.DISMISSED
    assert deviation.history.first().history_change_reason == "Visit date corrected: the visit is within its window"


def test_the_site_confirms_or_dismisses_a_proposal(participant):
    record_date(visit_of(participant, "LIPO"), 1)
    proposal = ProtocolDeviation.objects.get()
    with pytest.raises(PermissionDenied):
        deviations.deviation_confirm(deviation=proposal, user=user("sponsor.toulouse"))
    confirmed = deviations.deviation_confirm(
        deviation=proposal,
        user=user("monitor.du"),
        severity="major",
        corrective_action="Retrain on visit windows",
    )
    assert (confirmed.state, confirmed.severity, confirmed.corrective_action) == (
        "confirmed",
        "major",
        "Retrain on visit windows",
    )
    assert confirmed.history.first().history_user.username == "monitor.du"
    with pytest.raises(ValidationError, match="already confirmed"):
        deviations.deviation_dismiss(deviation=confirmed, user=user("monitor.du"), reason="no")

    other = registered()
    record_date(visit_of(other, "LIPO"), 1)
    proposal = ProtocolDeviation.objects.get(participant=other)
    # The site whose visit it is does not dismiss it (issue 16): a monitor or the data manager does.
    for who in ("coordinator.toulouse", "investigator.toulouse"):
        with pytest.raises(PermissionDenied):
            deviations.deviation_dismiss(deviation=proposal, user=user(who), reason="Window extended by amendment 3")
    with pytest.raises(ValidationError):
        deviations.deviation_dismiss(deviation=proposal, user=user("monitor.du"), reason=" ")
    dismissed = deviations.deviation_dismiss(
        deviation=proposal, user=user("monitor.du"), reason="Window extended by amendment 3"
    )
    assert dismissed.state == DeviationState.DISMISSED
    assert dismissed.history.first().history_change_reason == "Dismissed: Window extended by amendment 3"


def test_recording_a_deviation_by_role_with_its_rules(late_evening_utc, participant):
    """Dates are the site's: at 23:30 UTC it is already tomorrow in Toulouse."""
    today = participant.site.today
    values = {
        "participant": participant,
        "category": "consent",
        "severity": "major",
        "occurred_on": today() - timedelta(days=12),
        "description": "Consent form version 2 signed instead of version 3",
        "corrective_action": "Re-consent",
    }
    for who in ("sponsor.toulouse", "coordinator.mexico", "investigator.madrid"):
        with pytest.raises(PermissionDenied):
            deviations.deviation_record(user=user(who), **values)
    with pytest.raises(ValidationError) as refused:
        deviations.deviation_record(
            user=user("coordinator.toulouse"),
            **{**values, "occurred_on": today() + timedelta(days=2), "description": ""},
        )
    assert {"occurred_on", "description"} <= set(refused.value.message_dict)
    with pytest.raises(ValidationError) as refused:
        deviations.deviation_record(
            user=user("coordinator.toulouse"), **{**values, "identified_on": today() - timedelta(days=20)}
        )
    assert "identified_on" in refused.value.message_dict
    assert not ProtocolDeviation.objects.exists()
    for who in ("coordinator.toulouse", "investigator.toulouse", "monitor.du"):
        saved = deviations.deviation_record(user=user(who), **values)
        assert (saved.state, saved.reported_by.username, saved.identified_on) == (
            DeviationState.CONFIRMED,
            who,
            today(),
        )


def test_a_freeze_allows_deviations_a_lock_does_not(participant):
    values = {
        "participant": participant,
        "category": "procedure",
        "severity": "minor",
        "occurred_on": today() - timedelta(days=3),
        "description": "HAQ-DI not collected",
    }
    freeze = lock(LockLevel.PARTICIPANT, participant, kind=LockKind.FREEZE)
    assert deviations.deviation_record(user=user("monitor.du"), **values).pk
    del freeze
    lock(LockLevel.TRIAL, participant.trial)
    with pytest.raises(ValidationError, match="locked"):
        deviations.deviation_record(user=user("monitor.du"), **values)
    assert ProtocolDeviation.objects.count() == 1


def test_the_deviation_log_page(participant, client):
    record_date(visit_of(participant, "LIPO"), 1)
    client.force_login(user("coordinator.toulouse"))
    dashboard = client.get(reverse("participant_dashboard", args=[participant.pk])).content.decode()
    assert reverse("deviation_log", args=[participant.pk]) in dashboard
    url = reverse("deviation_log", args=[participant.pk])
    page = client.get(url).content.decode()
    assert 'data-testid="deviation-proposed"' in page and "outside its window" in page
    response = client.post(
        url,
        {
            "category": "procedure",
            "severity": "minor",
            "occurred_on": (today() - timedelta(days=2)).isoformat(),
            "description": "",
        },
    )
    assert (
        "Describe what happened" in response.content.decode() or "This field is required" in response.content.decode()
    )
    assert not ProtocolDeviation.objects.filter(category="procedure").exists()
    response = client.post(
        url,
        {
            "category": "procedure",
            "severity": "major",
            "occurred_on": (today() - timedelta(days=2)).isoformat(),
            "description": "Pain VAS not collected",
            "corrective_action": "Checklist at the visit",
        },
    )
    assert response.status_code == 302
    saved = ProtocolDeviation.objects.get(category="procedure")
    assert (saved.severity, saved.reported_by.username) == ("major", "coordinator.toulouse")
    proposal = ProtocolDeviation.objects.get(category="visit_window")
    client.post(
        reverse("deviation_decide", args=[participant.pk, proposal.pk]), {"decision": "confirm", "severity": "minor"}
    )
    assert ProtocolDeviation.objects.get(pk=proposal.pk).state == DeviationState.CONFIRMED
    # Another site's staff does not see the participant at all.
    client.force_login(user("coordinator.mexico"))
    assert client.get(url).status_code == 404


def test_monitors_read_deviations_in_the_admin_without_editing(participant, client):
    record_date(visit_of(participant, "LIPO"), 1)
    deviation = ProtocolDeviation.objects.get()
    client.force_login(user("monitor.du"))
    listing = client.get(reverse("admin:monitoring_protocoldeviation_changelist")).content.decode()
    assert participant.number in listing
    url = reverse("admin:monitoring_protocoldeviation_change", args=[deviation.pk])
    assert 'name="_save"' not in client.get(url).content.decode()
    assert client.post(url, {"state": "dismissed", "_save": "Save"}).status_code == 403
    assert ProtocolDeviation.objects.get().state == DeviationState.PROPOSED


def test_a_deviation_cannot_predate_the_consent_unless_it_is_about_consent(participant):
    """Issue 16: a deviation dated before consent was accepted. Before consent the participant is
    not in the trial; only an informed-consent deviation (a procedure before consent) can be."""
    before = participant.consent_date - timedelta(days=1)
    values = {"participant": participant, "severity": "minor", "occurred_on": before,
              "identified_on": participant.site.today(), "description": "Blood sample drawn"}
    with pytest.raises(ValidationError) as refused:
        deviations.deviation_record(user=user("monitor.du"), category="procedure", **values)
    assert "before the consent" in refused.value.message_dict["occurred_on"][0]
    with pytest.raises(ValidationError) as refused:
        deviations.deviation_record(
            user=user("monitor.du"), category="consent", **{**values, "occurred_on": before.replace(year=1900)}
        )
    assert "days before the screening" in refused.value.message_dict["occurred_on"][0]
    saved = deviations.deviation_record(user=user("monitor.du"), category="consent", **values)
    assert saved.occurred_on == before


def test_the_dismiss_button_is_shown_only_to_who_may_dismiss(participant, client):
    record_date(visit_of(participant, "LIPO"), 1)
    url = reverse("deviation_log", args=[participant.pk])
    client.force_login(user("coordinator.toulouse"))
    page = client.get(url).content.decode()
    assert 'value="confirm"' in page and 'value="dismiss"' not in page
    client.force_login(user("monitor.du"))
    assert 'value="dismiss"' in client.get(url).content.decode()
