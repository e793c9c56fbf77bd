"""Export jobs: request (validated, audited), run (on Celery, streamed to the export storage with
progress), download (requester only, audited) and expiry.

What an export contains is decided by trials.exports.tables and .selectors; this module decides
who may ask for what, and looks after the job and its file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import storages
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from edc.audit import audited_save, system_user
from edc.db_router import reading_alias, replica_reads
from trials.exports import selectors
from trials.exports.formats import format_get
from trials.exports.models import ExportDownload, ExportJob, ExportState
from trials.exports.spec import ExportSpec
from trials.protocol.models import Role, Site, Trial
from trials.protocol.selectors import study_roles_for_user, user_sees_allocation

logger = logging.getLogger(__name__)

STORAGE_ALIAS = "exports"
# A job queued this long without starting lost its message (a Redis restart): enqueue it again.
REQUEUE_AFTER = timedelta(minutes=10)
# A running job writes a heartbeat with its progress; one silent for
# settings.EXPORT_HEARTBEAT_TIMEOUT_MINUTES lost its worker (see `exports_dead_fail`).
DEAD_JOB_MESSAGE = "The export stopped (its worker was lost). Request it again with Retry."
PROGRESS_EVERY_ROWS = selectors.CHUNK_SIZE
PROGRESS_EVERY_SECONDS = 1.0


def export_storage():  # noqa: ANN201
    return storages[STORAGE_ALIAS]


# --- Request --------------------------------------------------------------------------------


def spec_for(job: ExportJob) -> ExportSpec:
    """The job's parameters as the writers take them."""
    data = dict(job.spec)
    cutoff = data.get("cutoff")
    return ExportSpec(
        user_id=data["user_id"], trial_id=data.get("trial_id"), site_ids=tuple(data.get("site_ids") or ()),
        crf_codes=tuple(data.get("crf_codes") or ()), cutoff=date.fromisoformat(cutoff) if cutoff else None,
        blinded=data.get("blinded", True), identifiers=data.get("identifiers", False),
        pooled_crf=data.get("pooled_crf") or None, options={**(data.get("options") or {}), "job": job.pk},
    )


def _spec_json(spec: ExportSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["site_ids"] = list(spec.site_ids)
    data["crf_codes"] = list(spec.crf_codes)
    data["cutoff"] = spec.cutoff.isoformat() if spec.cutoff else None
    return data


@transaction.atomic
def export_request(
    *,
    user,  # noqa: ANN001
    format: str,  # noqa: A002 - the word users see
    trial: Trial | None = None,
    pooled_crf: str = "",
    sites: list[Site] | None = None,
    crf_codes: list[str] | None = None,
    cutoff: date | None = None,
    blinded: bool = True,
    identifiers: bool = False,
    reason: str = "",
) -> ExportJob:
    """Record an export request and enqueue it. Refuses (ValidationError on the field) an unknown
    format, a trial, site or CRF outside the user's export roles, a cut-off in the future, an
    unblinded export for a user who may not see arms in every trial of it or without a reason,
    and identifying items for anyone but the trial's data manager or without a
    reason."""
    reason = (reason or "").strip()
    errors: dict[str, list[str]] = {}
    export_format = format_get(format)
    if export_format is None:
        errors.setdefault("format", []).append(_("Unknown export format."))
    allowed = selectors.exportable_trials(user)
    if trial is not None:
        if not allowed.filter(pk=trial.pk).exists():
            raise ValidationError({"trial": _("You may not export this trial.")})
        trials = [trial]
        pooled_crf = ""
    else:
        if not pooled_crf or pooled_crf not in selectors.pooled_crf_codes(user):
            raise ValidationError({"pooled_crf": _("Choose a CRF used by at least one of your trials.")})
        if export_format is not None and not export_format.pooled:
            errors.setdefault("format", []).append(_("This format is not available for a pooled export."))
        trials = list(allowed.filter(visit_definitions__visit_crfs__crf_code=pooled_crf).distinct().order_by("code"))
    exportable = selectors.exportable_sites(user).filter(trial__in=trials)
    if sites:
        chosen = {site.pk for site in sites}
        site_ids = set(exportable.filter(pk__in=chosen).values_list("pk", flat=True))
        if site_ids != chosen:
            errors.setdefault("sites", []).append(_("You may not export the data of some of these sites."))
    else:
        site_ids = set(exportable.values_list("pk", flat=True))
    codes: list[str] = []
    if crf_codes and trial is not None:
        scheduled = set(trial.visit_definitions.values_list("visit_crfs__crf_code", flat=True))
        unknown = sorted(set(crf_codes) - scheduled)
        if unknown:
            errors.setdefault("crfs", []).append(_("Not a CRF of this trial: %(codes)s.") % {"codes": ", ".join(unknown)})
        codes = sorted(set(crf_codes))
    if cutoff is not None and cutoff > timezone.now().date():
        errors.setdefault("cutoff", []).append(_("The cut-off date cannot be in the future."))
    if not blinded:
        hidden = [t.code for t in _trials_hiding_arms(user, trials)]
        if hidden:
            errors.setdefault("blinded", []).append(
                _("Your role may not see the allocated arms of %(trials)s: the export must be blinded.")
                % {"trials": ", ".join(hidden)}
            )
        elif not reason:
            errors.setdefault("reason", []).append(_("Give the reason for an unblinded export."))
    if identifiers:
        if _trials_not_managed(user, trials):
            errors.setdefault("identifiers", []).append(_("Only the trial's data manager may export identifying items."))
        elif not reason:
            errors.setdefault("reason", []).append(_("Give the reason for exporting identifying items."))
    if errors:
        raise ValidationError(errors)
    spec = ExportSpec(
        user_id=user.pk, trial_id=trial.pk if trial else None, site_ids=tuple(sorted(site_ids)), crf_codes=tuple(codes),
        cutoff=cutoff, blinded=blinded, identifiers=identifiers, pooled_crf=pooled_crf or None,
        options={"language": get_language() or settings.LANGUAGE_CODE},  # documents (casebooks) in the requester's language
    )
    job = ExportJob(
        requested_by=user, trial=trial, pooled_crf=pooled_crf or "", format=format, spec=_spec_json(spec),
        blinded=blinded, identifiers=identifiers, reason=reason,
    )
    what = _("blinded") if blinded else _("UNBLINDED: %(reason)s") % {"reason": reason}
    if identifiers:
        what += "; " + _("with identifying items: %(reason)s") % {"reason": reason}
    audited_save(job, user=user, reason=_("Export requested (%(what)s)") % {"what": what})
    from trials.exports.tasks import export_run_task

    transaction.on_commit(lambda: export_run_task.delay(job.pk))
    return job


def _trials_hiding_arms(user, trials: list[Trial]) -> list[Trial]:  # noqa: ANN001
    """The trials whose allocated arms the user may not see (an unblinded export of them is refused)."""
    return [t for t in trials if not user_sees_allocation(user, t)]


def _trials_not_managed(user, trials: list[Trial]) -> list[Trial]:  # noqa: ANN001
    """The trials the user is not all-sites data manager of (identifying items of them are refused)."""
    if user.is_superuser:
        return []
    managed = set(
        study_roles_for_user(user).filter(role=Role.DATA_MANAGER, site__isnull=True).values_list("trial_id", flat=True)
    )
    return [t for t in trials if t.pk not in managed]


def export_rights_hold(*, job: ExportJob, user) -> bool:  # noqa: ANN001
    """Whether `user` still holds, now, every right the export needed when it was asked for: an
    export role in its trial and at each of its sites, the right to see the arms of each of its
    trials for an unblinded export, and the data-manager role for identifying items. A role
    ended since (or a site no longer hers) makes the file unavailable, even if another role
    still lets her export the trial blinded."""
    allowed = selectors.exportable_trials(user)
    if job.trial_id is not None and not allowed.filter(pk=job.trial_id).exists():
        return False
    if job.trial_id is None and not allowed.exists():
        return False
    site_ids = set(job.spec.get("site_ids") or ())
    if site_ids - set(selectors.exportable_sites(user).filter(pk__in=site_ids).values_list("pk", flat=True)):
        return False
    trials = [job.trial] if job.trial_id is not None else list(Trial.objects.filter(sites__pk__in=site_ids).distinct())
    if not job.blinded and _trials_hiding_arms(user, trials):
        return False
    return not (job.identifiers and _trials_not_managed(user, trials))


# --- Run ------------------------------------------------------------------------------------


class _Progress:
    """The writers' progress callback: counts rows and writes the count at most every chunk or
    second. Inside the export's snapshot transaction (PostgreSQL), the count goes through a
    second connection, or nobody would see it before the end."""

    def __init__(self, job_id: int, side_connection=None) -> None:  # noqa: ANN001
        self.job_id = job_id
        self.side = side_connection
        self.done = 0
        self.flushed = 0
        self.flushed_at = time.monotonic()

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.done - self.flushed >= PROGRESS_EVERY_ROWS or time.monotonic() - self.flushed_at >= PROGRESS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the count and the job's heartbeat (the sign of life `exports_dead_fail` reads)."""
        self.flushed, self.flushed_at = self.done, time.monotonic()
        now = timezone.now()
        if self.side is None:
            ExportJob.objects.filter(pk=self.job_id, state=ExportState.RUNNING).derived_update(
                rows_done=self.done, heartbeat_at=now
            )
            return
        # The same guarded UPDATE as derived_update(), on the side connection (autocommit).
        with self.side.cursor() as cursor:
            cursor.execute(
                f"UPDATE {ExportJob._meta.db_table} SET rows_done = %s, heartbeat_at = %s WHERE id = %s AND state = %s",  # noqa: S608
                [self.done, now, self.job_id, ExportState.RUNNING.value],
            )


@contextmanager
def _snapshot():  # noqa: ANN202
    """One consistent view of the database for every file of the export: a read-only REPEATABLE
    READ transaction on PostgreSQL (so an entry saved half-way through cannot be in one table and
    missing from another). Yields the connection progress should be written through (None: the
    default one). On SQLite, or when a transaction is already open (tests), no snapshot."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield None
        return
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        # Issue 22: the export's reads go to the streaming replica while its lag is bounded
        # (edc.db_router); the snapshot is then taken there (a hot standby serves REPEATABLE READ
        # READ ONLY), and progress is still written to the primary through `side`.
        with replica_reads():
            alias = reading_alias()
            with transaction.atomic(using=alias):
                with connections[alias].cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield side
    finally:
        side.close()


def _start(job_id: int) -> ExportJob | None:
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state != ExportState.QUEUED:
            return None  # a second delivery of the message, or an expired/failed job: nothing to do
        job.state = ExportState.RUNNING
        job.started_at = job.heartbeat_at = timezone.now()
        job.rows_done = 0
        return audited_save(job, user=system_user(), reason="Export started")


class _MovableFile(File):
    """A finished temporary file that FileSystemStorage moves into place instead of copying."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _partial_dir() -> str | None:
    location = getattr(export_storage(), "location", None)
    if not location:
        return None
    path = Path(location) / ".partial"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _file_name(job: ExportJob, extension: str) -> str:
    what = job.trial.code if job.trial_id else f"pooled-{job.pooled_crf}"
    blinding = "blinded" if job.blinded else "unblinded"
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f"{job.pk}/{what}_{job.format}_{blinding}_{stamp}.{extension}"


def _sha256(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def export_run(job_id: int) -> ExportJob | None:
    """Write a queued export to the export storage, updating its progress; a failure is recorded on
    the job with its message. Safe to run twice: only a queued job starts."""
    job = _start(job_id)
    if job is None:
        return None
    handle = None
    try:
        export_format = format_get(job.format)
        if export_format is None:
            raise ValueError(f"unknown format {job.format!r}")
        spec = spec_for(job)
        handle = tempfile.NamedTemporaryFile(prefix=f"export-{job.pk}-", dir=_partial_dir(), delete=False)  # noqa: SIM115
        with _snapshot() as side:
            progress = _Progress(job.pk, side)
            _total_set(job.pk, export_format.count(spec), side)
            export_format.write(spec, handle, progress)
        handle.close()
        sha256, size = _sha256(handle.name)
        with open(handle.name, "rb") as finished:
            stored = export_storage().save(_file_name(job, export_format.extension), _MovableFile(finished))
    except Exception as error:
        logger.exception("Export %s failed", job_id)
        return _fail(job_id, error)
    finally:
        if handle is not None:
            handle.close()
            if os.path.exists(handle.name):
                os.unlink(handle.name)
    return _finish(job_id, stored, size, sha256, progress.done)


def _total_set(job_id: int, total: int, side) -> None:  # noqa: ANN001
    """The progress bar's total, written outside the history like the count (the finished job
    records the final count through an audited save)."""
    now = timezone.now()
    if side is None:
        ExportJob.objects.filter(pk=job_id, state=ExportState.RUNNING).derived_update(rows_total=total, heartbeat_at=now)
        return
    with side.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ExportJob._meta.db_table} SET rows_total = %s, heartbeat_at = %s WHERE id = %s AND state = %s",  # noqa: S608
            [total, now, job_id, ExportState.RUNNING.value],
        )


def _finish(job_id: int, stored: str, size: int, sha256: str, rows: int) -> ExportJob:
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ExportState.RUNNING:
            export_storage().delete(stored)  # marked failed (stale) meanwhile: keep no orphan file
            return job
        now = timezone.now()
        job.state = ExportState.DONE
        job.file_name, job.size, job.sha256 = stored, size, sha256
        job.rows_done = job.rows_total = rows
        job.finished_at = now
        job.expires_at = now + timedelta(days=settings.EXPORT_EXPIRY_DAYS)
        return audited_save(job, user=system_user(), reason="Export finished")


def _fail(job_id: int, error: Exception) -> ExportJob:
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ExportState.RUNNING:
            return job  # already marked failed as dead (its partial file deleted under it): keep that message
        job.state = ExportState.FAILED
        job.finished_at = timezone.now()
        job.error = f"{type(error).__name__}: {error}"[:2000]
        return audited_save(job, user=system_user(), reason="Export failed")


# --- Download and expiry --------------------------------------------------------------------


@transaction.atomic
def document_download_record(*, user, kind: str, document: str, content: bytes | str, trial=None) -> ExportDownload:  # noqa: ANN001
    """Record one download of a document made on request (a casebook PDF, a DSMB report, a blank or
    annotated CRF PDF) in the export download log: who, when, which file, its SHA-256."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    row = ExportDownload(kind=kind, trial=trial, document=document, sha256=hashlib.sha256(data).hexdigest(), downloaded_by=user)
    return audited_save(row, user=user, reason=f"Downloaded: {document}")


def export_download(*, job_id: int, user):  # noqa: ANN001, ANN201
    """The file of a finished export, opened for its requester, with the download recorded (who,
    when). Anyone else, an unfinished or expired job, or a requester who no longer holds every
    right the export needed (`export_rights_hold`) gets ExportJob.DoesNotExist (the page answers
    404)."""
    job = ExportJob.objects.filter(pk=job_id, requested_by=user, state=ExportState.DONE).select_related("trial").first()
    if job is None or not export_rights_hold(job=job, user=user):
        raise ExportJob.DoesNotExist
    try:
        handle = export_storage().open(job.file_name, "rb")
    except FileNotFoundError:
        raise ExportJob.DoesNotExist from None
    with transaction.atomic():
        audited_save(ExportDownload(job=job, downloaded_by=user), user=user, reason="Export downloaded")
    return job, handle


def _heartbeat_timeout() -> timedelta:
    return timedelta(minutes=settings.EXPORT_HEARTBEAT_TIMEOUT_MINUTES)


def _partial_files_delete(job_id: int) -> None:
    """The temporary files a dead export left under the storage's .partial folder."""
    location = getattr(export_storage(), "location", None)
    if not location:
        return
    for path in (Path(location) / ".partial").glob(f"export-{job_id}-*"):
        path.unlink(missing_ok=True)


def exports_dead_fail(*, now: datetime | None = None) -> int:
    """Mark failed every running export whose heartbeat is older than
    settings.EXPORT_HEARTBEAT_TIMEOUT_MINUTES (its worker was killed or lost), with a message its
    requester sees on the export page, and delete its partial file. Cheap when nothing is dead
    (one query): run every minute by Celery beat and whenever an export page opens. Returns the
    number of jobs marked failed."""
    now = now or timezone.now()
    silent_since = now - _heartbeat_timeout()
    dead = ExportJob.objects.filter(state=ExportState.RUNNING).filter(
        Q(heartbeat_at__lte=silent_since) | Q(heartbeat_at__isnull=True, started_at__lte=silent_since)
    )
    count = 0
    for job_id in dead.values_list("pk", flat=True):
        with transaction.atomic():
            job = ExportJob.objects.select_for_update().get(pk=job_id)
            if job.state != ExportState.RUNNING:
                continue
            job.state = ExportState.FAILED
            job.finished_at = now
            job.error = DEAD_JOB_MESSAGE
            audited_save(job, user=system_user(), reason="Export failed: worker lost (no heartbeat)")
            transaction.on_commit(lambda job_id=job_id: _partial_files_delete(job_id))
            count += 1
    return count


def export_retry(*, job_id: int, user) -> ExportJob:  # noqa: ANN001
    """Request again, with the same parameters, a failed export of the user's own; the request is
    checked again against her rights today (ValidationError as for a new request).
    ExportJob.DoesNotExist for anyone else's job or a job that did not fail."""
    job = ExportJob.objects.filter(pk=job_id, requested_by=user, state=ExportState.FAILED).select_related("trial").first()
    if job is None:
        raise ExportJob.DoesNotExist
    data = job.spec
    cutoff = data.get("cutoff")
    return export_request(
        user=user, format=job.format, trial=job.trial, pooled_crf=job.pooled_crf,
        sites=list(Site.objects.filter(pk__in=data.get("site_ids") or ())) if job.trial_id else None,
        crf_codes=list(data.get("crf_codes") or ()), cutoff=date.fromisoformat(cutoff) if cutoff else None,
        blinded=job.blinded, identifiers=job.identifiers, reason=job.reason,
    )


def exports_scan(*, now: datetime | None = None) -> dict[str, int]:
    """The hourly housekeeping: delete the files of expired exports (the job stays, marked
    expired), mark jobs whose worker was lost as failed, and enqueue again jobs whose message was
    lost. Each job is handled in its own transaction under its row lock; a second run changes
    nothing."""
    now = now or timezone.now()
    system = system_user()
    counts = {"expired": 0, "stale": 0, "requeued": 0}
    for job_id in ExportJob.objects.filter(state=ExportState.DONE, expires_at__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            job = ExportJob.objects.select_for_update().get(pk=job_id)
            if job.state != ExportState.DONE:
                continue
            if job.file_name:
                export_storage().delete(job.file_name)
            job.state = ExportState.EXPIRED
            audited_save(job, user=system, reason="Export expired: file deleted")
            counts["expired"] += 1
    counts["stale"] = exports_dead_fail(now=now)
    from trials.exports.tasks import export_run_task

    for job_id in ExportJob.objects.filter(state=ExportState.QUEUED, created_at__lte=now - REQUEUE_AFTER).values_list("pk", flat=True):
        export_run_task.delay(job_id)
        counts["requeued"] += 1
    return counts

