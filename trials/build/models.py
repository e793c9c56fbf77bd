"""Study build: who may create new trials (the study builder), and the amendments applied to a
trial through the study-build page (version, effective date, reason, the files and the impact
that was previewed and applied)."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from edc.audit import AuditedModel
from trials.protocol.models import Trial


class StudyBuilder(AuditedModel):
    """The "study builder" role: may upload a trial file whose code is not yet a trial, and so
    create a new trial. Not tied to a trial (there is none yet), so not a StudyRole; granted and
    ended only by a superuser (trials.build.services.study_builder_grant)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="study_builder", verbose_name=_("user")
    )
    is_active = models.BooleanField(_("active"), default=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("granted by")
    )
    granted_at = models.DateTimeField(_("granted at"), auto_now_add=True)

    class Meta:
        ordering = ["user__username"]
        verbose_name = _("study builder")
        verbose_name_plural = _("study builders")

    def __str__(self) -> str:
        return f"{self.user} – {_('study builder')}"


class Amendment(AuditedModel):
    """A trial file loaded through the study-build page: the first load of a new trial is number 1."""

    trial = models.ForeignKey(Trial, on_delete=models.PROTECT, related_name="amendments", verbose_name=_("trial"))
    number = models.PositiveIntegerField(_("number"))
    version = models.CharField(_("protocol version"), max_length=40, help_text=_("As the approved protocol names it, e.g. 3.0."))
    effective_date = models.DateField(_("effective date"))
    reason = models.TextField(_("reason"))
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("applied by"))
    applied_at = models.DateTimeField(_("applied at"))
    files = models.JSONField(_("files"), default=list, help_text=_("Name and SHA-256 of each uploaded file."))
    impact = models.JSONField(_("impact"), default=dict, help_text=_("The impact previewed and applied."))

    class Meta:
        ordering = ["trial__code", "-number"]
        verbose_name = _("amendment")
        verbose_name_plural = _("amendments")
        constraints = [
            models.UniqueConstraint(fields=["trial", "number"], name="amendment_unique_number"),
            models.UniqueConstraint(fields=["trial", "version"], name="amendment_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.trial.code} {_('amendment')} {self.number} (v{self.version})"
