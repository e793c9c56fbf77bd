"""File items of a CRF: a photograph of each digital ulcer (ASC-DU's DU_ASSESS) uploaded on the CRF
page, its kind read from the bytes, stored under a random name, downloaded only by users who see
the participant, replaced with the old file kept and audited."""

import hashlib
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from edc.audit import audited_save, system_user
from tests.visits.conftest import iso, visit_with
from tests.visits.file_samples import PNG_SIGNATURE, jpeg, pdf, png
from trials.protocol.engine import Item
from trials.protocol.models import Role, Site, StudyRole
from trials.visits import files
from trials.visits.models import CrfEntry, StoredFile
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def file_storage(settings, tmp_path):
    location = tmp_path / "crf-files"
    settings.STORAGES = {
        **settings.STORAGES,
        "crf_files": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


def du_post(revision: int = 0, row_id: str = "", **extra) -> dict:
    data = {
        "crf-assessment_date": iso(1), "crf-number_active_du": "1", "revision": str(revision), "action": "save",
        "ulcers-TOTAL_FORMS": "1", "ulcers-INITIAL_FORMS": "1" if row_id else "0", "ulcers-0-_row_id": row_id,
        "ulcers-0-ulcer_id": "U1", "ulcers-0-hand": "right", "ulcers-0-location": "distal_to_pip", "ulcers-0-finger": "2",
        "ulcers-0-beyond_pip": "true", "ulcers-0-ischemic": "true", "ulcers-0-over_calcinosis": "false",
        "ulcers-0-active": "true", "ulcers-0-due_to_other_condition": "false",
        "ulcers-0-osteomyelitis_or_uncontrolled_infection": "false", "ulcers-0-infected_requiring_systemic_antibiotics": "false",
        "ulcers-0-requires_urgent_surgery": "false",
    }
    data.update(extra)
    return data


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def du_page(participant, coordinator, client):
    visit = visit_with(participant, "DU_ASSESS")
    client.force_login(coordinator)
    return reverse("crf_entry", args=[visit.pk, "DU_ASSESS"]), visit


def saved_photo(visit) -> dict:
    return CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS").answers["ulcers"][0]["photo"]


def test_a_png_photo_is_stored_as_a_reference_with_its_checksum_and_a_thumbnail(du_page, client, file_storage):
    url, visit = du_page
    data = png()
    response = client.post(url, du_post(**{"ulcers-0-photo": upload("ulcer U1.png", data, "image/png")}))
    assert response.status_code == 302, response.content.decode()[:2000]
    reference = saved_photo(visit)
    assert reference["sha256"] == hashlib.sha256(data).hexdigest()
    assert (reference["name"], reference["size"], reference["content_type"]) == ("ulcer U1.png", len(data), "image/png")
    stored = StoredFile.objects.get(pk=reference["file_id"])
    # Stored under a random name: nothing of the participant, the item or the original name.
    assert "ulcer" not in stored.storage_name and "U1" not in stored.storage_name and visit.participant.subject_number not in stored.storage_name
    assert (file_storage / stored.storage_name).read_bytes() == data
    assert (file_storage / stored.thumbnail_name).read_bytes().startswith(PNG_SIGNATURE)
    page = client.get(url).content.decode()
    assert reverse("crf_file_thumbnail", args=[reference["file_id"]]) in page and "ulcer U1.png" in page
    assert 'enctype="multipart/form-data"' in page
    thumb = client.get(reverse("crf_file_thumbnail", args=[reference["file_id"]]))
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png" and thumb["X-Content-Type-Options"] == "nosniff"


def test_a_jpeg_photo_is_accepted_whatever_the_browser_says(du_page, client):
    url, visit = du_page
    data = jpeg()
    response = client.post(url, du_post(**{"ulcers-0-photo": upload("IMG_0001.JPG", data, "application/pdf")}))
    assert response.status_code == 302
    assert saved_photo(visit)["content_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("scan.jpg", pdf(), "image/jpeg"),  # a PDF renamed .jpg: the item takes images only
        ("photo.png", b"GIF89a" + b"\x00" * 40, "image/png"),  # a GIF: not an accepted kind
        ("photo.png", PNG_SIGNATURE + b"\x00" * 40, "image/png"),  # a PNG signature on damaged bytes
        ("photo.png", b"", "image/png"),
    ],
)
def test_a_file_of_the_wrong_kind_is_refused_on_the_field_and_nothing_is_saved(du_page, client, name, data, content_type):
    url, visit = du_page
    response = client.post(url, du_post(**{"ulcers-0-photo": upload(name, data, content_type)}))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="error-photo"' in page
    assert any(m in page for m in ("not of an accepted type", "cannot be read", "is empty"))
    assert not CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").exists()
    assert not StoredFile.objects.exists()


def test_a_file_over_the_limit_is_refused(du_page, client):
    url, visit = du_page
    too_large = png() + b"\x00" * (10 * 1024 * 1024)  # the item allows 10 MB (max_size_kb: 10240)
    response = client.post(url, du_post(**{"ulcers-0-photo": upload("big.png", too_large, "image/png")}))
    assert response.status_code == 200 and "This file is too large: at most 10 MB." in response.content.decode()
    assert not CrfEntry.objects.filter(visit=visit).filter(crf_code="DU_ASSESS").exists() and not StoredFile.objects.exists()


def test_a_png_renamed_pdf_is_refused_by_an_item_that_takes_pdf_only():
    item = Item(name="report", label="Lab report", type="file", accept=("pdf",), max_size_kb=1024)
    accepted, problem = files.check_upload(item, upload("report.pdf", png(), "application/pdf"))
    assert accepted is None and "not of an accepted type (PDF)" in problem
    accepted, problem = files.check_upload(item, upload("report.png", pdf(), "image/png"))
    assert problem is None and accepted.kind == "pdf"


def test_signatures_from_the_specifications():
    assert files.sniff(png()) == "png" and files.sniff(jpeg()) == "jpeg" and files.sniff(pdf()) == "pdf"
    assert files.sniff(b"GIF89a") is None and files.sniff(b"") is None and files.sniff(b"\xff\xd8") is None


def test_download_is_scoped_like_the_data_and_always_an_attachment(du_page, client, participant):
    url, visit = du_page
    data = png()
    client.post(url, du_post(**{"ulcers-0-photo": upload("ulcer.png", data, "image/png")}))
    file_id = saved_photo(visit)["file_id"]
    download = reverse("crf_file", args=[file_id])
    response = client.get(download)
    assert response.status_code == 200 and b"".join(response.streaming_content) == data
    assert response["Content-Disposition"].startswith("attachment;") and 'filename="ulcer.png"' in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Type"] == "image/png"
    User = get_user_model()
    # A coordinator of another ASC-DU site, and one of other trials: as if the file did not exist.
    grenoble = User.objects.create_user("coordinator.grenoble", password="x")
    audited_save(StudyRole(user=grenoble, trial=participant.trial, site=Site.objects.get(trial=participant.trial, code="GRE"), role=Role.COORDINATOR),
                 user=system_user(), reason="test")
    for username in ("coordinator.grenoble", "coordinator.mexico"):
        client.force_login(User.objects.get(username=username))
        assert client.get(download).status_code == 404
        assert client.get(reverse("crf_file_thumbnail", args=[file_id])).status_code == 404
    assert client.get(reverse("crf_file", args=[uuid.uuid4()])).status_code == 404
    # The sponsor (all sites of the trial, as for exports) and the site's monitor see it.
    for username in ("sponsor.toulouse", "monitor.du"):
        client.force_login(User.objects.get(username=username))
        assert client.get(download).status_code == 200
    client.logout()
    assert client.get(download).status_code == 302  # to the login page


def test_a_replacement_is_audited_and_the_old_file_stays_retrievable(du_page, client):
    url, visit = du_page
    first, second = png(rgb=(10, 10, 10)), jpeg()
    client.post(url, du_post(**{"ulcers-0-photo": upload("first.png", first, "image/png")}))
    entry = CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS")
    old = entry.answers["ulcers"][0]["photo"]
    row_id = entry.answers["ulcers"][0]["_row_id"]
    # A save without a new file keeps the photograph.
    assert client.post(url, du_post(revision=1, row_id=row_id, **{"ulcers-0-pain_vas": "30"})).status_code == 302
    assert saved_photo(visit) == old
    response = client.post(url, du_post(revision=2, row_id=row_id, **{"ulcers-0-photo": upload("second.jpg", second, "image/jpeg")}))
    assert response.status_code == 302
    entry.refresh_from_db()
    new = entry.answers["ulcers"][0]["photo"]
    assert new["file_id"] != old["file_id"] and new["sha256"] == hashlib.sha256(second).hexdigest()
    latest = entry.history.first()
    assert latest.history_user.username == "coordinator.toulouse"
    assert "second.jpg" in latest.history_change_reason
    assert latest.prev_record.answers["ulcers"][0]["photo"] == old  # old -> new in the audit trail
    response = client.get(reverse("crf_file", args=[old["file_id"]]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == first


def test_a_live_update_with_a_file_stores_nothing(du_page, client):
    url, visit = du_page
    response = client.post(url, du_post(**{"ulcers-0-photo": upload("u.png", png(), "image/png")}), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert not StoredFile.objects.exists() and not CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").exists()


@pytest.mark.parametrize(
    "body",
    [
        b"--xyz\r\nContent-Disposition: form-data; name=\"ulcers-0-photo\"; filename=\"a.png\"\r\n\r\n\x89PNG",  # no end
        b"garbage without any boundary",
        b"--xyz\r\nContent-Disposition: form-data\r\n\r\n--xyz--",  # a part without a name
    ],
)
def test_garbage_multipart_is_not_a_server_error(du_page, client, body):
    url, visit = du_page
    response = client.generic("POST", url, body, content_type="multipart/form-data; boundary=xyz")
    assert response.status_code < 500
    assert not StoredFile.objects.exists()


def test_an_import_cannot_set_a_file_reference(participant):
    visit = visit_with(participant, "DU_ASSESS")
    forged = {"file_id": str(uuid.uuid4()), "name": "x.png", "size": 1, "sha256": "0" * 64, "content_type": "image/png"}
    answers = {
        "assessment_date": iso(1), "number_active_du": 1,
        "ulcers": [{
            "ulcer_id": "U1", "hand": "right", "location": "distal_to_pip", "finger": 2, "beyond_pip": True, "ischemic": True,
            "over_calcinosis": False, "active": True, "due_to_other_condition": False,
            "osteomyelitis_or_uncontrolled_infection": False, "infected_requiring_systemic_antibiotics": False,
            "requires_urgent_surgery": False, "photo": forged,
        }],
    }
    with pytest.raises(ValidationError, match="Files are uploaded on the CRF page"):
        crf_entry_save_answers(user=system_user(), visit=visit, crf_code="DU_ASSESS", answers=answers, complete=True, reason="import")
    assert not CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").exists()
