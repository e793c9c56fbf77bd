"""ClinicalTrials.gov API v2 import (trials/protocol/imports/ctgov.py, manage.py import_ctgov).

Expected values are read from the two records in tests/fixtures/ctgov/ (copies of
../shared/examples/ctgov, MIT licence beside them), never from the importer's output:
- NCT02210780: phases ["PHASE2"], RANDOMIZED, masking TRIPLE (PARTICIPANT, INVESTIGATOR,
  OUTCOMES_ASSESSOR), enrolment 194, start 2014-08-05, arms "Placebo qw" (EXPERIMENTAL) and
  "Dupilumab 300 mg qw", ages 18 to 64 Years, sex ALL, "Key Inclusion Criteria" numbered 1-5 and
  "Key Exclusion Criteria" numbered 1-7, 42 locations in the United States, outcome time frames
  "Week 16".
- NCT06388018: NON_RANDOMIZED, masking NONE, sex FEMALE, minimum age 18 Years, 14 top-level
  inclusion bullets (nested cohort bullets under two of them) and 9 exclusion bullets, one location
  (Providence, Rhode Island), status RECRUITING.
"""

from __future__ import annotations

import json
from datetime import date
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from trials.protocol.imports import ctgov
from trials.protocol.imports.common import ImportFailed
from trials.protocol.loader import protocol_check

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ctgov"


def _import(tmp_path: Path, name: str) -> tuple[dict, str, Path]:
    out = tmp_path / name
    ctgov.import_ctgov([FIXTURES / f"{name}.json"], out)
    path = out / f"{name.lower()}.yaml"
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text), text, out


def test_randomized_record(db, tmp_path):
    trial, text, out = _import(tmp_path, "NCT02210780")
    assert trial["registry_ids"]["nct"] == "NCT02210780"
    assert trial["registry_ids"]["org_study_id"] == "R668-AD-1314"
    assert (trial["phase"], trial["design"], trial["target_enrolment"]) == ("2", "randomized", 194)
    assert trial["masking"] == {"level": "triple", "masked": ["participant", "investigator", "outcomes_assessor"]}
    assert trial["start_date"] == date(2014, 8, 5)
    assert [(a["label"], a["type"]) for a in trial["arms"]] == [("Placebo qw", "experimental"), ("Dupilumab 300 mg qw", "experimental")]
    assert (trial["min_age_years"], trial["max_age_years"], trial["sex"]) == (18, 64, "all")
    criteria = trial["criteria"]
    inclusion = [c for c in criteria if c["kind"] == "inclusion" and not c["code"].startswith("I-")]
    exclusion = [c for c in criteria if c["kind"] == "exclusion"]
    assert (len(inclusion), len(exclusion)) == (5, 7)
    assert inclusion[0]["text"].startswith("Male or female adults ages 18 to 64 years with Chronic AD")
    assert "[Eichenfeld 2004]" in inclusion[0]["text"]  # the record's markdown escapes undone
    assert exclusion[2]["text"] == "History of Guillain-Barre syndrome"
    age = next(c for c in criteria if c["code"] == "I-AGE")
    assert age["expression"] == "age_years >= 18 && age_years <= 64"
    assert len(trial["sites"]) == 42 and {s["country"] for s in trial["sites"]} == {"US"}
    birmingham = next(s for s in trial["sites"] if s["city"] == "Birmingham")  # Alabama: US Central
    assert birmingham["time_zone"] == "America/Chicago"
    # "Week 16" in the outcome time frames -> a visit 16 weeks after enrolment.
    assert any(v["day_offset"] == 16 * 7 for v in trial["visits"])
    assert trial["randomization"]["block_sizes"] == [4]
    # What needs a person is written in the file, and the skeleton loads.
    assert "# TODO: visit windows" in text and "# Assumption:" in text
    assert protocol_check([out]).trials.keys() == {"NCT02210780"}


def test_non_randomized_single_site_record(db, tmp_path):
    trial, _text, out = _import(tmp_path, "NCT06388018")
    assert trial["registry_ids"]["nct"] == "NCT06388018"
    assert (trial["design"], trial["masking"]["level"], trial["status"]) == ("open_label", "none", "recruiting")
    assert [a["label"] for a in trial["arms"]] == ["Cohort A1", "Cohort A2", "Sub-study B"]
    assert trial["sex"] == "female" and trial["min_age_years"] == 18 and "max_age_years" not in trial
    sex = next(c for c in trial["criteria"] if c["code"] == "I-SEX")
    assert sex["expression"] == "sex == 'F'"
    inclusion = [c for c in trial["criteria"] if c["kind"] == "inclusion" and not c["code"].startswith("I-")]
    exclusion = [c for c in trial["criteria"] if c["kind"] == "exclusion"]
    assert (len(inclusion), len(exclusion)) == (14, 9)
    # The nested cohort bullets stay with their parent criterion.
    assert "Cohort A1" in inclusion[9]["text"] and "Stage III, any grade" in inclusion[9]["text"]
    [site] = trial["sites"]
    assert (site["city"], site["country"], site["time_zone"]) == ("Providence", "US", "America/New_York")
    assert protocol_check([out]).trials.keys() == {"NCT06388018"}


def test_criteria_splitting_rules():
    inclusion, exclusion, leftover = ctgov.split_criteria(
        "Inclusion Criteria:\n\n* Adults\n* Consent\n\n  * nested note\n\nExclusion Criteria:\n\n1. Pregnancy\n2. \\>2 prior lines\n\nA closing remark."
    )
    assert inclusion == ["Adults", "Consent; nested note"]
    assert exclusion == ["Pregnancy", ">2 prior lines"]
    assert leftover == ["A closing remark."]


def _refused(tmp_path: Path, content: str | bytes, *expected: str) -> None:
    source = tmp_path / "bad.json"
    source.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(ImportFailed) as caught:
        ctgov.import_ctgov([source], tmp_path / "out")
    for part in expected:
        assert part in str(caught.value), str(caught.value)
    assert not (tmp_path / "out").exists()


def test_malformed_json_is_refused_with_its_line(db, tmp_path):
    _refused(tmp_path, '{\n  "protocolSection": {\n    "identificationModule": {,\n', "bad.json:3:", "not valid JSON")


def test_wrong_type_is_refused_with_its_json_path(db, tmp_path):
    record = json.loads((FIXTURES / "NCT02210780.json").read_text(encoding="utf-8"))
    record["protocolSection"]["designModule"]["phases"] = "PHASE2"
    _refused(tmp_path, json.dumps(record), "$.protocolSection.designModule.phases", "expected a list")


def test_unknown_country_is_refused_with_its_json_path(db, tmp_path):
    record = json.loads((FIXTURES / "NCT02210780.json").read_text(encoding="utf-8"))
    record["protocolSection"]["contactsLocationsModule"]["locations"][3]["country"] = "Atlantis"
    _refused(tmp_path, json.dumps(record), "$.protocolSection.contactsLocationsModule.locations[3].country", "Atlantis")


def test_not_a_study_record_is_refused(db, tmp_path):
    _refused(tmp_path, '{"studies": []}', "0 studies in the file")
    _refused(tmp_path, '{"hello": 1}', "$.protocolSection", "not a ClinicalTrials.gov API v2 study record")


def test_a_100_mb_file_is_refused_before_parsing(db, tmp_path):
    source = tmp_path / "big.json"
    with source.open("wb") as handle:
        handle.write(b"{")
        handle.truncate(100 * 1024 * 1024)
    with pytest.raises(ImportFailed, match="big.json: the file is 100.0 MB; imports are limited to 10 MB"):
        ctgov.import_ctgov([source], tmp_path / "out")


def test_command_prints_the_report_and_writes_only_when_valid(db, tmp_path):
    stdout = StringIO()
    call_command("import_ctgov", str(FIXTURES / "NCT06388018.json"), "--out", str(tmp_path / "out"), stdout=stdout)
    assert "needs a person" in stdout.getvalue()
    assert (tmp_path / "out" / "nct06388018.yaml").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("[", encoding="utf-8")
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("import_ctgov", str(bad), "--out", str(tmp_path / "out2"), stdout=StringIO(), stderr=StringIO())
    assert not (tmp_path / "out2").exists()


# --- The legacy XML (clinical_study) -----------------------------------------------------------
# tests/fixtures/ctgov/NCT02210780-legacy.xml is NCT02210780 written in the legacy download format
# (values of the API v2 record above, two of its locations): start_date "August 5, 2014", phase
# "Phase 2", masking "Triple (Participant, Investigator, Outcomes Assessor)", gender "All".


def test_legacy_xml_record(db, tmp_path):
    out = tmp_path / "legacy"
    ctgov.import_ctgov([FIXTURES / "NCT02210780-legacy.xml"], out)
    trial = yaml.safe_load((out / "nct02210780.yaml").read_text(encoding="utf-8"))
    assert trial["registry_ids"] == {"nct": "NCT02210780", "org_study_id": "R668-AD-1314"}
    assert (trial["phase"], trial["design"], trial["status"], trial["start_date"]) == ("2", "randomized", "completed", date(2014, 8, 5))
    assert trial["masking"] == {"level": "triple", "masked": ["participant", "investigator", "outcomes_assessor"]}
    assert [(a["label"], a["intervention"]) for a in trial["arms"]] == [("Placebo qw", "Placebo"), ("Dupilumab 300 mg qw", "Dupilumab")]
    kinds = [c["kind"] for c in trial["criteria"] if not c["code"].startswith("I-")]
    assert (kinds.count("inclusion"), kinds.count("exclusion")) == (5, 7)
    assert [(s["city"], s["time_zone"]) for s in trial["sites"]] == [("Birmingham", "America/Chicago"), ("Boston", "America/New_York")]
    assert protocol_check([out]).trials.keys() == {"NCT02210780"}


def test_legacy_xml_problem_names_its_line(db, tmp_path):
    text = (FIXTURES / "NCT02210780-legacy.xml").read_text(encoding="utf-8").replace(
        "<country>United States</country>\n      </address>\n    </facility>\n  </location>\n</clinical_study>",
        "<country>Atlantis</country>\n      </address>\n    </facility>\n  </location>\n</clinical_study>")
    line = text[: text.index("<country>Atlantis")].count("\n") + 1
    source = tmp_path / "bad.xml"
    source.write_text(text, encoding="utf-8")
    with pytest.raises(ImportFailed, match=rf"bad.xml:{line}: .*country 'Atlantis'"):
        ctgov.import_ctgov([source], tmp_path / "out")
    assert not (tmp_path / "out").exists()
