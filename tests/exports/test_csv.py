"""CSV exports read back: every table equals the database, the manifest checks every file, an
empty trial gives headers only, a pooled export has the trial as a column, a cut-off gives the data
as they stood, and the number of queries does not grow with the participants."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
import time_machine
import yaml
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from edc.audit import system_user
from tests.conftest import SEEDS
from tests.exports.conftest import CANARY_BIRTH, job_bytes, randomized, vitals, zip_members
from trials.exports import tables
from trials.exports.models import ExportState
from trials.monitoring.models import Query
from trials.participants.models import Participant
from trials.safety.models import AdverseEvent
from trials.protocol.engine import schema_for
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_csv_read_back_equals_the_database(du, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU")
    assert job.state == ExportState.DONE, job.error
    files = zip_members(job_bytes(job))

    participants = Participant.objects.filter(trial__code="ASC-DU").order_by("site__code", "screening_number")
    rows = read_csv(files["participants.csv"])
    assert [r["subject"] for r in rows] == [p.screening_number for p in participants]
    for row, participant in zip(rows, participants, strict=True):
        assert row["status"] == participant.status
        assert row["consent_date"] == participant.consent_date.isoformat()
        assert row["enrolment_date"] == participant.enrolment_date.isoformat()
        born = CANARY_BIRTH
        consent = participant.consent_date
        assert row["age_at_consent"] == str(consent.year - born.year - ((consent.month, consent.day) < (born.month, born.day)))

    for code in ("DEMOG", "VITALS", "DU_ASSESS"):
        entries = {e.pk: e for e in CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code=code)}
        rows = read_csv(files[f"{code}.csv"])
        assert sorted(int(r["entry_id"]) for r in rows) == sorted(entries)
        schema = schema_for(next(iter(entries.values())).crf)
        for row in rows:
            entry = entries[int(row["entry_id"])]
            assert row["subject"] == entry.participant.screening_number
            assert row["visit"] == entry.visit.definition.code
            assert row["entry_status"] == entry.status
            for item in schema.items:
                if item.identifier or item.type in ("repeating_group", "descriptive"):
                    assert item.name not in row
                    continue
                assert row[item.name] == tables.text(entry.answers.get(item.name)), (code, item.name)

    ulcers = read_csv(files["DU_ASSESS_ulcers.csv"])
    stored = [
        (e.pk, n, r) for e in CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="DU_ASSESS")
        for n, r in enumerate(e.answers["ulcers"], start=1)
    ]
    assert len(ulcers) == len(stored) == 3
    by_key = {(int(r["entry_id"]), int(r["row_number"])): r for r in ulcers}
    for entry_id, number, row in stored:
        exported = by_key[(entry_id, number)]
        assert exported["row_id"] == row["_row_id"]
        for name, value in row.items():
            if name not in {"_row_id", "photo"}:  # a file item's file is in files/, listed in attachments.csv
                assert exported[name] == tables.text(value), name

    visits = read_csv(files["visits.csv"])
    assert len(visits) == Visit.objects.filter(participant__trial__code="ASC-DU").count()
    aes = read_csv(files["adverse_events.csv"])
    ae = du["ae"]
    assert [(r["subject"], r["ae_number"], r["verbatim_term"], r["grade"], r["serious"], r["sae_hospitalisation"], r["sae_death"])
            for r in aes] == [(ae.participant.screening_number, "1", "Headache", "2", "1", "1", "0")]
    assert AdverseEvent.objects.filter(participant__trial__code="ASC-DU").count() == 1
    queries = read_csv(files["queries.csv"])
    query = Query.objects.get()
    assert [(r["query_id"], r["crf"], r["item"], r["state"], r["text"]) for r in queries] == [
        (str(query.pk), "VITALS", "weight_kg", "open", "Please check the weight.")
    ]


def test_the_manifest_names_every_file_with_its_sha256(du, export) -> None:  # noqa: ANN001, ARG001
    job = export("sponsor.toulouse", "ASC-DU", cutoff=timezone.now().date())
    files = zip_members(job_bytes(job))
    manifest = json.loads(files.pop("manifest.json"))
    assert {f["name"] for f in manifest["files"]} == set(files)
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["name"]]).hexdigest()
        assert entry["bytes"] == len(files[entry["name"]])
        assert entry["rows"] == len(read_csv(files[entry["name"]]))
    assert manifest["trial"] == "ASC-DU"
    assert manifest["blinded"] is True
    assert manifest["identifiers"] is False
    assert manifest["cutoff"] == timezone.now().date().isoformat()
    assert manifest["requested_by"]["username"] == "sponsor.toulouse"
    assert manifest["software_version"] == settings.EDC_VERSION
    assert manifest["job"] == job.pk
    assert job.sha256 == hashlib.sha256(job_bytes(job)).hexdigest()
    assert job.size == len(job_bytes(job))


def test_the_data_dictionary_describes_every_column(du, export) -> None:  # noqa: ANN001, ARG001
    files = zip_members(job_bytes(export("datamanager", "ASC-DU")))
    dictionary = read_csv(files.pop("data_dictionary.csv"))
    files.pop("manifest.json")
    described = {(r["table"], r["variable"]) for r in dictionary}
    for name, data in files.items():
        header = next(csv.reader(io.StringIO(data.decode())))
        assert {(name.removesuffix(".csv"), column) for column in header} <= described, name
    weight = next(r for r in dictionary if r["table"] == "VITALS" and r["variable"] == "weight_kg")
    assert (weight["type"], weight["unit"]) == ("decimal", "kg")
    sex = next(r for r in dictionary if r["table"] == "DEMOG" and r["variable"] == "sex")
    assert sex["codes"] == "F=Female; M=Male"
    finger = next(r for r in dictionary if r["table"] == "DU_ASSESS_ulcers" and r["variable"] == "finger")
    assert finger["type"] == "integer"
    assert finger["codes"].startswith("1=1 - Thumb; 2=2 - Index")


def test_the_data_dictionary_is_as_rich_as_a_redcap_dictionary(du, export) -> None:  # noqa: ANN001, ARG001
    """Issue 17: per item the checks, branching and calculation of the CRF file (seeds/crfs/*.yaml,
    read here as the source), the precision, section, help, identifier flag and the CRF versions
    with the item; choice lists also as an unambiguous JSON cell. REDCap's data dictionary has
    the same facts as columns (Text Validation Min/Max, Required Field?, Branching Logic,
    Calculations, Section Header, Field Note, Identifier?)."""
    files = zip_members(job_bytes(export("datamanager", "ASC-DU")))
    rows = {(r["table"], r["variable"]): r for r in read_csv(files["data_dictionary.csv"])}
    crfs = {path.stem: yaml.safe_load(path.read_text()) for path in (SEEDS / "crfs").glob("*.yaml")}

    def field(crf: str, name: str) -> dict:
        return next(f for f in crfs[crf]["fields"] if f["name"] == name)

    weight, file_weight = rows[("VITALS", "weight_kg")], field("vitals", "weight_kg")
    assert (weight["min"], weight["max"], weight["precision"]) == (
        str(file_weight["min"]), str(file_weight["max"]), str(file_weight["precision"]))
    assert (weight["required"], weight["section"], weight["crf_versions"]) == ("1", file_weight["section"], "1")
    bmi = rows[("VITALS", "bmi")]
    calculation = field("vitals", "bmi")["calculation"]
    inputs = ", ".join(f"{k}={v}" for k, v in sorted(calculation["inputs"].items()))
    assert bmi["calculation"] == f"{calculation['score']}({inputs})"
    assert bmi["help"] == field("vitals", "bmi")["help"]
    stop = rows[("DEMOG", "smoking_stop_date")]
    assert stop["branching"] == field("demog", "smoking_stop_date")["show_if"]
    assert (stop["required"], stop["identifier"]) == ("0", "0")
    sex = rows[("DEMOG", "sex")]
    codelist = crfs["demog"]["codelists"][field("demog", "sex")["choices"]]
    assert json.loads(sex["codes_json"]) == [[c["code"], c["label"]] for c in codelist]


def test_an_empty_trial_exports_headers_only(demo, export) -> None:  # noqa: ANN001, ARG001
    job = export("datamanager", "EASC-RA")
    assert job.state == ExportState.DONE, job.error
    files = zip_members(job_bytes(job))
    assert {"participants.csv", "visits.csv", "DAS28.csv", "INFUSION.csv", "adverse_events.csv", "queries.csv"} <= set(files)
    for name, data in files.items():
        if name in ("data_dictionary.csv", "manifest.json"):
            continue
        lines = data.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("site,subject"), name
    assert job.rows_done == len(read_csv(files["data_dictionary.csv"]))


def test_a_pooled_export_has_the_trial_as_a_column(demo, export) -> None:  # noqa: ANN001, ARG001
    randomized("TLS")
    mexico = randomized("INCMNSZ", trial="ADSVF-SSC-HANDS")
    job = export("datamanager", pooled_crf="DEMOG")
    assert job.state == ExportState.DONE, job.error
    assert job.trial is None
    files = zip_members(job_bytes(job))
    rows = read_csv(files["DEMOG.csv"])
    assert sorted(r["trial"] for r in rows) == ["ADSVF-SSC-HANDS", "ASC-DU"]
    assert next(r for r in rows if r["trial"] == "ADSVF-SSC-HANDS")["subject"] == mexico.screening_number
    assert "VITALS.csv" not in files and "visits.csv" not in files
    assert sorted(r["trial"] for r in read_csv(files["participants.csv"])) == ["ADSVF-SSC-HANDS", "ASC-DU"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["pooled_crf"] == "DEMOG"
    assert set(manifest["trials"]) >= {"ADSVF-SSC-HANDS", "ASC-DU", "SSC-FATGRAFT-REG", "EASC-RA"}


def test_the_sponsor_pools_only_the_trials_she_may_export(demo, export) -> None:  # noqa: ANN001, ARG001
    randomized("TLS")
    randomized("INCMNSZ", trial="ADSVF-SSC-HANDS")
    files = zip_members(job_bytes(export("sponsor.toulouse", pooled_crf="DEMOG")))
    assert {r["trial"] for r in read_csv(files["DEMOG.csv"])} == {"ASC-DU"}


def test_a_cut_off_gives_the_data_as_they_stood_that_day(demo, export) -> None:  # noqa: ANN001, ARG001
    with time_machine.travel(timezone.now() - timedelta(days=5), tick=False):
        early = randomized("TLS", consent=10)
        cutoff = timezone.now().date()
    entry = CrfEntry.objects.get(participant=early, crf_code="VITALS")
    crf_entry_save_answers(  # a correction after the cut-off
        user=system_user(), visit=entry.visit, crf_code="VITALS", answers=vitals("70.0"), complete=True,
        reason="Weight corrected",
    )
    late = randomized("GRE", consent=3)

    now_files = zip_members(job_bytes(export("datamanager", "ASC-DU")))
    assert {r["subject"] for r in read_csv(now_files["participants.csv"])} == {early.screening_number, late.screening_number}
    assert [r["weight_kg"] for r in read_csv(now_files["VITALS.csv"]) if r["subject"] == early.screening_number] == ["70.0"]

    cut_files = zip_members(job_bytes(export("datamanager", "ASC-DU", cutoff=cutoff)))
    assert [r["subject"] for r in read_csv(cut_files["participants.csv"])] == [early.screening_number]
    assert [r["weight_kg"] for r in read_csv(cut_files["VITALS.csv"])] == ["61.5"]
    assert {r["subject"] for r in read_csv(cut_files["visits.csv"])} == {early.screening_number}


def test_the_number_of_queries_does_not_grow_with_the_participants(demo, export) -> None:  # noqa: ANN001, ARG001
    randomized("TLS")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            export("datamanager", "ASC-DU")
        return len(captured)

    few = queries()
    randomized("TLS", consent=18)
    randomized("GRE", consent=17)
    assert queries() == few


def test_zip_members_are_dated_when_the_export_ran(du, export) -> None:  # noqa: ANN001
    """Every member of an export zip carries the time the export ran (UTC, as `generated_at` in the
    manifest), not 1980-01-01 (the MS-DOS date ZipFile gives a member opened by name; APPNOTE 4.4.6)."""
    import zipfile
    from datetime import UTC

    when = (timezone.now() - timedelta(minutes=10)).astimezone(UTC).replace(second=26, microsecond=0)
    for format_code in ("csv", "xpt"):
        with time_machine.travel(when, tick=False):
            job = export("datamanager", "ASC-DU", format=format_code)
        assert job.state == ExportState.DONE, job.error
        with zipfile.ZipFile(io.BytesIO(job_bytes(job))) as archive:
            dates = {info.filename: info.date_time for info in archive.infolist()}
        expected = (when.year, when.month, when.day, when.hour, when.minute, when.second)
        assert dates and all(value == expected for value in dates.values()), (format_code, dates)


def test_one_date_time_spelling_in_every_csv_column(demo, export) -> None:  # noqa: ANN001
    """Date-times in the CSV are ISO 8601 in UTC to the second with "Z" (the convention the module
    states), whether they come from a model column (last_saved) or a CRF answer (a stored
    "…+00:00" answer used to come out as it was stored: two spellings in one file)."""
    import random
    import re

    from tests.exports.test_odm import participant_with_data

    participant_with_data("EASC-RA", "MAD-LP", random.Random(3), visits=2, adverse_events=0)
    job = export("datamanager", "EASC-RA")
    assert job.state == ExportState.DONE, job.error
    rows = read_csv(zip_members(job_bytes(job))["INFUSION.csv"])
    stamps = [row[name] for row in rows for name in ("infusion_datetime", "last_saved") if row[name]]
    assert len(stamps) >= 2 and any(row["infusion_datetime"] for row in rows)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", stamp) for stamp in stamps), stamps
