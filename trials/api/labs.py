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
from django.utils.translation import gettext as _

from trials.api.answers import parse_answers
from trials.protocol.engine import schema_for
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
        for number, row in enumerate(rows, start=1):
            line = {"row": number, "subject": str(row.get("subject", "")), "visit": str(row.get("visit", ""))}
            report.append(line)
            if not isinstance(row, dict):
                line.update(status="error", errors={"row": [_("Give an object per row.")]})
                failed = True
                continue
            errors = _save_row(user, participants, row, line, from_csv=from_csv, reason=reason, confirm_warnings=confirm_warnings)
            if errors:
                line.update(status="error", errors=errors)
                failed = True
        if failed:
            transaction.set_rollback(True)
            for line in report:
                if line.get("status") in {"created", "updated"}:
                    line["status"] = "rolled_back"
    return not failed, report


def _save_row(user, participants, row: dict, line: dict, *, from_csv: bool, reason: str, confirm_warnings: bool) -> dict | None:
    subject, visit_code = str(row.get("subject", "")).strip(), str(row.get("visit", "")).strip()
    participant = participants.filter(subject_number=subject).first() or participants.filter(screening_number=subject).first()
    if not subject or participant is None:
        return {"subject": [_("No participant with this number at your sites.")]}
    visit = Visit.objects.filter(participant=participant, definition__code=visit_code).select_related(
        "participant__trial", "participant__site", "definition"
    ).order_by("sequence").first()
    if visit is None:
        return {"visit": [_("This participant has no visit %(code)s.") % {"code": visit_code}]}
    entry = CrfEntry.objects.filter(visit=visit, crf_code=LABS).select_related("crf").first()
    crf = entry.crf if entry else visit.definition.visit_crfs.filter(crf_code=LABS, is_active=True).select_related("crf").first()
    if crf is None:
        return {"visit": [_("LABS is not collected at visit %(code)s.") % {"code": visit_code}]}
    crf = crf if entry else crf.crf
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
    line.update(status="created" if saved.revision == 1 else "updated", entry=saved.pk, revision=saved.revision)
    return None
