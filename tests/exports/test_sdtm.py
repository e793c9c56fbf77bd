"""SDTM-style SAS transport (XPT v5): every dataset of every seed trial reads back with pyreadstat
with SDTM names and labels and the database's values; a blinded export names no arm; identifying
items stay out unless asked. The data are those of tests/exports/test_odm.py (made through the
services)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import date
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
from trials.exports import odm, sdtm
from trials.exports.spec import ExportSpec
from trials.participants.models import Allocation, Participant
from trials.protocol.models import Trial
from trials.safety.models import AdverseEvent
from trials.protocol.engine import schema_for
from trials.visits.models import CrfEntry, Visit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trial_data")]

LABELS = {  # SDTMIG labels of some variables, as the files must give them
    "STUDYID": "Study Identifier", "USUBJID": "Unique Subject Identifier", "RFICDTC": "Date/Time of Informed Consent",
    "AETERM": "Reported Term for the Adverse Event", "AESER": "Serious Event", "AETOXGR": "Standard Toxicity Grade",
    "VISITNUM": "Visit Number", "SVSTDTC": "Start Date/Time of Visit", "DSDECOD": "Standardized Disposition Term",
    "EXTRT": "Name of Treatment", "VSSTRESN": "Numeric Result/Finding in Standard Units",
}


def read_datasets(content: bytes) -> dict[str, tuple[pd.DataFrame, object]]:
    """Every .xpt of the zip read back with pyreadstat: name -> (data, metadata)."""
    found = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive, tempfile.TemporaryDirectory() as scratch:
        for name in archive.namelist():
            if not name.endswith(".xpt"):
                continue
            path = Path(scratch) / name
            path.write_bytes(archive.read(name))
            data, meta = pyreadstat.read_xport(str(path))
            found[meta.table_name] = (data, meta)
    return found


def xpt_bytes(content: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return b"\n".join(archive.read(name) for name in archive.namelist())


def usubjid(participant: Participant) -> str:
    return f"{participant.trial.code}-{participant.number}"


@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_each_dataset_reads_back_with_sdtm_names_labels_and_the_database_values(trial_code):
    spec = spec_for("datamanager", trial_code)
    content, ticks = export_bytes(sdtm, spec)
    assert sum(ticks) == sdtm.count(spec) > 0
    datasets = read_datasets(content)
    assert {"DM", "AE", "DS", "EX", "SV"} <= set(datasets)
    for name, (data, meta) in datasets.items():
        assert len(name) <= 8 and name.isupper(), name
        for column, label in meta.column_names_to_labels.items():
            assert len(column) <= 8 and column == column.upper(), (name, column)
            assert label and len(label) <= 40, (name, column, label)
            if column in LABELS:
                assert label == LABELS[column], (name, column)
        for column in data.columns:
            if data[column].dtype == object:
                assert all(value.isascii() and len(value.encode()) <= 200 for value in data[column]), (name, column)
        domain = set(data["DOMAIN"]) if len(data) else set()
        assert domain <= {name[:2]}, name
    participants = list(Participant.objects.filter(trial__code=trial_code).select_related("trial", "site"))

    dm = datasets["DM"][0].set_index("USUBJID")
    assert sorted(dm.index) == sorted(usubjid(p) for p in participants)
    for participant in participants:
        row = dm.loc[usubjid(participant)]
        demog = CrfEntry.objects.filter(participant=participant, crf_code="DEMOG").first()
        assert row["SITEID"] == participant.site.code and row["SUBJID"] == participant.number
        assert row["RFICDTC"] == participant.consent_date.isoformat()
        assert row["RFXSTDTC"] == participant.first_treatment_date.isoformat()
        assert row["SEX"] == (demog.answers["sex"] if demog else "")
        born = date.fromisoformat(demog.answers["date_of_birth"]) if demog else None
        if born:
            consent = participant.consent_date
            assert row["AGE"] == consent.year - born.year - ((consent.month, consent.day) < (born.month, born.day))
            assert row["AGEU"] == "YEARS"

    ae = datasets["AE"][0]
    aes = AdverseEvent.objects.filter(participant__trial__code=trial_code).select_related("participant__trial")
    assert len(ae) == aes.count()
    for event in aes:
        row = ae[(ae["USUBJID"] == usubjid(event.participant)) & (ae["AESEQ"] == event.number)].iloc[0]
        assert row["AETERM"] == event.verbatim_term and row["AESTDTC"] == event.onset_date.isoformat()
        assert row["AETOXGR"] == str(event.grade) and row["AESER"] == ("Y" if event.serious else "N")
        assert row["AESHOSP"] == ("Y" if "hospitalisation" in event.seriousness else "N")
        assert row["AEREL"] == "POSSIBLY RELATED" and row["AEOUT"] == "RECOVERED/RESOLVED"
        assert row["AESTDY"] == (event.onset_date - event.participant.first_treatment_date).days + 1

    mask = odm.arm_mask(spec)
    sv = datasets["SV"][0]
    visits = Visit.objects.filter(participant__trial__code=trial_code, visit_date__isnull=False).select_related("participant__trial", "definition")
    assert len(sv) == visits.count()
    for visit in visits:
        row = sv[(sv["USUBJID"] == usubjid(visit.participant)) & (sv["SVSTDTC"] == visit.visit_date.isoformat())
                 & (sv["VISIT"] == mask(sdtm.ascii_text(visit.label)))].iloc[0]
        if visit.definition:
            assert row["VISITNUM"] == visit.definition.order
        else:  # unscheduled: the visit before it, plus 0.01 per unscheduled visit
            assert row["VISITNUM"] % 1 == pytest.approx(0.01) and row["SVUPDES"]

    ds = datasets["DS"][0]
    consent = ds[ds["DSDECOD"] == "INFORMED CONSENT OBTAINED"]
    assert sorted(consent["USUBJID"]) == sorted(usubjid(p) for p in participants)
    ex = datasets["EX"][0]
    assert sorted(ex["USUBJID"]) == sorted(usubjid(p) for p in participants if p.first_treatment_date)
    assert set(ex["EXTRT"]) == {sdtm.BLINDED_TREATMENT} and ex["EXDOSE"].isna().all()

    # Every numeric CRF answer is a finding with its value, unit, visit and date.
    findings = pd.concat([
        data.rename(columns=lambda c, prefix=name[:2]: c[2:] if c.startswith(prefix) and c != "STUDYID" else c)
        for name, (data, _meta) in datasets.items() if name[:2] in {"QS", "VS", "LB", "SC"}
    ])
    checked = 0  # (visit names: a blinded export masks the arm names in them)
    for entry in CrfEntry.objects.filter(participant__trial__code=trial_code).select_related("crf", "participant__trial", "visit"):
        rows = findings[(findings["USUBJID"] == usubjid(entry.participant)) & (findings["CAT"] == entry.crf_code)
                        & (findings["VISIT"] == mask(sdtm.ascii_text(entry.visit.label)))]
        for item in schema_for(entry.crf).items:
            value = entry.answers.get(item.name)
            if item.type not in {"integer", "decimal", "scale", "calculated"} or value is None:
                continue
            match = rows[rows["TEST"] == sdtm.ascii_text(item.label, 40)]
            assert len(match) == 1, (entry.crf_code, item.name)
            assert match.iloc[0]["STRESN"] == pytest.approx(float(value)), (entry.crf_code, item.name)
            assert match.iloc[0]["ORRESU"] == sdtm.ascii_text(item.unit)
            assert match.iloc[0]["DTC"] == (entry.visit.visit_date.isoformat() if entry.visit.visit_date else "")
            checked += 1
    assert checked > 10


def test_repeating_rows_multiple_choices_and_split_qs_datasets():
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])
    names = set(datasets)
    assert {"VS", "LB", "SC"} <= names and "QS" not in names  # QS is split per CRF
    qs = {name: data for name, (data, _meta) in datasets.items() if name.startswith("QS")}
    assert len(qs) >= 5 and all(set(data["DOMAIN"]) == {"QS"} for data in qs.values() if len(data))
    ulcers = next(data for data in qs.values() if len(data) and set(data["QSCAT"]) == {"DU_ASSESS"})
    entry = CrfEntry.objects.filter(crf_code="DU_ASSESS", participant__trial__code="ASC-DU").select_related("participant__trial", "visit").first()
    rows = ulcers[(ulcers["USUBJID"] == usubjid(entry.participant)) & (ulcers["VISIT"] == entry.visit.label)]
    for position, ulcer in enumerate(entry.answers["ulcers"], 1):
        group = rows[rows["QSGRPID"] == f"ulcers-{position}"]
        assert group[group["QSTEST"] == "Ulcer identifier"].iloc[0]["QSORRES"] == ulcer["ulcer_id"]
        hand = group[group["QSTEST"] == "Hand"].iloc[0]
        assert (hand["QSORRES"], hand["QSSTRESC"]) == (ulcer["hand"].capitalize(), ulcer["hand"])
        assert group[group["QSTEST"] == "Active ulcer"].iloc[0]["QSORRES"] == ("Y" if ulcer["active"] else "N")
    capillaroscopy = CrfEntry.objects.filter(crf_code="CAPILLAROSCOPY", participant__trial__code="ASC-DU").select_related("participant__trial").first()
    data = next(d for d in qs.values() if len(d) and set(d["QSCAT"]) == {"CAPILLAROSCOPY"})
    ticked = data[(data["USUBJID"] == usubjid(capillaroscopy.participant)) & data["QSTEST"].str.startswith("Fingers examined: ")
                  & (data["QSORRES"] == "Y")]
    assert len(ticked) == len(capillaroscopy.answers["fingers_examined"]) >= 1
    # Sequence numbers are unique per subject within a dataset.
    for data, _meta in datasets.values():
        seq = [c for c in data.columns if c.endswith("SEQ")]
        if seq and len(data):
            assert not data.duplicated(["USUBJID", seq[0]]).any()


def test_blinded_xpt_names_no_arm_and_unblinded_gives_arms_and_doses():
    trial = Trial.objects.get(code="ASC-DU")
    words = [w.lower().encode() for w in arm_words(trial)]
    for username in ("datamanager", "sponsor.toulouse", "dsmb.statistician"):
        content = export_bytes(sdtm, spec_for(username, "ASC-DU"))[0]
        raw = xpt_bytes(content).lower()
        assert not [w for w in words if w in raw], username
        datasets = read_datasets(content)
        assert not {"ARMCD", "ARM", "ACTARMCD", "ACTARM"} & set(datasets["DM"][0].columns)
        for data, meta in datasets.values():
            text = " ".join(str(v) for column in data.columns for v in data[column]) + " ".join(meta.column_labels)
            assert not [w for w in words if w.decode() in text.lower()]
    unblinded = read_datasets(export_bytes(sdtm, spec_for("dsmb.statistician", "ASC-DU", blinded=False))[0])
    dm = unblinded["DM"][0].set_index("USUBJID")
    for allocation in Allocation.objects.filter(participant__trial=trial).select_related("participant__trial", "arm"):
        assert dm.loc[usubjid(allocation.participant), "ARMCD"] == allocation.arm.code
        assert dm.loc[usubjid(allocation.participant), "ACTARM"] == allocation.arm.label
    ex = read_datasets(export_bytes(sdtm, spec_for("dsmb.statistician", "EASC-RA", blinded=False))[0])["EX"][0]
    for allocation in Allocation.objects.filter(participant__trial__code="EASC-RA").select_related("participant__trial", "arm"):
        row = ex[ex["USUBJID"] == usubjid(allocation.participant)].iloc[0]
        assert row["EXTRT"] == allocation.arm.label and row["EXDOSE"] == float(allocation.arm.dose)
        assert row["EXDOSU"] == sdtm.ascii_text(allocation.arm.dose_unit)


def test_identifiers_stay_out_unless_asked():
    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    raw = xpt_bytes(content)
    assert CANARY["initials"].encode() not in raw and b"1911-11-11" not in raw
    assert "BRTHDTC" not in read_datasets(content)["DM"][0].columns
    asked = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU", identifiers=True))[0])
    assert "1911-11-11" in set(asked["DM"][0]["BRTHDTC"])
    assert CANARY["initials"] in set(asked["SC"][0]["SCORRES"])


def test_an_empty_export_has_every_dataset_and_no_rows():
    spec = spec_for("datamanager", "ASC-DU")
    empty = ExportSpec(user_id=spec.user_id, trial_id=spec.trial_id, site_ids=())
    datasets = read_datasets(export_bytes(sdtm, empty)[0])
    assert {"DM", "AE", "DS", "EX", "SV", "VS"} <= set(datasets)
    assert all(len(data) == 0 for data, _meta in datasets.values())
    assert "USUBJID" in datasets["DM"][1].column_names


def test_short_names_are_sas_names_and_unique():
    taken: set[str] = set()
    names = [sdtm.short_name(n, taken) for n in ("number_active_du", "number_active_du", "bmi", "2nd_visit", "heart_rate_x")]
    assert names == ["NUMACTDU", "NUMACTD2", "BMI", "X2NDVISI", "HEARRATX"]
    assert len(set(names)) == len(names) and all(n[0].isalpha() and n.isupper() for n in names)
    assert sdtm.ascii_text("37.5 °C, µmol/L, kg/m²") == "37.5 C, umol/L, kg/m2"
