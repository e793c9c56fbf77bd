"""Writes of CRF data: every save is validated, conflict-checked and audited here."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.participants.selectors import user_enters_data_at
from trials.protocol.models import VisitCrf
from trials.visits import scores
from trials.visits.engine import Outcome, schema_for
from trials.visits.forms import CrfSubmission
from trials.visits.models import CrfEntry, EntryStatus, Visit


class CrfEntryConflict(Exception):
    """Someone saved this entry since the form was opened; nothing was overwritten."""

    def __init__(self, entry: CrfEntry):
        self.entry = entry
        super().__init__(f"{entry} changed (now revision {entry.revision})")


@dataclass
class SaveResult:
    entry: CrfEntry
    outcome: Outcome
    saved: bool = False
    needs_confirmation: bool = False


def entry_context(visit: Visit) -> dict:
    """What expressions and scores may use besides the answers: dates at the participant's site."""
    site_today = timezone.localdate(timezone=_zone(visit.participant.site.time_zone))
    participant = visit.participant
    return {
        "today": site_today.isoformat(),
        "visit_date": (visit.visit_date or site_today).isoformat(),
        "consent_date": participant.consent_date.isoformat() if participant.consent_date else None,
    }


def _zone(name: str):  # noqa: ANN202
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def crf_entry_for(visit: Visit, crf_code: str) -> CrfEntry:
    """The visit's entry of a CRF, or a new unsaved one on the CRF version the visit asks for."""
    try:
        return CrfEntry.objects.select_related("crf").get(visit=visit, crf_code=crf_code)
    except CrfEntry.DoesNotExist:
        try:
            link = VisitCrf.objects.select_related("crf").get(visit_definition=visit.definition_id, crf_code=crf_code, is_active=True)
        except VisitCrf.DoesNotExist:
            raise ValidationError(_("CRF %(code)s is not part of this visit.") % {"code": crf_code}) from None
        return CrfEntry(participant=visit.participant, visit=visit, crf=link.crf, crf_code=crf_code)


@transaction.atomic
def crf_entry_save(
    *,
    user,  # noqa: ANN001
    visit: Visit,
    crf_code: str,
    data,  # noqa: ANN001 - the submitted QueryDict
    expected_revision: int,
    complete: bool,
    confirm_warnings: bool = False,
    reason: str = "",
) -> SaveResult:
    """Validate and save a CRF submission; a stale revision raises CrfEntryConflict and writes nothing."""
    if not user_enters_data_at(user, visit.participant):
        raise PermissionDenied(_("You do not enter data at this site."))
    entry = crf_entry_for(visit, crf_code)
    if entry.pk is not None:
        entry = CrfEntry.objects.select_for_update().select_related("crf").get(pk=entry.pk)
    if entry.revision != expected_revision:
        raise CrfEntryConflict(entry)
    submission = CrfSubmission(schema_for(entry.crf), data=data, context=entry_context(visit))
    outcome = submission.validate()
    result = SaveResult(entry=entry, outcome=outcome)
    result.submission = submission  # type: ignore[attr-defined]
    if not outcome.is_valid:
        return result
    if outcome.warnings and not confirm_warnings:
        result.needs_confirmation = True
        return result
    reason = reason.strip()
    if entry.status == EntryStatus.COMPLETE and not reason:
        submission.form.add_error(None, _("This entry is complete: give a reason for the change."))
        outcome.errors.setdefault("__all__", []).append(_("This entry is complete: give a reason for the change."))
        return result
    entry.answers = outcome.answers
    entry.missing = outcome.missing
    entry.warnings = [{**w, "confirmed_by": user.username} for w in outcome.warnings]
    entry.status = EntryStatus.COMPLETE if complete else EntryStatus.IN_PROGRESS
    entry.revision += 1
    entry.score_library_version = scores.SCORE_LIBRARY_VERSION
    try:
        with transaction.atomic():
            audited_save(entry, user=user, reason=reason or (_("Data entry") if entry.revision == 1 else _("Data entry (in progress)")))
    except IntegrityError:
        # Two first saves of the same CRF at once: the other one won; show hers.
        raise CrfEntryConflict(CrfEntry.objects.get(visit=visit, crf_code=crf_code)) from None
    result.saved = True
    return result
