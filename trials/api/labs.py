"""Bulk import of laboratory results (the LABS CRF) from a central lab: CSV or JSON, one row per
participant and visit, saved through `crf_entry_save_answers` like a page's save (validation,
CTCAE grades, locks, consent, signatures breaking, SDV reset, audit). All or nothing per file:
every row is tried, each in a savepoint, and any failed row rolls the whole file back; the
answer reports every row."""

from __future__ import annotations

import csv
import io

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from trials.api.answers import parse_answers
from trials.protocol.engine import schema_for
from trials.protocol.models import VisitCrf
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import CrfEntryConflict, UnconfirmedWarnings, crf_entry_save_answers

LABS = "LABS"
ROW_KEYS = frozenset({"subject", "visit", "reason", "complete"})
MAX_ROWS = 20_000
TRUE = frozenset({"1", "true", "yes", "y"})


class ImportRefused(Exception):
    """The file itself is unusable (not CSV/JSON, no rows, too many rows): nothing was read."""


def rows_from_csv(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"subject", "visit"} <= set(reader.fieldnames):
        raise ImportRefused(_("The CSV needs a header line with subject, visit and the LABS item names."))
    rows = []
    for row in reader:
        if None in row:
            raise ImportRefused(_("Line %(n)s has more cells than the header.") % {"n": reader.line_num})
        rows.append({k: v for k, v in row.items() if v not in (None, "")})
    return rows


def _csv_typed(schema, row: dict) -> dict:
    """CSV cells are text: yes/no items become booleans (the JSON import sends them as such)."""
    kinds = {item.name: item.type for item in schema.items}
    return {k: (v.strip().lower() in TRUE if kinds.get(k) == "yes_no" and isinstance(v, str) else v) for k, v in row.items()}


class _Targets:
    """The participants, visits, LABS entries and LABS links a file names, read up front in four
    queries (not four per row); the same choices as one lookup per row: a subject is a subject
    number, else a screening number, of a participant in `participants`; a visit is her first
    (lowest sequence) visit of that code. An entry saved by an earlier row of the file replaces
    the one read up front (`saved`)."""

    def __init__(self, participants, rows: list) -> None:  # noqa: ANN001
        subjects = {str(row.get("subject", "")).strip() for row in rows if isinstance(row, dict)} - {""}
        found = participants.filter(Q(subject_number__in=subjects) | Q(screening_number__in=subjects))
        found = list(found if found.ordered else found.order_by("pk"))
        self.by_subject: dict[str, object] = {}
        self.by_screening: dict[str, object] = {}
        for participant in found:
            if participant.subject_number:
                self.by_subject.setdefault(participant.subject_number, participant)
            if participant.screening_number:
                self.by_screening.setdefault(participant.screening_number, participant)
        codes = {str(row.get("visit", "")).strip() for row in rows if isinstance(row, dict)}
        visits = (
            Visit.objects.filter(participant__in=[p.pk for p in found], definition__code__in=codes)
            .select_related("participant__trial", "participant__site", "definition").order_by("sequence", "pk")
        )
        self.visits: dict[tuple[int, str], Visit] = {}
        for visit in visits:
            self.visits.setdefault((visit.participant_id, visit.definition.code), visit)
        visit_ids = [visit.pk for visit in self.visits.values()]
        self.entries = {e.visit_id: e for e in CrfEntry.objects.filter(visit__in=visit_ids, crf_code=LABS).select_related("crf")}
        links = VisitCrf.objects.filter(
            visit_definition__in={visit.definition_id for visit in self.visits.values()}, crf_code=LABS, is_active=True
        ).select_related("crf")
        self.links: dict[int, VisitCrf] = {}
        for link in links if links.ordered else links.order_by("pk"):
            self.links.setdefault(link.visit_definition_id, link)

    def participant(self, subject: str):  # noqa: ANN201
        return self.by_subject.get(subject) or self.by_screening.get(subject)

    def saved(self, entry: CrfEntry) -> None:
        self.entries[entry.visit_id] = entry


def labs_import(*, user, participants, rows: list[dict], from_csv: bool, reason: str, confirm_warnings: bool) -> tuple[bool, list[dict]]:
    """(imported, per-row report). `participants`: the participants the caller may see (the API's
    scoped queryset); a subject outside it is reported as unknown, as if it did not exist."""
    if not rows:
        raise ImportRefused(_("The file has no rows."))
    if len(rows) > MAX_ROWS:
        raise ImportRefused(_("At most %(n)s rows per file.") % {"n": MAX_ROWS})
    report: list[dict] = []
    failed = False
    with transaction.atomic():
        targets = _Targets(participants, rows)
        for number, row in enumerate(rows, start=1):
            line = {"row": number, "subject": str(row.get("subject", "")), "visit": str(row.get("visit", ""))}
            report.append(line)
            if not isinstance(row, dict):
                line.update(status="error", errors={"row": [_("Give an object per row.")]})
                failed = True
                continue
            errors = _save_row(user, targets, row, line, from_csv=from_csv, reason=reason, confirm_warnings=confirm_warnings)
            if errors:
                line.update(status="error", errors=errors)
                failed = True
        if failed:
            transaction.set_rollback(True)
            for line in report:
                if line.get("status") in {"created", "updated"}:
                    line["status"] = "rolled_back"
    return not failed, report


def _save_row(user, targets: _Targets, row: dict, line: dict, *, from_csv: bool, reason: str, confirm_warnings: bool) -> dict | None:
    subject, visit_code = str(row.get("subject", "")).strip(), str(row.get("visit", "")).strip()
    participant = targets.participant(subject) if subject else None
    if participant is None:
        return {"subject": [_("No participant with this number at your sites.")]}
    visit = targets.visits.get((participant.pk, visit_code))
    if visit is None:
        return {"visit": [_("This participant has no visit %(code)s.") % {"code": visit_code}]}
    entry = targets.entries.get(visit.pk)
    link = None if entry else targets.links.get(visit.definition_id)
    crf = entry.crf if entry else (link.crf if link else None)
    if crf is None:
        return {"visit": [_("LABS is not collected at visit %(code)s.") % {"code": visit_code}]}
    schema = schema_for(crf)
    values = {k: v for k, v in row.items() if k not in ROW_KEYS}
    if from_csv:
        values = _csv_typed(schema, values)
    answers, errors = parse_answers(schema, values)
    if errors:
        return errors
    complete = row.get("complete", True)
    complete = complete.strip().lower() in TRUE if isinstance(complete, str) else bool(complete)
    try:
        with transaction.atomic():
            saved = crf_entry_save_answers(
                user=user, visit=visit, crf_code=LABS, answers=answers, complete=complete,
                reason=str(row.get("reason") or reason or ""), confirm_warnings=confirm_warnings,
            )
    except UnconfirmedWarnings as pending:
        return {w["field"]: [str(w["message"])] for w in pending.warnings} | {"warnings": [_("Soft checks fired: send again with confirm_warnings once checked.")]}
    except PermissionDenied as denied:
        return {"subject": [str(denied)]}
    except ValidationError as invalid:
        return invalid.message_dict if hasattr(invalid, "error_dict") else {"row": invalid.messages}
    except (CrfEntryConflict, IntegrityError):
        return {"row": [_("Someone saved this entry at the same time; import the file again.")]}
    targets.saved(saved)
    line.update(status="created" if saved.revision == 1 else "updated", entry=saved.pk, revision=saved.revision)
    return None
