"""In the browser: the sponsor asks for an export of ASC-DU, watches its progress bar (htmx polls
the job's row every second, the page is not reloaded), and downloads the file."""

import io
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from edc.audit import system_user
from edc.celery import app
from tests.e2e.conftest import screenshot
from tests.e2e.test_login import go, log_in
from trials.exports.models import ExportDownload, ExportJob, ExportState
from trials.exports.services import export_storage
from trials.exports.tasks import export_run_task
from trials.demo.participants import participant_register
from trials.protocol.models import Site

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_sponsor_requests_an_export_watches_it_and_downloads_it(page, live_server, demo_users, monkeypatch, settings, tmp_path):  # noqa: ANN001
    worker = bool(os.environ.get("REDIS_URL"))
    if not worker:
        # The file goes to a temporary folder. With a real worker (.ci/run) it goes where the
        # worker's settings put it, the configured export storage, which this process reads too.
        settings.STORAGES = {**settings.STORAGES, "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "exports")},
        }}
    today = timezone.localdate()
    for site in ("TLS", "GRE"):
        participant_register(
            site=Site.objects.get(trial__code="ASC-DU", code=site), user=system_user(),
            consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=18),
        )
    if not worker:
        # No worker in this run: the request's message waits in the in-memory broker, as it would
        # in Redis for a busy worker, and the test plays the worker below.
        monkeypatch.setitem(app.conf, "task_always_eager", False)

    log_in(page, live_server, "sponsor.toulouse")
    go(page, "[data-testid=nav-exports]")
    go(page, "[data-testid=export-trial]:has-text('ASC-DU')")
    expect(page.locator("#id_blinded")).to_be_checked()
    expect(page.locator("#id_blinded")).to_be_disabled()  # the sponsor is blinded
    page.select_option("#id_format", "csv")
    page.fill("#id_cutoff", (today + timedelta(days=30)).isoformat())
    go(page, "[data-testid=export-submit]")
    expect(page.locator("#id_cutoff").locator("xpath=..")).to_contain_text("cannot be in the future")
    assert not ExportJob.objects.exists()
    page.fill("#id_cutoff", today.isoformat())
    go(page, "[data-testid=export-submit]")
    expect(page.locator(".alert-success")).to_contain_text("requested")

    job = ExportJob.objects.get()
    row = page.locator(f"#export-job-{job.pk}")
    if not worker:
        expect(row).to_have_attribute("data-state", "queued")
        expect(row.locator("[data-testid=export-progress]")).to_have_attribute("value", "0")
        screenshot(page, "exports-queued")
        assert export_run_task.apply(args=[job.pk]).get() is True
    # The row updates itself (htmx, every second) until the file is ready.
    expect(row).to_have_attribute("data-state", "done", timeout=60_000)
    expect(row.locator("[data-testid=export-progress]")).to_have_attribute("value", "100")
    job.refresh_from_db()
    expect(row.locator("[data-testid=export-rows]")).to_contain_text(f"{job.rows_done} of {job.rows_done} rows")
    screenshot(page, "exports-ready")

    with page.expect_download() as download_info:
        row.locator("[data-testid=export-download]").click()
    download = download_info.value
    assert download.suggested_filename.startswith("ASC-DU_csv_blinded_") and download.suggested_filename.endswith(".zip")
    data = Path(download.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        participants = archive.read("participants.csv").decode().splitlines()
    assert manifest["trial"] == "ASC-DU" and manifest["blinded"] is True and manifest["cutoff"] == today.isoformat()
    assert len(participants) == 1 + 2
    assert ExportDownload.objects.filter(job=job, downloaded_by__username="sponsor.toulouse").count() == 1
    assert job.state == ExportState.DONE
    assert page.console_errors == []
    export_storage().delete(job.file_name)
