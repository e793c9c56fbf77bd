"""The participant casebook PDF (issue 21, close-out): every CRF with its values and missing-data
reasons, the queries, the signatures and the audit trail, read back with poppler's pdftotext
(an independent reader) and page 1 rendered with pdftoppm; scoped to the site's monitors and data
managers; blinded; and the whole trial's casebooks as a zip export job with progress.

Expected values are those entered here through the services, and item labels those of the trial
file (seeds/crfs/vitals.yaml)."""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from edc.audit import audited_save, system_user
from tests.exports.conftest import screening_visit, user
from tests.exports.pdftools import first_page_png, ink_fraction, page_count, pdf_text
from tests.exports.test_blinding import arm_words, unblinded_free_text
from tests.monitoring.test_signatures import PASSWORD, sign, signable
from trials.exports.models import ExportState
from trials.protocol.models import Role, Site, StudyRole
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db


def casebook(client, username: str, participant) -> object:
    client.force_login(user(username))
    return client.get(f"/participants/{participant.pk}/casebook.pdf")


@pytest.fixture
def documented(du):
    """The first participant with a missing-data reason entered over a value, a signed visit, the
    data manager's query (from `du`) and an AE."""
    participant = du["participants"][0]
    crf_entry_save_answers(
        user=system_user(), visit=screening_visit(participant), crf_code="VITALS", complete=True, reason="Scale broken",
        answers={"height_cm": Decimal(165), "systolic_bp": 121, "diastolic_bp": 79, "heart_rate": 68},
        missing={"weight_kg": {"code": "not_done", "reason": "Scale broken on the day"}},
    )
    visit = signable(participant)
    signature = sign(participant, visit, password=PASSWORD)
    return {**du, "participant": participant, "signature": signature}


def test_the_casebook_prints_crfs_missing_reasons_queries_signatures_and_the_audit_trail(documented, client) -> None:
    participant = documented["participant"]
    response = casebook(client, "monitor.du", participant)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    data = response.content
    assert data[:5] == b"%PDF-"
    text = pdf_text(data)
    assert str(participant) in text and participant.screening_number in text
    # CRF items as the trial file labels them, with the values entered.
    assert "Body weight" in text and "Systolic" in text
    assert "121" in text and "165" in text
    # The missing-data reason instead of the value.
    assert "Scale broken on the day" in text and "not_done" in text
    # The query and its text.
    assert "Please check the weight." in text
    # The AE.
    assert "Headache" in text
    # The signature: the investigator's printed name and the meaning.
    signature = documented["signature"]
    assert signature.printed_name in text
    # The audit trail: the weight first entered (61.5), then replaced by the missing-data code, with the reason.
    assert "Audit trail" in text
    assert "61.5" in text and "Scale broken" in text
    assert page_count(data) >= 2
    png = first_page_png(data, keep_as="casebook-page1.png")
    assert png.stat().st_size > 1000
    assert 0.01 < ink_fraction(png) < 0.6  # text on the page, not blank, not a black box


def test_a_default_casebook_keeps_the_identifiers_for_the_site(documented, client) -> None:
    from tests.exports.conftest import CANARY_INITIALS

    text = pdf_text(casebook(client, "datamanager", documented["participant"]).content)
    assert CANARY_INITIALS in text  # the site's archive keeps what the site holds


def test_the_casebook_is_for_the_sites_monitors_and_data_managers_only(du, client) -> None:
    toulouse, grenoble = du["participants"][0], du["participants"][2]
    assert grenoble.site.code == "GRE"
    # A monitor of Toulouse alone.
    only_tls = get_user_model().objects.create_user("monitor.tls", password="x-Not-Used-9")
    audited_save(StudyRole(user=only_tls, trial=toulouse.trial, site=Site.objects.get(trial=toulouse.trial, code="TLS"),
                           role=Role.MONITOR), user=system_user(), reason="Test role")
    assert casebook(client, "monitor.tls", toulouse).status_code == 200
    assert casebook(client, "monitor.tls", grenoble).status_code == 404
    for username in ("coordinator.toulouse", "investigator.toulouse", "sponsor.toulouse", "dsmb.statistician"):
        assert casebook(client, username, toulouse).status_code == 404, username
    client.logout()
    assert client.get(f"/participants/{toulouse.pk}/casebook.pdf").status_code == 302  # to the login page


def test_the_dashboard_links_the_casebook_for_its_monitor_only(du, client) -> None:
    participant = du["participants"][0]
    client.force_login(user("monitor.du"))
    assert b'data-testid="casebook-pdf"' in client.get(f"/participants/{participant.pk}/").content
    client.force_login(user("coordinator.toulouse"))
    assert b'data-testid="casebook-pdf"' not in client.get(f"/participants/{participant.pk}/").content


def test_a_monitors_casebook_of_the_blinded_trial_names_no_arm(du, client) -> None:
    participant = du["participants"][0]
    unblinded_free_text(participant)
    text = pdf_text(casebook(client, "monitor.du", participant).content).lower()
    for word in arm_words():
        assert word.decode() not in text, word
    assert "[blinded]" in text  # the free texts are there, masked
    assert participant.allocation.kit_code.lower() not in text


def test_the_trials_casebooks_are_a_zip_export_job_with_progress(du, export) -> None:
    from tests.exports.conftest import CANARY_INITIALS, job_bytes

    job = export("datamanager", "ASC-DU", format="casebooks")
    assert job.state == ExportState.DONE, job.error
    assert (job.rows_done, job.rows_total, job.percent) == (3, 3, 100)  # one step per participant
    with zipfile.ZipFile(io.BytesIO(job_bytes(job))) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{p.site.code}/{p}.pdf" for p in du["participants"])
        texts = {name: pdf_text(archive.read(name)) for name in names}
    for participant in du["participants"]:
        text = texts[f"{participant.site.code}/{participant}.pdf"]
        assert participant.screening_number in text and "Body weight" in text
        assert CANARY_INITIALS not in text  # identifying items left out of a default export
    assert "Please check the weight." in texts[f"TLS/{du['participants'][0]}.pdf"]


def test_a_monitor_cannot_request_the_casebook_export(du, client) -> None:
    client.force_login(user("monitor.du"))
    assert client.get("/trials/ASC-DU/exports/").status_code == 404
