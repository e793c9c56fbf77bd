"""Export jobs: what a sponsor, data manager or DSMB member asked for, its progress on Celery, the
file it produced and every download of it.

A job is written only by trials.exports.services (requested, started, done, failed, expired: each
an audited save with a reason). Its progress counter is the one value written outside the
history (`DERIVED_FIELDS`, with its total and the heartbeat written with it): it moves every few thousand rows, nobody enters it,
and the finished job records the final count through an audited save.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.protocol.models import Trial


class ExportState(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Ready")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")


ACTIVE_STATES = frozenset({ExportState.QUEUED, ExportState.RUNNING})


class ExportJob(AuditedModel):
    """One export: its parameters (the ExportSpec as JSON), its state and progress, its file."""

    DERIVED_FIELDS = frozenset({"rows_done", "rows_total", "heartbeat_at"})

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="export_jobs", verbose_name=_("requested by")
    )
    trial = models.ForeignKey(
        Trial, on_delete=models.PROTECT, null=True, blank=True, related_name="export_jobs", verbose_name=_("trial"),
        help_text=_("Empty for a pooled export of one CRF across trials."),
    )
    pooled_crf = models.CharField(_("pooled CRF"), max_length=40, blank=True)
    format = models.CharField(_("format"), max_length=20)
    spec = models.JSONField(_("parameters"))
    blinded = models.BooleanField(_("blinded"), default=True)
    identifiers = models.BooleanField(_("with identifying items"), default=False)
    reason = models.TextField(
        _("reason"), blank=True, help_text=_("Why an unblinded export, or one with identifying items, is needed.")
    )
    state = models.CharField(_("state"), max_length=10, choices=ExportState.choices, default=ExportState.QUEUED)
    rows_done = models.PositiveBigIntegerField(_("rows written"), default=0)
    rows_total = models.PositiveBigIntegerField(_("rows to write"), null=True, blank=True)
    file_name = models.CharField(_("file"), max_length=300, blank=True, help_text=_("Name in the export storage."))
    size = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        _("last sign of life"), null=True, blank=True,
        help_text=_(
            "Written by the running export with its progress; a silent job lost its worker and is queued again "
            "(then: when it was queued again)."
        ),
    )
    attempts = models.PositiveSmallIntegerField(
        _("attempts"), default=0,
        help_text=_(
            "How many times a worker took the job. The running attempt's number is its claim: only it writes "
            "the progress, the file and the end."
        ),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        constraints = [
            models.CheckConstraint(condition=Q(trial__isnull=False) | ~Q(pooled_crf=""), name="export_trial_or_pooled_crf"),
            models.CheckConstraint(condition=Q(blinded=True) | ~Q(reason=""), name="export_unblinded_has_reason"),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="export_state_expiry_idx")]

    def __str__(self) -> str:
        what = self.trial.code if self.trial_id else self.pooled_crf
        return f"{what} {self.format} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> int:
        if self.state == ExportState.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(99, int(100 * self.rows_done / self.rows_total))

    @property
    def download_name(self) -> str:
        return self.file_name.rsplit("/", 1)[-1]


class DownloadKind(models.TextChoices):
    EXPORT = "export", _("Export file")
    CASEBOOK = "casebook", _("Casebook PDF")
    DSMB = "dsmb", _("DSMB report")
    CRF_PRINT = "crf_print", _("Blank or annotated CRF PDF")


class ExportDownload(AuditedModel):
    """One download of an export file, or of a document made on request (a casebook PDF, a DSMB
    report, a blank or annotated CRF PDF): who, when, what (written once)."""

    job = models.ForeignKey(
        ExportJob, on_delete=models.PROTECT, null=True, blank=True, related_name="downloads", verbose_name=_("export"),
        help_text=_("Empty for a document made on request."),
    )
    kind = models.CharField(_("kind"), max_length=20, choices=DownloadKind.choices, default=DownloadKind.EXPORT)
    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("trial"))
    document = models.CharField(_("document"), max_length=300, blank=True, help_text=_("The file name given to the browser."))
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    downloaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("downloaded by")
    )
    downloaded_at = models.DateTimeField(_("downloaded at"), auto_now_add=True)

    class Meta:
        ordering = ["job", "downloaded_at"]
        verbose_name = _("export download")
        verbose_name_plural = _("export downloads")
        constraints = [
            models.CheckConstraint(condition=Q(job__isnull=False) | ~Q(document=""), name="download_job_or_document"),
        ]

    def __str__(self) -> str:
        return f"{self.job or self.document} – {self.downloaded_by} {self.downloaded_at:%Y-%m-%d %H:%M}"


class DsmbReport(models.TextChoices):
    OPEN = "open", _("Open report (pooled)")
    CLOSED = "closed", _("Closed report (by arm)")


class DsmbPackage(AuditedModel):
    """One DSMB report as generated for a data cut-off, stored: a later download of the same
    cut-off gives the identical bytes (what the committee read), with its SHA-256."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="dsmb_packages", verbose_name=_("trial"))
    cutoff = models.DateField(_("data cut-off"))
    report = models.CharField(_("report"), max_length=10, choices=DsmbReport.choices)
    file_format = models.CharField(_("format"), max_length=5, choices=[("pdf", "PDF"), ("csv", "CSV")])
    content = models.BinaryField(_("file"))
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    generated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("generated by"))
    generated_at = models.DateTimeField(_("generated at"))

    class Meta:
        ordering = ["trial", "-cutoff", "report", "file_format"]
        verbose_name = _("DSMB package file")
        verbose_name_plural = _("DSMB package files")
        constraints = [
            models.UniqueConstraint(fields=["trial", "cutoff", "report", "file_format"], name="dsmb_package_one_per_cutoff"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code} DSMB {self.report} {self.cutoff:%Y-%m-%d}.{self.file_format}"

    @property
    def file_name(self) -> str:
        return f"{self.trial.code}_dsmb_{self.report}_{self.cutoff.isoformat()}.{self.file_format}"
