"""Export jobs through the API: requested through the exports page's service (its rules per
role), polled, downloaded by the requester only; a blinded role gets a blinded file only."""

import io
import zipfile

import pytest

from edc.celery import app
from trials.exports.models import ExportDownload, ExportJob, ExportState


@pytest.fixture(autouse=True)
def export_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "exports")}},
    }


@pytest.fixture
def in_process(monkeypatch):
    """Run the export task in this process even when a broker is configured (the test's rows are
    not committed, so a worker could not see them; tests/exports/test_worker.py covers the worker)."""
    monkeypatch.setitem(app.conf, "task_always_eager", True)


def request_export(client, body: dict, capture):
    with capture(execute=True):
        return client.post("/api/v1/exports/", body, format="json")


def test_request_poll_download(client_for, tls, in_process, django_capture_on_commit_callbacks):
    client = client_for("sponsor", scope="write")
    answer = request_export(client, {"format": "csv", "trial": "ASC-DU"}, django_capture_on_commit_callbacks)
    assert answer.status_code == 202, answer.json()
    job = answer.json()
    assert job["blinded"] is True and job["trial"] == "ASC-DU"
    polled = client.get(f"/api/v1/exports/{job['id']}/").json()
    assert polled["state"] == "done" and polled["percent"] == 100 and polled["download"].endswith(f"/api/v1/exports/{job['id']}/download/")
    assert [j["id"] for j in client.get("/api/v1/exports/").json()["results"]] == [job["id"]]
    file = client.get(f"/api/v1/exports/{job['id']}/download/")
    assert file.status_code == 200 and file["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(b"".join(file.streaming_content))).namelist()
    assert any(n.startswith("participants") for n in names), names
    assert ExportDownload.objects.filter(job_id=job["id"], downloaded_by__username="sponsor.toulouse").count() == 1
    # Nobody else's: another user's token answers 404, for the job and its file.
    other = client_for("dsmb")
    assert other.get(f"/api/v1/exports/{job['id']}/").status_code == 404
    assert other.get(f"/api/v1/exports/{job['id']}/download/").status_code == 404


def test_the_pages_rules_hold(client_for, tls, in_process, django_capture_on_commit_callbacks):
    sponsor = client_for("sponsor", scope="write")
    # ASC-DU masks the sponsor's role: an unblinded export is refused on the field, whatever the reason.
    unblinded = request_export(sponsor, {"format": "csv", "trial": "ASC-DU", "blinded": False, "reason": "Curious"}, django_capture_on_commit_callbacks)
    assert unblinded.status_code == 400 and list(unblinded.json()) == ["blinded"]
    identifiers = request_export(sponsor, {"format": "csv", "trial": "ASC-DU", "identifiers": True, "reason": "Needed"}, django_capture_on_commit_callbacks)
    assert identifiers.status_code == 400 and list(identifiers.json()) == ["identifiers"]
    assert request_export(sponsor, {"format": "sas7bdat", "trial": "ASC-DU"}, django_capture_on_commit_callbacks).json().keys() == {"format"}
    assert request_export(sponsor, {"format": "csv", "trial": "ASC-DU", "cutoff": "2999-01-01"}, django_capture_on_commit_callbacks).status_code == 400
    assert request_export(sponsor, {"format": "csv"}, django_capture_on_commit_callbacks).status_code == 400
    assert request_export(sponsor, {"format": "csv", "trial": "ADSVF-SSC-HANDS"}, django_capture_on_commit_callbacks).status_code == 404
    assert request_export(client_for("sponsor"), {"format": "csv", "trial": "ASC-DU"}, django_capture_on_commit_callbacks).status_code == 403  # read token
    coordinator = request_export(client_for("coordinator", scope="write"), {"format": "csv", "trial": "ASC-DU"}, django_capture_on_commit_callbacks)
    assert coordinator.status_code == 400 and list(coordinator.json()) == ["trial"]  # no export role
    assert not ExportJob.objects.exists()
    # The DSMB sees the arms: its unblinded export needs a reason, then runs.
    dsmb = client_for("dsmb", scope="write")
    no_reason = request_export(dsmb, {"format": "csv", "trial": "ASC-DU", "blinded": False}, django_capture_on_commit_callbacks)
    assert no_reason.status_code == 400 and list(no_reason.json()) == ["reason"]
    done = request_export(dsmb, {"format": "csv", "trial": "ASC-DU", "blinded": False, "reason": "DSMB meeting 3"}, django_capture_on_commit_callbacks)
    assert done.status_code == 202 and done.json()["blinded"] is False
    assert ExportJob.objects.get(pk=done.json()["id"]).state == ExportState.DONE


def test_not_ready_is_409(client_for, tls, django_capture_on_commit_callbacks):
    client = client_for("sponsor", scope="write")
    with django_capture_on_commit_callbacks(execute=False):  # the task is not run: the job stays queued
        job = client.post("/api/v1/exports/", {"format": "csv", "trial": "ASC-DU"}, format="json").json()
    answer = client.get(f"/api/v1/exports/{job['id']}/download/")
    assert answer.status_code == 409 and answer.json()["state"] == "queued"
    assert client.get(f"/api/v1/exports/{job['id']}/").json()["download"] is None
