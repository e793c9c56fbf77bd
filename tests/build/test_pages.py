"""The study-build pages: who may use them, bad input (a clear message, nothing written, never a
500), the study-builder role, the downloads and the printable CRFs."""

import io
import json
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from trials.build.models import Amendment
from trials.build.services import study_builder_grant
from trials.protocol.models import Trial

from .amended import SEEDS, amended_files
from .test_amendment import row_counts

pytestmark = pytest.mark.django_db
User = get_user_model()


def client_for(client, username: str):  # noqa: ANN001
    client.force_login(User.objects.get(username=username))
    return client


def upload(client, url: str, files: dict[str, bytes]):  # noqa: ANN001
    return client.post(url, {"files": [SimpleUploadedFile(name, data) for name, data in files.items()]})


@pytest.mark.parametrize("username", ["coordinator.toulouse", "investigator.toulouse", "monitor.du", "sponsor.toulouse", "dsmb.statistician"])
def test_only_the_data_manager_of_the_trial_reaches_its_build_pages(client, demo_users, username):
    client_for(client, username)
    assert client.get("/build/").status_code == 404
    assert client.get("/build/ASC-DU/").status_code == 404
    assert upload(client, "/build/ASC-DU/", amended_files()).status_code == 404
    assert client.get("/build/ASC-DU/amendments/").status_code == 404
    assert client.get("/build/new/").status_code == 404
    assert b'data-testid="nav-build"' not in client.get("/?stay=1").content


def test_the_data_manager_previews_downloads_and_sees_the_link(client, demo_users):
    client_for(client, "datamanager")
    assert b'data-testid="nav-build"' in client.get("/?stay=1").content
    assert b"ASC-DU" in client.get("/build/").content
    before = row_counts()
    response = upload(client, "/build/ASC-DU/", amended_files())
    assert response.status_code == 200
    assert b"W2" in response.content and b"LI01" in response.content and b"DU_ASSESS" in response.content
    payload = response.context["form"]["payload"].value()
    as_json = client.post("/build/ASC-DU/impact.json", {"payload": payload})
    assert as_json["Content-Disposition"] == 'attachment; filename="ASC-DU_impact_preview.json"'
    assert json.loads(as_json.content)["crfs"][0]["crf"] == "DU_ASSESS"
    as_csv = client.post("/build/ASC-DU/impact.csv", {"payload": payload}).content.decode()
    assert as_csv.splitlines()[0] == "section,participant,subject,detail"
    assert "ulcers.location,choices: removed: palm" in as_csv
    assert row_counts() == before
    # A payload altered in the page is refused.
    assert client.post("/build/ASC-DU/apply/", {"payload": payload[:-3] + "xyz", "version": "2", "effective_date": "2020-01-01",
                                                "reason": "x", "previewed": "x"}).status_code == 400
    assert row_counts() == before


def test_bad_input_gives_a_message_and_writes_nothing(client, demo_users):
    client_for(client, "datamanager")
    before = row_counts()
    # Malformed YAML: the loader's message, with the file and the line.
    broken = upload(client, "/build/ASC-DU/", {"001_nct04356755_du.yaml": b"code: ASC-DU\ntitle: [unclosed\nphase: 2\n"})
    assert broken.status_code == 400
    assert "001_nct04356755_du.yaml:" in broken.context["problems"][0] and "YAML syntax error" in broken.context["problems"][0]
    # All problems at once, `file:line: path: problem`.
    text = (SEEDS / "001_nct04356755_du.yaml").read_text().replace("day_offset: 14", "day_offset: fourteen").replace(
        "window_before_days: 14", "window_before_days: many")
    several = upload(client, "/build/ASC-DU/", {"du.yaml": text.encode()})
    assert several.status_code == 400
    problems = several.context["problems"]
    assert any(p.startswith("du.yaml:") and "visits[4].day_offset" in p for p in problems)
    assert any(p.startswith("du.yaml:") and "visits[0].window_before_days" in p for p in problems)
    # A file of 100 MB: refused by its size.
    big = client.post("/build/ASC-DU/", {"files": [SimpleUploadedFile("huge.yaml", b"#" * (100 * 2**20))]})
    assert big.status_code == 400 and "too large" in big.context["problems"][0]
    # A zip of a trial file and an unknown file; a zip that is not one.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("trial.yaml", "code: ASC-DU\n")
        z.writestr("notes.docx", "x")
    zipped = upload(client, "/build/ASC-DU/", {"amendment.zip": archive.getvalue()})
    assert zipped.status_code == 400 and "notes.docx is not a YAML file" in zipped.context["problems"][0]
    assert "not a zip" in upload(client, "/build/ASC-DU/", {"a.zip": b"PK nope"}).context["problems"][0]
    # The wrong trial: EASC-RA's file on ASC-DU's page.
    wrong = upload(client, "/build/ASC-DU/", {"easc.yaml": (SEEDS / "003_easc_ra_dose_escalation.yaml").read_bytes()})
    assert wrong.status_code == 400 and "not ASC-DU" in wrong.context["problems"][0]
    # No file at all.
    assert client.post("/build/ASC-DU/", {}).status_code == 400
    # A blinded data manager cannot unmask anyone through the study build.
    unmasked = (SEEDS / "001_nct04356755_du.yaml").read_text().replace(
        "  level: quadruple\n  masked: [participant, care_provider, investigator, outcomes_assessor]", "  level: none\n  masked: []")
    refused = upload(client, "/build/ASC-DU/", {"du.yaml": unmasked.encode()})
    assert refused.status_code == 400 and "masking" in refused.context["problems"][0]
    assert row_counts() == before
    assert Trial.objects.get(code="ASC-DU").is_blinded


def _new_trial_file() -> bytes:
    text = (SEEDS / "002_fat_grafting_registry.yaml").read_text()
    return text.replace("code: SSC-FATGRAFT-REG", "code: NEW-REG", 1).encode()


def test_the_study_builder_role_is_granted_by_a_superuser_only_and_creates_a_trial(client, demo_users):
    sponsor = User.objects.get(username="sponsor.toulouse")  # blinded in ASC-DU
    manager = User.objects.get(username="datamanager")
    with pytest.raises(ValidationError):
        study_builder_grant(user=sponsor, granted_by=sponsor, reason="myself")
    with pytest.raises(ValidationError):
        study_builder_grant(user=sponsor, granted_by=manager, reason="a data manager grants")
    client_for(client, "sponsor.toulouse")
    assert client.get("/admin/build/studybuilder/add/").status_code in (302, 403)
    assert upload(client, "/build/new/", {"new.yaml": _new_trial_file()}).status_code == 404
    assert not Trial.objects.filter(code="NEW-REG").exists()

    admin = User.objects.create_superuser("root", "root@example.org", "x")
    study_builder_grant(user=sponsor, granted_by=admin, reason="Builds the new registry")
    preview = upload(client, "/build/new/", {"new.yaml": _new_trial_file()})
    assert preview.status_code == 200 and preview.context["impact"]["new_trial"] is True
    assert not Trial.objects.filter(code="NEW-REG").exists()
    form = preview.context["form"]
    applied = client.post("/build/new/apply/", {"payload": form["payload"].value(), "previewed": form["previewed"].value(),
                                                "version": "1.0", "effective_date": "2026-01-01", "reason": "First version"})
    assert applied.status_code == 302 and applied["Location"] == "/build/NEW-REG/amendments/"
    trial = Trial.objects.get(code="NEW-REG")
    assert Amendment.objects.get(trial=trial).number == 1
    assert sponsor.study_roles.get(trial=trial).role == "data_manager"
    # An existing trial stays its data manager's: the builder cannot amend ASC-DU nor re-create it.
    assert client.get("/build/ASC-DU/").status_code == 404
    again = upload(client, "/build/new/", amended_files())
    assert again.status_code == 400 and "exists" in again.context["problems"][0]


def test_blank_and_annotated_crfs(client, demo_users):
    client_for(client, "monitor.du")
    listing = client.get("/trials/ASC-DU/crfs/")
    assert listing.status_code == 200 and b"/trials/ASC-DU/crfs/DU_ASSESS/v1/" in listing.content
    blank = client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/").content.decode()
    annotated = client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/?annotated=1").content.decode()
    # du_assess.yaml: the finger item, its codes 1-5, its branching and its check.
    assert "Periungual" in blank and "<code>finger</code>" not in blank
    assert "<code>finger</code> · single_choice" in annotated
    assert "=periungual" in annotated
    assert "location == null || location in [&#x27;distal_to_pip&#x27;" in annotated
    assert "Please give the finger for an ulcer located on a finger." in annotated
    assert client.get("/trials/ASC-DU/crfs/DU_ASSESS/v9/").status_code == 404
    # The same pages as PDF (WeasyPrint, print CSS): the annotated one carries the item names and
    # checks as text (pdftotext), the blank one not; page 1 renders with ink (pdftoppm).
    from tests.exports.pdftools import first_page_png, ink_fraction, pdf_text

    pdf = client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/?annotated=1&format=pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    assert 'filename="DU_ASSESS-v1-annotated.pdf"' in pdf["Content-Disposition"]
    text = " ".join(pdf_text(pdf.content).split())
    assert "finger · single_choice" in text and "Please give the finger for an ulcer located on a finger." in text
    assert ink_fraction(first_page_png(pdf.content)) > 0.001
    blank = client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/?format=pdf")
    assert "Periungual" in " ".join(pdf_text(blank.content).split()) and "single_choice" not in pdf_text(blank.content)
    client_for(client, "coordinator.mexico")
    assert client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/").status_code == 404
    assert client.get("/trials/ASC-DU/crfs/DU_ASSESS/v1/?format=pdf").status_code == 404


def test_apply_needs_a_version_a_reason_and_an_effective_date_not_in_the_future(client, demo_users):
    client_for(client, "datamanager")
    preview = upload(client, "/build/ASC-DU/", amended_files())
    form = preview.context["form"]
    before = row_counts()
    base = {"payload": form["payload"].value(), "previewed": form["previewed"].value()}
    missing = client.post("/build/ASC-DU/apply/", {**base, "version": "", "effective_date": "", "reason": ""})
    assert missing.status_code == 400
    assert set(missing.context["form"].errors) == {"version", "effective_date", "reason"}
    future = client.post("/build/ASC-DU/apply/", {**base, "version": "2.0", "effective_date": "2999-01-01", "reason": "Amendment 1"})
    assert future.status_code == 400
    assert "not before" in str(future.context["form"].errors["effective_date"])
    assert row_counts() == before
    ok = client.post("/build/ASC-DU/apply/", {**base, "version": "2.0", "effective_date": "2020-01-01", "reason": "Amendment 1"})
    assert ok.status_code == 302
    # The same version twice is refused.
    again = client.post("/build/ASC-DU/apply/", {**base, "version": "2.0", "effective_date": "2020-01-01", "reason": "Again"})
    assert again.status_code == 400
    history = client.get("/build/ASC-DU/amendments/")
    assert history.status_code == 200 and b"Amendment 1" in history.content
    assert client.get("/build/ASC-DU/amendments/1.json").json()["trial"] == "ASC-DU"
    assert client.get("/build/ASC-DU/amendments/1.pdf").status_code == 404


FIXTURES = SEEDS.parent / "tests" / "fixtures"


@pytest.mark.parametrize("files", [
    ("redcap/longitudinal.dictionary.csv", "redcap/longitudinal.arm.csv", "redcap/longitudinal.event.csv"),
    ("ctgov/NCT02210780.json",),
    ("odm/cdash-odm-test.xml",),
], ids=["redcap", "ctgov", "odm"])
def test_a_study_builder_imports_a_redcap_ctgov_or_odm_study_through_the_same_preview(client, demo_users, files):
    """Issue 18: the imports of trials.protocol.imports plug into the study-build upload: the
    imported study is validated by the loader, previewed (nothing written) and applied like a
    trial file; a file an importer refuses gets its `file: problem` message and writes nothing."""
    manager = User.objects.get(username="datamanager")
    admin = User.objects.create_superuser("root.import", "root@example.org", "x")
    study_builder_grant(user=manager, granted_by=admin, reason="Imports the team's studies")
    client_for(client, "datamanager")
    before = Trial.objects.count()
    preview = upload(client, "/build/new/", {path.rsplit("/", 1)[1]: (FIXTURES / path).read_bytes() for path in files})
    assert preview.status_code == 200, preview.context and preview.context.get("problems")
    assert preview.context["impact"]["new_trial"] is True
    assert Trial.objects.count() == before
    form = preview.context["form"]
    applied = client.post("/build/new/apply/", {"payload": form["payload"].value(), "previewed": form["previewed"].value(),
                                                "version": "1.0", "effective_date": "2026-01-01", "reason": "Imported"})
    assert applied.status_code == 302
    assert Trial.objects.count() == before + 1

    broken = upload(client, "/build/new/", {"broken.dictionary.csv": b"not,a,redcap\n1,2,3\n"})
    assert broken.status_code == 400 and any(p.startswith("broken.dictionary.csv") for p in broken.context["problems"])
    assert Trial.objects.count() == before + 1
