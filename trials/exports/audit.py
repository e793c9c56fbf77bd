"""The trial-wide audit trail as one CSV file (issue 21: for inspectors), an export format like the
others, so it runs as an export job with its progress bar, download rights and expiry.

One line per changed field, the columns of the participant's audit CSV
(trials.monitoring.audit.trail.csv_rows) preceded by the site and the participant's number, the
participants in site and screening-number order, each trail oldest first. Built per participant
with `participant_trail` (one query per audited model and participant: a job, not a page). Blinded
like every export: a blinded spec builds the trail as a blinded user sees it (no allocation or
unblinding record), leaves out the allocation's kit and slot (the page shows a blinded monitor
the kit code; a file leaves the EDC) and masks every arm code and label in its texts
(`selectors.arm_mask`). Identifying CRF items (`identifier: true`) are left out unless the spec asks
for identifiers, as in the other formats. With a cut-off, only the saves recorded before the end of
the cut-off day.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import BinaryIO

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from trials.exports import selectors
from trials.exports.spec import ExportSpec, Progress
from trials.monitoring.audit.trail import CSV_HEADER, csv_rows, participant_trail
from trials.participants.models import AllocationSlot, Participant
from trials.protocol.models import FieldDefinition

# Allocation fields a blinded file never carries (the arm itself is already withheld by the trail).
BLINDED_FIELDS = frozenset({"kit_code", "slot", "arm"})
FIELD = CSV_HEADER.index("field")


def _participants(spec: ExportSpec):  # noqa: ANN202
    return (
        Participant.objects.filter(trial_id=spec.trial_id, site_id__in=selectors.export_site_ids(spec))
        .select_related("site", "trial").order_by("site__code", "screening_number", "pk")
    )


def text_mask(spec: ExportSpec) -> Callable[[str], str]:
    """Arm codes and labels (`selectors.arm_mask`) and, in a blinded file, every kit code of the
    trial's lists (reasons such as "Randomized (kit KA4W7RX)"): a kit code leads to the list's arm.
    Every code of the lists is masked, allocated or not, so the masking itself says nothing."""
    arms = selectors.arm_mask(spec) or (lambda text: text)
    if not spec.blinded:
        return arms
    kits = sorted(set(AllocationSlot.objects.filter(allocation_list__trial_id=spec.trial_id).values_list("kit_code", flat=True)) - {""},
                  key=len, reverse=True)
    if not kits:
        return arms
    pattern = re.compile("|".join(re.escape(k) for k in kits), re.IGNORECASE)
    return lambda text: pattern.sub(selectors.BLINDED_WORD, arms(text)) if text else text


def count(spec: ExportSpec) -> int:
    """Progress counts participants (their trails are read one at a time)."""
    return _participants(spec).count()


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    if spec.trial_id is None or not selectors.export_trials(spec).exists():
        raise PermissionDenied(_("You no longer have access to this trial."))
    user = selectors.export_user(spec)
    mask = text_mask(spec)
    end = selectors.cutoff_end(spec)
    withheld = set(BLINDED_FIELDS) if spec.blinded else set()
    if not spec.identifiers:
        withheld |= set(FieldDefinition.objects.filter(identifier=True).values_list("name", flat=True))
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    text.write("\ufeff")  # spreadsheets then read UTF-8
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("site", "participant", *CSV_HEADER))
    for participant in _participants(spec).iterator(chunk_size=200):
        trail = participant_trail(user, participant, blinded=spec.blinded)
        if end is not None:
            trail = [row for row in trail if row.at < end]
        lines = csv_rows(trail, participant.site.time_zone)
        next(lines)  # the header, written once above
        for line in lines:
            if line[FIELD].rsplit(".", 1)[-1] in withheld:
                continue
            writer.writerow((participant.site.code, participant.number, *(mask(cell) for cell in line)))
        progress(1)
    text.flush()
    text.detach()
