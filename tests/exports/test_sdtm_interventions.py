"""SDTM domains of the issue-15 records (issue 17): EX one record per administration, RFXSTDTC /
RFXENDTC from it, CM and MH from the participant logs, PR from the fat-grafting procedure, IE only
for the criteria not satisfied; a blinded EX names no arm and no placebo. The expected values are
the SDTMIG 3.4 rules quoted on each test and the answers as stored. The data are those of
tests/exports/test_odm.py (made through the services)."""

from __future__ import annotations

import io
from datetime import date

import pytest
from lxml import etree

from edc.audit import audited_save, system_user
from tests.exports.test_odm import (  # noqa: F401 - _trial_data and trial_data are fixtures
    _trial_data,
    export_bytes,
    spec_for,
    trial_data,
)
from tests.exports.test_sdtm import package, read_datasets, usubjid
from trials.exports import define, sdtm
from trials.participants.models import Allocation, EligibilityAnswer, Participant
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers, log_record_add

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("trial_data")]


def log(participant: Participant, crf_code: str, answers: dict) -> CrfEntry:
    record = log_record_add(user=system_user(), participant=participant, crf_code=crf_code)
    return crf_entry_save_answers(user=system_user(), visit=record, crf_code=crf_code, complete=True, reason="Test data",
                                  answers=answers)


def test_ex_has_one_record_per_infusion_and_dm_reference_exposure_dates_come_from_it():
    """SDTMIG 3.4 §6.1.3 EX: one record per administration (EASC-RA: an INFUSION entry each);
    DM RFXSTDTC/RFXENDTC = the first/last EXSTDTC; EXENDTC = start + the infusion's duration."""
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "EASC-RA"))[0])
    ex, dm = datasets["EX"][0], datasets["DM"][0].set_index("USUBJID")
    for participant in Participant.objects.filter(trial__code="EASC-RA").select_related("trial"):
        infusions = CrfEntry.objects.filter(participant=participant, crf_code="INFUSION")
        rows = ex[ex["USUBJID"] == usubjid(participant)]
        assert len(rows) == infusions.count() > 0
        starts = sorted(e.answers["infusion_datetime"][:19] for e in infusions)
        assert sorted(rows["EXSTDTC"]) == starts
        assert list(rows.sort_values("EXSEQ")["EXSTDTC"]) == starts  # EXSEQ in time order
        assert (dm.loc[usubjid(participant), "RFXSTDTC"], dm.loc[usubjid(participant), "RFXENDTC"]) == (starts[0], starts[-1])
        assert set(rows["EXROUTE"]) == {"INTRAVENOUS"}
        for entry in infusions:
            row = rows[rows["EXSTDTC"] == entry.answers["infusion_datetime"][:19]].iloc[0]
            minutes = entry.answers.get("infusion_duration_min")
            if minutes is not None:
                start = date.fromisoformat(row["EXSTDTC"][:10])
                assert row["EXENDTC"] > row["EXSTDTC"] and date.fromisoformat(row["EXENDTC"][:10]) >= start
        # Blinded (the data manager's default): the treatment is masked and no dose is given.
        assert set(rows["EXTRT"]) == {sdtm.BLINDED_TREATMENT} and rows["EXDOSE"].isna().all()
        assert not {"PLACEBO"} & set(rows["EXTRT"])


def test_unblinded_ex_of_the_placebo_in_cohort_design_says_placebo_with_dose_zero():
    """SDTMIG 3.4 EX: a placebo is EXTRT = PLACEBO, EXDOSE = 0; the active dose is the collected one.
    The unblinded DSMB statistician sees it; nobody else does (the previous test). The first
    participant's slot is made a placebo slot if the list gave none to the module's participants."""
    allocations = Allocation.objects.filter(participant__trial__code="EASC-RA").select_related("slot").order_by("pk")
    assert allocations.count() >= 2 and all(a.slot_id for a in allocations)
    if not any(a.slot.placebo for a in allocations):
        slot = allocations[0].slot
        slot.placebo = True
        audited_save(slot, user=system_user(), reason="Test data: a placebo slot")
    placebos = 0
    ex = read_datasets(export_bytes(sdtm, spec_for("dsmb.statistician", "EASC-RA", blinded=False))[0])["EX"][0]
    for allocation in Allocation.objects.filter(participant__trial__code="EASC-RA").select_related("participant__trial", "slot", "arm"):
        rows = ex[ex["USUBJID"] == usubjid(allocation.participant)]
        if allocation.slot is not None and allocation.slot.placebo:
            assert set(rows["EXTRT"]) == {"PLACEBO"} and set(rows["EXDOSE"]) == {0.0}
            placebos += 1
        else:
            assert set(rows["EXTRT"]) == {allocation.arm.label}
            assert len(rows) == CrfEntry.objects.filter(participant=allocation.participant, crf_code="INFUSION").count()
    assert placebos >= 1


def test_day0_administration_is_one_ex_record_per_injected_ulcer():
    """SDTMIG 3.4 §6.1.3: administrations at different locations are separate records (the Day-0
    injection of ASC-DU: one per ulcer, EXSPID = the ulcer, EXVAMT its volume)."""
    ex = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])["EX"][0]
    entries = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="DU_INJECTION").select_related("participant__trial")
    assert entries.exists()
    for entry in entries:
        rows = ex[ex["USUBJID"] == usubjid(entry.participant)]
        injected = entry.answers["ulcers_injected"]
        assert sorted(rows["EXSPID"]) == sorted(r["ulcer_id"] for r in injected)
        assert sorted(rows["EXVAMT"]) == sorted(float(r["volume_ml"]) for r in injected if r.get("volume_ml") is not None)
        assert set(rows["EXSTDTC"]) == {entry.answers["administration_datetime"][:19]}
        assert set(rows["EXROUTE"]) == {"INTRALESIONAL"}


def test_conmed_and_medical_history_logs_are_cm_and_mh_with_ongoing_per_the_ig():
    """SDTMIG 3.4 §6.1.2 CM, §6.2.5 MH: one record per log record; ongoing = --ENRTPT ONGOING with
    --ENTPT and no end date (§4.4.7); CMROUTE/CMDOSFRQ/CMDOSU from CDISC CT (ROUTE, FREQ, UNIT)."""
    participant = Participant.objects.filter(trial__code="ASC-DU").first()
    log(participant, "CONMED", {"medication": "nifedipine", "drug_class": "calcium_channel_blocker", "indication": "Raynaud's phenomenon",
                                "dose": "30", "dose_unit": "mg", "route": "oral", "frequency": "QD",
                                "start_date": date(2025, 6, 1), "ongoing": True})
    log(participant, "CONMED", {"medication": "paracetamol", "drug_class": "other", "indication": "pain", "dose": "1", "dose_unit": "g", "route": "oral",
                                "frequency": "PRN", "start_date": date(2025, 5, 1), "ongoing": False, "stop_date": date(2025, 5, 9)})
    log(participant, "MEDHIST", {"condition": "Systemic sclerosis", "onset_date": date(2015, 3, 1), "ongoing": True})
    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    datasets = read_datasets(content)
    # Define-XML 2.1: the new datasets validate, with their class and CDISC code lists (ROUTE C66729, FREQ C71113).
    document = etree.parse(io.BytesIO(package(content)["define.xml"]))
    assert define.define_schema().validate(document), define.define_schema().error_log.filter_from_errors()[:5]
    ns = {"odm": define.ODM_NS, "def": define.DEF_NS}
    classes = {g.get("Name"): g.find("def:Class", ns).get("Name") for g in document.iterfind(".//odm:ItemGroupDef", ns)}
    assert (classes["EX"], classes["CM"], classes["PR"], classes["MH"], classes["IE"]) == (
        "INTERVENTIONS", "INTERVENTIONS", "INTERVENTIONS", "EVENTS", "FINDINGS")
    aliases = {c.get("Name"): c.find("odm:Alias", ns).get("Name") for c in document.iterfind(".//odm:CodeList", ns)
               if c.find("odm:Alias", ns) is not None}
    assert {"C66729", "C71113"} <= set(aliases.values())
    cm = datasets["CM"][0]
    cm = cm[cm["USUBJID"] == usubjid(participant)].set_index("CMTRT")
    assert cm.loc["nifedipine", ["CMINDC", "CMDOSE", "CMDOSU", "CMROUTE", "CMDOSFRQ", "CMSTDTC", "CMENDTC", "CMENRTPT"]].tolist() == [
        "Raynaud's phenomenon", 30.0, "mg", "ORAL", "QD", "2025-06-01", "", "ONGOING"]
    assert cm.loc["paracetamol", ["CMDOSU", "CMDOSFRQ", "CMSTDTC", "CMENDTC", "CMENRTPT"]].tolist() == [
        "g", "PRN", "2025-05-01", "2025-05-09", ""]
    assert cm.loc["nifedipine", "CMENTPT"] and not cm.loc["paracetamol", "CMENTPT"]
    mh = datasets["MH"][0]
    row = mh[mh["USUBJID"] == usubjid(participant)].iloc[0]
    assert (row["MHTERM"], row["MHSTDTC"], row["MHENDTC"], row["MHENRTPT"]) == ("Systemic sclerosis", "2015-03-01", "", "ONGOING")
    assert "CONMED" not in {name[:6] for name in datasets} and not any(name.startswith("FACO") for name in datasets)


def test_fat_grafting_is_pr_harvest_and_graft_per_treated_area():
    """SDTMIG 3.4 §6.1.5 PR: one record per procedure occurrence: the harvest and the graft of each
    treated area, dated with the procedure date."""
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "SSC-FATGRAFT-REG"))[0])
    pr = datasets["PR"][0]
    entries = CrfEntry.objects.filter(participant__trial__code="SSC-FATGRAFT-REG", crf_code="FATGRAFT").select_related("participant__trial")
    assert entries.exists()
    for entry in entries:
        rows = pr[(pr["USUBJID"] == usubjid(entry.participant)) & (pr["PRSPID"] == str(entry.pk))]
        areas = entry.answers.get("treated_areas") or []
        harvest = 1 if entry.answers.get("harvest_site") or entry.answers.get("harvest_method") else 0
        assert len(rows) == harvest + max(1, len(areas))
        assert set(rows["PRSTDTC"]) == {entry.answers.get("procedure_date") or entry.visit.visit_date.isoformat()}


def test_ie_holds_only_the_criteria_not_satisfied():
    """SDTMIG 3.4 §6.3.4 IE: only the criteria not met (an inclusion answered No, IEORRES N; an
    exclusion answered Yes, IEORRES Y), with TI's IETESTCD. The answers are changed in the table
    (the checklist service refuses edits after screening; the export reads what is stored)."""
    participant = Participant.objects.filter(trial__code="ASC-DU").first()
    inclusion = EligibilityAnswer.objects.filter(participant=participant, criterion__kind="inclusion", lesion="").first()
    exclusion = EligibilityAnswer.objects.filter(participant=participant, criterion__kind="exclusion", lesion="").first()
    inclusion.answer, exclusion.answer = "not_met", "met"
    audited_save(inclusion, user=system_user(), reason="Test data")
    audited_save(exclusion, user=system_user(), reason="Test data")
    datasets = read_datasets(export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0])
    ie, ti = datasets["IE"][0], datasets["TI"][0]
    assert set(ie["USUBJID"]) == {usubjid(participant)}  # every other subject satisfied every criterion

    def code(criterion) -> str:  # noqa: ANN001 - TI's test code of the criterion (IETEST opens with its text)
        return ti[[sdtm.ascii_text(criterion.text).startswith(text) for text in ti["IETEST"]]].iloc[0]["IETESTCD"]

    got = sorted(zip(ie["IETESTCD"], ie["IECAT"], ie["IEORRES"], strict=True))
    assert got == sorted([(code(inclusion.criterion), "INCLUSION", "N"), (code(exclusion.criterion), "EXCLUSION", "Y")])


def test_a_blinded_ex_of_the_placebo_in_cohort_trial_never_says_placebo_or_names_an_arm():
    """Blinding (docs/architecture.md): a blinded user never sees or infers an arm; the EX file of
    EASC-RA (placebo slots inside the dose cohorts) holds neither "placebo" nor a cohort's label.
    The unblinded file does (the scan can fail)."""
    from tests.exports.test_odm import arm_words
    from tests.exports.test_sdtm import xpt_bytes
    from trials.protocol.models import Trial

    trial = Trial.objects.get(code="EASC-RA")
    words = [w.lower().encode() for w in arm_words(trial)] + [b"placebo"]
    for username in ("datamanager", "sponsor.toulouse", "dsmb.statistician"):
        raw = xpt_bytes(export_bytes(sdtm, spec_for(username, "EASC-RA"))[0]).lower()
        assert not [w for w in words if w in raw], username
    unblinded = xpt_bytes(export_bytes(sdtm, spec_for("dsmb.statistician", "EASC-RA", blinded=False))[0]).lower()
    assert any(w in unblinded for w in words)


def test_medical_history_is_coded_against_the_trials_dictionary_and_conmeds_stay_uncoded():
    """MH: a term that is exactly (case aside) a lowest-level term of the coding dictionary gets its
    preferred term (MHDECOD) and system organ class (MHBODSYS): the demo dictionary
    (fixtures/coding_demo.csv) has "Head pain" -> Headache, Nervous system disorders. A term it does
    not hold stays uncoded (null), counted in the manifest's warnings. CM: CMDECOD is present and
    null (WHODrug is licensed and not loaded), said in the warnings."""
    import json

    participant = Participant.objects.filter(trial__code="ASC-DU").first()
    log(participant, "MEDHIST", {"condition": "head pain", "onset_date": date(2016, 1, 1), "ongoing": True})
    log(participant, "MEDHIST", {"condition": "Digital ulcers of the left hand", "onset_date": date(2017, 1, 1), "ongoing": True})
    log(participant, "CONMED", {"medication": "nifedipine", "drug_class": "calcium_channel_blocker", "indication": "Raynaud's phenomenon",
                                "dose": "30", "dose_unit": "mg", "route": "oral", "frequency": "QD",
                                "start_date": date(2025, 6, 1), "ongoing": True})
    content = export_bytes(sdtm, spec_for("datamanager", "ASC-DU"))[0]
    datasets = read_datasets(content)
    mh = datasets["MH"][0]
    mh = mh[mh["USUBJID"] == usubjid(participant)].set_index("MHTERM")
    assert mh.loc["head pain", ["MHDECOD", "MHBODSYS"]].tolist() == ["Headache", "Nervous system disorders"]
    assert mh.loc["Digital ulcers of the left hand", ["MHDECOD", "MHBODSYS"]].tolist() == ["", ""]
    cm = datasets["CM"][0]
    assert "CMDECOD" in cm.columns and set(cm["CMDECOD"]) == {""}
    warnings = json.loads(package(content)["manifest.json"])["warnings"]
    uncoded = [w for w in warnings if w.startswith("MH:")]
    assert len(uncoded) == 1 and "EDC-DEMO 1" in uncoded[0]
    assert int(uncoded[0].split()[1]) == int((mh["MHDECOD"] == "").sum()) + int(
        (datasets["MH"][0][datasets["MH"][0]["USUBJID"] != usubjid(participant)]["MHDECOD"] == "").sum())
    assert any(w.startswith("CM:") and "WHODrug" in w for w in warnings)
    document = etree.parse(io.BytesIO(package(content)["define.xml"]))
    assert define.define_schema().validate(document), define.define_schema().error_log.filter_from_errors()[:5]
