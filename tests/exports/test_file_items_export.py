"""Files of CRF file items in the export packages: the CSV zip holds each file with its SHA-256 in
manifest.json (equal to hashlib's digest of the uploaded bytes) and attachments.csv saying whose
file it is; the ODM file names the same path and checksum."""

import csv
import hashlib
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from tests.exports.conftest import days_ago, job_bytes, randomized, user, zip_members
from tests.visits.file_samples import jpeg, png
from trials.visits.services import crf_entry_save

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def file_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "crf_files": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "crf-files")}},
    }


def upload_photos(participant, photos: list[bytes]) -> dict:
    visit = (participant.visits.filter(definition__visit_crfs__crf_code="DU_ASSESS")
             .exclude(crf_entries__crf_code="DU_ASSESS").order_by("order").first())
    data = QueryDict(mutable=True)
    fields = {
        "crf-assessment_date": days_ago(1).isoformat(), "crf-number_active_du": str(len(photos)), "revision": "0",
        "ulcers-TOTAL_FORMS": str(len(photos)), "ulcers-INITIAL_FORMS": "0",
    }
    files = MultiValueDict()
    for i, photo in enumerate(photos):
        fields.update({
            f"ulcers-{i}-ulcer_id": f"U{i + 1}", f"ulcers-{i}-hand": "left", f"ulcers-{i}-location": "periungual",
            f"ulcers-{i}-finger": "3", f"ulcers-{i}-beyond_pip": "true", f"ulcers-{i}-ischemic": "true",
            f"ulcers-{i}-over_calcinosis": "false", f"ulcers-{i}-active": "true", f"ulcers-{i}-due_to_other_condition": "false",
            f"ulcers-{i}-osteomyelitis_or_uncontrolled_infection": "false",
            f"ulcers-{i}-infected_requiring_systemic_antibiotics": "false", f"ulcers-{i}-requires_urgent_surgery": "false",
        })
        files[f"ulcers-{i}-photo"] = SimpleUploadedFile(f"ulcer{i + 1}.img", photo)
    for key, value in fields.items():
        data[key] = value
    result = crf_entry_save(
        user=user("coordinator.toulouse"), visit=visit, crf_code="DU_ASSESS", data=data, expected_revision=0, complete=True,
        files=files,
    )
    assert result.saved, result.outcome.errors or result.outcome.row_errors
    return result.entry.answers


def test_csv_package_holds_the_files_with_their_checksums_in_the_manifest(demo, export):
    participant = randomized("TLS")
    photos = [png(), jpeg()]
    answers = upload_photos(participant, photos)
    job = export("datamanager", "ASC-DU")
    members = zip_members(job_bytes(job))
    manifest = json.loads(members["manifest.json"])
    listed = {f["name"]: f for f in manifest["files"]}
    for row, photo in zip(answers["ulcers"], photos, strict=True):
        reference = row["photo"]
        extension = ".png" if photo.startswith(b"\x89PNG") else ".jpg"
        path = f"files/{reference['file_id']}{extension}"
        assert members[path] == photo
        assert listed[path]["sha256"] == hashlib.sha256(photo).hexdigest()
        assert listed[path]["bytes"] == len(photo)
    index = list(csv.DictReader(io.StringIO(members["attachments.csv"].decode())))
    assert [(r["item"], r["row_id"], r["original_name"]) for r in index] == [
        ("ulcers.photo", row["_row_id"], f"ulcer{i + 1}.img") for i, row in enumerate(answers["ulcers"])
    ]
    assert listed["attachments.csv"]["sha256"] == hashlib.sha256(members["attachments.csv"]).hexdigest()
    participants = list(csv.DictReader(io.StringIO(members["participants.csv"].decode())))
    assert {(r["site"], r["subject"]) for r in index} <= {(p["site"], p["subject"]) for p in participants}
    assert {r["site"] for r in index} == {"TLS"}


def test_an_export_of_other_sites_holds_none_of_these_files(demo, export):
    upload_photos(randomized("TLS"), [png()])
    job = export("sponsor.toulouse", "ASC-DU")  # all the sponsor's sites: Toulouse's file is in it
    assert any(name.startswith("files/") for name in zip_members(job_bytes(job)))
    from trials.protocol.models import Site

    job = export("sponsor.toulouse", "ASC-DU", sites=[Site.objects.get(trial__code="ASC-DU", code="GRE")])
    assert not any(name.startswith("files/") for name in zip_members(job_bytes(job)))


def test_odm_names_the_file_and_its_checksum(demo, export):
    photo = png()
    answers = upload_photos(randomized("TLS"), [photo])
    reference = answers["ulcers"][0]["photo"]
    job = export("datamanager", "ASC-DU", format="odm")
    xml = job_bytes(job).decode()
    assert f'Value="files/{reference["file_id"]}.png sha256:{hashlib.sha256(photo).hexdigest()}"' in xml
