"""What a change of trial data means for its review, called explicitly by the write services of
trials.visits, trials.safety and trials.participants after a successful change (never a signal):
the signatures covering the data break, and the entry's source data verification is reset."""

from __future__ import annotations

from django.utils.translation import gettext as _

from trials.monitoring.signatures import signatures_break
from trials.participants.models import Participant
from trials.visits.models import CrfEntry, Visit


def data_changed(
    *,
    participant: Participant,
    visit: Visit | None = None,
    entry: CrfEntry | None = None,
    user,  # noqa: ANN001
    reason: str,
    signed: bool | None = None,
) -> None:
    """After a change of a participant's data (at a visit, in an entry, or at the participant's
    level: consent, status, AEs …): break the signatures that covered it (the visit's and the
    casebook's), with who changed what and why, and reset the entry's SDV mark.

    `signed=False` says the caller already knows that no valid signature covers the data (the CRF
    first save reads it inside its one query), which spares a query."""
    if entry is not None and visit is None:
        visit = entry.visit
    if signed is not False:
        who = user.get_full_name() or user.username
        if entry is not None:
            what = _("%(crf)s at %(visit)s") % {"crf": entry.crf_code, "visit": visit.label}
        elif visit is not None:
            what = visit.label
        else:
            what = _("participant data")
        why = (reason or "").strip() or _("no reason given")
        signatures_break(
            participant=participant,
            visit=visit,
            user=user,
            reason=_("%(what)s changed by %(who)s: %(why)s") % {"what": what, "who": who, "why": why},
        )
    if entry is not None:
        from trials.monitoring.sdv import sdv_entry_changed

        sdv_entry_changed(entry=entry, user=user)
