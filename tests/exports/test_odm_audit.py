"""The audit trail as ODM 1.3.2 transactions (format "odm_audit", issues 17 and 21): every change of
every CRF item as an ItemData with TransactionType Insert/Update/Remove and its AuditRecord (who,
where, when, why, which history row), valid against the official schema.

The number of AuditRecords is checked against the item changes counted here, independently of the
export's code, from the history table of the CRF entries: consecutive versions of each entry
compared item by item the way ODM items are defined (a multiple choice is one yes/no item per
choice, a repeating group's row carries its row id, an item answered with a missing-data code is
an item with a value). Blinding and identifiers are covered by test_blinding.py (parametrized over
every format)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.exports.test_odm import (  # noqa: F401 - _trial_data and trial_data are fixtures
    NS, SEED_SITES, _trial_data, export_bytes, parse_valid, spec_for, trial_data, user,
)
from trials.exports import odm_audit
from trials.exports.formats import format_get
from trials.exports.selectors import export_crf_codes
from trials.protocol.engine import ROW_ID, schema_for
from trials.protocol.models import CrfDefinition
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trial_data")]


def _flat(items, answers: dict, missing: dict, prefix: str = "") -> dict[str, object]:  # noqa: ANN001
    """An entry version as ODM items: name -> value (or the missing-data code)."""
    flat: dict[str, object] = {}
    for item in items:
        if item.type == "descriptive" or item.identifier:
            continue
        value = answers.get(item.name)
        if item.type == "repeating_group":
            rows_missing = missing.get(item.name) if isinstance(missing.get(item.name), dict) else {}
            for row in value or []:
                row_id = str(row.get(ROW_ID))
                flat[f"{prefix}{item.name}[{row_id}]._row_id"] = row_id
                flat.update(_flat(item.children, row, rows_missing.get(row_id) or {}, f"{prefix}{item.name}[{row_id}]."))
            continue
        if item.type == "multiple_choice":
            if isinstance(value, list):
                for code, _label in item.choices:
                    flat[f"{prefix}{item.name}.{code}"] = str(code) in map(str, value)
            continue
        if value is None or value == "" or isinstance(value, list):
            code = missing.get(item.name)
            if isinstance(code, dict) and code.get("code"):
                flat[f"{prefix}{item.name}"] = ("missing", code["code"], code.get("reason"))
            continue
        flat[f"{prefix}{item.name}"] = value
    return flat


def item_changes_in_history(trial_code: str) -> int:
    """Item changes of the trial's CRF entries, from the history table alone."""
    codes = export_crf_codes(spec_for("datamanager", trial_code))
    schemas = {crf.pk: schema_for(crf) for crf in CrfDefinition.objects.filter(code__in=codes)}
    rows = CrfEntry.history.filter(participant__trial__code=trial_code, crf_code__in=codes).order_by("id", "history_date", "history_id")
    total = 0
    previous_id, before = None, {}
    for row in rows:
        if row.id != previous_id:
            previous_id, before = row.id, {}
        after = {} if row.history_type == "-" else _flat(schemas[row.crf_id].items, row.answers or {}, row.missing or {})
        total += sum(1 for key in set(before) | set(after) if before.get(key) != after.get(key))
        before = after
    return total


@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_each_item_change_of_each_seed_trial_is_an_audited_transaction(trial_code):
    content, ticks = export_bytes(odm_audit, spec_for("datamanager", trial_code))
    document = parse_valid(content)
    root = document.getroot()
    assert root.get("FileType") == "Transactional"
    records = root.findall(".//odm:ClinicalData//odm:ItemData/odm:AuditRecord", NS)
    expected = item_changes_in_history(trial_code)
    assert expected > 0
    assert len(records) == expected
    item_data = root.findall(".//odm:ClinicalData//odm:ItemData", NS)
    assert len(item_data) == expected  # one AuditRecord per ItemData, none elsewhere in the data
    assert {d.get("TransactionType") for d in item_data} <= {"Insert", "Update", "Remove"}
    assert sum(ticks) == odm_audit.count(spec_for("datamanager", trial_code))


def test_a_correction_is_an_update_after_the_insert_with_who_when_why():
    """ODM 1.3.2: successive ItemData of one item in a transactional file are its values in time
    order; the correction (heart rate 71, reason "Transcription error", by the Madrid coordinator)
    is an Update whose AuditRecord names the user (AdminData/User), the site (LocationRef), the
    save's time, the reason and the history row; an item then answered "not done" is null with
    the code as a flag; items the save did not change are not repeated."""
    entry = CrfEntry.objects.filter(participant__trial__code="EASC-RA", crf_code="VITALS").select_related(
        "visit__definition", "participant__site", "crf").first()
    first_rate = entry.answers["heart_rate"]
    new_rate = 71 if first_rate != 71 else 72
    had_temperature = entry.answers.get("temperature_c") is not None
    answers = {k: v for k, v in entry.answers.items() if k not in {"bmi", "temperature_c"}}
    saved = crf_entry_save_answers(
        user=user("coordinator.madrid"), visit=entry.visit, crf_code="VITALS", complete=True, reason="Transcription error",
        answers={**answers, "heart_rate": new_rate}, missing={"temperature_c": {"code": "not_done", "reason": "Thermometer broken"}},
    )
    last = saved.history.order_by("-history_date", "-history_id").first()
    document = parse_valid(export_bytes(odm_audit, spec_for("datamanager", "EASC-RA"))[0])
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{entry.participant.screening_number}']", NS)
    source = f"visits.crfentry {entry.pk} history {last.history_id}"
    this_save = [r.getparent() for r in subject.iterfind(".//odm:AuditRecord", NS) if r.findtext("odm:SourceID", namespaces=NS) == source]
    assert sorted(d.get("ItemOID") for d in this_save) == ["IT.VITALS.heart_rate", "IT.VITALS.temperature_c"]
    rate = [d for d in subject.iterfind(".//odm:ItemData[@ItemOID='IT.VITALS.heart_rate']", NS)
            if d.getparent().getparent().get("FormOID") == f"F.VITALS.V{entry.crf.version}"
            and d.getparent().getparent().getparent().get("StudyEventOID") == f"SE.{entry.visit.definition.code}"]
    assert [(d.get("TransactionType"), d.get("Value")) for d in rate] == [("Insert", str(first_rate)), ("Update", str(new_rate))]
    record = rate[-1].find("odm:AuditRecord", NS)
    assert record.findtext("odm:ReasonForChange", namespaces=NS) == "Transcription error"
    assert datetime.fromisoformat(record.findtext("odm:DateTimeStamp", namespaces=NS)) == last.history_date
    login = document.findtext(f".//odm:AdminData/odm:User[@OID='{record.find('odm:UserRef', NS).get('UserOID')}']/odm:LoginName", namespaces=NS)
    assert login == "coordinator.madrid"
    assert record.find("odm:LocationRef", NS).get("LocationOID") == subject.find("odm:SiteRef", NS).get("LocationOID")
    temperature = next(d for d in this_save if d.get("ItemOID") == "IT.VITALS.temperature_c")
    assert temperature.get("TransactionType") == ("Update" if had_temperature else "Insert")
    assert temperature.get("IsNull") == "Yes" and temperature.get("Value") is None
    assert temperature.findtext("odm:Annotation/odm:Flag/odm:FlagValue", namespaces=NS) == "not_done"
    assert temperature.findtext("odm:Annotation/odm:Comment", namespaces=NS) == "Thermometer broken"


def test_a_cleared_item_is_removed():
    """An item emptied by a save is an ItemData TransactionType="Remove" without a value."""
    entry = CrfEntry.objects.filter(participant__trial__code="EASC-RA", crf_code="VITALS").select_related("visit").first()
    assert entry.answers.get("temperature_c") is not None
    answers = {k: v for k, v in entry.answers.items() if k not in {"bmi", "temperature_c"}}
    crf_entry_save_answers(user=user("coordinator.madrid"), visit=entry.visit, crf_code="VITALS", complete=True,
                           reason="Entered in the wrong participant", answers=answers)
    document = parse_valid(export_bytes(odm_audit, spec_for("datamanager", "EASC-RA"))[0])
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{entry.participant.screening_number}']", NS)
    last = [d for d in subject.iterfind(".//odm:ItemData[@ItemOID='IT.VITALS.temperature_c']", NS)
            if d.getparent().getparent().getparent().get("StudyEventOID") == f"SE.{entry.visit.definition.code}"][-1]
    assert (last.get("TransactionType"), last.get("Value")) == ("Remove", None)
    assert last.findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == "Entered in the wrong participant"


def test_the_format_is_a_trial_wide_export_job():
    audit_format = format_get("odm_audit")
    assert (audit_format.extension, audit_format.pooled) == ("xml", False)
