"""Writes to participants. The full lifecycle (eligibility, consent versions, numbering under
concurrency, allocation) is the participants issue; this registers a participant and opens the
visits of the schedule so CRF data can be entered."""

from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from edc.audit import audited_save
from trials.participants.models import Participant, ParticipantStatus
from trials.protocol.models import Site, VisitAnchor
from trials.visits.models import Visit


@transaction.atomic
def participant_register(
    *,
    site: Site,
    screening_number: str,
    consent_date: date | None,
    anchor_date: date | None,
    user,  # noqa: ANN001
    reason: str,
    first_treatment_date: date | None = None,
) -> Participant:
    """Register a participant at a site with one visit per active visit definition of the trial.

    `anchor_date` is the enrolment date; visits anchored at the first treatment get a planned
    date only when `first_treatment_date` is known.
    """
    trial = site.trial
    if Participant.objects.filter(trial=trial, screening_number=screening_number).exists():
        raise ValidationError({"screening_number": _("Screening number %(n)s is already used in this trial.") % {"n": screening_number}})
    participant = audited_save(
        Participant(
            trial=trial, site=site, screening_number=screening_number, consent_date=consent_date,
            status=ParticipantStatus.ENROLLED if anchor_date else ParticipantStatus.SCREENING,
        ),
        user=user,
        reason=reason,
    )
    for definition in trial.visit_definitions.filter(is_active=True).order_by("order"):
        anchor = first_treatment_date if definition.anchor == VisitAnchor.FIRST_TREATMENT else anchor_date
        planned = anchor + timedelta(days=definition.day_offset) if anchor else None
        audited_save(
            Visit(participant=participant, definition=definition, label=definition.label, planned_date=planned, order=definition.order),
            user=user,
            reason=reason,
        )
    return participant
