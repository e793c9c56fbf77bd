"""Bulk LABS import (CSV or JSON): through the CRF service, all or nothing per file, a report per row."""

from datetime import timedelta

from django.utils import timezone

from edc.audit import system_user
from tests.api.conftest import register
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.api.models import ApiCall
from trials.visits.models import CrfEntry

# seeds/crfs/labs.yaml: the required items, values inside each item's range.
HEADER = "subject,visit,sample_date,haemoglobin_g_dl,wbc_10e9_l,platelets_10e9_l,creatinine_umol_l,alt_u_l,ast_u_l"


def line(subject: str, haemoglobin: str = "13.5", visit: str = "SCREEN") -> str:
    day = (timezone.localdate() - timedelta(days=15)).isoformat()
    return f"{subject},{visit},{day},{haemoglobin},6.50,250,80,20,22"


def test_csv_import_saves_every_row_with_a_report(client_for, tls):
    others = [register("ASC-DU", "TLS") for _ in range(2)]
    subjects = [p.subject_number for p in (tls, *others)]
    assert subjects == ["TLS-001", "TLS-002", "TLS-003"]  # "{site}-{seq:03d}", the default subject number
    csv = "\n".join([HEADER, *(line(s) for s in subjects)]) + "\n"
    client = client_for("coordinator", scope="write")
    answer = client.post("/api/v1/labs/import/?trial=ASC-DU&reason=Central%20lab%20batch%2012", csv, content_type="text/csv")
    assert answer.status_code == 200, answer.json()
    report = answer.json()
    assert report["imported"] is True
    assert [(r["row"], r["subject"], r["visit"], r["status"], r["revision"]) for r in report["rows"]] == [
        (1, "TLS-001", "SCREEN", "created", 1), (2, "TLS-002", "SCREEN", "created", 1), (3, "TLS-003", "SCREEN", "created", 1),
    ]
    entry = CrfEntry.objects.get(participant=tls, crf_code="LABS")
    assert entry.answers["haemoglobin_g_dl"] == "13.5" and entry.answers["platelets_10e9_l"] == 250
    assert entry.answers["wbc_10e9_l"] == "6.50"  # labs.yaml: two decimals
    assert entry.history.get().history_change_reason == "Central lab batch 12"
    assert ApiCall.objects.filter(path="/api/v1/labs/import/", status=200).count() == 1


def test_one_bad_row_rolls_back_the_file_with_a_report_per_row(client_for, tls, mrs):
    client = client_for("coordinator", scope="write")
    csv = "\n".join([HEADER, line("TLS-001"), line("TLS-001", haemoglobin="99", visit="W4"), line(mrs.subject_number), line("NOPE-1")]) + "\n"
    answer = client.post("/api/v1/labs/import/?trial=ASC-DU", csv, content_type="text/csv")
    assert answer.status_code == 400
    rows = answer.json()["rows"]
    assert answer.json()["imported"] is False
    assert rows[0]["status"] == "rolled_back"
    assert list(rows[1]["errors"]) == ["haemoglobin_g_dl"]  # labs.yaml: at most 25 g/dL
    assert list(rows[2]["errors"]) == ["subject"]  # Marseille: not her site, reported like an unknown number
    assert list(rows[3]["errors"]) == ["subject"]
    assert rows[2]["errors"] == rows[3]["errors"]
    assert not CrfEntry.objects.filter(crf_code="LABS").exists()


def test_json_import_and_bad_files(client_for, tls):
    day = (timezone.localdate() - timedelta(days=15)).isoformat()
    row = {"subject": "TLS-001", "visit": "SCREEN", "sample_date": day, "haemoglobin_g_dl": 13.5, "wbc_10e9_l": 6.5,
           "platelets_10e9_l": 250, "creatinine_umol_l": 80, "alt_u_l": 20, "ast_u_l": 22}
    assert client_for("coordinator").post("/api/v1/labs/import/", {"trial": "ASC-DU", "rows": [row]}, format="json").status_code == 403
    writer = client_for("coordinator", scope="write")
    assert writer.post("/api/v1/labs/import/", {"trial": "EASC-RA", "rows": [row]}, format="json").status_code == 404
    assert writer.post("/api/v1/labs/import/", {"trial": "ASC-DU", "rows": []}, format="json").status_code == 400
    assert writer.post("/api/v1/labs/import/?trial=ASC-DU", "a,b\n1,2\n", content_type="text/csv").status_code == 400
    assert writer.post("/api/v1/labs/import/?trial=ASC-DU", b"\xff\xfe", content_type="text/csv").status_code == 400
    done = writer.post("/api/v1/labs/import/", {"trial": "ASC-DU", "rows": [row]}, format="json")
    assert done.status_code == 200 and done.json()["rows"][0]["status"] == "created"
    again = writer.post("/api/v1/labs/import/", {"trial": "ASC-DU", "rows": [row], "reason": "Corrected by the lab"}, format="json")
    assert again.json()["rows"][0]["status"] == "updated" and again.json()["rows"][0]["revision"] == 2


def screened(site: str):
    """Consented, in screening (the allocation list of a site is short): the screening visit's labs."""
    site = Site.objects.get(trial__code="ASC-DU", code=site)
    today = site.today()  # the site's date (its checks compare with it), not the server's UTC date
    return participant_register(
        site=site, consent_date=today - timedelta(days=20), anchor_date=None, user=system_user(),
    )


def test_a_lab_file_for_50_participants_is_imported_with_a_report_per_row(client_for, demo_users):
    """The issue's done-when: a central lab's CSV for 50 participants, one row each, all saved, and
    a report line per row; then the same file with one value out of range imports nothing."""
    participants = [screened("TLS") for _ in range(50)]
    subjects = [f"TLS-S{n:03d}" for n in range(1, 51)]  # the site's default screening numbers, "{site}-S{seq:03d}"
    assert [p.screening_number for p in participants] == subjects
    # Haemoglobin 11.0, 11.1, … 15.9 g/dL; platelets 200 … 249 (within labs.yaml's ranges).
    values = {s: (f"{11 + n // 10}.{n % 10}", str(200 + n)) for n, s in enumerate(subjects)}
    day = (timezone.localdate() - timedelta(days=15)).isoformat()
    lines = [f"{s},SCREEN,{day},{hb},6.50,{plt},80,20,22" for s, (hb, plt) in values.items()]
    client = client_for("coordinator", scope="write")
    answer = client.post("/api/v1/labs/import/?trial=ASC-DU&reason=Batch%2050", "\n".join([HEADER, *lines]) + "\n", content_type="text/csv")
    assert answer.status_code == 200, answer.json()
    expected = [{"row": n, "subject": s, "visit": "SCREEN", "status": "created", "revision": 1} for n, s in enumerate(subjects, start=1)]
    report = answer.json()["rows"]
    assert [{k: r[k] for k in ("row", "subject", "visit", "status", "revision")} for r in report] == expected
    stored = {
        e.participant.screening_number: (e.answers["haemoglobin_g_dl"], str(e.answers["platelets_10e9_l"]))
        for e in CrfEntry.objects.filter(crf_code="LABS").select_related("participant")
    }
    assert stored == values
    assert {r["entry"] for r in report} == set(CrfEntry.objects.filter(crf_code="LABS").values_list("pk", flat=True))
    # A second batch where row 37 has a haemoglobin of 30 g/dL (labs.yaml: at most 25): nothing is saved.
    second = list(lines)
    second[36] = f"{subjects[36]},SCREEN,{day},30.0,6.50,200,80,20,22"
    refused = client.post("/api/v1/labs/import/?trial=ASC-DU&reason=Batch%2051", "\n".join([HEADER, *second]) + "\n", content_type="text/csv")
    assert refused.status_code == 400
    rows = refused.json()["rows"]
    assert [r["status"] for r in rows] == ["rolled_back"] * 36 + ["error"] + ["rolled_back"] * 13
    assert list(rows[36]["errors"]) == ["haemoglobin_g_dl"]
    assert all(e.revision == 1 for e in CrfEntry.objects.filter(crf_code="LABS"))
