"""The Excel export opens in openpyxl with the same tables as the CSV export, native values and
the data dictionary."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from tests.exports.conftest import job_bytes
from trials.exports.models import ExportState
from trials.visits.models import CrfEntry

pytestmark = pytest.mark.django_db


def test_the_workbook_opens_with_the_right_values(du, export) -> None:  # noqa: ANN001
    csv_job = export("datamanager", "ASC-DU")
    job = export("datamanager", "ASC-DU", format="xlsx")
    assert job.state == ExportState.DONE, job.error
    book = load_workbook(io.BytesIO(job_bytes(job)))
    csv_tables = [n.removesuffix(".csv") for n in zipfile.ZipFile(io.BytesIO(job_bytes(csv_job))).namelist() if n.endswith(".csv")]
    assert book.sheetnames == [*csv_tables, "manifest"]

    rows = list(book["VITALS"].values)
    header, data = rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert header[:3] == ("site", "subject", "visit")
    entries = {e.pk: e for e in CrfEntry.objects.filter(crf_code="VITALS")}
    assert sorted(r["entry_id"] for r in data) == sorted(entries)
    for row in data:
        answers = entries[row["entry_id"]].answers
        assert Decimal(str(row["weight_kg"])) == Decimal(answers["weight_kg"])
        assert row["systolic_bp"] == answers["systolic_bp"] == 121
        assert Decimal(str(row["bmi"])) == Decimal(answers["bmi"])
        assert isinstance(row["visit_date"], datetime)
        assert row["visit_date"].date() == entries[row["entry_id"]].visit.visit_date

    ulcers = list(book["DU_ASSESS_ulcers"].values)
    ulcer = dict(zip(ulcers[0], ulcers[1], strict=True))
    assert (ulcer["hand"], ulcer["finger"], ulcer["beyond_pip"], ulcer["row_number"]) == ("right", 2, 1, 1)

    ae = dict(zip(*list(book["adverse_events"].values), strict=True))
    assert (ae["verbatim_term"], ae["grade"], ae["serious"], ae["treatment_given"]) == ("Headache", 2, 1, "Paracetamol")
    assert isinstance(ae["aware_at"], datetime) and ae["aware_at"].tzinfo is None  # UTC, as Excel has no time zones

    dictionary = {(r[0], r[1]): r for r in list(book["data_dictionary"].values)[1:]}
    assert dictionary[("VITALS", "weight_kg")][3:5] == ("decimal", "kg")
    manifest = {r[0]: r[1] for r in book["manifest"].values if r and r[0]}
    assert manifest["trial"] == "ASC-DU" and manifest["blinded"] is True
