"""manage.py import_redcap: REDCap data dictionaries (and arms/events/mapping) -> loadable trial and CRF YAML.

The examples under tests/fixtures/redcap/ (longitudinal.*, validation-types.*) are REDCapR's test
projects (MIT, LICENSE beside them); all_types.* is ours: every field and validation type, odd
characters, a BOM, API column names. Expected values follow REDCap's documented meaning of each
column (REDCap Help & FAQ, "Data Dictionary"), worked out by hand.
"""

import csv
import io
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from edc.audit import system_user
from tests.protocol.redcap_large import write_large_dictionary
from trials.protocol.engine import schema_for, validate_answers
from trials.protocol.imports.redcap import HUMAN_HEADERS, import_redcap
from trials.protocol.loader import protocol_load
from trials.protocol.models import CrfDefinition, Trial, VisitDefinition

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "redcap"
LONGITUDINAL = [FIXTURES / f"longitudinal.{k}.csv" for k in ("dictionary", "arm", "event")]
ALL_TYPES = sorted(FIXTURES.glob("all_types.*.csv"))


def write(result, out: Path) -> Path:
    (out / "crfs").mkdir(parents=True, exist_ok=True)
    for relative, text in result.files.items():
        (out / relative).write_text(text, encoding="utf-8")
    return out


def crf(result, code: str) -> dict:
    return yaml.safe_load(result.files[f"crfs/{code.lower()}.yaml"])


def item(result, code: str, name: str) -> dict:
    return next(f for f in crf(result, code)["fields"] if f["name"] == name)


# --- The two example dictionaries load as trials --------------------------------------------------


def test_longitudinal_example_imports_into_a_loadable_trial(tmp_path):
    result = import_redcap(LONGITUDINAL)
    assert result.problems == []
    # 9 instruments; the record ID listed, not dropped; the file upload is a file item.
    assert result.crfs == [
        "DEMOGRAPHICS", "CONTACT_INFO", "BASELINE_DATA", "VISIT_LAB_DATA", "PATIENT_MORALE_QUESTIONNAIRE",
        "VISIT_BLOOD_WORKUP", "VISIT_OBSERVED_BEHAVIOR", "COMPLETION_DATA", "COMPLETION_PROJECT_QUESTIONNAIRE",
    ]
    assert {(f.line, f.field) for f in result.not_imported} == {(2, "study_id")}
    assert item(result, "DEMOGRAPHICS", "patient_document")["type"] == "file"
    # Every rule translated: 2 branching rules (given_birth, num_children) and 2 BMI calculations.
    assert (result.rules_translated, result.rules_total, result.untranslated) == (4, 4, [])
    assert item(result, "DEMOGRAPHICS", "num_children")["show_if"] == "sex == 0 && given_birth == true"
    assert item(result, "DEMOGRAPHICS", "bmi")["calculation"] == {"cel": "(double(weight) * 10000.0) / ((height * height))"}
    # The events of the two arms (Enrollment and Final visit are in both) -> 10 visits, arms 1 and 2.
    assert result.visits[:3] == ["ENROLLMENT", "DOSE_1", "VISIT_1"] and len(result.visits) == 10
    protocol_load([write(result, tmp_path)], user=system_user())
    trial = Trial.objects.get(code="LONGITUDINAL")
    assert list(trial.arms.values_list("code", "label")) == [("ARM1", "Drug A"), ("ARM2", "Drug B")]
    assert VisitDefinition.objects.filter(trial=trial).count() == 10


def test_validation_types_example_imports_into_a_loadable_trial(tmp_path):
    result = import_redcap([FIXTURES / "validation-types.dictionary.csv"], trial_code="RC-VALTYPES")
    assert result.problems == []
    assert {f.field for f in result.not_imported} == {"record_id", "f_sql"}
    # REDCap's file upload and signature (the PNG it draws) land on file items.
    assert (item(result, "FORM_1", "f_file_upload")["type"], item(result, "FORM_1", "f_file_upload")["accept"]) == ("file", ["image", "pdf"])
    assert (item(result, "FORM_1", "f_signature")["type"], item(result, "FORM_1", "f_signature")["accept"]) == ("file", ["png"])
    assert (result.rules_translated, result.rules_total) == (1, 1)  # the calc "3+4"
    protocol_load([write(result, tmp_path)], user=system_user())
    definition = CrfDefinition.objects.get(code="FORM_1")
    outcome = validate_answers(schema_for(definition), {"v_number_2dp": Decimal("1.005")}, context={"today": "2026-01-01"})
    assert Decimal(outcome.answers["f_calculated"]) == Decimal(7)  # 3 + 4
    assert outcome.answers["v_number_2dp"] == "1.01"  # 2 decimals (number_2dp), half away from zero


# --- Every field type and validation type ----------------------------------------------------------


@pytest.fixture
def all_types(tmp_path):
    result = import_redcap(ALL_TYPES)
    assert result.problems == []
    protocol_load([write(result, tmp_path)], user=system_user())
    return result


def test_field_types_map_to_the_engine_types(all_types):
    types = {f["name"]: f["type"] for f in crf(all_types, "SCREENING")["fields"]}
    assert types["visit_date_rc"] == "date"  # renamed: 'visit_date' is reserved by the engine
    assert (types["consent_dt"], types["age"], types["weight"], types["height"]) == ("datetime", "integer", "decimal", "decimal")
    assert (types["bmi"], types["sex"], types["pregnant"], types["symptoms"]) == ("calculated", "single_choice", "yes_no", "multiple_choice")
    assert (types["no_fever"], types["severe_note"], types["agree"], types["pain"]) == ("descriptive", "long_text", "single_choice", "scale")
    # truefalse is stored 1 = True, 0 = False; slider 0-100 with its three labels.
    assert item(all_types, "SCREENING", "agree")["choices"] == [{"code": 1, "label": "True"}, {"code": 0, "label": "False"}]
    pain = item(all_types, "SCREENING", "pain")
    assert (pain["min"], pain["max"], pain["widget"]) == (0, 100, "slider")
    assert pain["help"] == "left: None; middle: Moderate; right: Worst"
    # Custom alignment RH = radios side by side; string codes stay strings.
    assert item(all_types, "SCREENING", "sex")["widget"] == "inline_radio"
    assert [c["code"] for c in item(all_types, "SCREENING", "severity")["choices"]] == ["mild", "mod", "sev"]
    # Not imported, each with its line and why (the record ID, SQL, two calculations); the file upload
    # and the signature become file items, each said in a note.
    assert [(f.line, f.field) for f in all_types.not_imported] == [
        (2, "record_id"), (22, "lookup"), (27, "root_height"), (31, "stdev_calc"),
    ]
    assert (types["photo"], types["sig"]) == ("file", "file")
    assert any(f.field == "sig" and "signature" in f.message for f in all_types.notes)


def test_labels_notes_sections_matrix_required_identifier(all_types):
    screening = crf(all_types, "SCREENING")
    visit_date = item(all_types, "SCREENING", "visit_date_rc")
    # HTML and entities in labels and headers become text; odd characters kept.
    assert visit_date["label"] == "Date de la visite — été, naïve “quotes”"
    assert visit_date["help"] == "Format: J-M-A"
    assert visit_date["required"] is True and visit_date["section"] == "Visit & consent"
    assert item(all_types, "FORMATS", "v_email")["identifier"] is True
    assert {"name": "How often in the last week…", "layout": "matrix"} in screening["sections"]
    assert [f["name"] for f in screening["fields"] if f.get("section") == "How often in the last week…"] == ["q1", "q2", "q3"]
    # After the matrix, the header's fields continue in a plain section.
    assert item(all_types, "SCREENING", "mood_total")["section"] == "How often in the last week… (continued)"


def test_min_max_in_redcap_formats_become_soft_checks(all_types):
    # REDCap: a value outside min/max gives a warning and can be saved -> a soft check, not a hard range.
    def checks(code, name):
        return [(c["expression"], c.get("severity")) for c in item(all_types, code, name).get("checks", [])]

    assert checks("SCREENING", "visit_date_rc") == [("visit_date_rc >= '2020-01-01' && visit_date_rc <= today", "soft")]  # 01/01/2020 (d/m/y)
    assert checks("SCREENING", "weight") == [("weight >= 30.5 && weight <= 250.0", "soft")]  # "30,5": decimal comma
    assert checks("SCREENING", "age") == [("age >= 18 && age <= 120", "soft")]
    assert checks("FORMATS", "v_date_mdy") == [("v_date_mdy >= '2019-12-31' && v_date_mdy <= '2030-12-31'", "soft")]  # 12/31/2019 m/d/y
    assert checks("SCREENING", "consent_dt") == [("consent_dt >= '2020-01-01T08:00'", "soft")]
    assert "min" not in item(all_types, "SCREENING", "age")


@pytest.mark.parametrize(
    ("validation", "good", "bad"),
    [
        ("email", "ana@example.org", "ana@example"),
        ("phone", "(615) 322-5000", "123-456-7890"),  # North American numbers: area code and exchange start 2-9
        ("zipcode", "37232-1234", "3723"),
        ("postalcode_canada", "K1A 0B1", "D1A 0B1"),  # D is not a Canadian first letter
        ("postalcode_french", "31000", "3100"),
        ("ssn", "123-45-6789", "123456789"),
        ("time", "23:59", "24:00"),
        ("time_hh_mm_ss", "08:05:09", "8:05:09"),
        ("time_mm_ss", "59:59", "60:00"),
        ("alpha_only", "Abc", "Ab1"),
        ("mrn_10d", "0123456789", "123456789"),
        ("vmrn", "1234", "123"),
    ],
)
def test_text_validation_types_check_the_format(all_types, validation, good, bad):
    schema = schema_for(CrfDefinition.objects.get(code="FORMATS"))
    name = f"v_{validation}"
    assert validate_answers(schema, {name: good}, context={"today": "2026-01-01"}).errors == {}
    assert name in validate_answers(schema, {name: bad}, context={"today": "2026-01-01"}).errors


def test_number_and_date_validation_types(all_types):
    by_name = {f["name"]: f for f in crf(all_types, "FORMATS")["fields"]}
    for places in range(1, 5):
        assert by_name[f"v_number_{places}dp"]["precision"] == places
        assert by_name[f"v_number_{places}dp_comma_decimal"]["precision"] == places
    assert by_name["v_number_comma_decimal"]["type"] == "decimal"
    assert {by_name[f"v_date_{o}"]["type"] for o in ("ymd", "mdy", "dmy")} == {"date"}
    assert {by_name[f"v_datetime_{s}{o}"]["type"] for s in ("", "seconds_") for o in ("ymd", "mdy", "dmy")} == {"datetime"}
    assert by_name["v_integer"]["type"] == "integer"


def test_branching_and_calculations_run_in_the_engine(all_types):
    """The translated rules, run by the engine on the loaded CRF (REDCap's meaning of each rule)."""
    schema = schema_for(CrfDefinition.objects.get(code="SCREENING"))
    context = {"today": "2026-01-01"}

    def hidden(answers):
        return validate_answers(schema, answers, context=context).hidden

    # [sex] = '2' and [age] < 55 -> pregnant shown for a woman of 40, hidden for a man.
    assert "pregnant" not in hidden({"sex": 2, "age": 40})
    assert "pregnant" in hidden({"sex": 1, "age": 40})
    # [symptoms(99)] = "1": shown when "Other" is ticked; [symptoms(2)] = '0': shown unless Fever ticked.
    assert "symptoms_other" not in hidden({"symptoms": [1, 99]})
    assert {"symptoms_other", "no_fever"} & hidden({"symptoms": [2]}) == {"symptoms_other", "no_fever"}
    assert "no_fever" not in hidden({})
    # truefalse: [agree] = '0' shows "why not" for False.
    assert "agree_why" not in hidden({"agree": 0})
    # BMI 70 kg / 1.75 m^2 = 22.857 -> 22.9 (round(…, 1)); mood total 2 + 1 with q2 blank = 3.
    outcome = validate_answers(schema, {"weight": Decimal(70), "height": Decimal(175), "q1": 2, "q3": 1}, context=context)
    assert outcome.answers["bmi"] == "22.9"
    assert Decimal(outcome.answers["mood_total"]) == Decimal(3)
    # The untranslated rules are listed and their fields always shown.
    assert [(f.line, f.field) for f in all_types.untranslated] == [
        (27, "root_height"), (31, "stdev_calc"), (28, "root_note"), (29, "cross_event"), (30, "smart_var"),
    ]
    assert (all_types.rules_translated, all_types.rules_total) == (16, 21)


def test_followup_calculations_and_cross_instrument_logic(all_types):
    schema = schema_for(CrfDefinition.objects.get(code="FOLLOWUP"))
    answers = {"fu_start": date(2024, 1, 1), "fu_end": date(2024, 3, 1), "fu_age": 70, "fu_status": 2}
    outcome = validate_answers(schema, answers, context={"today": "2024-03-15", "crfs": {"visit": {"SCREENING": {"sex": 2}}}})
    # 2024-01-01 -> 2024-03-01: 31 + 29 days (leap year); years = 60 / 365.2425 rounded down = 0.
    assert Decimal(outcome.answers["fu_days"]) == Decimal(60)
    assert Decimal(outcome.answers["fu_years_abs"]) == Decimal(0)
    assert Decimal(outcome.answers["age_group"]) == Decimal(2)  # if([fu_age] >= 65, 2, 1)
    # [fu_status] <> '1' and not([fu_status] = '1'): shown for "Dead"; [fu_status] = '': hidden.
    assert {"fu_not_alive", "fu_not_alive2"} - outcome.hidden == {"fu_not_alive", "fu_not_alive2"}
    assert "fu_blank" in outcome.hidden
    # [sex] of the screening instrument (same visit) = '2' and [fu_age] >= 50; ended 14 days ago (<= 30).
    assert "fu_sex_from_screening" not in outcome.hidden
    assert "fu_recent" not in outcome.hidden


def test_events_and_mapping_give_the_visit_plan(all_types):
    trial = yaml.safe_load(all_types.files["all_types.yaml"])
    assert trial["visits"] == [
        {"code": "SCREENING", "label": "Screening", "kind": "baseline", "day_offset": 0, "crfs": ["SCREENING", "FORMATS"]},
        {"code": "FOLLOWUP_M3", "label": "M3", "kind": "follow_up", "day_offset": 91, "window_before_days": 7,
         "window_after_days": 14, "crfs": ["FOLLOWUP"]},
    ]
    assert "# TODO:" in all_types.files["all_types.yaml"]


def test_both_header_styles_and_the_bom_give_the_same_crfs(tmp_path):
    api = (FIXTURES / "all_types.dictionary.csv").read_bytes().decode("utf-8-sig")
    assert (FIXTURES / "all_types.dictionary.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    to_human = {v: k for k, v in HUMAN_HEADERS.items()}
    header, _, body = api.partition("\r\n")
    human = ",".join(f'"{to_human[c].title()}"' for c in header.split(",")) + "\r\n" + body
    path = tmp_path / "all_types.dictionary.csv"
    path.write_bytes(human.encode())  # no BOM, human headers
    others = [p for p in ALL_TYPES if "dictionary" not in p.name]
    assert import_redcap([path, *others]).files == import_redcap(ALL_TYPES).files


# --- Malformed files: refused with the line and the problem, nothing written ---------------------


def _dictionary(tmp_path: Path, rows: list[list[str]], name: str = "bad.csv") -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["field_name", "form_name", "section_header", "field_type", "field_label", "select_choices_or_calculations",
                     "field_note", "text_validation_type_or_show_slider_number", "text_validation_min", "text_validation_max"])
    writer.writerow(["record_id", "f", "", "text", "ID", "", "", "", "", ""])
    writer.writerows(rows)
    path = tmp_path / name
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ([["a", "f", "", "texte", "A", "", "", "", "", ""]], 3, "unknown field type 'texte'"),
        ([["a", "f", "", "text", "A", "", "", "", "", ""], ["a", "f", "", "text", "A2", "", "", "", "", ""]], 4, "also defined on line 3"),
        ([["a", "f", "", "text", "A", "", "", "integer", "abc", ""]], 3, "text validation min: 'abc' is not a number"),
        ([["a", "f", "", "text", "A", "", "", "integer", "1,5", ""]], 3, "not a whole number"),
        ([["a", "f", "", "text", "A", "", "", "number", "10", "2"]], 3, "min (10) is greater than max (2)"),
        ([["a", "f", "", "text", "A", "", "", "date_dmy", "31/02/2020", ""]], 3, "is not a date"),
        ([["a", "f", "", "radio", "A", "Yes | No", "", "", "", ""]], 3, "has no 'code, label'"),
        ([["a", "f", "", "radio", "A", "1, Yes | 1, No", "", "", "", ""]], 3, "a code is given twice"),
        ([["Bad-Name", "f", "", "text", "A", "", "", "", "", ""]], 3, "a field name is lower-case"),
        ([["a", "Form 1", "", "text", "A", "", "", "", "", ""]], 3, "form name 'Form 1'"),
        ([["a", "f", "", "calc", "A", "", "", "", "", ""]], 3, "needs its calculation"),
        ([["a", "f", "", "slider", "A", "", "", "", "50", "10"]], 3, "min < max"),
        ([["a", "f", "", "text", "A", "", "", "", "", "", "extra"]], 3, "the row has 11 cells, the header 10"),
    ],
)
def test_malformed_dictionary_rows_are_refused_with_their_line(tmp_path, rows, line, message):
    path = _dictionary(tmp_path, rows)
    result = import_redcap([path])
    assert result.files == {}
    assert [(p.file, p.line) for p in result.problems] == [("bad.csv", line)], result.problems
    assert message in result.problems[0].message


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b"", 1, "empty"),
        (b"field_name,form_name,field_type,field_label\nrecord_id,f,text,ID\n\xe9t\xe9,f,text,A\n", 3, "not UTF-8"),
        (b'field_name,form_name,field_type,field_label\nrecord_id,f,text,"ID\n', 2, "malformed CSV"),
        (b"field_name,form_name,field_type,field_label\nrecord_id,f,text,ID\na\x00,f,text,A\n", 3, "NUL"),
        (b"name,colour\nx,red\n", 1, "not a REDCap data dictionary"),
        (b"field_name,form_name,field_label\nrecord_id,f,ID\n", 1, "missing column(s): field_type"),
    ],
)
def test_malformed_files_are_refused(tmp_path, content, line, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = import_redcap([path])
    assert result.files == {}
    assert [p.line for p in result.problems] == [line], result.problems
    assert message in result.problems[0].message


def test_a_mapping_naming_an_unknown_event_is_refused(tmp_path):
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("arm_num,unique_event_name,form\n1,screening_arm_1,screening\n1,week_2_arm_1,followup\n", encoding="utf-8")
    others = [p for p in ALL_TYPES if "mapping" not in p.name]
    result = import_redcap([*others, mapping])
    assert [(p.file, p.line) for p in result.problems] == [("mapping.csv", 3)]
    assert "unknown event 'week_2_arm_1'" in result.problems[0].message


def test_loader_errors_are_reported_on_the_dictionary_row(tmp_path):
    # 'today' is reserved by the engine, so it becomes today_rc, which the next row also defines: the
    # loader's "duplicate field name" on the generated CRF is put back on the dictionary's line 4.
    path = _dictionary(tmp_path, [["today", "f", "", "text", "A", "", "", "", "", ""], ["today_rc", "f", "", "text", "B", "", "", "", "", ""]])
    result = import_redcap([path])
    assert result.files == {}
    assert [(p.file, p.line, p.path) for p in result.problems] == [("bad.csv", 4, "today_rc")]
    assert "duplicate field name 'today_rc'" in result.problems[0].message
    assert "(generated crfs/f.yaml:" in result.problems[0].message


def test_command_writes_nothing_on_error_and_everything_on_success(tmp_path):
    out = tmp_path / "out"
    bad = _dictionary(tmp_path, [["a", "f", "", "texte", "A", "", "", "", "", ""]])
    stderr = io.StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("import_redcap", str(bad), "--out", str(out), stdout=io.StringIO(), stderr=stderr)
    assert stderr.getvalue().startswith("bad.csv:3: a: unknown field type 'texte'")
    assert not out.exists()
    stdout = io.StringIO()
    call_command("import_redcap", *[str(p) for p in ALL_TYPES], "--out", str(out), stdout=stdout)
    text = stdout.getvalue()
    assert "Rules translated: 16 of 21" in text
    assert "all_types.dictionary.csv:29: cross_event:" in text
    assert sorted(p.name for p in (out / "crfs").iterdir()) == ["followup.yaml", "formats.yaml", "screening.yaml"]
    call_command("load_trials", str(out), stdout=io.StringIO())
    assert Trial.objects.filter(code="ALL_TYPES").exists()


def test_a_large_dictionary_imports_whole(tmp_path):
    counts = write_large_dictionary(tmp_path / "large.dictionary.csv")
    assert counts["fields"] >= 500 and counts["rules"] >= 400
    result = import_redcap([tmp_path / "large.dictionary.csv"])
    assert result.problems == [] and result.untranslated == []
    assert result.rules_translated == result.rules_total == counts["rules"]
    assert result.fields_imported == counts["fields"]
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
    protocol_load([write(result, tmp_path / "out")], user=system_user())
    assert CrfDefinition.objects.filter(code__startswith="FORM_").count() == 12


# --- REDCap project XML (ODM 1.3.1 with redcap: attributes) ---------------------------------------


def test_project_xml_imports_like_the_csv_files(tmp_path):
    # project.xml follows the layout REDCap writes (as in REDCap-ETL's test data): select = dropdown,
    # textarea = notes, int/float = integer/number, min/max as soft RangeChecks, checkboxes as one
    # boolean ItemDef per option, the form status item, events with their FormRefs.
    result = import_redcap([FIXTURES / "project.xml"])
    assert result.problems == []
    demographics = crf(result, "DEMOGRAPHICS")
    assert demographics["title"] == "Basic Demography Form"  # the instrument's label (FormDef Name)
    assert [f["name"] for f in demographics["fields"]] == [
        "first_name", "dob", "age", "sex", "pregnant", "race", "height", "weight", "bmi", "comments",
        "consent_file",
    ]  # no record ID, no demographics_complete; the file upload is a file item
    assert item(result, "DEMOGRAPHICS", "race")["choices"] == [{"code": 1, "label": "Asian"}, {"code": 2, "label": "White"}]
    assert item(result, "DEMOGRAPHICS", "sex")["required"] is True
    assert item(result, "DEMOGRAPHICS", "pregnant")["show_if"] == "sex == 0 && age < 55.0"
    assert item(result, "DEMOGRAPHICS", "comments")["type"] == "long_text"
    assert item(result, "DEMOGRAPHICS", "weight")["checks"][0]["expression"] == "weight >= 35"
    assert [(f.line, f.field) for f in result.not_imported] == [(52, "record_id")]
    assert item(result, "DEMOGRAPHICS", "consent_file")["type"] == "file"
    assert [(f.line, f.field) for f in result.untranslated] == [(111, "visit_note")]
    assert (result.rules_translated, result.rules_total) == (3, 4)
    assert yaml.safe_load(result.files["project.yaml"])["visits"][1] == {
        "code": "WEEK_4", "label": "Week 4", "kind": "follow_up", "day_offset": 28,
        "window_before_days": 3, "window_after_days": 3, "crfs": ["VISIT"],
    }
    protocol_load([write(result, tmp_path)], user=system_user())
    schema = schema_for(CrfDefinition.objects.get(code="DEMOGRAPHICS"))
    # age = rounddown(datediff([dob], 'today', 'y')): born 1990-06-15, on 2026-06-14 -> 35 years.
    outcome = validate_answers(schema, {"dob": date(1990, 6, 15), "sex": 0}, context={"today": "2026-06-14"})
    assert Decimal(outcome.answers["age"]) == Decimal(35)
    assert "pregnant" not in outcome.hidden


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b'<?xml version="1.0"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3">\n<Study>\n</ODM>\n', 4, "not well-formed XML"),
        (b'<?xml version="1.0"?>\n<root/>\n', 2, "not a REDCap project XML"),
        (
            (
                b'<?xml version="1.0"?>\n<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3"><Study><MetaDataVersion>\n'
                b'\n<FormDef OID="Form.f" Name="F"><ItemGroupRef ItemGroupOID="missing"/></FormDef>\n'
                b"</MetaDataVersion></Study></ODM>\n"
            ),
            4, "unknown ItemGroupOID 'missing'",  # line 4: the FormDef's line
        ),
    ],
)
def test_malformed_project_xml_is_refused(tmp_path, content, line, message):
    path = tmp_path / "project.xml"
    path.write_bytes(content)
    result = import_redcap([path])
    assert result.files == {}
    assert [p.line for p in result.problems] == [line], result.problems
    assert message in result.problems[0].message


def test_project_xml_external_entities_are_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT", encoding="utf-8")
    text = (FIXTURES / "project.xml").read_text(encoding="utf-8")
    text = text.replace("<ODM ", f'<!DOCTYPE ODM [<!ENTITY x SYSTEM "file://{secret}">]>\n<ODM ', 1)
    text = text.replace("<TranslatedText>First Name</TranslatedText>", "<TranslatedText>First &x; Name</TranslatedText>")
    path = tmp_path / "project.xml"
    path.write_text(text, encoding="utf-8")
    result = import_redcap([path])
    assert result.problems == []
    assert not any("SECRET" in content for content in result.files.values())


def test_too_large_files_are_refused(tmp_path):
    from trials.protocol.imports.redcap import MAX_BYTES, MAX_FIELDS

    big = tmp_path / "big.csv"
    with big.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)
    result = import_redcap([big])
    assert [(p.line, "at most 20 MB" in p.message) for p in result.problems] == [(1, True)]
    many = tmp_path / "many.csv"
    many.write_text("field_name,form_name,field_type,field_label\n" + "".join(f"f{i},f,text,F\n" for i in range(MAX_FIELDS + 1)))
    result = import_redcap([many])
    assert [(p.line, p.message) for p in result.problems] == [(MAX_FIELDS + 2, f"more than {MAX_FIELDS} rows: too large to import")]


def test_every_rule_is_translated_or_listed(tmp_path):
    # A calculation that cannot be translated takes its own branching logic with it: both are listed.
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["field_name", "form_name", "field_type", "field_label", "select_choices_or_calculations", "branching_logic"])
    writer.writerows([
        ["record_id", "f", "text", "ID", "", ""],
        ["a", "f", "text", "A", "", ""],
        ["root", "f", "calc", "Root", "[a]^0.5", "[a] <> ''"],
        ["b", "f", "text", "B", "", "[a] <> ''"],
    ])
    path = tmp_path / "rules.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    result = import_redcap([path])
    assert result.problems == []
    assert (result.rules_translated, result.rules_total) == (1, 3)
    assert [(f.line, f.field) for f in result.untranslated] == [(4, "root"), (4, "root")]
    assert result.rules_translated + len(result.untranslated) == result.rules_total
