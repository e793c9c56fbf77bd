"""SDTM-style SAS transport (XPT v5): every dataset of every seed trial reads back with pyreadstat
with SDTM names and labels and the database's values; a blinded export names no arm; identifying
items stay out unless asked. The data are those of tests/exports/test_odm.py (made through the
services)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from lxml import etree

from tests.exports.test_odm import (  # noqa: F401 - _trial_data and trial_data are fixtures
    CANARY,
    SEED_SITES,
    _trial_data,
    arm_words,
    export_bytes,
    spec_for,
    trial_data,
)
from trials.exports import odm, sdtm, sdtm_terms
from trials.exports.sdtm_terms import TESTS
from trials.exports.spec import ExportSpec
from edc.audit import system_user
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.visits.services import crf_entry_save_answers
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
    """SDTMIG 3.4 §4.1.2: USUBJID identifies a subject uniquely and for good: the screening number,
    given at screening and never changed (the subject number comes at enrolment)."""
    return f"{participant.trial.code}-{participant.screening_number}"


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
        domain = set(data["RDOMAIN" if name.startswith("SUPP") else "DOMAIN"]) if len(data) else set()
        assert domain <= {name[4:6] if name.startswith("SUPP") else name[:2]}, name
    participants = list(Participant.objects.filter(trial__code=trial_code).select_related("trial", "site"))

    dm = datasets["DM"][0].set_index("USUBJID")
    assert sorted(dm.index) == sorted(usubjid(p) for p in participants)
    for participant in participants:
        row = dm.loc[usubjid(participant)]
        demog = CrfEntry.objects.filter(participant=participant, crf_code="DEMOG").first()
        assert row["SITEID"] == participant.site.code and row["SUBJID"] == participant.screening_number
        assert row["RFICDTC"] == participant.consent_date.isoformat()
        # SDTMIG 3.4 DM: RFXSTDTC/RFXENDTC are the first/last EX record's dates.
        exposure = datasets["EX"][0]
        given = sorted(exposure[exposure["USUBJID"] == usubjid(participant)]["EXSTDTC"])
        assert (row["RFXSTDTC"], row["RFXENDTC"]) == (given[0], given[-1])
        assert row["RFXSTDTC"][:10] >= participant.consent_date.isoformat()
        assert row["SEX"] == (demog.answers["sex"] if demog else "U")  # SEX (C66731): U = unknown
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
    assert set(ex["USUBJID"]) == {usubjid(p) for p in participants if p.first_treatment_date}
    assert set(ex["EXTRT"]) == {sdtm.BLINDED_TREATMENT} and ex["EXDOSE"].isna().all()

    # Every numeric CRF answer is a finding with its value, unit, visit and date.
    findings = pd.concat([
        data.rename(columns=lambda c, prefix=name[:2]: c[2:] if c.startswith(prefix) and c != "STUDYID" else c)
        for name, (data, _meta) in datasets.items() if name[:2] in {"QS", "VS", "LB", "SC", "FA"}
    ])
    checked = 0  # (visit names: a blinded export masks the arm names in them)
    for entry in CrfEntry.objects.filter(participant__trial__code=trial_code).select_related("crf", "participant__trial", "visit"):
        rows = findings[(findings["USUBJID"] == usubjid(entry.participant)) & (findings["CAT"] == entry.crf_code)
                        & (findings["VISIT"] == mask(sdtm.ascii_text(entry.visit.label)))]
        for item in schema_for(entry.crf).items:
            value = entry.answers.get(item.name)
            if item.type not in {"integer", "decimal", "scale", "calculated"} or value is None:
                continue
            term = TESTS.get(entry.crf_code, {}).get(item.name)
            if entry.crf_code in sdtm_terms.DM_ITEMS and item.name in sdtm_terms.DM_ITEMS[entry.crf_code]:
                continue  # a DM variable (AGE)
            if item.name in sdtm_terms.RANGE_ITEMS.get(entry.crf_code, set()):
                continue  # a reference range (LBORNRHI)
            match = rows[rows["TEST"] == (term.test if term else sdtm.ascii_text(item.label, 40))]
            assert len(match) == 1, (entry.crf_code, item.name)
            assert match.iloc[0]["STRESN"] == pytest.approx(float(value)), (entry.crf_code, item.name)
            assert match.iloc[0]["ORRESU"] == (term.unit if term else sdtm.ascii_text(item.unit))
            collected = entry.answers.get(sdtm_terms.COLLECTION_DATE_ITEMS.get(entry.crf_code, ""))
            assert match.iloc[0]["DTC"] == (collected or (entry.visit.visit_date.isoformat() if entry.visit.visit_date else ""))
            checked += 1
    assert checked > 10


def test_repeating_rows_multiple_choices_and_split_findings_datasets():
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])
    names = set(datasets)
    assert {"VS", "LB", "SC"} <= names and "FA" not in names  # FA is split per CRF
    qs = {name: data for name, (data, _meta) in datasets.items() if name.startswith("QS")}
    assert all(set(data["DOMAIN"]) == {"QS"} for data in qs.values() if len(data))
    # SDTMIG 3.4 §6.3.7: QS holds questionnaires and rating scales; a clinical assessment is FA.
    assert all(set(data["QSCAT"]) <= sdtm_terms.QUESTIONNAIRES for data in qs.values())
    qs = {name[2:]: data.rename(columns=lambda c: "QS" + c[2:] if c.startswith("FA") else c)
          for name, (data, _meta) in datasets.items() if name.startswith("FA")}
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
        if seq and len(data) and "USUBJID" in data.columns:
            assert not data.duplicated(["USUBJID", seq[0]]).any()


def test_blinded_xpt_names_no_arm_and_unblinded_gives_arms_and_doses():
    trial = Trial.objects.get(code="ASC-DU")
    words = [w.lower().encode() for w in arm_words(trial)]
    for username in ("datamanager", "sponsor.toulouse", "dsmb.statistician"):
        content = export_bytes(sdtm, spec_for(username, "ASC-DU"))[0]
        raw = xpt_bytes(content).lower()
        assert not [w for w in words if w in raw], username
        datasets = read_datasets(content)
        # SDTMIG: ARMCD/ARM/ACTARMCD/ACTARM are required in DM; blinded, every allocated subject has "BLINDED".
        dm = datasets["DM"][0]
        for column in ("ARMCD", "ARM", "ACTARMCD", "ACTARM"):
            assert set(dm[column]) == {"BLINDED"}, (username, column)
        for data, meta in datasets.values():
            text = " ".join(str(v) for column in data.columns for v in data[column]) + " ".join(meta.column_labels)
            assert not [w for w in words if w.decode() in text.lower()]
    unblinded = read_datasets(export_bytes(sdtm, spec_for("dsmb.statistician", "ASC-DU", blinded=False))[0])
    dm = unblinded["DM"][0].set_index("USUBJID")
    for allocation in Allocation.objects.filter(participant__trial=trial).select_related("participant__trial", "arm"):
        assert dm.loc[usubjid(allocation.participant), "ARMCD"] == allocation.arm.code
        assert dm.loc[usubjid(allocation.participant), "ACTARM"] == allocation.arm.label
    ex = read_datasets(export_bytes(sdtm, spec_for("dsmb.statistician", "EASC-RA", blinded=False))[0])["EX"][0]
    for allocation in Allocation.objects.filter(participant__trial__code="EASC-RA").select_related("participant__trial", "arm", "slot"):
        # SDTMIG 3.4 EX: one record per administration, the dose given; a placebo is EXTRT PLACEBO, EXDOSE 0.
        rows = ex[ex["USUBJID"] == usubjid(allocation.participant)]
        infusions = CrfEntry.objects.filter(participant=allocation.participant, crf_code="INFUSION")
        assert len(rows) == infusions.count() > 0
        placebo = allocation.slot is not None and allocation.slot.placebo
        assert set(rows["EXTRT"]) == {"PLACEBO" if placebo else allocation.arm.label}
        expected = sorted(0.0 if placebo else float(e.answers["administered_cells_million"]) for e in infusions)
        assert sorted(rows["EXDOSE"]) == expected and set(rows["EXDOSU"]) == {"10^6 cells"}


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
    # The trial design (TS, TA, TE, TV, TI) comes from the protocol: it has rows with no subject.
    assert all(len(data) == 0 for name, (data, _meta) in datasets.items() if name not in {"TS", "TA", "TE", "TV", "TI"})
    assert all(len(datasets[name][0]) for name in ("TS", "TA", "TE", "TV", "TI"))
    assert "USUBJID" in datasets["DM"][1].column_names


def test_short_names_are_sas_names_and_unique():
    taken: set[str] = set()
    names = [sdtm.short_name(n, taken) for n in ("number_active_du", "number_active_du", "bmi", "2nd_visit", "heart_rate_x")]
    assert names == ["NUMACTDU", "NUMACTD2", "BMI", "X2NDVISI", "HEARRATX"]
    assert len(set(names)) == len(names) and all(n[0].isalpha() and n.isupper() for n in names)
    assert sdtm.ascii_text("37.5 °C, µmol/L, kg/m²") == "37.5 C, umol/L, kg/m2"


# --- Conformance (issue 17): each expected value from SDTMIG 3.4 / CDISC CT / Define-XML 2.1 ------------


def package(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_seq_is_unique_per_subject_across_the_datasets_of_a_split_domain():
    """SDTMIG 3.4 §4.1.7 (splitting domains): --SEQ must be unique within USUBJID across all the
    split datasets of a domain (QS split by CRF restarted QSSEQ at 1 in every dataset)."""
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])
    by_domain: dict[str, list[pd.DataFrame]] = {}
    for name, (data, _meta) in datasets.items():
        if len(data) and "DOMAIN" in data.columns:
            by_domain.setdefault(data["DOMAIN"].iloc[0], []).append(data)
    split = {domain: frames for domain, frames in by_domain.items() if len(frames) > 1}
    assert split, "ASC-DU has a split domain"
    for domain, frames in split.items():
        rows = pd.concat(frames)
        assert not rows.duplicated(["USUBJID", f"{domain}SEQ"]).any(), domain


def test_one_stable_subject_key_in_sdtm_odm_and_csv(export):
    """SDTMIG 3.4 §4.1.2: a subject's USUBJID never changes across transfers. The screening number
    is the one key (it exists from screening on); the subject number given at enrolment is carried
    as SUPPDM.SUBJNUM. The ODM SubjectKey and the CSV `subject` are the same key."""
    from trials.exports import csvzip

    participant = Participant.objects.filter(trial__code="ASC-DU").exclude(subject_number="").select_related("trial").first()
    assert participant.subject_number != participant.screening_number
    spec = spec_for("datamanager", "ASC-DU")
    datasets = read_datasets(export_bytes(sdtm, spec)[0])
    assert f"ASC-DU-{participant.screening_number}" in set(datasets["DM"][0]["USUBJID"])
    supp = datasets["SUPPDM"][0]
    row = supp[(supp["USUBJID"] == f"ASC-DU-{participant.screening_number}") & (supp["QNAM"] == "SUBJNUM")].iloc[0]
    assert row["QVAL"] == participant.subject_number and row["RDOMAIN"] == "DM"
    document = etree.parse(io.BytesIO(export_bytes(odm, spec)[0]))
    keys = {s.get("SubjectKey") for s in document.iterfind(".//{%s}SubjectData" % odm.NS)}
    assert participant.screening_number in keys and participant.subject_number not in keys
    members = package(export_bytes(csvzip, spec)[0])
    subjects = [line.split(",")[1] for line in members["participants.csv"].decode().splitlines()[1:]]
    assert participant.screening_number in subjects and participant.subject_number not in subjects


def test_dm_country_reference_dates_sex_unknown_armnrs_and_order():
    """DM per SDTMIG 3.4 §5.2: COUNTRY is ISO 3166-1 alpha-3 (the French sites: FRA); RFXENDTC and
    RFPENDTC present; a subject with no DEMOG has SEX "U" (C66731); a screened subject with no arm
    has ARMNRS (C142179 "NOT ASSIGNED") and null ARMCD; rows sorted by USUBJID (the DM key)."""
    site = Site.objects.get(trial__code="ASC-DU", code="TLS")
    screened = participant_register(site=site, user=system_user(), consent_date=site.today() - timedelta(days=3), anchor_date=None)
    dm = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])["DM"][0]
    assert set(dm["COUNTRY"]) == {"FRA"}
    assert list(dm["USUBJID"]) == sorted(dm["USUBJID"])
    row = dm[dm["USUBJID"] == f"ASC-DU-{screened.screening_number}"].iloc[0]
    assert (row["SEX"], row["ARMNRS"], row["ARMCD"], row["ACTARMCD"]) == ("U", "NOT ASSIGNED", "", "")
    assert row["RFPENDTC"] == screened.consent_date.isoformat()
    treated = dm[dm["RFXSTDTC"] != ""]
    assert len(treated) and (treated["RFXENDTC"] >= treated["RFXSTDTC"]).all() and (treated["ARMNRS"] == "").all()
    mexico = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ADSVF-SSC-HANDS"))[0])["DM"][0]
    assert set(mexico["COUNTRY"]) == {"MEX"}


def test_vital_signs_and_labs_use_cdisc_test_codes_units_dates_and_baseline_flags():
    """VSTESTCD (C66741) HEIGHT/WEIGHT/SYSBP/DIABP/PULSE/TEMP/BMI; LBTESTCD (C65047); units from
    UNIT (C71620: "C" for degrees Celsius); LBDTC is the sample date; ALT/AST carry their upper
    limit of normal in LBORNRHI; VSLOBXFL flags one result per test and subject (SDTMIG 3.4)."""
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "EASC-RA"))[0])
    vs = datasets["VS"][0]
    assert set(vs["VSTESTCD"]) <= {"HEIGHT", "WEIGHT", "BMI", "SYSBP", "DIABP", "PULSE", "TEMP"}
    assert {"HEIGHT", "WEIGHT", "SYSBP", "DIABP", "PULSE"} <= set(vs["VSTESTCD"])
    assert set(vs.loc[vs["VSTESTCD"] == "TEMP", "VSORRESU"]) <= {"C"}
    assert set(vs.loc[vs["VSTESTCD"] == "SYSBP", "VSTEST"]) == {"Systolic Blood Pressure"}
    flagged = vs[vs["VSLOBXFL"] == "Y"]
    assert len(flagged) and not flagged.duplicated(["USUBJID", "VSTESTCD"]).any()
    assert (flagged["EPOCH"] != "").all()
    lb = datasets["LB"][0]
    assert {"HGB", "ALT", "CREAT"} <= set(lb["LBTESTCD"]) and not {"ALTULNUL", "SAMPDATE"} & set(lb["LBTESTCD"])
    for entry in CrfEntry.objects.filter(participant__trial__code="EASC-RA", crf_code="LABS").select_related("participant"):
        rows = lb[(lb["USUBJID"] == f"EASC-RA-{entry.participant.screening_number}") & (lb["LBTESTCD"] == "ALT")
                  & (lb["LBDTC"] == str(entry.answers.get("sample_date") or "")) & (lb["VISIT"] == entry.visit.label)]
        if entry.answers.get("alt_u_l") is not None:
            assert len(rows) == 1
            if entry.answers.get("alt_uln_u_l") is not None:
                assert float(rows.iloc[0]["LBORNRHI"]) == float(entry.answers["alt_uln_u_l"])
                high = float(entry.answers["alt_u_l"]) > float(entry.answers["alt_uln_u_l"])
                assert rows.iloc[0]["LBNRIND"] == ("HIGH" if high else "NORMAL")
    assert set(lb["EPOCH"]) <= set(sdtm_terms.EPOCHS.values()) and (lb["EPOCH"] != "").all()


def test_not_done_items_have_stat_and_reason():
    """SDTMIG 3.4 §4.5.1.2: a test not done is a record with --STAT = "NOT DONE" (ND, C66789), the
    reason in --REASND and no result (the missing-data codes were dropped before)."""
    vitals = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="VITALS").select_related("visit", "participant").first()
    participant, visit = vitals.participant, vitals.visit
    crf_entry_save_answers(
        user=system_user(), visit=visit, crf_code="VITALS", complete=True, reason="Scale broken",
        answers={"height_cm": Decimal("165"), "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
        missing={"weight_kg": {"code": "not_done", "reason": "Scale broken"}},
    )
    vs = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])["VS"][0]
    row = vs[(vs["USUBJID"] == f"ASC-DU-{participant.screening_number}") & (vs["VSTESTCD"] == "WEIGHT")
             & (vs["VISIT"] == visit.label)].iloc[0]
    assert (row["VSSTAT"], row["VSREASND"], row["VSORRES"]) == ("NOT DONE", "NOT DONE: Scale broken", "")
    assert pd.isna(row["VSSTRESN"])


def test_long_and_non_ascii_text_is_transliterated_split_into_supp_and_reported():
    """SDTMIG 3.4 §4.5.3.2: text over 200 characters keeps its first 200 in the variable and the
    rest in SUPP-- (QNAM AETERM1 …); XPT v5 is ASCII, so "πυρετός" becomes "pyretos" and the
    manifest says what was changed. Nothing is lost: the pieces put together give the whole text."""
    participant = Participant.objects.filter(trial__code="ASC-DU").first()
    term = "Fever πυρετός " + " ".join(f"word{n}" for n in range(40))  # 283 characters (the field holds 300)
    event = AdverseEvent.objects.filter(participant=participant).first()
    from trials.safety.services import ae_save

    event.verbatim_term = term
    ae_save(event, user=system_user(), reason="Full term")
    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    datasets = read_datasets(content)
    ae = datasets["AE"][0]
    row = ae[(ae["USUBJID"] == f"ASC-DU-{participant.screening_number}") & (ae["AESEQ"] == event.number)].iloc[0]
    assert len(row["AETERM"]) <= 200 and row["AETERM"].startswith("Fever pyretos word0")
    supp = datasets["SUPPAE"][0]
    rest = supp[(supp["USUBJID"] == row["USUBJID"]) & (supp["IDVARVAL"] == str(event.number))
                & supp["QNAM"].str.match(r"AETERM\d")].sort_values("QNAM")
    assert list(rest["IDVAR"].unique()) == ["AESEQ"] and len(rest) >= 1
    assert row["AETERM"] + "".join(rest["QVAL"]) == term.replace("πυρετός", "pyretos")
    manifest = json.loads(package(content)["manifest.json"])
    assert any("π" in line and "transliterated" in line for line in manifest["warnings"])


def test_ae_supplemental_qualifiers_and_disposition_milestones():
    """SUPPAE carries what AE has no variable for (DLT, expectedness, relation to the procedure,
    awareness time); DS has a RANDOMIZED protocol milestone (NCOMPLT/DS milestones) for a
    randomized trial; EPOCH is in AE and DS (SDTMIG 3.4 §4.1.3.1)."""
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])
    supp = datasets["SUPPAE"][0]
    assert {"AEDLT", "AERELPR", "AEAWARDT"} <= set(supp["QNAM"])
    event = AdverseEvent.objects.filter(participant__trial__code="ASC-DU").select_related("participant").first()
    aware = supp[(supp["USUBJID"] == f"ASC-DU-{event.participant.screening_number}") & (supp["QNAM"] == "AEAWARDT")
                 & (supp["IDVARVAL"] == str(event.number))]
    assert aware.iloc[0]["QVAL"][:10] == event.aware_at.date().isoformat()
    ds = datasets["DS"][0]
    randomized = ds[ds["DSDECOD"] == "RANDOMIZED"]
    assert sorted(randomized["USUBJID"]) == sorted(
        f"ASC-DU-{a.participant.screening_number}" for a in Allocation.objects.filter(participant__trial__code="ASC-DU").select_related("participant"))
    assert set(randomized["DSCAT"]) == {"PROTOCOL MILESTONE"}
    assert (datasets["AE"][0]["EPOCH"] != "").all() and (ds["EPOCH"] != "").all()


def test_trial_design_datasets_come_from_the_trial_file():
    """TS, TA, TE, TV, TI (SDTMIG 3.4 §7): TS has the parameters a submission needs (TSPARMCD C66738),
    TV one record per planned visit with VISITDY from the visit's anchor (a visit before
    treatment has a negative planned day, never a positive one), TI one record per criterion."""
    from trials.protocol.models import Criterion, VisitDefinition

    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "EASC-RA"))[0])
    ts = datasets["TS"][0]
    assert {"TITLE", "SPONSOR", "TPHASE", "STYPE", "TBLIND", "RANDOM", "PLANSUB", "SDTIGVER", "REGID"} <= set(ts["TSPARMCD"])
    assert ts.loc[ts["TSPARMCD"] == "SDTIGVER", "TSVAL"].iloc[0] == "3.4"
    # The EASC-RA title has more than 200 characters: it continues in TSVAL1 (SDTMIG 3.4 §7.6.1).
    title = ts[ts["TSPARMCD"] == "TITLE"].iloc[0]
    trial = Trial.objects.get(code="EASC-RA")
    assert len(trial.title) > 200 and title["TSVAL"] + title["TSVAL1"] == sdtm.ascii_text(trial.title)
    assert "SUPPTS" not in datasets
    tv = datasets["TV"][0]
    definitions = VisitDefinition.objects.filter(trial__code="EASC-RA", is_active=True)
    assert len(tv) == definitions.count()
    screening = definitions.get(code="SCREEN")
    assert tv.loc[tv["VISITNUM"] == screening.order, "VISITDY"].iloc[0] == screening.day_offset < 0
    first = definitions.get(anchor="first_treatment", day_offset=0)
    assert tv.loc[tv["VISITNUM"] == first.order, "VISITDY"].iloc[0] == 1  # day 1, no day 0
    ti = datasets["TI"][0]
    assert len(ti) == Criterion.objects.filter(trial__code="EASC-RA", is_active=True).count()
    assert set(ti["IECAT"]) == {"INCLUSION", "EXCLUSION"}
    ta = datasets["TA"][0]
    assert set(ta["ARMCD"]) == {"BLINDED"} and set(ta["EPOCH"]) <= set(sdtm_terms.EPOCHS.values())
    sv = datasets["SV"][0]
    assert (sv["EPOCH"] != "").all()


@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_define_xml_validates_and_agrees_with_the_xpt_files(trial_code):
    """Define-XML 2.1: valid against the official schema (schemas/define-2.1); one ItemGroupDef per
    .xpt with the same variables in the same order, labels, types (text/number) and lengths
    (the longest value written); CT version recorded in def:Standards."""
    from trials.exports import define

    content = export_bytes(sdtm, spec_for("datamanager", trial_code))[0]
    members = package(content)
    document = etree.parse(io.BytesIO(members["define.xml"]))
    schema = define.define_schema()
    assert schema.validate(document), schema.error_log.filter_from_errors()[:5]
    ns = {"odm": define.ODM_NS, "def": define.DEF_NS}
    ct = document.find(".//def:Standard[@Type='CT']", ns)
    assert ct.get("Version") == sdtm_terms.CT_VERSION and ct.get("Name") == "CDISC/NCI"
    items = {item.get("OID"): item for item in document.iterfind(".//odm:ItemDef", ns)}
    datasets = read_datasets(content)
    groups = {group.get("Name"): group for group in document.iterfind(".//odm:ItemGroupDef", ns)}
    assert set(groups) == set(datasets)
    for name, (data, meta) in datasets.items():
        refs = [items[ref.get("ItemOID")] for ref in groups[name].iterfind("odm:ItemRef", ns)]
        assert [item.get("Name") for item in refs] == meta.column_names, name
        for item in refs:
            column = item.get("Name")
            label = item.find("odm:Description/odm:TranslatedText", ns).text
            assert label[:40] == meta.column_names_to_labels[column], (name, column)
            numeric = meta.readstat_variable_types[column] == "double"
            assert (item.get("DataType") in {"integer", "float"}) == numeric, (name, column)
            if item.get("Length") and not numeric:
                assert int(item.get("Length")) == meta.variable_storage_width[column], (name, column)
        assert groups[name].find("def:leaf", ns).get("{http://www.w3.org/1999/xlink}href") == f"{name.lower()}.xpt"


def test_define_xml_reads_in_odmlib_with_every_oid_resolved():
    """A third-party reader (odmlib's Define-XML 2.1 model) loads the define.xml, every OID
    reference resolves, and no method, comment or code list is defined without being used."""
    from odmlib import define_loader, loader
    from odmlib.define_2_1.rules import oid_ref

    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    odm_loader = loader.ODMLoader(define_loader.XMLDefineLoader(model_package="define_2_1", ns_uri="http://www.cdisc.org/ns/def/v2.1"))
    odm_loader.load_odm_string(package(content)["define.xml"].decode())
    document = odm_loader.load_odm()
    assert {group.Name for group in document.Study.MetaDataVersion.ItemGroupDef} == set(read_datasets(content))
    checker = oid_ref.OIDRef()
    document.verify_oids(checker)
    assert checker.check_oid_refs()
    unused = {oid: kind for oid, kind in checker.check_unreferenced_oids().items() if kind != "leafID"}
    assert unused == {}


def test_define_xml_value_level_metadata_describes_each_test_result():
    """Define-XML 2.1 §5.3.6–5.3.7: --ORRES of a findings dataset has a def:ValueListRef to a
    def:ValueListDef with one ItemRef per test code present, each applied by a def:WhereClauseDef
    (RangeCheck --TESTCD EQ the code) and described by a value-level ItemDef whose Length is the
    longest result of that test in the .xpt (read back with pyreadstat, not from the writer)."""
    from trials.exports import define

    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    document = etree.parse(io.BytesIO(package(content)["define.xml"]))
    assert define.define_schema().validate(document), define.define_schema().error_log.filter_from_errors()[:5]
    ns = {"odm": define.ODM_NS, "def": define.DEF_NS}
    data, _meta = read_datasets(content)["VS"]
    tests = sorted(set(data["VSTESTCD"]) - {""})
    assert tests
    orres = document.find(".//odm:ItemDef[@OID='IT.VS.VSORRES']", ns)
    value_list = document.find(f".//def:ValueListDef[@OID='{orres.find('def:ValueListRef', ns).get('ValueListOID')}']", ns)
    refs = value_list.findall("odm:ItemRef", ns)
    clauses = {}
    for ref in refs:
        clause = document.find(f".//def:WhereClauseDef[@OID='{ref.find('def:WhereClauseRef', ns).get('WhereClauseOID')}']", ns)
        check = clause.find("odm:RangeCheck", ns)
        assert (check.get("Comparator"), check.get(f"{{{define.DEF_NS}}}ItemOID")) == ("EQ", "IT.VS.VSTESTCD")
        clauses[check.findtext("odm:CheckValue", namespaces=ns)] = document.find(f".//odm:ItemDef[@OID='{ref.get('ItemOID')}']", ns)
    assert sorted(clauses) == tests
    for code, item in clauses.items():
        results = data.loc[data["VSTESTCD"] == code, "VSORRES"]
        assert int(item.get("Length")) == max(1, results.str.len().max()), code
        assert item.get("Name") == "VSORRES"
