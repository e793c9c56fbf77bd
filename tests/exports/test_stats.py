"""SPSS (.sav) and Stata (.dta) exports: one file per table of the CSV export, read back with
pyreadstat with the table's values, variable labels and value labels; valid variable names; a
blinded export names no arm (bytes, values and labels scanned); identifying items stay out.
The data are those of tests/exports/test_odm.py (made through the services)."""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from tests.exports.test_odm import (  # noqa: F401 - _trial_data and trial_data are fixtures
    CANARY,
    SEED_SITES,
    _trial_data,
    arm_words,
    export_bytes,
    spec_for,
    trial_data,
)
from edc.audit import system_user
from trials.exports import stats, tables
from trials.participants.models import Allocation, Participant, ParticipantStatus
from trials.protocol.models import Trial
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trial_data")]

READERS = {"sav": pyreadstat.read_sav, "dta": pyreadstat.read_dta}
WRITERS = {"sav": "write_sav", "dta": "write_dta"}
NAME_WIDTH = {"sav": 64, "dta": 32}
LABEL_WIDTH = {"sav": 256, "dta": 80}


def read_files(content: bytes, extension: str) -> dict[str, tuple]:
    """Every data file of the zip read back: table name -> (data, metadata)."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive, tempfile.TemporaryDirectory() as scratch:
        names = archive.namelist()
        assert names[-1] == "manifest.json"
        for name in names[:-1]:
            assert name.endswith(f".{extension}"), name
            path = Path(scratch) / name
            path.write_bytes(archive.read(name))
            found[name.removesuffix(f".{extension}")] = READERS[extension](str(path))
    return found


def same(read, expected, column: tables.Column, labels: dict | None) -> bool:
    """Whether a value read back is the table's value (codes through their value labels)."""
    expected = tables.typed(column, expected)
    missing = read is None or (isinstance(read, float) and math.isnan(read)) or read == ""
    if expected is None or expected == "":
        return missing
    if column.codes:
        return labels is not None and labels.get(read) == {c: str(t) for c, t in column.codes}[expected]
    if column.type == tables.BOOLEAN:
        return read == int(expected)
    if column.type in {tables.INTEGER, tables.DECIMAL}:
        return float(read) == pytest.approx(float(expected))
    if column.type == tables.DATE:
        return read == expected
    if column.type == tables.DATETIME:  # written in UTC
        return abs((pd.Timestamp(read).to_pydatetime() - _utc(expected)).total_seconds()) < 1
    if isinstance(expected, Decimal):
        return read == f"{expected:f}"
    return read == str(expected)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


@pytest.mark.parametrize("extension", sorted(READERS))
def test_every_table_reads_back_with_its_values_and_labels(extension):
    """The DSMB's unblinded export of ASC-DU (allocations included), every table, every cell."""
    spec = spec_for("dsmb.statistician", "ASC-DU", blinded=False)
    content, ticks = export_bytes(stats, spec, WRITERS[extension])
    assert sum(ticks) == stats.count(spec) > 0
    files = read_files(content, extension)
    expected_tables = tables.export_tables(spec_for("dsmb.statistician", "ASC-DU", blinded=False))
    assert list(files) == [t.name for t in expected_tables]
    for table in expected_tables:
        data, meta = files[table.name]
        assert len(meta.column_names) == len(table.columns)
        for name in meta.column_names:
            assert len(name) <= NAME_WIDTH[extension] and name[0].isalpha(), name
        rows = list(table.rows())
        assert len(data) == len(rows), table.name
        for position, column in enumerate(table.columns):
            name = meta.column_names[position]
            label = meta.column_names_to_labels[name]
            assert label == (column.label + (f" ({column.unit})" if column.unit else ""))[: LABEL_WIDTH[extension]]
            labels = meta.variable_value_labels.get(name)
            for index, row in enumerate(rows):
                assert same(data.iloc[index][name], row[position], column, labels), (table.name, column.name, index, data.iloc[index][name], row[position])


@pytest.mark.parametrize("extension", sorted(READERS))
@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_each_seed_trial_exports_and_reads_back(trial_code, extension):
    spec = spec_for("datamanager", trial_code)
    files = read_files(export_bytes(stats, spec, WRITERS[extension])[0], extension)
    participants, meta = files["participants"]
    subjects = dict(zip(participants["subject"], participants["status"], strict=True))
    status_labels = meta.variable_value_labels["status"]
    for participant in Participant.objects.filter(trial__code=trial_code):
        assert status_labels[subjects[participant.screening_number]] == ParticipantStatus(participant.status).label
    vitals = CrfEntry.objects.filter(participant__trial__code=trial_code, crf_code="VITALS")
    demog = CrfEntry.objects.filter(participant__trial__code=trial_code, crf_code="DEMOG")
    assert vitals.exists() or demog.exists()
    if vitals.exists():
        data, meta = files["VITALS"]
        by_entry = data.set_index("entry_id")
        for entry in vitals:
            if entry.answers.get("weight_kg") is not None:
                assert by_entry.loc[entry.pk, "weight_kg"] == float(entry.answers["weight_kg"])
            assert meta.column_names_to_labels["weight_kg"] == "Body weight (kg)"
    if demog.exists():
        data, meta = files["DEMOG"]
        sex = meta.variable_value_labels["sex"]
        assert sorted(sex.values()) == ["Female", "Male"]
        by_entry = data.set_index("entry_id")
        for entry in demog:
            assert sex[by_entry.loc[entry.pk, "sex"]] == {"F": "Female", "M": "Male"}[entry.answers["sex"]]
            assert meta.variable_value_labels["alcohol_use_disorder"] == {1: "Yes", 0: "No"}
            assert by_entry.loc[entry.pk, "alcohol_use_disorder"] == int(entry.answers["alcohol_use_disorder"])


@pytest.mark.parametrize("extension", sorted(READERS))
def test_blinded_files_name_no_arm(extension):
    trial = Trial.objects.get(code="ASC-DU")
    words = [w.lower() for w in arm_words(trial)]
    kits = [k.lower() for k in Allocation.objects.filter(participant__trial=trial).values_list("kit_code", flat=True)]
    for username in ("datamanager", "sponsor.toulouse", "dsmb.statistician"):
        content = export_bytes(stats, spec_for(username, "ASC-DU"), WRITERS[extension])[0]
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            raw = b"\n".join(archive.read(name) for name in archive.namelist()).lower()
        assert not [w for w in words + kits if w.encode() in raw], username
        files = read_files(content, extension)
        assert "allocations" not in files
        for data, meta in files.values():
            texts = [str(v) for column in data.columns for v in data[column]] + list(meta.column_names_to_labels.values())
            texts += [label for labels in meta.variable_value_labels.values() for label in labels.values()]
            text = "\n".join(texts).lower()
            assert not [w for w in words + kits if w in text], username
    # The same reading finds the arms in the DSMB's unblinded export.
    files = read_files(export_bytes(stats, spec_for("dsmb.statistician", "ASC-DU", blinded=False), WRITERS[extension])[0], extension)
    data, _meta = files["allocations"]
    assert sorted(data["arm"]) == sorted(Allocation.objects.filter(participant__trial=trial).values_list("arm__code", flat=True))


@pytest.mark.parametrize("extension", sorted(READERS))
def test_identifying_items_stay_out_unless_asked(extension):
    content = export_bytes(stats, spec_for("datamanager", "ASC-DU"), WRITERS[extension])[0]
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        raw = b"\n".join(archive.read(name) for name in archive.namelist())
    assert CANARY["initials"].encode() not in raw
    files = read_files(content, extension)
    assert "initials" not in files["DEMOG"][0].columns and "date_of_birth" not in files["DEMOG"][0].columns
    assert CANARY["date_of_birth"] not in set(files["participants"][0].get("date_of_birth", []))
    asked = read_files(export_bytes(stats, spec_for("datamanager", "ASC-DU", identifiers=True), WRITERS[extension])[0], extension)
    assert CANARY["initials"] in set(asked["DEMOG"][0]["initials"])
    assert date(1911, 11, 11) in set(asked["participants"][0]["date_of_birth"])


def test_variable_names_fit_each_package():
    taken: set[str] = set()
    names = [stats.variable_name(n, taken, stats.STATA) for n in ("long", "in", "str12", "2nd visit", "x" * 40, "x" * 40, "Long")]
    assert names[:4] == ["long_2", "in_2", "str12_2", "v2nd_visit"]
    assert names[4] == "x" * 32 and names[5] == "x" * 30 + "_2" and names[6] == "Long_3"
    assert stats.variable_name("y" * 40, set(), stats.STATA, labelled=True) == "y" * 28
    spss: set[str] = set()
    assert [stats.variable_name(n, spss, stats.SPSS) for n in ("by", "BY", "z" * 70)] == ["by_2", "BY_3", "z" * 64]


def _read_one(content: bytes, extension: str, table: str, **options) -> tuple:
    with zipfile.ZipFile(io.BytesIO(content)) as archive, tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{table}.{extension}"
        path.write_bytes(archive.read(path.name))
        return READERS[extension](str(path), **options)


def test_missing_data_codes_are_the_packages_own_missing_values():
    """Issue 17: an item answered "not done" keeps its code in SPSS and Stata as each package means
    a missing-data code, labelled, instead of a blank.
    - SPSS (IBM SPSS Statistics, *MISSING VALUES*): a numeric variable has up to three discrete
      user-missing values, kept in the file and excluded from statistics; pyreadstat reads them back
      as values with user_missing=True and as system-missing (NaN) otherwise.
    - Stata ([U] 12.2.1 *Missing values*): extended missing values .a … .z, all greater than every
      number and excluded like `.`; pyreadstat reads them back as the letters with user_missing=True.
    The codes chosen (SPSS -97/-98/-99, Stata .a/.b/.c) are documented in trials/exports/stats.py."""
    vitals = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="VITALS").select_related("visit", "participant").first()
    crf_entry_save_answers(
        user=system_user(), visit=vitals.visit, crf_code="VITALS", complete=True, reason="Scale broken",
        answers={"height_cm": Decimal("165"), "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
        missing={"weight_kg": {"code": "not_done", "reason": "Scale broken"}},
    )
    spec = spec_for("datamanager", "ASC-DU")
    rows = {row[5]: row for row in tables.crf_table(spec, "VITALS").rows()}  # entry_id is the 6th key column
    assert vitals.pk in rows

    content = export_bytes(stats, spec, "write_sav")[0]
    data, meta = _read_one(content, "sav", "VITALS", user_missing=True)
    mine = data[data["entry_id"] == vitals.pk]
    assert mine["weight_kg"].tolist() == [-97.0]
    assert meta.missing_ranges["weight_kg"] == [{"lo": -97.0, "hi": -97.0}]
    assert meta.variable_value_labels["weight_kg"][-97.0] == "Not done"
    plain, _meta = _read_one(content, "sav", "VITALS")
    assert math.isnan(plain[plain["entry_id"] == vitals.pk]["weight_kg"].iloc[0])
    assert mine["heart_rate"].tolist() == [70.0]
    assert meta.original_variable_types["heart_rate"] == "F12.0"  # an integer item, shown without decimals
    assert meta.variable_measure["weight_kg"] == "scale" and meta.variable_measure["entry_status"] == "nominal"

    content = export_bytes(stats, spec, "write_dta")[0]
    data, meta = _read_one(content, "dta", "VITALS", user_missing=True)
    mine = data[data["entry_id"] == vitals.pk]
    assert mine["weight_kg"].tolist() == ["a"]
    assert meta.missing_user_values["weight_kg"] == ["a"]
    assert meta.variable_value_labels["weight_kg"]["a"] == "Not done"
    assert meta.original_variable_types["heart_rate"] == "%12.0f"


def test_missing_data_codes_of_repeating_group_rows_are_missing_values_too():
    """The repeating-group tables carry the missing-data codes like the CRF tables: a row's item
    answered "unknown" (the entry's `missing` holds it under the group and the row's id) is SPSS
    user-missing -98 and Stata extended missing .b, labelled "Unknown", in that row only."""
    entry = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="DU_INJECTION").exclude(
        answers__ulcers_injected=[]).select_related("visit").first()
    rows = entry.answers["ulcers_injected"]
    assert rows
    first_id = rows[0]["_row_id"]
    edited = [{k: v for k, v in rows[0].items() if k != "volume_ml"}, *rows[1:]]
    crf_entry_save_answers(
        user=system_user(), visit=entry.visit, crf_code="DU_INJECTION", complete=True, reason="Syringe label lost",
        answers={**{k: v for k, v in entry.answers.items() if k != "ulcers_injected"}, "ulcers_injected": edited},
        missing={"ulcers_injected": {0: {"volume_ml": {"code": "unknown", "reason": "Syringe label lost"}}}},  # input: by row index
    )
    entry.refresh_from_db()
    assert entry.missing["ulcers_injected"][first_id]["volume_ml"]["code"] == "unknown"
    spec = spec_for("datamanager", "ASC-DU")
    table = "DU_INJECTION_ulcers_injected"

    data, meta = _read_one(export_bytes(stats, spec, "write_sav")[0], "sav", table, user_missing=True)
    mine = data[data["entry_id"] == entry.pk].sort_values("row_number")
    assert mine["volume_ml"].iloc[0] == -98.0
    assert all(v != -98.0 for v in mine["volume_ml"].iloc[1:])
    assert meta.missing_ranges["volume_ml"] == [{"lo": -98.0, "hi": -98.0}]
    assert meta.variable_value_labels["volume_ml"][-98.0] == "Unknown"

    data, meta = _read_one(export_bytes(stats, spec, "write_dta")[0], "dta", table, user_missing=True)
    mine = data[data["entry_id"] == entry.pk].sort_values("row_number")
    assert mine["volume_ml"].iloc[0] == "b"
    assert meta.missing_user_values["volume_ml"] == ["b"]
    assert meta.variable_value_labels["volume_ml"]["b"] == "Unknown"
