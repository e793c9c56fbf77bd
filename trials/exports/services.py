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
import threading
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
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, transaction
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
# A running job writes a heartbeat with its progress (and a beat thread every
# settings.EXPORT_HEARTBEAT_SECONDS); one silent for settings.EXPORT_HEARTBEAT_TIMEOUT_MINUTES lost its
# worker: `exports_stale_requeue` queues it again for another worker, up to settings.EXPORT_MAX_ATTEMPTS
# claims; after that it fails with this message.
DEAD_JOB_MESSAGE = "The export stopped {attempts} times (its worker was lost each time). Request it again with Retry."
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


class ClaimLost(RuntimeError):
    """The job is no longer this attempt's (the stale scan queued it again and another worker took
    it, or it was failed): this attempt stops and writes nothing more."""


def _claimed_update(job_id: int, attempt: int, side, **values) -> bool:  # noqa: ANN001, ANN003
    """One guarded UPDATE of derived fields (progress, heartbeat) of a running job, only while it is
    still claimed by `attempt`; on the side connection (autocommit) when there is one. Returns
    whether the claim holds."""
    if side is None:
        return bool(
            ExportJob.objects.filter(pk=job_id, state=ExportState.RUNNING, attempts=attempt).derived_update(**values)
        )
    columns = ", ".join(f"{name} = %s" for name in values)
    with side.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ExportJob._meta.db_table} SET {columns} WHERE id = %s AND state = %s AND attempts = %s",  # noqa: S608
            [*values.values(), job_id, ExportState.RUNNING.value, attempt],
        )
        return cursor.rowcount == 1


class _Progress:
    """The writers' progress callback: counts rows and writes the count at most every chunk or
    second, with the heartbeat, through a guarded UPDATE that holds only while the job is still
    this attempt's (`ClaimLost` otherwise: a stalled worker that was given up on stops there).
    Inside the export's snapshot transaction (PostgreSQL), the count goes through a second
    connection, or nobody would see it before the end."""

    def __init__(self, job_id: int, attempt: int, side_connection=None) -> None:  # noqa: ANN001
        self.job_id = job_id
        self.attempt = attempt
        self.side = side_connection
        self.done = 0
        self.flushed = 0
        self.flushed_at = time.monotonic()
        self.lost = threading.Event()  # set by the beat thread when the claim is gone

    def __call__(self, rows: int) -> None:
        self.done += rows
        if self.lost.is_set():
            raise ClaimLost(self.job_id)
        if self.done - self.flushed >= PROGRESS_EVERY_ROWS or time.monotonic() - self.flushed_at >= PROGRESS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the count and the job's heartbeat (the sign of life `exports_stale_requeue` reads)."""
        self.flushed, self.flushed_at = self.done, time.monotonic()
        if not _claimed_update(self.job_id, self.attempt, self.side, rows_done=self.done, heartbeat_at=timezone.now()):
            self.lost.set()
            raise ClaimLost(self.job_id)


class _Beat(threading.Thread):
    """The heartbeat between progress writes (a writer may compute for minutes before its first
    row: a big count, a casebook's PDF): every settings.EXPORT_HEARTBEAT_SECONDS, on a connection
    of its own, while the claim holds. It proves the process lives, so only a killed or frozen
    worker goes silent."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__(name=f"export-{progress.job_id}-beat", daemon=True)
        self.progress = progress
        self.stopped = threading.Event()

    def run(self) -> None:
        conn = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            while not self.stopped.wait(settings.EXPORT_HEARTBEAT_SECONDS):
                try:
                    held = _claimed_update(self.progress.job_id, self.progress.attempt, conn, heartbeat_at=timezone.now())
                except Exception:  # noqa: BLE001 - a lost connection: the progress writes will tell
                    logger.warning("Export %s: heartbeat not written", self.progress.job_id, exc_info=True)
                    continue
                if not held:
                    self.progress.lost.set()
                    return
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


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


def export_claim(job_id: int) -> ExportJob | None:
    """Take a queued job for this worker: a compare-and-set under the row lock (queued -> running,
    `attempts` + 1, audited). The new `attempts` is this run's claim token: progress, heartbeat,
    finish and failure are written only while the job is still running under it. None when the
    job is not queued: a second delivery of the message (the job ran, or runs elsewhere), or an
    expired or failed job: nothing to do."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state != ExportState.QUEUED:
            return None
        job.state = ExportState.RUNNING
        job.attempts += 1
        job.started_at = job.heartbeat_at = timezone.now()
        job.rows_done = 0
        reason = "Export started" if job.attempts == 1 else f"Export started (attempt {job.attempts})"
        return audited_save(job, user=system_user(), reason=reason)


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


def _partial_prefix(job_id: int, attempt: int) -> str:
    """Temporary files are named by job and attempt: the stale scan deletes a lost attempt's file,
    never the one the next attempt is writing beside it."""
    return f"export-{job_id}-a{attempt}-"


def _sha256(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def export_run(job_id: int) -> ExportJob | None:
    """Write a queued export to the export storage, updating its progress; a failure is recorded on
    the job with its message. Safe to run twice, and beside a stalled earlier attempt: only a
    queued job is claimed, and only the attempt holding the claim writes progress, its file and
    the job's end (`export_claim`)."""
    job = export_claim(job_id)
    if job is None:
        return None
    attempt = job.attempts
    handle = None
    beat = None
    progress = None
    try:
        export_format = format_get(job.format)
        if export_format is None:
            raise ValueError(f"unknown format {job.format!r}")
        spec = spec_for(job)
        handle = tempfile.NamedTemporaryFile(prefix=_partial_prefix(job.pk, attempt), dir=_partial_dir(), delete=False)  # noqa: SIM115
        with _snapshot() as side:
            progress = _Progress(job.pk, attempt, side)
            if side is not None:  # committed rows only (not inside a test's transaction)
                beat = _Beat(progress)
                beat.start()
            _total_set(job.pk, attempt, export_format.count(spec), side)
            export_format.write(spec, handle, progress)
        if beat is not None:
            beat.stop()
        if progress.lost.is_set():
            raise ClaimLost(job.pk)
        handle.close()
        sha256, size = _sha256(handle.name)
        with open(handle.name, "rb") as finished:
            stored = export_storage().save(_file_name(job, export_format.extension), _MovableFile(finished))
    except ClaimLost:
        logger.warning("Export %s attempt %s: the job was given to another attempt; this one stops", job_id, attempt)
        return None
    except OperationalError as error:
        # The database connection was lost under the export: on a hot standby, a long snapshot is
        # ended by a recovery conflict (the primary vacuumed rows it still saw: see hot_standby_feedback
        # in docs/deployment.md), or a server restarted. Not the export's fault: another attempt.
        logger.warning("Export %s attempt %s: database connection lost (%s); queued again", job_id, attempt, error)
        return _requeue_after(job_id, attempt, error)
    except Exception as error:
        logger.exception("Export %s failed", job_id)
        return _fail(job_id, attempt, error)
    finally:
        if beat is not None:
            beat.stop()
        if handle is not None:
            handle.close()
            if os.path.exists(handle.name):
                os.unlink(handle.name)
    return _finish(job_id, attempt, stored, size, sha256, progress.done)


def _total_set(job_id: int, attempt: int, total: int, side) -> None:  # noqa: ANN001
    """The progress bar's total, written outside the history like the count (the finished job
    records the final count through an audited save)."""
    if not _claimed_update(job_id, attempt, side, rows_total=total, heartbeat_at=timezone.now()):
        raise ClaimLost(job_id)


def _finish(job_id: int, attempt: int, stored: str, size: int, sha256: str, rows: int) -> ExportJob | None:
    """The job done with this attempt's file, if the job is still this attempt's; otherwise (given
    to another attempt, or failed, meanwhile) the file is deleted: one file per job, one end."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ExportState.RUNNING or job.attempts != attempt:
            transaction.on_commit(lambda: export_storage().delete(stored))  # keep no orphan file
            return None
        now = timezone.now()
        job.state = ExportState.DONE
        job.file_name, job.size, job.sha256 = stored, size, sha256
        job.rows_done = job.rows_total = rows
        job.finished_at = now
        job.expires_at = now + timedelta(days=settings.EXPORT_EXPIRY_DAYS)
        return audited_save(job, user=system_user(), reason="Export finished")


def _requeue_after(job_id: int, attempt: int, error: Exception) -> ExportJob | None:
    """Queue the job again after a transient failure of this attempt (audited, a new message at the
    commit), or fail it once it has had settings.EXPORT_MAX_ATTEMPTS attempts. The connections the
    failure broke are closed first (Django opens new ones); if the primary itself is unreachable
    this raises, and the stale scan queues the job again once its heartbeat is old."""
    for alias in connections:
        if connections[alias].connection is not None and not connections[alias].is_usable():
            connections[alias].close()
    if connection.in_atomic_block:  # (never in a worker; a test's transaction)
        return _fail(job_id, attempt, error)
    if attempt >= settings.EXPORT_MAX_ATTEMPTS:
        return _fail(job_id, attempt, error)
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ExportState.RUNNING or job.attempts != attempt:
            return None
        job.state = ExportState.QUEUED
        job.heartbeat_at = timezone.now()
        job.rows_done = 0
        reason = f"Export queued again: database connection lost ({type(error).__name__}), attempt {attempt} abandoned"
        audited_save(job, user=system_user(), reason=reason)
        transaction.on_commit(lambda: _enqueue(job_id))
        return job


def _fail(job_id: int, attempt: int, error: Exception) -> ExportJob | None:
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job_id)
        if job.state != ExportState.RUNNING or job.attempts != attempt:
            return None  # another attempt's now, or already failed (its partial file deleted under it): keep that
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


def _partial_files_delete(job_id: int, attempt: int) -> None:
    """The temporary file a lost attempt left under the storage's .partial folder (not the next
    attempt's)."""
    location = getattr(export_storage(), "location", None)
    if not location:
        return
    for path in (Path(location) / ".partial").glob(f"{_partial_prefix(job_id, attempt)}*"):
        path.unlink(missing_ok=True)


def _enqueue(job_id: int) -> None:
    from trials.exports.tasks import export_run_task

    export_run_task.delay(job_id)


def exports_stale_requeue(*, now: datetime | None = None) -> dict[str, int]:
    """Every running export whose heartbeat is older than settings.EXPORT_HEARTBEAT_TIMEOUT_MINUTES
    lost its worker (killed, its node gone): queue it again for another worker (audited; its lost
    attempt's partial file deleted), or, after settings.EXPORT_MAX_ATTEMPTS attempts, mark it
    failed with a message its requester sees (she may Retry). The lost attempt's message is not
    needed: the scan enqueues a new one, and if the old one is delivered again later (Redis's
    visibility timeout) it finds the job claimed or finished and does nothing (`export_claim`).

    Cheap when nothing is stale (one query): run every minute by Celery beat and whenever an
    export page opens. Returns {"requeued": n, "failed": n}."""
    now = now or timezone.now()
    silent_since = now - _heartbeat_timeout()
    stale = ExportJob.objects.filter(state=ExportState.RUNNING).filter(
        Q(heartbeat_at__lte=silent_since) | Q(heartbeat_at__isnull=True, started_at__lte=silent_since)
    )
    counts = {"requeued": 0, "failed": 0}
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = ExportJob.objects.select_for_update().get(pk=job_id)
            silent = job.heartbeat_at or job.started_at
            if job.state != ExportState.RUNNING or (silent is not None and silent > silent_since):
                continue  # finished, or beat again, since the list was read
            lost = job.attempts
            if job.attempts >= settings.EXPORT_MAX_ATTEMPTS:
                job.state = ExportState.FAILED
                job.finished_at = now
                job.error = DEAD_JOB_MESSAGE.format(attempts=job.attempts)
                audited_save(job, user=system_user(), reason="Export failed: worker lost (no heartbeat)")
                counts["failed"] += 1
            else:
                job.state = ExportState.QUEUED
                job.heartbeat_at = now  # queued again at (the lost-message scan counts from here)
                job.rows_done = 0
                audited_save(
                    job, user=system_user(),
                    reason=f"Export queued again: worker lost (no heartbeat), attempt {lost} abandoned",
                )
                transaction.on_commit(lambda job_id=job_id: _enqueue(job_id))
                counts["requeued"] += 1
            transaction.on_commit(lambda job_id=job_id, lost=lost: _partial_files_delete(job_id, lost))
    return counts


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
    expired), queue again jobs whose worker was lost (`exports_stale_requeue`), and enqueue again
    jobs whose message was lost. Each job is handled in its own transaction under its row lock; a second run changes
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
    stale = exports_stale_requeue(now=now)
    counts["stale"] = stale["requeued"] + stale["failed"]
    # A queued job's message lost (a Redis restart): counted from its request, or from when the
    # stale scan queued it again (heartbeat_at).
    lost = ExportJob.objects.filter(state=ExportState.QUEUED, created_at__lte=now - REQUEUE_AFTER).filter(
        Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lte=now - REQUEUE_AFTER)
    )
    for job_id in lost.values_list("pk", flat=True):
        _enqueue(job_id)
        counts["requeued"] += 1
    return counts
