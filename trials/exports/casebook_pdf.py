"""The participant casebook as a PDF, for the site's archive at close-out: every CRF entry as the
site sees it (each item's label and value, or its missing-data reason), the adverse events, the
queries with their threads, the signatures and the participant's audit trail (ICH E6(R3) 4.9:
the investigator keeps the source and CRF records with their changes).

Two ways out:
- one participant's casebook, downloaded by a monitor or data manager of her site
  (`casebook_participant` scopes it; another site's participant does not exist for them);
- the whole trial's casebooks (a zip of PDFs, one per participant, by site) as an export job
  (format "casebooks"), with the job's progress counted in participants.

Blinding: a casebook never shows the allocation; the audit trail leaves out allocation records
unless the output is unblinded (`participant_trail_as`), and a blinded casebook of a masked
trial passes through the arm mask (every arm code and label in free text becomes "[blinded]").
Identifiers: a participant's casebook for her site keeps identifying items (the site holds
them); the trial-wide export leaves them out, from the CRFs and from the audit trail, unless the
data manager asked for them (`spec.identifiers`), as every other export does.
"""

from __future__ import annotations

import html
import re
import zipfile
from collections.abc import Callable
from typing import Any

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import get_language

from trials.exports import selectors
from trials.exports.pdf import render_pdf
from trials.exports.spec import ExportSpec, Progress
from trials.monitoring.audit.trail import _answer_text, _missing_text, participant_trail_as
from trials.monitoring.models import Query, QueryMessage
from trials.participants.models import Participant
from trials.protocol.engine import ROW_ID, CrfSchema, schema_for
from trials.protocol.models import Arm, Role, Site, Trial
from trials.protocol.selectors import study_roles_for_user, user_sees_allocation
from trials.records.models import Signature
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry, Visit

TEMPLATE = "exports/pdf/casebook.html"
ALLOCATION_MODEL = "participants.allocation"
# Who downloads one participant's casebook: the site's monitors and the data managers.
CASEBOOK_ROLES = frozenset({Role.MONITOR, Role.DATA_MANAGER})


# --- Scope ------------------------------------------------------------------------------------


def casebook_sites(user) -> QuerySet[Site]:
    """Sites whose casebooks the user may download: every site of a trial for an all-sites monitor
    or data manager, else the sites of her site-bound roles."""
    if user.is_authenticated and user.is_superuser:
        return Site.objects.all()
    roles = study_roles_for_user(user).filter(role__in=CASEBOOK_ROLES)
    return Site.objects.filter(
        pk__in=[r.site_id for r in roles if r.site_id]
    ) | Site.objects.filter(trial_id__in=[r.trial_id for r in roles if r.site_id is None])


def casebook_participant(user, pk: int) -> Participant | None:
    """The participant, if the user may download her casebook (None: the page answers 404)."""
    return (
        Participant.objects.filter(pk=pk, site__in=casebook_sites(user))
        .select_related("trial", "site", "consent_document").first()
    )


# --- Blinding ---------------------------------------------------------------------------------


def trial_arm_mask(trial: Trial) -> Callable[[str], str] | None:
    """For a masked trial: every arm code and label (as text and HTML-escaped, as the rendered
    page holds them) replaced by "[blinded]"; the same rule as the exports' `arm_mask`, for an
    output that is not an export job (a monitor's download). None for an open-label trial."""
    if not trial.is_blinded:
        return None
    words = {w.strip() for pair in Arm.objects.filter(trial=trial).values_list("code", "label") for w in pair}
    words |= {html.escape(w) for w in words}
    words = sorted((w for w in words if w), key=len, reverse=True)
    if not words:
        return None
    pattern = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])", re.IGNORECASE)
    return lambda text: pattern.sub(selectors.BLINDED_WORD, text) if text else text


# --- Content ----------------------------------------------------------------------------------


def _value(item, answers: dict, missing: dict) -> tuple[str, str]:
    """(value, missing-data reason) of one item."""
    value = answers.get(item.name)
    if value not in (None, "", []):
        return _answer_text(item, value), ""
    if item.name in missing:
        return "", _missing_text(missing[item.name])
    return "", ""


def entry_items(schema: CrfSchema, answers: dict, missing: dict, hidden: dict[str | None, frozenset[str]]) -> list[dict[str, Any]]:
    """Every item of the CRF in its order, as the form shows it: label, unit, value or missing
    reason; a repeating group as a table of its rows. Items in `hidden` (identifiers left out)
    are absent, label included."""
    answers, missing = answers or {}, missing or {}
    top_hidden = hidden.get(None, frozenset())
    rows: list[dict[str, Any]] = []
    for item in schema.items:
        if item.name in top_hidden:
            continue
        if item.type == "repeating_group":
            children = [c for c in item.children if c.name not in hidden.get(item.name, frozenset())]
            group_missing = missing.get(item.name) if isinstance(missing.get(item.name), dict) else {}
            table = []
            for position, row in enumerate(answers.get(item.name) or [], start=1):
                row_missing = (group_missing or {}).get(str(row.get(ROW_ID)), {}) or {}
                cells = [_value(c, row, row_missing) for c in children]
                # One small label/value table per row: a group's many columns would not fit across A4.
                table.append({"n": position, "pairs": [(c.label, *cell) for c, cell in zip(children, cells, strict=True)]})
            rows.append({"group": True, "label": item.label, "section": item.section,
                         "columns": [c.label for c in children], "rows": table})
            continue
        value, reason = _value(item, answers, missing)
        rows.append({"group": False, "label": item.label, "name": item.name, "unit": item.unit, "section": item.section,
                     "value": value, "missing": reason})
    return rows


def casebook_context(participant: Participant, *, sees_allocation: bool, identifiers: bool,
                     crf_codes: tuple[str, ...] = (), as_of: datetime | None = None) -> dict[str, Any]:
    """Everything the casebook prints, read in a fixed number of queries per participant.
    `as_of` (the end of an export's cut-off day): the CRF entries, visits, adverse events and
    signatures as recorded then (each row's last historical version before it), the queries
    raised and the messages and audit-trail rows written before it; None: the data as they stand."""
    mine = Q(participant_id=participant.pk)
    entries = (
        selectors._source(CrfEntry, mine, as_of).select_related("crf", "visit")
        .order_by("visit__order", "visit__sequence", "crf_code")
    )
    if crf_codes:
        entries = entries.filter(crf_code__in=crf_codes)
    entries = list(entries)
    hidden_by_crf = {} if identifiers else selectors.identifier_items({e.crf_id for e in entries})
    by_visit: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        schema = schema_for(entry.crf, get_language())  # the requester's language (docs/architecture.md)
        by_visit.setdefault(entry.visit_id, []).append({
            "entry": entry, "title": schema.title, "version": schema.version,
            "items": entry_items(schema, entry.answers, entry.missing, hidden_by_crf.get(entry.crf_id, {})),
        })
    visits = [
        {"visit": visit, "entries": by_visit.get(visit.id, [])}
        for visit in selectors._source(Visit, mine, as_of).order_by("order", "sequence")
        if visit.id in by_visit or visit.visit_date
    ]
    queries = list(
        Query.objects.filter(participant=participant).select_related("entry__visit", "raised_by", "closed_by")
        .filter(**({"raised_at__lt": as_of} if as_of else {}))
        .prefetch_related(Prefetch("messages", queryset=QueryMessage.objects.filter(**({"at__lt": as_of} if as_of else {}))
                                   .select_related("author").order_by("at", "pk")))
        .order_by("raised_at", "pk")
    )
    signatures = list(selectors._source(Signature, mine, as_of).select_related("visit", "signer").order_by("signed_at", "pk"))
    hidden_names = {name for crf in hidden_by_crf.values() for names in crf.values() for name in names}
    trail = participant_trail_as(participant, sees_allocation=sees_allocation)
    if as_of is not None:
        trail = [row for row in trail if row.at < as_of]
    if not sees_allocation:
        # The trail shows a blinded user the allocation record without its arm (the kit code, the
        # stratum); a blinded casebook, like every blinded export, carries no kit code either.
        trail = [row for row in trail if row.model != ALLOCATION_MODEL]
    if hidden_names:
        trail = [
            {"row": row, "changes": [c for c in row.changes if c.field not in hidden_names]}
            for row in trail
        ]
    else:
        trail = [{"row": row, "changes": list(row.changes)} for row in trail]
    return {
        "participant": participant, "trial": participant.trial, "site": participant.site,
        "visits": visits, "adverse_events": list(selectors._source(AdverseEvent, mine, as_of).select_related("coded_term").order_by("number")),
        "queries": queries, "signatures": signatures, "trail": trail,
        "identifiers": identifiers, "generated_at": timezone.now(), "as_of": as_of,
    }


def casebook_pdf(participant: Participant, *, sees_allocation: bool, identifiers: bool, blinded: bool,
                 crf_codes: tuple[str, ...] = (), mask: Callable[[str], str] | None = None, as_of: datetime | None = None) -> bytes:
    """One participant's casebook as PDF bytes; `blinded` masks arm words (see the module docstring);
    `as_of`: the data as recorded then (see casebook_context)."""
    context = casebook_context(participant, sees_allocation=sees_allocation, identifiers=identifiers, crf_codes=crf_codes, as_of=as_of)
    context["blinded"] = blinded
    if blinded and mask is None:
        mask = trial_arm_mask(participant.trial)
    return render_pdf(TEMPLATE, context, mask=mask if blinded else None)


def participant_casebook_pdf(user, participant: Participant) -> bytes:
    """The casebook a monitor or data manager downloads for her site (identifiers kept: the site
    holds them), blinded unless her roles see the trial's arms."""
    sees = user_sees_allocation(user, participant.trial)
    return casebook_pdf(participant, sees_allocation=sees, identifiers=True, blinded=participant.trial.is_blinded and not sees)


# --- The trial's casebooks as an export job ---------------------------------------------------


def _participants(spec: ExportSpec) -> QuerySet[Participant]:
    return (
        Participant.objects.filter(trial_id=spec.trial_id, site_id__in=selectors.export_site_ids(spec))
        .select_related("trial", "site").order_by("site__code", "screening_number")
    )


def count(spec: ExportSpec) -> int:
    """The progress bar's total: one step per participant."""
    return _participants(spec).count() if spec.trial_id else 0


def write(spec: ExportSpec, out, progress: Progress) -> None:
    """A zip of one PDF per participant (<site>/<subject>.pdf) of the export's sites."""
    if spec.trial_id is None:
        raise ValueError("Casebooks are exported per trial.")
    mask = trial_arm_mask(Trial.objects.get(pk=spec.trial_id)) if spec.blinded else None
    as_of = selectors.cutoff_end(spec)  # the export's cut-off: the data and audit trail as recorded by then
    # In the requester's language (kept on the job when she asked), as her own download would be.
    language = spec.options.get("language") or settings.LANGUAGE_CODE
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive, translation.override(language):
        for participant in _participants(spec).iterator(chunk_size=100):
            data = casebook_pdf(
                participant, sees_allocation=not spec.blinded, identifiers=spec.identifiers, blinded=spec.blinded,
                crf_codes=spec.crf_codes, mask=mask, as_of=as_of,
            )
            archive.writestr(f"{participant.site.code}/{participant}.pdf", data)
            progress(1)
