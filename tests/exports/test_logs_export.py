"""Logs outside visits in the exports (issue 15): a CONMED record is a row of CONMED.csv and a
visit row of kind "log"; in ODM it is a repeating participant-level event that validates."""

from __future__ import annotations

import io
from datetime import date

import pytest
from lxml import etree

from tests.exports.conftest import job_bytes, randomized, user, zip_members
from tests.exports.test_csv import read_csv
from trials.exports import odm
from trials.exports.models import ExportState
from trials.visits.services import crf_entry_save_answers, log_record_add

pytestmark = pytest.mark.django_db


def conmed(participant, name: str, start: date):  # noqa: ANN001, ANN201
    actor = user("coordinator.toulouse")
    record = log_record_add(user=actor, participant=participant, crf_code="CONMED")
    return crf_entry_save_answers(
        user=actor, visit=record, crf_code="CONMED", complete=True, reason="",
        answers={"medication": name, "drug_class": "calcium_channel_blocker", "indication": "Raynaud's phenomenon",
                 "dose": "30", "dose_unit": "mg", "start_date": start, "ongoing": True},
    )


def test_the_csv_export_has_a_row_per_log_record(demo, export):  # noqa: ARG001
    participant = randomized("TLS")
    first, second = conmed(participant, "nifedipine", date(2025, 6, 1)), conmed(participant, "sildenafil", date(2025, 9, 1))
    job = export("datamanager", "ASC-DU")
    assert job.state == ExportState.DONE, job.error
    files = zip_members(job_bytes(job))
    rows = read_csv(files["CONMED.csv"])
    assert [(int(r["entry_id"]), r["medication"], r["start_date"], r["visit_sequence"]) for r in rows] == [
        (first.pk, "nifedipine", "2025-06-01", "1"), (second.pk, "sildenafil", "2025-09-01", "2")]
    visits = [r for r in read_csv(files["visits.csv"]) if r["visit_kind"] == "log"]
    assert sorted(r["visit_label"] for r in visits) == ["Prior and concomitant medications 1", "Prior and concomitant medications 2"]


def test_the_odm_export_puts_log_records_in_a_repeating_participant_event_and_validates(demo, export):  # noqa: ARG001
    participant = randomized("TLS")
    conmed(participant, "nifedipine", date(2025, 6, 1))
    job = export("datamanager", "ASC-DU", format="odm")
    assert job.state == ExportState.DONE, job.error
    document = etree.parse(io.BytesIO(job_bytes(job)))
    schema = odm.odm_schema()
    assert schema.validate(document), schema.error_log.filter_from_errors()[:5]
    ns = {"odm": odm.NS}
    events = document.getroot().findall(".//odm:StudyEventData[@StudyEventOID='SE.LOG']", ns)
    assert [e.get("StudyEventRepeatKey") for e in events] == ["CONMED.1"]
    values = {i.get("ItemOID"): i.get("Value") for i in events[0].iter(f"{{{odm.NS}}}ItemData")}
    assert values["IT.CONMED.medication"] == "nifedipine" and values["IT.CONMED.start_date"] == "2025-06-01"
    definition = document.getroot().find(".//odm:StudyEventDef[@OID='SE.LOG']", ns)
    assert (definition.get("Repeating"), definition.get("Type")) == ("Yes", "Common")
