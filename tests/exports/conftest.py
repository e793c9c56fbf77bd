"""Fixtures of the export tests: the seed trials and demo accounts (loaded once per module), a
private export storage per test, and participants made through the real services (screened,
consented, enrolled, randomized; CRFs, an adverse event and a query entered the way users do).

Exports run through the real request service and Celery task: `export` requests one and runs
the task it enqueued, in this process (the test's rows are not committed, so a worker could not
see them; tests/exports/test_worker.py covers the real worker)."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from edc.audit import system_user
from edc.celery import app
from tests.participants.conftest import _seeded, demo  # noqa: F401 - module-scoped seeds and demo accounts
from trials.exports import services
from trials.exports.models import ExportJob
from trials.demo.participants import participant_register
from trials.protocol.models import Site, Trial
from trials.safety.models import AdverseEvent
from trials.safety.services import ae_expectedness_assess, ae_save
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

# Recognisable values seeded into identifying items: no default export may contain them.
CANARY_INITIALS = "QXJZ"
CANARY_BIRTH = date(1931, 7, 13)


@pytest.fixture(autouse=True)
def export_storage(request, settings, tmp_path):  # noqa: ANN001, ANN201
    """Each test writes its files into its own folder (a real worker writes to the configured one)."""
    if request.node.get_closest_marker("worker"):
        return None
    location = tmp_path / "exports"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


@pytest.fixture
def in_process(monkeypatch):  # noqa: ANN001, ANN201
    """Run tasks in this process even when a broker is configured (CI)."""
    monkeypatch.setitem(app.conf, "task_always_eager", True)


def user(username: str):  # noqa: ANN201
    return get_user_model().objects.get(username=username)


def days_ago(days: int) -> date:
    return timezone.localdate() - timedelta(days=days)


@pytest.fixture
def export(in_process, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN201
    """export(username, trial_code=None, **request kwargs) -> the finished ExportJob."""

    def run(username: str, trial_code: str | None = None, **kwargs) -> ExportJob:  # noqa: ANN003
        trial = Trial.objects.get(code=trial_code) if trial_code else None
        with django_capture_on_commit_callbacks(execute=True):
            job = services.export_request(user=user(username), trial=trial, format=kwargs.pop("format", "csv"), **kwargs)
        job.refresh_from_db()
        return job

    return run


def job_bytes(job: ExportJob) -> bytes:
    with services.export_storage().open(job.file_name, "rb") as handle:
        return handle.read()


def zip_members(data: bytes) -> dict[str, bytes]:
    """Every member of a zip (a CSV export, or the XML parts of an xlsx workbook), decompressed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def demog(**overrides) -> dict:  # noqa: ANN003
    return {
        "initials": CANARY_INITIALS, "date_of_birth": CANARY_BIRTH, "sex": "F", "dominant_hand": "right",
        "smoking_status": "former", "smoking_stop_date": date(2001, 3, 15), "smoking_pack_years": Decimal("12.5"),
        "alcohol_use_disorder": False, "drug_abuse": False, **overrides,
    }


def vitals(weight: str = "61.5") -> dict:
    return {
        "height_cm": Decimal("165"), "weight_kg": Decimal(weight), "systolic_bp": 121, "diastolic_bp": 79, "heart_rate": 68,
    }


def screening_visit(participant):  # noqa: ANN001, ANN201
    return participant.visits.filter(definition__kind="screening").order_by("order").first()


def enter(participant, crf_code: str, answers: dict, visit=None) -> CrfEntry:  # noqa: ANN001
    return crf_entry_save_answers(
        user=system_user(), visit=visit or screening_visit(participant), crf_code=crf_code, answers=answers,
        complete=True, reason="Test data",
    )


def randomized(site_code: str, *, consent: int = 20, trial: str = "ASC-DU"):  # noqa: ANN201
    """A participant screened, consented, enrolled and allocated through the services, with the
    screening DEMOG (canary identifiers) and VITALS entered."""
    site = Site.objects.select_related("trial").get(trial__code=trial, code=site_code)
    participant = participant_register(
        site=site, user=system_user(), consent_date=days_ago(consent), anchor_date=days_ago(consent - 2),
    )
    enter(participant, "DEMOG", demog())
    enter(participant, "VITALS", vitals())
    return participant


def adverse_event(participant, term: str = "Headache") -> AdverseEvent:  # noqa: ANN001
    onset = days_ago(3)
    aware = datetime.combine(onset, time(10, 0), tzinfo=ZoneInfo(participant.site.time_zone))
    saved = ae_save(
        AdverseEvent(
            participant=participant, verbatim_term=term, onset_date=onset, grade=2, related_product="possible",
            aware_at=aware, seriousness=["hospitalisation"], treatment_given="Paracetamol",
            procedure="none", related_procedure="not_related", action_taken="none", outcome="not_recovered",
        ),
        user=system_user(),
    )
    # The sponsor's assessment, recorded the way it is (the site does not answer expectedness).
    return ae_expectedness_assess(saved, user=system_user(), expected=False, reason="Not in the reference safety information")


@pytest.fixture
def du(demo):  # noqa: ANN001, ANN201, ARG001
    """ASC-DU (randomized, quadruple-blind) with three randomized participants at Toulouse and
    Grenoble, their screening CRFs, an AE and a query."""
    from trials.monitoring.queries.services import query_raise

    participants = [randomized("TLS"), randomized("TLS", consent=18), randomized("GRE", consent=16)]
    ae = adverse_event(participants[0])
    vitals_entry = CrfEntry.objects.get(participant=participants[0], crf_code="VITALS")
    query = query_raise(user=user("datamanager"), entry=vitals_entry, item="weight_kg", text="Please check the weight.")
    return {"participants": participants, "ae": ae, "query": query}
