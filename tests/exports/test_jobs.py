"""Export jobs: who may ask for what (messages on the form's fields), the progress fragment,
downloads for the requester only (audited), expiry, failures, a second delivery, the navigation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.exports.conftest import job_bytes, user
from trials.exports import services
from trials.exports.models import ExportDownload, ExportJob, ExportState
from trials.exports.tasks import export_run_task
from trials.protocol.models import Site, Trial

pytestmark = pytest.mark.django_db


def login(client, username: str):  # noqa: ANN001, ANN201
    client.force_login(user(username))
    return client


def post_export(client, code: str, data: dict, django_capture_on_commit_callbacks):  # noqa: ANN001, ANN201
    payload = {"format": "csv", "blinded": "on", **data}
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(reverse("trial_exports", args=[code]), payload)


# --- The form and the service's refusals -------------------------------------------------------


@pytest.mark.parametrize(("username", "data", "field", "message"), [
    ("sponsor.toulouse", {"format": "sas7bdat"}, "format", "Select a valid choice"),
    ("sponsor.toulouse", {"cutoff": "2999-01-01"}, "cutoff", "The cut-off date cannot be in the future."),
    ("dsmb.statistician", {"blinded": ""}, "reason", "Give the reason for an unblinded export."),
    ("sponsor.toulouse", {"crfs": ["NOPE"]}, "crfs", "Select a valid choice"),
    ("datamanager", {"identifiers": "on"}, "reason", "Give the reason for exporting identifying items."),
])
def test_bad_parameters_re_render_the_form_with_the_message_on_the_field(
    demo, client, in_process, django_capture_on_commit_callbacks, username, data, field, message,  # noqa: ANN001, ARG001
) -> None:
    response = post_export(login(client, username), "ASC-DU", data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not ExportJob.objects.exists()


def test_a_sponsor_cannot_untick_blinded(demo, client, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001, ARG001
    """Her role is blinded: the field is disabled, a forged value is ignored and the export is blinded."""
    response = post_export(login(client, "sponsor.toulouse"), "ASC-DU", {"blinded": ""}, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    job = ExportJob.objects.get()
    assert job.blinded and job.state == ExportState.DONE


def test_the_service_refuses_an_unblinded_export_to_a_blinded_role(demo) -> None:  # noqa: ANN001, ARG001
    from django.core.exceptions import ValidationError

    trial = Trial.objects.get(code="ASC-DU")
    with pytest.raises(ValidationError) as refused:
        services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial, blinded=False, reason="Curious")
    assert "must be blinded" in refused.value.message_dict["blinded"][0]
    with pytest.raises(ValidationError) as refused:
        services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial, identifiers=True, reason="x")
    assert "data manager" in refused.value.message_dict["identifiers"][0]
    assert not ExportJob.objects.exists()


def test_an_unblinded_export_of_an_open_label_trial_needs_a_reason_too(demo, export) -> None:  # noqa: ANN001, ARG001
    from django.core.exceptions import ValidationError

    trial = Trial.objects.get(code="ADSVF-SSC-HANDS")  # open label: the data manager sees the arms
    with pytest.raises(ValidationError) as refused:
        services.export_request(user=user("datamanager"), format="csv", trial=trial, blinded=False)
    assert list(refused.value.message_dict) == ["reason"]
    job = export("datamanager", "ADSVF-SSC-HANDS", blinded=False, reason="Per-arm tables for the report")
    assert job.state == ExportState.DONE and not job.blinded


def test_a_user_without_an_export_role_gets_404(demo, client) -> None:  # noqa: ANN001, ARG001
    login(client, "coordinator.toulouse")
    assert client.get(reverse("export_home")).status_code == 404
    assert client.get(reverse("trial_exports", args=["ASC-DU"])).status_code == 404
    login(client, "sponsor.toulouse")
    assert client.get(reverse("trial_exports", args=["EASC-RA"])).status_code == 404  # not her trial
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.export_request(user=user("sponsor.toulouse"), format="csv", trial=Trial.objects.get(code="EASC-RA"))


def test_a_site_bound_role_exports_only_its_sites(demo) -> None:  # noqa: ANN001, ARG001
    from django.core.exceptions import ValidationError

    from trials.protocol.services import study_role_grant

    trial = Trial.objects.get(code="ASC-DU")
    grenoble, toulouse = Site.objects.get(trial=trial, code="GRE"), Site.objects.get(trial=trial, code="TLS")
    study_role_grant(user=user("monitor.du"), trial=trial, site=grenoble, role="sponsor", granted_by=user("datamanager"), reason="Regional sponsor")
    with pytest.raises(ValidationError) as refused:
        services.export_request(user=user("monitor.du"), format="csv", trial=trial, sites=[toulouse])
    assert "sites" in refused.value.message_dict
    job = services.export_request(user=user("monitor.du"), format="csv", trial=trial)
    assert job.spec["site_ids"] == [grenoble.pk]


# --- Progress, download -----------------------------------------------------------------------


def test_the_page_shows_progress_then_the_download_link(du, client, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001, ARG001
    login(client, "sponsor.toulouse")
    with django_capture_on_commit_callbacks(execute=False) as pending:  # requested, not yet run
        response = client.post(reverse("trial_exports", args=["ASC-DU"]), {"format": "xlsx", "blinded": "on"})
    assert response.status_code == 302
    job = ExportJob.objects.get()
    fragment = client.get(reverse("export_progress", args=[job.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in fragment and "Queued" in fragment and "Download" not in fragment

    for callback in pending:
        callback()
    job.refresh_from_db()
    assert job.state == ExportState.DONE
    assert job.rows_done == job.rows_total > 0
    fragment = client.get(reverse("export_progress", args=[job.pk])).content.decode()
    assert "hx-trigger" not in fragment  # polling stops
    assert reverse("export_download", args=[job.pk]) in fragment
    assert f"{job.rows_done} of {job.rows_done} rows" in fragment
    page = client.get(reverse("trial_exports", args=["ASC-DU"])).content.decode()
    assert f'id="export-job-{job.pk}"' in page


def test_only_the_requester_downloads_and_every_download_is_recorded(du, client, export) -> None:  # noqa: ANN001, ARG001
    job = export("sponsor.toulouse", "ASC-DU")
    url = reverse("export_download", args=[job.pk])
    for other in ("datamanager", "dsmb.statistician", "coordinator.toulouse"):
        assert login(client, other).get(url).status_code == 404
        assert client.get(reverse("export_progress", args=[job.pk])).status_code == 404
    assert not ExportDownload.objects.exists()

    login(client, "sponsor.toulouse")
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == job_bytes(job)
    assert response["Content-Disposition"].startswith('attachment; filename="ASC-DU_csv_blinded_')
    downloads = ExportDownload.objects.filter(job=job)
    assert [d.downloaded_by.username for d in downloads] == ["sponsor.toulouse"] * 2
    assert downloads.first().history.get().history_change_reason == "Export downloaded"


def test_a_requester_who_lost_her_role_cannot_download(du, client, export) -> None:  # noqa: ANN001, ARG001
    from edc.audit import audited_save

    job = export("sponsor.toulouse", "ASC-DU")
    role = user("sponsor.toulouse").study_roles.get(trial__code="ASC-DU")
    role.is_active = False
    audited_save(role, user=user("datamanager"), reason="Left the sponsor")
    assert login(client, "sponsor.toulouse").get(reverse("export_download", args=[job.pk])).status_code == 404


# --- Expiry, failure, redelivery ----------------------------------------------------------------


def test_expired_exports_lose_their_file(du, client, export) -> None:  # noqa: ANN001, ARG001
    job = export("sponsor.toulouse", "ASC-DU")
    assert job.expires_at - job.finished_at == timedelta(days=7)
    assert services.exports_scan(now=job.expires_at - timedelta(seconds=1))["expired"] == 0
    assert services.export_storage().exists(job.file_name)

    assert services.exports_scan(now=job.expires_at + timedelta(seconds=1))["expired"] == 1
    job.refresh_from_db()
    assert job.state == ExportState.EXPIRED
    assert not services.export_storage().exists(job.file_name)
    assert login(client, "sponsor.toulouse").get(reverse("export_download", args=[job.pk])).status_code == 404
    assert services.exports_scan(now=job.expires_at + timedelta(days=1)) == {"expired": 0, "stale": 0, "requeued": 0}


def test_the_expiry_is_configurable(du, export, settings) -> None:  # noqa: ANN001, ARG001
    settings.EXPORT_EXPIRY_DAYS = 2
    job = export("sponsor.toulouse", "ASC-DU")
    assert job.expires_at - job.finished_at == timedelta(days=2)


def test_a_failed_export_keeps_a_clear_error(du, client, export, settings, tmp_path) -> None:  # noqa: ANN001, ARG001
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export storage should be")
    settings.STORAGES = {**settings.STORAGES, "exports": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(blocker)},
    }}
    job = export("sponsor.toulouse", "ASC-DU")
    assert job.state == ExportState.FAILED
    assert job.error.startswith(("FileExistsError", "NotADirectoryError")), job.error
    assert job.file_name == ""
    page = login(client, "sponsor.toulouse").get(reverse("trial_exports", args=["ASC-DU"])).content.decode()
    assert 'data-testid="export-error"' in page and "Failed" in page


def test_a_second_delivery_of_the_task_changes_nothing(du, export) -> None:  # noqa: ANN001, ARG001
    job = export("sponsor.toulouse", "ASC-DU")
    history = job.history.count()
    assert export_run_task.apply(args=[job.pk]).get() is False
    job.refresh_from_db()
    assert job.state == ExportState.DONE and job.history.count() == history


def test_lost_messages_are_sent_again_and_lost_workers_are_replaced(demo, in_process, django_capture_on_commit_callbacks) -> None:  # noqa: ANN001, ARG001
    trial = Trial.objects.get(code="ASC-DU")
    with django_capture_on_commit_callbacks(execute=False):  # the message is lost
        lost = services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial)
    later = timezone.now() + services.REQUEUE_AFTER + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.exports_scan(now=later)["requeued"] == 1
    lost.refresh_from_db()
    assert lost.state == ExportState.DONE and lost.attempts == 1

    with django_capture_on_commit_callbacks(execute=False):
        stuck = services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial)
    services.export_claim(stuck.pk)  # a worker took it, then died
    silent = timedelta(minutes=5, seconds=1)  # EXPORT_HEARTBEAT_TIMEOUT_MINUTES = 5 by default
    with django_capture_on_commit_callbacks(execute=True):  # the scan's message runs here (eager)
        assert services.exports_scan(now=timezone.now() + silent)["stale"] == 1
    stuck.refresh_from_db()
    assert stuck.state == ExportState.DONE and stuck.attempts == 2 and stuck.error == ""


def test_a_killed_worker_is_detected_by_its_heartbeat_and_another_attempt_finishes_the_job(
    du, client, in_process, export_storage, django_capture_on_commit_callbacks,  # noqa: ANN001, ARG001
) -> None:
    """A worker killed mid-export: the job's heartbeat stops; the export page (or the scan every
    minute) queues it again after EXPORT_HEARTBEAT_TIMEOUT_MINUTES (5), the dead attempt's partial
    file with participant data is deleted (not another job's, nor the next attempt's), and the next
    attempt writes the file: one file, one end, nothing the requester has to do."""
    import time_machine

    trial = Trial.objects.get(code="ASC-DU")
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        with django_capture_on_commit_callbacks(execute=False):  # the worker takes the message...
            job = services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial, cutoff=None)
        dead = services.export_claim(job.pk)
        assert dead.attempts == 1
        (export_storage / ".partial").mkdir(parents=True)  # where export_run writes (services._partial_dir)
        partial = export_storage / ".partial" / f"{services._partial_prefix(job.pk, 1)}k1lled"
        partial.write_bytes(b"USUBJID,AGE\nASC-DU-TLS-001,61\n")  # ...writes some rows, and is killed
        other = export_storage / ".partial" / "export-999999-a1-alive"  # another job's file stays
        other.write_bytes(b"x")
    with time_machine.travel(start + timedelta(minutes=3), tick=False):
        services._Progress(job.pk, 1)(services.PROGRESS_EVERY_ROWS)  # a sign of life at 3 min
        job.refresh_from_db()
        assert job.heartbeat_at == start + timedelta(minutes=3) and job.rows_done == services.PROGRESS_EVERY_ROWS
    with time_machine.travel(start + timedelta(minutes=7), tick=False):  # 4 min after the last sign
        assert services.exports_stale_requeue() == {"requeued": 0, "failed": 0}
        job.refresh_from_db()
        assert job.state == ExportState.RUNNING and partial.exists()
    login(client, "sponsor.toulouse")
    with time_machine.travel(start + timedelta(minutes=8, seconds=1), tick=False), django_capture_on_commit_callbacks(execute=True):
        page = client.get(reverse("trial_exports", args=["ASC-DU"])).content.decode()
    job.refresh_from_db()
    assert job.state == ExportState.DONE and job.attempts == 2 and job.error == ""
    reasons = list(job.history.order_by("history_id").values_list("history_change_reason", flat=True))
    assert reasons == [
        "Export requested (blinded)", "Export started",
        "Export queued again: worker lost (no heartbeat), attempt 1 abandoned", "Export started (attempt 2)", "Export finished",
    ]
    assert not partial.exists() and other.exists()
    assert [p.name for p in (export_storage / str(job.pk)).iterdir()] == [job.file_name.rsplit("/", 1)[-1]]
    assert 'data-testid="export-error"' not in page
    # The dead attempt, had it only been frozen, can write nothing more: its claim is gone.
    with pytest.raises(services.ClaimLost):
        services._Progress(job.pk, 1)(services.PROGRESS_EVERY_ROWS)
    assert services._finish(job.pk, 1, "stray.zip", 1, "0" * 64, 1) is None
    job.refresh_from_db()
    assert job.state == ExportState.DONE and job.history.count() == 5


def test_after_the_last_attempt_the_job_fails_and_the_requester_retries(
    du, client, in_process, settings, django_capture_on_commit_callbacks,  # noqa: ANN001, ARG001
) -> None:
    """EXPORT_MAX_ATTEMPTS workers lost in a row (an export that kills its worker, say by memory):
    the job fails with a message its requester sees, and Retry requests the same export."""
    import time_machine

    settings.EXPORT_MAX_ATTEMPTS = 2
    trial = Trial.objects.get(code="ASC-DU")
    start = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=False):
        job = services.export_request(user=user("sponsor.toulouse"), format="csv", trial=trial)
    for attempt in (1, 2):
        with time_machine.travel(start + timedelta(minutes=10 * attempt), tick=False):
            assert services.export_claim(job.pk).attempts == attempt  # a worker takes it and dies
        with time_machine.travel(start + timedelta(minutes=10 * attempt + 6), tick=False), \
                django_capture_on_commit_callbacks(execute=False):  # (its new message is lost too)
            expected = {"requeued": 1, "failed": 0} if attempt == 1 else {"requeued": 0, "failed": 1}
            assert services.exports_stale_requeue() == expected
        if attempt == 1:  # the requester sees why it is queued again
            queued = login(client, "sponsor.toulouse").get(reverse("export_progress", args=[job.pk])).content.decode()
            assert 'data-state="queued"' in queued and 'data-testid="export-restarted"' in queued
    job.refresh_from_db()
    assert job.state == ExportState.FAILED and job.error == services.DEAD_JOB_MESSAGE.format(attempts=2)
    assert job.history.first().history_change_reason == "Export failed: worker lost (no heartbeat)"
    page = login(client, "sponsor.toulouse").get(reverse("trial_exports", args=["ASC-DU"])).content.decode()
    assert 'data-testid="export-error"' in page and "worker was lost" in page and 'data-testid="export-retry"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("export_retry", args=[job.pk]))
    assert response.status_code == 302 and response.url == reverse("trial_exports", args=["ASC-DU"])
    again = ExportJob.objects.exclude(pk=job.pk).get()
    assert again.state == ExportState.DONE and again.spec["site_ids"] == job.spec["site_ids"]
    assert again.format == job.format and again.blinded
    login(client, "datamanager")  # someone else's job: 404, nothing requested
    assert client.post(reverse("export_retry", args=[job.pk])).status_code == 404
    assert ExportJob.objects.count() == 2


# --- Navigation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "shown"), [
    ("sponsor.toulouse", True), ("datamanager", True), ("dsmb.statistician", True), ("coordinator.toulouse", False),
    ("monitor.du", False),
])
def test_the_navigation_links_the_export_page_for_export_roles(demo, client, username: str, shown: bool) -> None:  # noqa: ANN001, ARG001
    page = login(client, username).get(reverse("home"), follow=True).content.decode()  # data managers land in the admin
    assert ('data-testid="nav-exports"' in page) is shown


@pytest.mark.django_db(transaction=True)
def test_progress_is_seen_by_others_while_the_snapshot_is_open(seeds, monkeypatch) -> None:  # noqa: ANN001, ARG001
    """On PostgreSQL an export reads one REPEATABLE READ snapshot; its progress goes through a
    second connection, so the page sees it before the export commits."""
    from django.db import DEFAULT_DB_ALIAS, connection, connections

    from edc.celery import app

    if connection.vendor != "postgresql":
        pytest.skip("the snapshot transaction is PostgreSQL's (SQLite exports read without one)")
    from django.contrib.auth import get_user_model

    monkeypatch.setitem(app.conf, "task_always_eager", False)  # the message waits in the in-memory broker
    admin = get_user_model().objects.create_superuser("export-admin", password="x" * 12)
    job = services.export_request(user=admin, format="csv", trial=Trial.objects.get(code="ASC-DU"))
    assert services.export_claim(job.pk) is not None
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with services._snapshot() as side:
            assert side is not None and connection.in_atomic_block
            progress = services._Progress(job.pk, 1, side)
            progress(services.PROGRESS_EVERY_ROWS)
            with other.cursor() as cursor:
                cursor.execute("SELECT rows_done, state FROM exports_exportjob WHERE id = %s", [job.pk])
                assert cursor.fetchone() == (services.PROGRESS_EVERY_ROWS, "running")
    finally:
        other.close()
