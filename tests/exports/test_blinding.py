"""A blinded export leaks no arm, and a default export no identifying item: every file of every
registered format is scanned (zips and xlsx workbooks member by member, decompressed) for the
arm codes and labels of the randomized seed trial ASC-DU, the kit codes, and canary values seeded
into the identifying items. The same scan finds them where they are allowed (positive controls),
so it can fail."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import Decimal

import pytest

from tests.exports.conftest import CANARY_BIRTH, CANARY_INITIALS, days_ago, enter, job_bytes
from tests.exports.pdftools import pdf_text
from trials.exports.formats import FORMATS
from trials.exports.models import ExportState
from trials.participants.models import Allocation
from trials.protocol.models import Arm

pytestmark = pytest.mark.django_db


def contents(data: bytes) -> bytes:
    """The file's bytes; for a zip (CSV export, xlsx workbook) its members' bytes, recursively; for
    a PDF (casebooks) its text as pdftotext (poppler) extracts it."""
    if data[:5] == b"%PDF-":
        return pdf_text(data).encode()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return b"\n".join(contents(archive.read(name)) for name in archive.namelist())


def arm_words() -> set[bytes]:
    words = set()
    for arm in Arm.objects.filter(trial__code="ASC-DU"):
        words |= {arm.code.lower().encode(), arm.label.lower().encode()}
    return words


def excel_serial(day: date) -> bytes:
    return str((day - date(1899, 12, 30)).days).encode()


def unblinded_free_text(participant) -> None:  # noqa: ANN001
    """Free text naming an arm, as someone who knows might write it (after an emergency unblinding):
    an item of the wide FATGRAFT table and an AE's treatment."""
    from edc.audit import system_user
    from trials.safety.services import ae_save

    lipo = participant.visits.get(definition__code="LIPO")
    enter(participant, "FATGRAFT", {
        "procedure_date": days_ago(15), "treated_areas": ["hands"], "technique": "adsvf", "treated_hand": "right", "anaesthesia_type": "local",
                 "harvest_method": "syringe", "processing": "enzymatic", "prp_used": False, "harvest_site": "abdomen",
        "harvested_fat_ml": Decimal("40"), "injections": [{"injection_site": "palm", "volume_ml": Decimal("1.5")}],
        "procedure_complications": True, "complications_description": "Bruising; she was told she received AdMSC.",
    }, visit=lipo)
    ae = participant.adverse_events.get()
    ae.treatment_given = "Stopped PLACEBO injections"
    ae_save(ae, user=system_user(), reason="Treatment described")


@pytest.mark.parametrize("export_format", sorted(FORMATS))
def test_a_blinded_export_of_the_randomized_trial_names_no_arm(du, export, export_format: str) -> None:  # noqa: ANN001
    unblinded_free_text(du["participants"][0])
    allocations = Allocation.objects.filter(participant__trial__code="ASC-DU")
    assert allocations.count() == 3  # randomized through participant_randomize
    kits = {a.kit_code.encode() for a in allocations}
    assert all(kits)
    for username in ("sponsor.toulouse", "datamanager", "dsmb.statistician"):  # the DSMB's too, when she asks blinded
        job = export(username, "ASC-DU", format=export_format)
        assert job.state == ExportState.DONE, job.error
        text = contents(job_bytes(job)).lower()
        for word in arm_words():
            assert word not in text, (username, export_format, word)
        for kit in kits:
            assert kit.lower() not in text, (username, export_format, kit)
        assert b"unblind" not in text
        assert b"[blinded]" in text  # the free texts are there, masked


def test_the_scan_finds_the_arms_in_the_dsmb_unblinded_export(du, export) -> None:  # noqa: ANN001
    unblinded_free_text(du["participants"][0])
    job = export("dsmb.statistician", "ASC-DU", blinded=False, reason="Interim safety analysis (DSMB charter 4.2)")
    assert job.state == ExportState.DONE, job.error
    assert not job.blinded
    text = contents(job_bytes(job)).lower()
    assert any(word in text for word in arm_words())
    files = zipfile.ZipFile(io.BytesIO(job_bytes(job))).namelist()
    assert "allocations.csv" in files
    assert b"she received AdMSC" in text.replace(b"admsc", b"AdMSC") and b"[blinded]" not in text
    history = job.history.earliest("history_date")
    assert "Interim safety analysis" in history.history_change_reason
    assert history.history_user.username == "dsmb.statistician"


@pytest.mark.parametrize("export_format", sorted(FORMATS))
def test_a_default_export_contains_no_identifying_item(du, export, export_format: str) -> None:  # noqa: ANN001, ARG001
    job = export("datamanager", "ASC-DU", format=export_format)
    assert job.state == ExportState.DONE, job.error
    text = contents(job_bytes(job))
    assert CANARY_INITIALS.encode() not in text
    assert CANARY_BIRTH.isoformat().encode() not in text
    assert CANARY_BIRTH.strftime("%d%b%Y").upper().encode() not in text.upper()
    # Dates may be stored as numbers (Excel serials, days since 1960): the items themselves are absent.
    assert b"date_of_birth" not in text.lower() and b"initials" not in text.lower()
    if export_format == "xlsx":
        assert b">" + excel_serial(CANARY_BIRTH) + b"<" not in text


def test_the_scan_finds_the_canaries_when_the_data_manager_asks_for_identifiers(du, export) -> None:  # noqa: ANN001, ARG001
    job = export("datamanager", "ASC-DU", identifiers=True, reason="Source verification of the screening log")
    assert job.state == ExportState.DONE, job.error
    text = contents(job_bytes(job))
    assert CANARY_INITIALS.encode() in text
    assert CANARY_BIRTH.isoformat().encode() in text
