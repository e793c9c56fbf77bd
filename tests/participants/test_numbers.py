"""Screening and subject numbers: from the trial's pattern, per site, gap-free, and a failed
enrolment hands no number out (concurrent numbering on PostgreSQL: test_concurrency)."""

import pytest
from django.core.exceptions import ValidationError

from edc.audit import audited_save, system_user
from tests.participants.conftest import GRE, REGISTRY, TLS, consent, enrolled, make_eligible, screen, site
from trials.participants import services
from trials.participants.models import NumberKind, NumberSequence, Participant

pytestmark = pytest.mark.django_db


def test_default_patterns_count_per_site_without_gaps(demo):
    toulouse = [screen(TLS) for _ in range(3)]
    grenoble = [screen(GRE) for _ in range(2)]
    assert [p.screening_number for p in toulouse] == ["TLS-S001", "TLS-S002", "TLS-S003"]
    assert [p.screening_number for p in grenoble] == ["GRE-S001", "GRE-S002"]
    assert all(p.subject_number == "" for p in toulouse + grenoble)
    # Subject numbers follow the order of enrolment, not of screening, and have their own counter.
    second, first = toulouse[1], toulouse[0]
    for participant in (second, first):
        consent(participant)
        make_eligible(participant)
        services.participant_enrol(participant=participant, user=system_user())
    second.refresh_from_db()
    first.refresh_from_db()
    assert (second.subject_number, first.subject_number) == ("TLS-001", "TLS-002")
    assert enrolled(GRE).subject_number == "GRE-001"
    assert str(first) == first.number == "TLS-002"


def test_numbers_follow_the_trial_pattern(demo):
    trial = site(REGISTRY).trial
    trial.numbering = {"screening": "{trial}/{site}/SCR{seq:04d}", "subject": "{site}.{seq:02d}"}
    audited_save(trial, user=system_user(), reason="Numbering of the registry")
    first, second = enrolled(REGISTRY), enrolled(REGISTRY)
    assert (first.screening_number, first.subject_number) == ("SSC-FATGRAFT-REG/MES/SCR0001", "MES.01")
    assert (second.screening_number, second.subject_number) == ("SSC-FATGRAFT-REG/MES/SCR0002", "MES.02")


def test_a_screen_failure_takes_no_subject_number(demo):
    failed = consent(screen(REGISTRY))
    services.participant_screen_fail(participant=failed, user=system_user(), reason="Declined")
    assert enrolled(REGISTRY).subject_number == "MES-001"
    assert NumberSequence.objects.get(site=site(REGISTRY), kind=NumberKind.SUBJECT).last == 1


def test_a_failed_enrolment_does_not_consume_a_subject_number(demo, monkeypatch):
    """The enrolment fails after its subject number was taken: the number rolls back with it."""
    participant = make_eligible(consent(screen(REGISTRY)))
    taken = []

    def schedule_fails(participant, **kwargs):  # noqa: ANN001, ANN003, ANN202, ARG001
        taken.append(participant.subject_number)
        raise ValidationError("The visit schedule could not be made.")

    with monkeypatch.context() as patch:
        patch.setattr(services, "_schedule", schedule_fails)
        with pytest.raises(ValidationError):
            services.participant_enrol(participant=participant, user=system_user())
    assert taken == ["MES-001"]  # the number was handed out inside the failed enrolment …
    participant.refresh_from_db()
    assert (participant.status, participant.subject_number) == ("screening", "")
    assert not NumberSequence.objects.filter(site=site(REGISTRY), kind=NumberKind.SUBJECT, last__gt=0).exists()
    # … and is handed out again.
    participant = services.participant_enrol(participant=participant, user=system_user())
    assert participant.subject_number == "MES-001"
    assert enrolled(REGISTRY).subject_number == "MES-002"


def test_numbers_are_unique_in_the_trial(demo):
    participants = [enrolled(TLS) for _ in range(3)] + [enrolled(GRE) for _ in range(2)]
    subjects = [p.subject_number for p in participants]
    assert len(set(subjects)) == 5
    assert Participant.objects.filter(trial=site(TLS).trial).exclude(subject_number="").count() == 5
