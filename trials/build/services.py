"""Study build: validate an upload with the loader, preview its impact, apply it as an amendment;
grant and end the study-builder role.

Nothing here writes a trial row itself: the loader (trials.protocol.loader) stays the one place
that validates and writes a trial, and the schedule (trials.visits.schedule) the one that plans
visits; trials.build.impact runs both and measures what they did.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save, system_user
from trials.build import selectors
from trials.build.impact import amendment_preview, amendment_run
from trials.build.models import Amendment, StudyBuilder
from trials.build.uploads import safe_relative
from trials.monitoring.quality.services import quality_run_request
from trials.protocol.loader import ProtocolLoadError, protocol_check
from trials.protocol.models import Role, Trial
from trials.protocol.services import study_role_grant


class BuildError(Exception):
    """The upload cannot be previewed or applied: the messages say why (loader problems as
    `file:line: path: problem`). Nothing was written."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("\n".join(messages))


@dataclass
class Checked:
    trial_code: str
    new_trial: bool
    paths: list[Path]


def files_digest(files: dict[str, bytes]) -> list[dict]:
    return [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in sorted(files.items())]


def impact_digest(impact: dict) -> str:
    """What the preview showed, in one value: apply refuses when its own run differs."""
    return hashlib.sha256(json.dumps(impact, sort_keys=True, default=str).encode()).hexdigest()


def _masking(trial: Trial) -> tuple:
    placebo = ((trial.escalation or {}).get("placebo") or {}).get("masked")
    return trial.masking, sorted(trial.masked_roles or []), sorted(placebo or [])


@contextmanager
def checked_upload(files: dict[str, bytes], *, user, trial: Trial | None) -> Iterator[Checked]:  # noqa: ANN001
    """Write the files to a private temporary folder and validate them with the loader (every
    problem at once); check that they hold one trial, the page's trial (or a new one for a study
    builder), and that a data manager does not change who is masked. Yields the paths to load."""
    with tempfile.TemporaryDirectory(prefix="edc-build-") as folder:
        root = Path(folder).resolve()
        paths = []
        for name, data in files.items():
            path = root / safe_relative(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            paths.append(path)
        try:
            validated = protocol_check(paths)
        except ProtocolLoadError as error:
            raise BuildError([str(p).replace(f"{root}/", "") for p in error.problems]) from None
        codes = sorted(validated.trials)
        if len(codes) != 1:
            raise BuildError([_("Upload one trial file (with its CRF files); found %(n)s trial files.") % {"n": len(codes)}])
        code = codes[0]
        source, spec = validated.trials[code]
        label = source.label.replace(f"{root}/", "")
        if trial is not None and code != trial.code:
            raise BuildError([_("%(file)s: this file is trial %(code)s, not %(trial)s: upload it on its own page.") % {
                "file": label, "code": code, "trial": trial.code}])
        existing = Trial.objects.filter(code=code).first()
        if trial is None and existing is not None:
            raise BuildError([_("%(file)s: trial %(code)s exists: its data manager amends it on its page.") % {"file": label, "code": code}])
        if existing is None and not selectors.is_study_builder(user):
            raise BuildError([_("Only a study builder may create a new trial.")])
        if existing is not None and not selectors.buildable_trials(user).filter(pk=existing.pk).exists():
            raise BuildError([_("Only a data manager of %(trial)s (all sites) may amend it.") % {"trial": code}])
        if existing is not None and not user.is_superuser:
            placebo = spec.escalation.placebo.masked if spec.escalation and spec.escalation.placebo else None
            wanted = (spec.masking.level, sorted(spec.masking.masked), sorted(placebo or []))
            if wanted != _masking(existing):
                # Who is masked decides who sees the arms: never changed from this page by someone
                # who may herself be blinded.
                raise BuildError([_("%(file)s: masking: who is masked changes only by an administrator (in the admin).") % {"file": label}])
        yield Checked(trial_code=code, new_trial=existing is None, paths=paths)


def build_preview(files: dict[str, bytes], *, user, trial: Trial | None) -> tuple[str, dict]:  # noqa: ANN001
    """(trial code, impact) of the upload; nothing written. BuildError when it cannot load."""
    with checked_upload(files, user=user, trial=trial) as checked:
        try:
            impact = amendment_preview(checked.trial_code, checked.paths, user=user)
        except ValidationError as error:  # a visit to re-plan is locked or frozen
            raise BuildError(error.messages) from None
    return checked.trial_code, impact


@transaction.atomic
def amendment_apply(
    files: dict[str, bytes], *, user, trial: Trial | None, version: str, effective_date: date, reason: str,  # noqa: ANN001
    previewed: str,
) -> Amendment:
    """Apply the upload as the preview said (same run, committed) and record the amendment (who,
    when, version, effective date, reason, files, impact). Refused, nothing written, when the
    impact is no longer what was previewed (`previewed`: impact_digest of the preview)."""
    version, reason = (version or "").strip(), (reason or "").strip()
    errors = {}
    if not version:
        errors["version"] = _("Give the protocol version of this amendment.")
    if not reason:
        errors["reason"] = _("Give the reason for the amendment.")
    if effective_date is None:
        errors["effective_date"] = _("Give the date the amendment takes effect.")
    elif effective_date > timezone.localdate():
        errors["effective_date"] = _("Apply the amendment on the day it takes effect, not before.")
    if errors:
        raise ValidationError(errors)
    with checked_upload(files, user=user, trial=trial) as checked:
        existing = Trial.objects.filter(code=checked.trial_code).first()
        if existing is not None and Amendment.objects.filter(trial=existing, version=version).exists():
            raise ValidationError({"version": _("Version %(v)s of %(trial)s was already applied.") % {"v": version, "trial": existing.code}})
        try:
            result = amendment_run(checked.trial_code, checked.paths, user=user, reason=_("Amendment v%(v)s: %(reason)s") % {"v": version, "reason": reason})
        except ValidationError as error:
            raise BuildError(error.messages) from None
        if impact_digest(result.impact) != previewed:
            raise BuildError([_("The data changed since the preview: preview the file again before applying it.")])
    number = (Amendment.objects.filter(trial=result.trial).order_by("-number").values_list("number", flat=True).first() or 0) + 1
    amendment = audited_save(
        Amendment(
            trial=result.trial, number=number, version=version, effective_date=effective_date, reason=reason,
            applied_by=user, applied_at=timezone.now(), files=files_digest(files), impact=result.impact,
        ),
        user=user, reason=reason,
    )
    if not checked.new_trial and result.trial.quality_rules:
        # Issue 21: the rules run again after an amendment (changed CRFs, visits or rules change
        # what the stored data hit); coalesced with the loader's request when the rules changed.
        quality_run_request(result.trial.pk)
    if checked.new_trial and not user.is_superuser:
        # The study builder who made the trial manages it (a blinded role: no arm is seen).
        study_role_grant(user=user, trial=result.trial, role=Role.DATA_MANAGER, granted_by=system_user(),
                         reason=_("Created the trial through the study build"))
    return amendment


def _superuser_only(actor: Any) -> None:
    if not actor.is_superuser:
        raise ValidationError(_("Only an administrator (superuser) grants or ends the study-builder role."))


@transaction.atomic
def study_builder_grant(*, user, granted_by, reason: str) -> StudyBuilder:  # noqa: ANN001
    """Give `user` the study-builder role (create trials from a file). Superusers only; no one
    grants it to herself, whatever her trial roles."""
    _superuser_only(granted_by)
    if user.pk == granted_by.pk:
        raise ValidationError(_("You cannot grant yourself a role: another administrator must."))
    if not (reason or "").strip():
        raise ValidationError(_("Give the reason for granting this role."))
    builder = StudyBuilder.objects.select_for_update().filter(user=user).first()
    if builder is None:
        return audited_save(StudyBuilder(user=user, granted_by=granted_by), user=granted_by, reason=reason)
    if not builder.is_active:
        builder.is_active, builder.granted_by = True, granted_by
        audited_save(builder, user=granted_by, reason=reason)
    return builder


@transaction.atomic
def study_builder_end(*, builder: StudyBuilder, ended_by, reason: str) -> StudyBuilder:  # noqa: ANN001
    _superuser_only(ended_by)
    if not (reason or "").strip():
        raise ValidationError(_("Give the reason for ending this role."))
    builder = StudyBuilder.objects.select_for_update().get(pk=builder.pk)
    if builder.is_active:
        builder.is_active = False
        audited_save(builder, user=ended_by, reason=reason)
    return builder
