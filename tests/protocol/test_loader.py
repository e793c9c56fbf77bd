"""manage.py load_trials: idempotent, versions changed CRFs, and rejects bad files whole."""

import copy
import shutil
from io import StringIO
from pathlib import Path

import pytest
import yaml
from decimal import Decimal
from django.core.management import call_command
from django.core.management.base import CommandError

from edc.audit import system_user
from tests.conftest import SEEDS
from trials.protocol.loader import ProtocolLoadError, protocol_load
from trials.protocol.models import (
    Arm,
    CrfDefinition,
    Criterion,
    FieldDefinition,
    Site,
    Trial,
    VisitCrf,
    VisitDefinition,
)

pytestmark = pytest.mark.django_db

AUDITED = [Trial, Site, Arm, Criterion, VisitDefinition, VisitCrf, CrfDefinition, FieldDefinition]

CRF = {
    "code": "MINI",
    "title": "Mini CRF",
    "codelists": {"yn": [{"code": 0, "label": "No"}, {"code": 1, "label": "Yes"}]},
    "fields": [
        {"name": "assessment_date", "label": "Date", "type": "date", "required": True},
        {"name": "age_years", "label": "Age", "type": "integer", "min": 0, "max": 120},
        {"name": "smoker", "label": "Smoker", "type": "single_choice", "choices": "yn"},
        {
            "name": "lesions",
            "label": "Lesions",
            "type": "repeating_group",
            "max_rows": 2,
            "fields": [{"name": "active", "label": "Active", "type": "yes_no"}],
        },
    ],
}
TRIAL = {
    "code": "MINI-TRIAL",
    "title": "A minimal randomized trial",
    "phase": "2",
    "study_type": "interventional",
    "design": "randomized",
    "masking": {"level": "double", "masked": ["participant", "investigator"]},
    "target_enrolment": 10,
    "status": "recruiting",
    "sponsor": "Sponsor",
    "conditions": ["Condition"],
    "randomization": {"block_sizes": [2, 4]},
    "eligibility": {"crfs": ["MINI"], "lesion": {"crf": "MINI", "group": "lesions"}},
    "sites": [
        {"code": "S1", "name": "Site one", "city": "Lyon", "country": "FR", "time_zone": "Europe/Paris", "recruitment_status": "recruiting"},
        {"code": "S2", "name": "Site two", "city": "Puebla", "country": "MX", "time_zone": "America/Mexico_City", "recruitment_status": "recruiting"},
    ],
    "arms": [{"code": "A", "label": "Active", "type": "experimental"}, {"code": "P", "label": "Placebo", "type": "placebo_comparator"}],
    "criteria": [
        {"code": "I01", "kind": "inclusion", "text": "Adult", "expression": "age_years >= 18"},
        {"code": "L01", "kind": "inclusion", "text": "Active lesion", "level": "lesion", "expression": "active == true"},
    ],
    "visits": [
        {"code": "SCR", "label": "Screening", "kind": "screening", "day_offset": -7, "window_before_days": 7, "crfs": ["MINI"]},
        {"code": "W4", "label": "Week 4", "day_offset": 28, "window_before_days": 3, "window_after_days": 3, "crfs": [{"crf": "MINI", "required": False}]},
    ],
}


def write(folder: Path, trial: dict | None = None, crf: dict | None = None) -> Path:
    (folder / "crfs").mkdir(parents=True, exist_ok=True)
    (folder / "crfs" / "mini.yaml").write_text(yaml.safe_dump(crf or CRF, sort_keys=False))
    (folder / "mini_trial.yaml").write_text(yaml.safe_dump(trial or TRIAL, sort_keys=False))
    return folder


def counts() -> dict[str, tuple[int, int]]:
    return {m.__name__: (m.objects.count(), m.history.count()) for m in AUDITED}


def test_minimal_files_load(tmp_path):
    report = protocol_load([write(tmp_path)], user=system_user())
    assert report.trials == ["MINI-TRIAL"]
    trial = Trial.objects.get(code="MINI-TRIAL")
    assert trial.sites.count() == 2 and trial.arms.count() == 2
    assert trial.visit_definitions.get(code="W4").visit_crfs.get().required is False


def test_second_run_writes_nothing(seeds):
    before = counts()
    report = protocol_load([SEEDS], user=system_user())
    assert not report.changed
    assert counts() == before


def test_every_row_is_audited_with_user_and_reason(seeds):
    trial = Trial.objects.get(code="ASC-DU")
    record = trial.history.get()
    assert record.history_user.username == "edc-system"
    assert record.history_change_reason.startswith("Loaded from seeds/001_")
    assert FieldDefinition.history.filter(history_change_reason__isnull=True).count() == 0


def test_changed_crf_becomes_a_new_version(tmp_path, seeds):
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    path = folder / "crfs" / "pain_vas.yaml"
    data = yaml.safe_load(path.read_text())
    data["fields"][-1]["help"]["en"] = "Ask about the last 7 days."  # a multilingual text (issue 20): its English changed
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    report = protocol_load([folder], user=system_user())

    assert report.crf_versions == ["PAIN_VAS v2"]
    versions = CrfDefinition.objects.filter(code="PAIN_VAS").order_by("version")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].fields.count() == versions[1].fields.count()  # v1 kept whole for its data
    links = VisitCrf.objects.filter(crf_code="PAIN_VAS")
    assert links.exists() and all(link.crf.version == 2 for link in links)
    assert all("changed: crf" in link.history.first().history_change_reason for link in links)
    # Comments and key order are not changes.
    assert not protocol_load([folder], user=system_user()).changed


def test_changed_fact_updates_with_reason_and_removed_site_is_deactivated(tmp_path):
    protocol_load([write(tmp_path)], user=system_user())
    trial = copy.deepcopy(TRIAL)
    trial["target_enrolment"] = 12
    trial["sites"] = trial["sites"][:1]
    report = protocol_load([write(tmp_path, trial=trial)], user=system_user())
    assert report.updated == {"Trial": 1} and report.deactivated == {"Site": 1}
    record = Trial.objects.get(code="MINI-TRIAL").history.first()
    assert "target_enrolment" in record.history_change_reason.split("(changed: ")[1]
    assert record.prev_record.target_enrolment == 10
    assert not Site.objects.get(code="S2").is_active


def mutate(data: dict, path: str, value) -> dict:  # noqa: ANN001
    data = copy.deepcopy(data)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = data
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


DELETE = object()

BAD_TRIALS = [
    ("safety_reporting", {"contacts": ["pv desk"]}, "safety_reporting.contacts[0]", "String should match pattern"),
    ("safety_reporting", {"alerts_at": [0.5, 1.5]}, "safety_reporting.alerts_at[1]", "less than 1"),
    ("safety_reporting", {"alerts_at": [0.5, 0.5]}, "safety_reporting", "alerts_at lists a fraction twice"),
    ("sponsor", DELETE, "sponsor", "required key is missing"),
    ("sponsr", "x", "sponsr", "unknown key 'sponsr'"),
    ("design", "adaptive", "design", "'adaptive' is not allowed"),
    ("sites.1.code", "S1", "sites[1].code", "duplicate code 'S1' in sites"),
    ("sites.0.time_zone", "Europe/Pariss", "sites[0].time_zone", "unknown time zone 'Europe/Pariss'"),
    ("sites.0.country", "France", "sites[0].country", "String should match pattern"),
    ("visits.1.crfs", ["MINI", "NOPE"], "visits[1].crfs[1]", "unknown CRF 'NOPE'"),
    ("criteria.0.expression", "age_years >= ", "criteria[0].expression", "CEL expression does not compile"),
    ("criteria.0.expression", "agee_years >= 18", "criteria[0].expression", "unknown field name(s): agee_years"),
    ("criteria.1.expression", "smoker == 1", "criteria[1].expression", "unknown field name(s): smoker"),
    ("criteria.0.expression", "previous.MINI.age_years >= 18", "criteria[0].expression", "unknown field name(s): previous"),
    ("criteria.0.expression", "avg([age_years]) >= 18", "criteria[0].expression", "calls unknown function(s): avg"),
    ("masking.masked", ["participant"], "masking", "masking level 'double' means 2 masked role(s)"),
    ("randomization", DELETE, "", "a randomized trial needs a 'randomization' block"),
    ("visits.0.window_before_days", -1, "visits[0].window_before_days", "greater than or equal to 0"),
    ("eligibility.lesion.group", "ulcers", "eligibility.lesion.group", "CRF 'MINI' has no repeating group 'ulcers'"),
    ("registry_ids", {"nct": "NCT123"}, "registry_ids.nct", "String should match pattern"),
    (
        "arms",
        [{"code": "A", "label": "A", "type": "experimental", "order": 1}, {"code": "B", "label": "B", "type": "experimental", "order": 1}],
        "",
        "two arms/cohorts have the same 'order'",
    ),
    ("randomization.block_sizes", [3], "randomization.block_sizes", "block size(s) [3] cannot hold the allocation ratio 1:1: use multiples of 2"),
    ("numbering", {"subject": "{site}-{seq:zz}"}, "numbering.subject", "is not a valid pattern"),
    ("numbering", {"subject": "{trial}-{seq:04d}"}, "numbering.subject", "a number pattern needs {site}"),
    ("masking.masked", ["participant", "participant"], "masking", "a masked role is listed twice"),
    ("score_settings", {"das28_cutoffs": {"remission": 3, "low": 2}}, "score_settings.das28_cutoffs", "must ascend"),
    ("score_settings", {"das28_crp_cutoffs": {"remission": 2.7, "low": 2.3}}, "score_settings.das28_crp_cutoffs", "must ascend"),
    ("score_settings", {"das28_crp_cutoffs": {"remision": 2.3}}, "score_settings.das28_crp_cutoffs.remision", "unknown key"),
    ("score_settings", {"das28_crp_cutoffs": {"remission": -1}}, "score_settings.das28_crp_cutoffs.remission", "greater than 0"),
]

BAD_CRFS = [
    ("fields.1.type", "integr", "fields[1].type", "'integr' is not allowed"),
    ("fields.2.choices", "yesno", "fields[2].choices", "unknown codelist 'yesno'"),
    ("fields.1.min", 200, "fields[1]", "min (200) is greater than max (120)"),
    ("fields.3.fields.0.name", "age_years", "fields[3].fields[0].name", "duplicate field name 'age_years'"),
    ("fields.2.type", "text", "fields[2]", "'choices' is not allowed on a text field"),
    ("fields.1.show_if", "smoker = 1", "fields[1].show_if", "CEL expression does not compile"),
    ("fields.0.name", "today", "fields[0].name", "'today' is reserved"),
    (
        "fields.1",
        {"name": "total", "label": "Total", "type": "calculated", "calculation": {"score": "cochin_sum"}},
        "fields[1].calculation.score",
        "unknown score 'cochin_sum'",
    ),
    (
        "fields.1",
        {"name": "bmi", "label": "BMI", "type": "calculated", "calculation": {"score": "bmi", "inputs": {"mass": "age_years"}}},
        "fields[1].calculation.inputs",
        "score 'bmi' takes weight_kg, height_cm, not mass",
    ),
    ("fields.1.widget", "dropdown", "fields[1]", "widget 'dropdown' does not suit a integer field"),
    ("codelists.yn.0.code", True, "codelists.yn[0].code", "quote the code"),
    ("sections", [{"name": "A"}, {"name": "A"}], "sections[1].name", "duplicate section 'A'"),
    ("fields.3.min_rows", 5, "fields[3]", "min_rows (5) is greater than max_rows (2)"),
    # Functions and other-CRF references (issue 13): checked at load time, not skipped at entry.
    ("checks", [{"expression": "lesions.map(l, l.active).avg() > 0.5", "message": "m"}], "checks[0].expression",
     "calls unknown function(s): avg"),
    ("checks", [{"expression": "previous.NOPE.age_years < age_years", "message": "m"}], "checks[0].expression",
     "'previous.NOPE' names an unknown CRF 'NOPE'"),
    ("checks", [{"expression": "age_years >= previous.MINI.agee_years", "message": "m"}], "checks[0].expression",
     "CRF 'MINI' has no item 'agee_years'"),
    ("checks", [{"expression": "visit.MINI.age_years == age_years", "message": "m"}], "checks[0].expression",
     "'visit.MINI' is this CRF"),
    ("checks", [{"expression": "size(baseline) > 0", "message": "m"}], "checks[0].expression",
     "'baseline' reads another CRF: write baseline.CRF_CODE.item"),
    ("fields.0.name", "previous", "fields[0].name", "'previous' is reserved"),
    # Score inputs may read other CRFs (issue 15), checked like expressions.
    ("fields.1", {"name": "bmi", "label": "BMI", "type": "calculated",
                  "calculation": {"score": "bmi", "inputs": {"weight_kg": "baseline.NOPE.weight_kg", "height_cm": "age_years"}}},
     "fields[1].calculation.inputs.weight_kg", "'baseline.NOPE' names an unknown CRF 'NOPE'"),
    ("fields.1", {"name": "bmi", "label": "BMI", "type": "calculated",
                  "calculation": {"score": "bmi", "inputs": {"weight_kg": "baseline.MINI.weight", "height_cm": "age_years"}}},
     "fields[1].calculation.inputs.weight_kg", "CRF 'MINI' has no item 'weight'"),
    ("fields.1", {"name": "bmi", "label": "BMI", "type": "calculated",
                  "calculation": {"score": "bmi", "inputs": {"weight_kg": "later.MINI.age_years", "height_cm": "age_years"}}},
     "fields[1].calculation.inputs.weight_kg", "String should match pattern"),
]


# A dose-escalation trial with a placebo inside each cohort (EASC-RA's design, issue 15).
COHORT_TRIAL = {
    **{k: v for k, v in TRIAL.items() if k not in ("randomization", "eligibility", "criteria")},
    "design": "dose_escalation",
    "escalation": {
        "rule": "sentinel_expansion", "sentinel_size": 3, "dlt_window_days": 28,
        "placebo": {"per_cohort": {"C1": 1, "C2": 1}, "masked": ["participant", "investigator"]},
    },
    "arms": [
        {"code": "C1", "label": "Low", "type": "experimental", "dose": 1, "dose_unit": "mg/kg", "order": 1, "planned_size": 8},
        {"code": "C2", "label": "High", "type": "experimental", "dose": 2, "dose_unit": "mg/kg", "order": 2, "planned_size": 8},
    ],
}


def test_two_to_one_with_blocks_of_four_is_refused_at_load(tmp_path):
    """Issue 15: the loader accepted 2:1 with blocks of 4 (a multiple of the number of arms) and the
    allocation service then refused to generate the list. A block of 4 cannot hold 2:1 (2 + 1 = 3)."""
    trial = mutate(mutate(TRIAL, "arms.0.planned_size", 20), "arms.1.planned_size", 10)
    trial = mutate(trial, "randomization.block_sizes", [4])
    assert_rejected(
        write(tmp_path, trial=trial), "mini_trial.yaml", "randomization.block_sizes",
        "block size(s) [4] cannot hold the allocation ratio 2:1: use multiples of 3 (the sum of the ratio)",
    )


def test_two_to_one_with_blocks_of_three_and_six_loads(tmp_path):
    trial = mutate(mutate(TRIAL, "arms.0.planned_size", 20), "arms.1.planned_size", 10)
    trial = mutate(trial, "randomization.block_sizes", [3, 6])
    assert protocol_load([write(tmp_path, trial=trial)], user=system_user()).trials == ["MINI-TRIAL"]


def test_cohort_placebo_loads_and_its_blocks_follow_the_same_rule(tmp_path):
    assert protocol_load([write(tmp_path / "ok", trial=COHORT_TRIAL)], user=system_user()).trials == ["MINI-TRIAL"]
    # 7 active : 1 placebo needs blocks of 8; a block of 4 cannot hold it.
    bad = mutate(COHORT_TRIAL, "escalation.placebo.block_sizes", [4])
    assert_rejected(write(tmp_path / "bad", trial=bad), "mini_trial.yaml", "escalation.placebo.block_sizes",
                    "cohort C1 (active:placebo): block size(s) [4] cannot hold the allocation ratio 7:1")


@pytest.mark.parametrize(("key", "value", "path", "message"), [
    ("escalation.placebo.per_cohort", {"C1": 1}, "", "placebo.per_cohort gives no number for cohort C2"),
    ("escalation.placebo.per_cohort", {"C1": 1, "C2": 1, "C9": 1}, "", "names unknown cohort(s): C9"),
    ("escalation.placebo.per_cohort", {"C1": 8, "C2": 1}, "", "cohort C1: placebo (8) needs a larger 'planned_size' (8)"),
    ("arms.1.planned_size", 3, "", "with rule sentinel_expansion every cohort needs a 'planned_size' above the sentinel size (3): C2"),
    ("escalation.rule", "rolling-6", "escalation.rule", "'rolling-6' is not allowed"),
    ("escalation.dose_tolerance_percent", -1, "escalation.dose_tolerance_percent", "greater than or equal to 0"),
])
def test_bad_cohort_design_is_rejected(tmp_path, key, value, path, message):
    assert_rejected(write(tmp_path, trial=mutate(COHORT_TRIAL, key, value)), "mini_trial.yaml", path, message)


def assert_rejected(folder: Path, file_name: str, path: str, message: str) -> None:
    before = counts()
    with pytest.raises(ProtocolLoadError) as excinfo:
        protocol_load([folder], user=system_user())
    problems = excinfo.value.problems
    assert any(p.file.endswith(file_name) and p.path == path and message in p.message for p in problems), [
        str(p) for p in problems
    ]
    assert counts() == before, "a rejected load wrote something"


@pytest.mark.parametrize(("key", "value", "path", "message"), BAD_TRIALS, ids=[c[3][:40] for c in BAD_TRIALS])
def test_bad_trial_file_is_rejected_whole(tmp_path, key, value, path, message):
    assert_rejected(write(tmp_path, trial=mutate(TRIAL, key, value)), "mini_trial.yaml", path, message)


@pytest.mark.parametrize(("key", "value", "path", "message"), BAD_CRFS, ids=[c[3][:40] for c in BAD_CRFS])
def test_bad_crf_file_is_rejected_whole(tmp_path, key, value, path, message):
    assert_rejected(write(tmp_path, crf=mutate(CRF, key, value)), "mini.yaml", path, message)


def test_das28_crp_cutoffs_are_accepted_and_kept_for_the_score(tmp_path):
    # Inoue E et al., Ann Rheum Dis 2007;66:407-9: DAS28-CRP remission 2.3, low 2.7, moderate 4.1.
    cutoffs = {"remission": 2.3, "low": 2.7, "moderate": 4.1}
    trial = mutate(TRIAL, "score_settings", {"das28_crp_cutoffs": cutoffs})
    protocol_load([write(tmp_path, trial=trial)], user=system_user())
    settings = Trial.objects.get(code="MINI-TRIAL").score_settings
    assert settings == {"das28_crp_cutoffs": {"remission": "2.3", "low": "2.7", "moderate": "4.1"}}
    # The score reads them from the trial's settings (entry_context spreads score_settings into the context).
    from trials.protocol.scores import das28_category

    assert das28_category(Decimal("2.50"), settings["das28_crp_cutoffs"]) == "low"  # >= 2.3, <= 2.7
    assert das28_category(Decimal("2.50")) == "remission"  # the ESR default 2.6


def test_checks_may_read_rows_and_other_crfs(tmp_path):
    crf = mutate(CRF, "checks", [
        {"expression": "lesions.filter(l, l.active == true).size() <= 2 && [1.0, 2.0].sum() == 3.0", "message": "m"},
        {"expression": "age_years == null || previous.MINI.age_years <= age_years", "message": "m", "severity": "soft"},
        {"expression": "baseline['MINI'].lesions.size() >= 0", "message": "m"},
    ])
    assert protocol_load([write(tmp_path, crf=crf)], user=system_user()).trials == ["MINI-TRIAL"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    folder = write(tmp_path)
    (folder / "mini_trial.yaml").write_text("code: X\ntitle: [unclosed\nphase: '2'\n")
    with pytest.raises(ProtocolLoadError) as excinfo:
        protocol_load([folder], user=system_user())
    (problem,) = excinfo.value.problems
    assert problem.file.endswith("mini_trial.yaml") and "YAML syntax error" in problem.message and problem.line == 3


def test_duplicate_yaml_key_is_an_error_with_its_line(tmp_path):
    folder = write(tmp_path)
    text = (folder / "mini_trial.yaml").read_text()
    (folder / "mini_trial.yaml").write_text(text + "target_enrolment: 99\n")
    with pytest.raises(ProtocolLoadError) as excinfo:
        protocol_load([folder], user=system_user())
    problem = excinfo.value.problems[0]
    assert problem.message == "duplicate key 'target_enrolment'" and problem.line == len(text.splitlines()) + 1


def test_same_trial_code_in_two_files(tmp_path):
    folder = write(tmp_path)
    (folder / "mini_trial_copy.yaml").write_text(yaml.safe_dump(TRIAL))
    assert_rejected(folder, "mini_trial_copy.yaml", "code", "trial 'MINI-TRIAL' is also defined in")


def test_an_nct_number_names_one_trial(tmp_path):
    folder = write(tmp_path, trial=mutate(TRIAL, "registry_ids", {"nct": "NCT04356755"}))
    (folder / "other.yaml").write_text(yaml.safe_dump({**mutate(TRIAL, "registry_ids", {"nct": "NCT04356755"}), "code": "OTHER"}))
    assert_rejected(folder, "other.yaml", "registry_ids.nct", "NCT04356755 is already the number of trial 'MINI-TRIAL'")


def test_one_bad_file_among_good_ones_writes_nothing(tmp_path, db):
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    (folder / "zz_bad.yaml").write_text(yaml.safe_dump(mutate(TRIAL, "sites.0.time_zone", "Mars/Olympus")))
    with pytest.raises(ProtocolLoadError):
        protocol_load([folder], user=system_user())
    assert not Trial.objects.exists() and not CrfDefinition.objects.exists()


def test_command_exits_non_zero_and_prints_each_problem(tmp_path):
    folder = write(tmp_path, trial=mutate(TRIAL, "sites.0.time_zone", "Nowhere"))
    stderr = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("load_trials", str(folder), stderr=stderr)
    assert "mini_trial.yaml:" in stderr.getvalue() and "sites[0].time_zone: unknown time zone 'Nowhere'" in stderr.getvalue()


def test_command_loads_and_reports(tmp_path):
    stdout = StringIO()
    call_command("load_trials", str(write(tmp_path)), stdout=stdout)
    assert "Loaded MINI-TRIAL" in stdout.getvalue()
    stdout = StringIO()
    call_command("load_trials", str(tmp_path), stdout=stdout)
    assert "Up to date" in stdout.getvalue()


def test_check_only_validates(tmp_path):
    stdout = StringIO()
    call_command("load_trials", str(write(tmp_path)), "--check", stdout=stdout)
    assert "Valid: 1 trial file(s), 1 CRF file(s); nothing written." in stdout.getvalue()
    assert not Trial.objects.exists()
    with pytest.raises(CommandError):
        call_command("load_trials", str(write(tmp_path, trial=mutate(TRIAL, "sponsor", DELETE))), "--check", stderr=StringIO())
