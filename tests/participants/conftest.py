"""Helpers for the participant service tests: participants are made through the real services,
step by step, so each test can stop (or fail) at the step it is about."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from edc.audit import system_user
from trials.participants import eligibility, services
from trials.demo.participants import ELIGIBLE_ULCER
from trials.participants.models import CriterionAnswer, Participant
from tests.conftest import SEEDS
from trials.protocol.loader import protocol_load
from trials.protocol.models import CriterionKind, CriterionLevel, Site
from trials.visits.services import crf_entry_save_answers

# Sites of the seed trials used here, with the demo account working there.
TLS = ("ASC-DU", "TLS")  # randomized, blinded, lesion-level criteria (coordinator.toulouse)
GRE = ("ASC-DU", "GRE")  # a second site of the same trial (no demo coordinator)
MEXICO = ("ADSVF-SSC-HANDS", "INCMNSZ")  # open label, criteria from the screening data
REGISTRY = ("SSC-FATGRAFT-REG", "MES")  # registry: no allocation
MADRID = ("EASC-RA", "MAD-LP")  # dose escalation: sentinel then expansion, placebo inside the cohorts

PASSWORDS = {"investigator.madrid": "demo-Invest-Madrid-26", "investigator.toulouse": "demo-Invest-Toulouse-26"}


def days_ago(days: int) -> date:
    """A past date, a few days back so that it is in the past at every site (Mexico City included)."""
    return timezone.localdate() - timedelta(days=days)


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def site(key: tuple[str, str]) -> Site:
    return Site.objects.select_related("trial").get(trial__code=key[0], code=key[1])


def consent_time(participant: Participant, on: date) -> datetime:
    return datetime.combine(on, time(9, 0), tzinfo=ZoneInfo(participant.site.time_zone))


def screen(key: tuple[str, str], actor=None, *, on: int = 10) -> Participant:  # noqa: ANN001
    """A participant in screening (not consented), screened `on` days ago."""
    return services.participant_screen(site=site(key), user=actor or system_user(), screening_date=days_ago(on))


def consent(participant: Participant, actor=None, *, on: int = 10) -> Participant:  # noqa: ANN001
    services.participant_consent(
        participant=participant, document=services.current_consent_document(participant.trial),
        consented_at=consent_time(participant, days_ago(on)), user=actor or system_user(),
    )
    participant.refresh_from_db()
    return participant


def screening_visit(participant: Participant, crf_code: str):  # noqa: ANN201
    return participant.visits.filter(definition__visit_crfs__crf_code=crf_code).order_by("order").first()


def enter(participant: Participant, crf_code: str, answers: dict, actor=None):  # noqa: ANN001, ANN201
    """Save a complete screening CRF through the visits service."""
    return crf_entry_save_answers(
        user=actor or system_user(), visit=screening_visit(participant, crf_code), crf_code=crf_code,
        answers=answers, complete=True, reason="Screening data",
    )


def ulcer(**overrides) -> dict:  # noqa: ANN003
    return {**ELIGIBLE_ULCER, **overrides}


def enter_ulcers(participant: Participant, rows: list[dict], actor=None):  # noqa: ANN001, ANN201
    return enter(
        participant, "DU_ASSESS",
        # The count agrees with the rows (a CRF check since issue 13).
        {"assessment_date": days_ago(8), "number_active_du": sum(1 for row in rows if row.get("active")), "ulcers": rows}, actor,
    )


def demog(*, age: int, **overrides) -> dict:  # noqa: ANN003
    """DEMOG answers for a participant of `age` completed years (born a few months after the birthday)."""
    today = timezone.localdate()
    born = today.replace(year=today.year - age) - timedelta(days=60)
    return {
        "date_of_birth": born, "sex": "F", "dominant_hand": "right", "smoking_status": "never",
        "alcohol_use_disorder": False, "drug_abuse": False, **overrides,
    }


def vitals(*, weight: str = "60", height: str = "165") -> dict:
    return {
        "height_cm": Decimal(height), "weight_kg": Decimal(weight), "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70,
    }


def ssc_screen(**overrides) -> dict:  # noqa: ANN003
    """SSC_SCREEN answers meeting every criterion of ADSVF-SSC-HANDS."""
    return {
        "acr_eular_2013": True, "acr_1980": True, "leroy_medsger": True, "ssc_subset": "limited",
        "disease_duration_years": Decimal("5"), "stable_vasoactive_1m": True, "stable_immunosuppressive_1m": True,
        "oral_corticosteroids_mg_day": Decimal("0"), "hyperbaric_last_month": False, "botulinum_last_month": False,
        "sympathectomy_last_month": False, "infected_digital_ulcers": False, "family_history_of_cancer": False,
        "hand_comorbidity": False, "pregnant_or_breastfeeding": False, **overrides,
    }


def eligible_answer(kind: str) -> str:
    return CriterionAnswer.MET if kind == CriterionKind.INCLUSION else CriterionAnswer.NOT_MET


def checklist(participant: Participant, overrides: dict[str, str] | None = None) -> dict:
    """Answers to every criterion the screening data do not answer: the eligible answer, unless
    `overrides` (criterion code -> answer) says otherwise. Lesion-level criteria for every lesion."""
    overrides = overrides or {}
    evaluation = eligibility.evaluate(participant)
    answers = {}
    for criterion in participant.trial.criteria.filter(is_active=True):
        keys = (
            [(criterion.code, row) for row in evaluation.lesions]
            if criterion.level == CriterionLevel.LESION else [(criterion.code, "")]
        )
        for key in keys:
            if key not in evaluation.answers:
                answers[key] = (overrides.get(criterion.code, eligible_answer(criterion.kind)), "checked")
    return answers


def make_eligible(participant: Participant, actor=None, *, ulcers: list[dict] | None = None) -> Participant:  # noqa: ANN001
    """Answer the checklist so that the participant is eligible (ASC-DU: one eligible ulcer)."""
    actor = actor or system_user()
    if (participant.trial.eligibility or {}).get("lesion"):
        enter_ulcers(participant, ulcers or [ulcer()], actor)
    services.eligibility_record(participant=participant, answers=checklist(participant), user=actor)
    participant.refresh_from_db()
    return participant


def enrolled(key: tuple[str, str], actor=None, *, on: int = 10) -> Participant:  # noqa: ANN001
    """Screened, consented, eligible and enrolled (not allocated)."""
    actor = actor or system_user()
    participant = consent(screen(key, actor, on=on), actor, on=on)
    make_eligible(participant, actor)
    if services.cohort_has_placebo(participant.trial):
        from trials.demo.participants import _ensure_list

        _ensure_list(participant.trial)  # the data manager's concealed list (active or placebo in each cohort)
    return services.participant_enrol(participant=participant, user=actor, enrolment_date=days_ago(on - 2))


def history_count(participant: Participant) -> int:
    return Participant.history.filter(id=participant.pk).count()


@pytest.fixture(scope="module")
def _seeded(django_db_setup, django_db_blocker):  # noqa: ANN001, ANN202, ARG001
    """The seed trials and the demo accounts, loaded once per test module inside a transaction that
    is rolled back at the end of the module (each test runs in a savepoint inside it, as with
    Django's setUpTestData). Same data as tests/conftest.py's `demo_users`, about a second less
    per test. Not for transactional tests (their data must be committed: see test_concurrency)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
                protocol_load([SEEDS], user=system_user())
                call_command("load_demo", "--no-participants", verbosity=0, stdout=StringIO())
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def demo(_seeded, db):  # noqa: ANN001, ANN201, ARG001
    """The seed trials and the demo accounts with their study roles; no participants."""
