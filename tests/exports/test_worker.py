"""An export on a real Celery worker through Redis (CI sets REDIS_URL and starts the worker on the
test database): the request commits, the worker writes the file and the progress, the requester
downloads it."""

from __future__ import annotations

import io
import os
import zipfile

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.conftest import SEEDS, wait_for
from trials.exports.models import ExportJob, ExportState

needs_worker = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="set REDIS_URL and start a Celery worker on the test database (.ci/run does both) to run this",
)


@needs_worker
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_export_runs_on_a_real_worker(client) -> None:  # noqa: ANN001
    from django.core.management import call_command

    from edc.audit import system_user
    from trials.protocol.loader import protocol_load

    assert not settings.CELERY_TASK_ALWAYS_EAGER
    protocol_load([SEEDS], user=system_user())
    call_command("load_demo", verbosity=0)  # with the synthetic participants
    client.force_login(get_user_model().objects.get(username="sponsor.toulouse"))
    response = client.post(reverse("trial_exports", args=["ASC-DU"]), {"format": "csv", "blinded": "on"})
    assert response.status_code == 302
    job = ExportJob.objects.get()
    job = wait_for(lambda: ExportJob.objects.filter(pk=job.pk, state__in=[ExportState.DONE, ExportState.FAILED]).first(), timeout=120)
    assert job.state == ExportState.DONE, job.error
    assert job.history.filter(history_change_reason="Export started").get().history_user.username == "edc-system"
    download = client.get(reverse("export_download", args=[job.pk]))
    assert download.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()
    assert "participants.csv" in names and "manifest.json" in names
