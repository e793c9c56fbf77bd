"""The DSMB package (issue 21): the open report (pooled) and the closed report (by arm) of ASC-DU
for a cut-off date, as PDF (text read back with poppler's pdftotext, page 1 rendered with
pdftoppm) and CSV. The closed report exists for the trial's DSMB alone: the sponsor and every
blinded role get 404 on the page link, the PDF and the CSV; the open report names no arm (the
arm codes and labels of the trial file, scanned as the export arm scan does).

Expected numbers are those entered here through the services: three participants randomized
(conftest `du`), one serious AE ("Headache", hospitalisation)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.utils import timezone

from tests.exports.conftest import days_ago, user
from tests.exports.pdftools import first_page_png, ink_fraction, pdf_text
from tests.exports.test_blinding import arm_words, unblinded_free_text
from trials.protocol.models import Arm

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def midday():
    """A fixed midday (UTC and in the sites' zones the same date): the cut-off is a date, and the data
    entered here must fall before the end of its day in the site's time zone, at any hour of the run."""
    with time_machine.travel(datetime(2026, 11, 20, 11, 0, tzinfo=UTC), tick=True):
        yield

BLINDED_ROLES = ("sponsor.toulouse", "datamanager", "monitor.du", "coordinator.toulouse", "investigator.toulouse")


def get(client, username: str, path: str):
    client.force_login(user(username))
    return client.get(path)


def today() -> str:
    return timezone.localdate().isoformat()


def test_the_open_report_is_pooled_and_names_no_arm(du, client) -> None:
    unblinded_free_text(du["participants"][0])  # free text naming an arm: masked in the open report
    for username in ("sponsor.toulouse", "datamanager", "dsmb.statistician"):
        response = get(client, username, f"/trials/ASC-DU/dsmb/open.pdf?cutoff={today()}")
        assert response.status_code == 200, username
        assert response["Content-Type"] == "application/pdf"
        text = pdf_text(response.content)
        assert "DSMB open report" in text and "All participants" in text
        assert "Enrolment by site" in text and "Disposition" in text and "Serious adverse events" in text
        assert "Headache" in text  # the SAE listed
        assert str(du["participants"][0]) in text  # the SAE's participant; the others had none
        assert str(du["participants"][1]) not in text
        lowered = text.lower()
        for word in arm_words():
            assert word.decode() not in lowered, (username, word)
        csv_text = get(client, username, f"/trials/ASC-DU/dsmb/open.csv?cutoff={today()}").content.decode().lower()
        assert "headache" in csv_text
        for word in arm_words():
            assert word.decode() not in csv_text, (username, word)
    png = first_page_png(response.content, keep_as="dsmb-open-page1.png")
    assert 0.005 < ink_fraction(png) < 0.6


def test_the_open_report_counts_the_participants_enrolled_by_the_cutoff(du, client) -> None:
    client.force_login(user("sponsor.toulouse"))
    now = client.get(f"/trials/ASC-DU/dsmb/open.csv?cutoff={today()}").content.decode().splitlines()
    assert "All sites,3,3" in now  # 3 screened, 3 enrolled (conftest du)
    assert any(line.startswith("TLS") and line.endswith(",2,2") for line in now)
    before = client.get(f"/trials/ASC-DU/dsmb/open.csv?cutoff={days_ago(40).isoformat()}").content.decode()
    assert "All sites,0,0" in before.splitlines()
    assert "headache" not in before.lower()  # its onset (3 days ago) is after that cut-off


def test_the_closed_report_is_by_arm_for_the_dsmb(du, client) -> None:
    response = get(client, "dsmb.statistician", f"/trials/ASC-DU/dsmb/closed.pdf?cutoff={today()}")
    assert response.status_code == 200
    text = pdf_text(response.content)
    assert "DSMB closed report" in text
    for arm in Arm.objects.filter(trial__code="ASC-DU"):
        assert arm.label in text  # a column per arm (labels from the trial file)
    allocated = du["participants"][0].allocation.arm.label
    assert "Headache" in text and allocated in text
    csv_text = get(client, "dsmb.statistician", f"/trials/ASC-DU/dsmb/closed.csv?cutoff={today()}").content.decode()
    assert all(arm.label in csv_text for arm in Arm.objects.filter(trial__code="ASC-DU"))
    png = first_page_png(response.content, keep_as="dsmb-closed-page1.png")
    assert 0.005 < ink_fraction(png) < 0.6
    page = get(client, "dsmb.statistician", "/trials/ASC-DU/dsmb/").content
    assert b'data-testid="dsmb-closed-pdf"' in page


@pytest.mark.parametrize("username", BLINDED_ROLES)
def test_the_closed_report_is_refused_to_the_sponsor_and_every_blinded_role(du, client, username: str) -> None:
    for kind in ("pdf", "csv"):
        assert get(client, username, f"/trials/ASC-DU/dsmb/closed.{kind}?cutoff={today()}").status_code == 404, (username, kind)
    page = get(client, username, "/trials/ASC-DU/dsmb/")
    assert page.status_code in (200, 404)
    assert b"closed.pdf" not in page.content and b"closed.csv" not in page.content


def test_a_bad_cutoff_is_a_clear_400(du, client) -> None:
    client.force_login(user("sponsor.toulouse"))
    future = client.get("/trials/ASC-DU/dsmb/open.pdf?cutoff=2999-01-01")
    assert future.status_code == 400 and b"future" in future.content
    garbage = client.get("/trials/ASC-DU/dsmb/open.csv?cutoff=31/12/2020")
    assert garbage.status_code == 400 and b"YYYY-MM-DD" in garbage.content
    assert client.get("/trials/ASC-DU/dsmb/open.csv?cutoff=2026-02-30").status_code == 400
