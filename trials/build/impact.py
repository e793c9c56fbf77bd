"""The impact of an amendment on live data, and the amendment itself.

`amendment_run` does what applying does: load the files through the loader (which validates and
writes the trial and new CRF versions), re-plan the not-yet-done visits of the trial's
participants and create the visits of new definitions; it compares the state before and after
and returns the impact. The preview runs it inside a transaction that is rolled back (nothing is
written, audit rows included); applying runs the very same function and commits, so the change
applied is the change previewed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Q

from trials.monitoring.models import OPEN_QUERY_STATES, Query
from trials.participants import eligibility
from trials.participants.models import IN_FOLLOW_UP, Participant, ParticipantStatus
from trials.protocol.loader import protocol_load
from trials.protocol.models import ConsentDocument, CrfDefinition, Trial, TrialCrf, VisitCrf, VisitKind
from trials.records.models import SdvMark, SdvState, Signature, SignatureState
from trials.visits.models import CrfEntry, EntryStatus
from trials.visits.schedule import SCHEDULED_STATUSES, schedule_generate, schedule_recompute

# Participants whose eligibility an amended criterion may call into question.
ELIGIBILITY_STATUSES = (ParticipantStatus.SCREENING, *IN_FOLLOW_UP)


class _Rollback(Exception):
    """Raised at the end of a preview so that its transaction is rolled back."""


# --- CRF items -------------------------------------------------------------------------------


def _items(definition: dict) -> dict[str, dict]:
    """A CRF version's items by name (`group.item` inside a repeating group), with what a data
    manager compares: type, choices (codes and labels), checks, limits, required, branching."""
    codelists = definition.get("codelists") or {}
    out: dict[str, dict] = {}

    def walk(fields: list[dict], prefix: str) -> None:
        for field in fields:
            choices = field.get("choices")
            if isinstance(choices, str):
                choices = codelists.get(choices) or []
            out[prefix + field["name"]] = {
                "type": field["type"],
                "choices": [[c["code"], c["label"]] for c in choices or []],
                "checks": [c["expression"] for c in field.get("checks") or []],
                "min": field.get("min"),
                "max": field.get("max"),
                "required": bool(field.get("required")),
                "show_if": field.get("show_if") or "",
            }
            if field.get("fields"):
                walk(field["fields"], prefix + field["name"] + ".")

    walk(definition.get("fields") or [], "")
    return out


def crf_changes(old: dict | None, new: dict) -> list[dict]:
    """Item by item, what a new CRF version changes: added, removed, type, choices, checks."""
    if old is None:
        return [{"item": name, "change": "added", "detail": item["type"]} for name, item in _items(new).items()]
    before, after = _items(old), _items(new)
    changes = []
    for name, item in after.items():
        was = before.get(name)
        if was is None:
            changes.append({"item": name, "change": "added", "detail": item["type"]})
            continue
        if was["type"] != item["type"]:
            changes.append({"item": name, "change": "type", "detail": f"{was['type']} → {item['type']}"})
        if was["choices"] != item["choices"]:
            old_codes, new_codes = [c[0] for c in was["choices"]], [c[0] for c in item["choices"]]
            removed = [str(c) for c in old_codes if c not in new_codes]
            added = [str(c) for c in new_codes if c not in old_codes]
            detail = "; ".join(filter(None, [
                f"removed: {', '.join(removed)}" if removed else "", f"added: {', '.join(added)}" if added else "",
                "labels changed" if not removed and not added else "",
            ]))
            changes.append({"item": name, "change": "choices", "detail": detail})
        if was["checks"] != item["checks"] or (was["min"], was["max"]) != (item["min"], item["max"]):
            changes.append({"item": name, "change": "checks", "detail": "; ".join(item["checks"]) or f"min {item['min']}, max {item['max']}"})
        if was["show_if"] != item["show_if"]:
            changes.append({"item": name, "change": "branching", "detail": item["show_if"]})
        if was["required"] != item["required"]:
            changes.append({"item": name, "change": "required", "detail": str(item["required"])})
    for name, was in before.items():
        if name not in after:
            changes.append({"item": name, "change": "removed", "detail": was["type"]})
    return changes


def _not_carried(answers: dict, old: dict, new: dict) -> tuple[list[str], list[str]]:
    """Items of an entry that a migration to the new version would drop (the rule of
    trials.visits.services.crf_entry_migrate: same name and type are carried), and items carried
    whose value is no longer one of the choices."""
    before, after = _items(old), _items(new)
    dropped, invalid = [], []

    def filled(value: Any) -> bool:
        return value not in (None, "", [])

    def look(name: str, value: Any) -> None:
        if not filled(value):
            return
        was, item = before.get(name), after.get(name)
        if item is None or was is None or was["type"] != item["type"]:
            dropped.append(name)
        elif item["choices"]:
            codes = {c[0] for c in item["choices"]}
            values = value if isinstance(value, list) else [value]
            if any(v not in codes for v in values if v is not None):
                invalid.append(name)

    for name, value in answers.items():
        item = after.get(name)
        if isinstance(value, list) and before.get(name, {}).get("type") == "repeating_group":
            if item is None or item["type"] != "repeating_group":
                if filled(value):
                    dropped.append(name)
                continue
            for row in value:
                for child, child_value in row.items():
                    if child != "_row_id":
                        look(f"{name}.{child}", child_value)
        else:
            look(name, value)
    return sorted(set(dropped)), sorted(set(invalid))


# --- The run ---------------------------------------------------------------------------------


def _participant_label(participant: Participant) -> str:
    return participant.subject_number or participant.screening_number


def _crf_versions_of(trial: Trial | None) -> dict[str, CrfDefinition]:
    """The CRF version each CRF code of the trial's schedule, logs and unscheduled visits points at."""
    if trial is None:
        return {}
    links = [*VisitCrf.objects.filter(visit_definition__trial=trial, is_active=True).select_related("crf"),
             *TrialCrf.objects.filter(trial=trial, is_active=True).select_related("crf")]
    out: dict[str, CrfDefinition] = {}
    for link in links:
        if link.crf_code not in out or link.crf.version > out[link.crf_code].version:
            out[link.crf_code] = link.crf
    return out


def _visits(trial_code: str) -> dict[int, dict]:
    from trials.visits.models import Visit

    return {
        v.pk: {
            "participant": _participant_label(v.participant), "site": v.participant.site.code, "visit": v.label,
            "code": v.definition.code if v.definition_id else "", "status": v.status,
            "planned": v.planned_date, "start": v.window_start, "end": v.window_end,
        }
        for v in Visit.objects.filter(participant__trial__code=trial_code).select_related("participant__site", "definition").order_by("participant__screening_number", "order", "sequence", "pk")
    }


def _eligibility(trial_code: str) -> dict[int, tuple[bool | None, str]]:
    out = {}
    for participant in Participant.objects.filter(trial__code=trial_code, status__in=ELIGIBILITY_STATUSES).select_related("trial", "site").order_by("screening_number"):
        assessment = eligibility.assess(participant)
        out[participant.pk] = (assessment.eligible, assessment.summary())
    return out


def _criteria(trial: Trial | None) -> dict[str, dict]:
    if trial is None:
        return {}
    return {
        c.code: {"kind": c.kind, "level": c.level, "text": c.text, "expression": c.expression, "applies_when": c.applies_when}
        for c in trial.criteria.filter(is_active=True)
    }


def _definitions(trial: Trial | None) -> dict[str, dict]:
    if trial is None:
        return {}
    return {
        d.code: {"anchor": d.anchor, "day_offset": d.day_offset, "before": d.window_before_days, "after": d.window_after_days}
        for d in trial.visit_definitions.filter(is_active=True)
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


@dataclass
class RunResult:
    impact: dict
    trial: Trial


def amendment_run(trial_code: str, paths: Sequence[Path], *, user: Any, reason: str) -> RunResult:
    """Apply the files and measure what they did to the trial's live data (see the module). Runs
    in the caller's transaction; the caller commits (apply) or rolls back (preview)."""
    existing = Trial.objects.filter(code=trial_code).first()
    crfs_before = _crf_versions_of(existing)
    criteria_before, definitions_before = _criteria(existing), _definitions(existing)
    consent_before = set(ConsentDocument.objects.filter(trial=existing).values_list("version", flat=True)) if existing else set()
    visits_before = _visits(trial_code)
    eligible_before = _eligibility(trial_code)

    report = protocol_load(paths, user=user)
    trial = Trial.objects.get(code=trial_code)

    # Visits: re-plan those not done (schedule_recompute leaves done, missed and not-done visits
    # alone), then create the visits of new definitions, as the schedule does at enrolment.
    for participant in Participant.objects.filter(trial=trial, status__in=SCHEDULED_STATUSES).select_related("trial", "site").order_by("pk"):
        schedule_recompute(participant, user=user, reason=reason)
        kinds = {VisitKind.SCREENING} if participant.status == ParticipantStatus.SCREENING else None
        schedule_generate(participant, user=user, reason=reason, kinds=kinds)
    visits_after = _visits(trial_code)
    moved, new_visits = [], []
    for pk, after in visits_after.items():
        before = visits_before.get(pk)
        row = {"participant": after["participant"], "site": after["site"], "visit": after["visit"], "code": after["code"],
               "planned": _iso(after["planned"]), "window": f"{_iso(after['start'])} – {_iso(after['end'])}"}
        if before is None:
            new_visits.append(row)
        elif (before["planned"], before["start"], before["end"]) != (after["planned"], after["start"], after["end"]):
            moved.append({**row, "was_planned": _iso(before["planned"]), "was_window": f"{_iso(before['start'])} – {_iso(before['end'])}"})

    # CRFs: the versions this trial now uses that it did not use before, item by item.
    crfs_after = _crf_versions_of(trial)
    crfs = []
    for code, new in sorted(crfs_after.items()):
        old = crfs_before.get(code)
        if old is not None and old.pk == new.pk:
            continue
        crfs.append({
            "crf": code, "version": new.version, "was_version": old.version if old else None, "title": new.title,
            "changes": crf_changes(old.definition if old else None, new.definition),
        })
    changed_codes = {c["crf"]: crfs_after[c["crf"]] for c in crfs if c["was_version"] is not None}

    # Entries on an older version of a changed CRF, and what they hold that is touched.
    entries, touched_entries = [], []
    for entry in CrfEntry.objects.filter(participant__trial=trial, crf_code__in=changed_codes).exclude(
        status=EntryStatus.NOT_STARTED, answers={}
    ).select_related("participant", "visit", "crf").order_by("participant__screening_number", "visit__order", "crf_code"):
        newest = changed_codes[entry.crf_code]
        if entry.crf_id == newest.pk:
            continue
        dropped, invalid = _not_carried(entry.answers, entry.crf.definition, newest.definition)
        entries.append({
            "participant": _participant_label(entry.participant), "visit": entry.visit.label, "crf": entry.crf_code,
            "from_version": entry.crf.version, "to_version": newest.version, "status": entry.status,
            "not_carried": dropped, "not_a_choice": invalid,
        })
        touched_entries.append(entry)
    # An item queried is touched when it, or its repeating group, changes ("ulcers.location":
    # a query on "location" of a row, or on the whole "ulcers" group).
    changed_items = {(c["crf"], part) for c in crfs for ch in c["changes"] for part in ch["item"].split(".")}
    entry_ids = [e.pk for e in touched_entries]
    queries = [
        {"participant": _participant_label(q.participant), "crf": q.entry.crf_code, "item": q.item or "", "state": q.state,
         "text": q.text[:120]}
        for q in Query.objects.filter(entry_id__in=entry_ids, state__in=OPEN_QUERY_STATES).select_related("participant", "entry").order_by("pk")
        if not q.item or (q.entry.crf_code, q.item) in changed_items
    ]
    sdv = [
        {"participant": _participant_label(m.entry.participant), "visit": m.entry.visit.label, "crf": m.entry.crf_code}
        for m in SdvMark.objects.filter(entry_id__in=entry_ids, state=SdvState.VERIFIED).select_related("entry__participant", "entry__visit").order_by("pk")
    ]
    visit_ids = {e.visit_id for e in touched_entries}
    participant_ids = {e.participant_id for e in touched_entries}
    signatures = [
        {"participant": _participant_label(s.participant), "visit": s.visit.label if s.visit_id else "", "signed_at": _iso(s.signed_at)}
        for s in Signature.objects.filter(state=SignatureState.VALID).filter(
            Q(visit_id__in=visit_ids) | Q(visit__isnull=True, participant_id__in=participant_ids)
        ).select_related("participant", "visit").order_by("pk")
    ]

    # Criteria and eligibility.
    criteria_after = _criteria(trial)
    criteria = []
    for code in sorted(set(criteria_before) | set(criteria_after)):
        was, now = criteria_before.get(code), criteria_after.get(code)
        if was == now:
            continue
        change = "added" if was is None else "removed" if now is None else "changed"
        fields = sorted(k for k in (now or was) if (was or {}).get(k) != (now or {}).get(k)) if change == "changed" else []
        criteria.append({"criterion": code, "change": change, "fields": fields,
                         "text": (now or was)["text"], "expression": (now or was)["expression"],
                         "was_expression": (was or {}).get("expression", "")})
    no_longer_eligible = []
    if criteria:
        eligible_after = _eligibility(trial_code)
        labels = {p.pk: p for p in Participant.objects.filter(pk__in=eligible_after).select_related("site")}
        for pk, (now, summary) in eligible_after.items():
            was = eligible_before.get(pk, (None, ""))[0]
            if now is False and was is not False:
                participant = labels[pk]
                no_longer_eligible.append({"participant": _participant_label(participant), "site": participant.site.code,
                                           "status": participant.status, "why": summary})

    # Visit definitions.
    definitions_after = _definitions(trial)
    definitions = [
        {"visit": code, "change": "added" if code not in definitions_before else "removed" if code not in definitions_after else "changed",
         "was": definitions_before.get(code), "now": definitions_after.get(code)}
        for code in sorted(set(definitions_before) | set(definitions_after))
        if definitions_before.get(code) != definitions_after.get(code)
    ]

    # Consent: a new version asks every participant consented to an older one to consent again.
    new_consents = sorted(set(ConsentDocument.objects.filter(trial=trial).values_list("version", flat=True)) - consent_before)
    reconsent = []
    if new_consents and existing is not None:
        for participant in Participant.objects.filter(trial=trial, status__in=SCHEDULED_STATUSES).select_related("consent_document", "site").order_by("screening_number"):
            version = participant.consent_document.version if participant.consent_document_id else ""
            reconsent.append({"participant": _participant_label(participant), "site": participant.site.code,
                              "consented_to": version, "new_versions": new_consents})

    impact = {
        "trial": trial_code,
        "new_trial": existing is None,
        "rows": {"created": report.created, "updated": report.updated, "deactivated": report.deactivated},
        "crfs": crfs,
        "entries": entries,
        "visit_definitions": definitions,
        "visits_moved": moved,
        "visits_new": new_visits,
        "criteria": criteria,
        "no_longer_eligible": no_longer_eligible,
        "queries": queries,
        "sdv": sdv,
        "signatures": signatures,
        "consent_versions": new_consents,
        "reconsent": reconsent,
    }
    return RunResult(impact=impact, trial=trial)


def amendment_preview(trial_code: str, paths: Sequence[Path], *, user: Any) -> dict:
    """The impact of applying `paths`, computed in a transaction that is rolled back: nothing is
    written (trial rows, visits, audit rows). Loader problems raise ProtocolLoadError."""
    result: dict = {}
    try:
        with transaction.atomic():
            result = amendment_run(trial_code, paths, user=user, reason="Amendment preview (rolled back)").impact
            raise _Rollback
    except _Rollback:
        pass
    return result


def impact_rows(impact: dict) -> list[list[str]]:
    """The impact as flat rows (section, participant, subject, detail) for the CSV download."""
    rows = [["section", "participant", "subject", "detail"]]
    for crf in impact.get("crfs", []):
        for change in crf["changes"]:
            rows.append(["crf", "", f"{crf['crf']} v{crf['was_version']} → v{crf['version']}: {change['item']}", f"{change['change']}: {change['detail']}"])
    for entry in impact.get("entries", []):
        rows.append(["entry", entry["participant"], f"{entry['visit']} {entry['crf']} v{entry['from_version']} → v{entry['to_version']}",
                     f"not carried: {', '.join(entry['not_carried']) or '-'}; not a choice: {', '.join(entry['not_a_choice']) or '-'}"])
    for row in impact.get("visit_definitions", []):
        rows.append(["visit definition", "", row["visit"], f"{row['change']}: {row['was']} → {row['now']}"])
    for row in impact.get("visits_moved", []):
        rows.append(["visit moved", row["participant"], row["visit"], f"{row['was_window']} → {row['window']}"])
    for row in impact.get("visits_new", []):
        rows.append(["visit new", row["participant"], row["visit"], row["window"]])
    for row in impact.get("criteria", []):
        rows.append(["criterion", "", row["criterion"], f"{row['change']}: {row['was_expression']} → {row['expression']}"])
    for row in impact.get("no_longer_eligible", []):
        rows.append(["no longer eligible", row["participant"], row["status"], row["why"]])
    for row in impact.get("queries", []):
        rows.append(["open query", row["participant"], f"{row['crf']} {row['item']}", row["text"]])
    for row in impact.get("sdv", []):
        rows.append(["sdv", row["participant"], f"{row['visit']} {row['crf']}", "verified"])
    for row in impact.get("signatures", []):
        rows.append(["signature", row["participant"], row["visit"] or "casebook", row["signed_at"]])
    for row in impact.get("reconsent", []):
        rows.append(["re-consent", row["participant"], row["consented_to"], ", ".join(row["new_versions"])])
    return rows

