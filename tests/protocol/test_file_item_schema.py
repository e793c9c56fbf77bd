"""A CRF `file` item in the CRF file: its kinds and size limit are required, checked at load, and
refused on other item types (the loader's `file:line: path: problem`, nothing written)."""

import pytest

from edc.audit import system_user
from tests.protocol.test_loader import CRF, assert_rejected, mutate, write
from trials.protocol.engine import schema_for
from trials.protocol.loader import protocol_load
from trials.protocol.models import CrfDefinition

pytestmark = pytest.mark.django_db

PHOTO = {"name": "photo", "label": "Photograph", "type": "file", "accept": ["image"], "max_size_kb": 2048}


def test_a_file_item_loads_with_its_kinds_and_limit(tmp_path):
    crf = mutate(CRF, "fields.3.fields", [*CRF["fields"][3]["fields"], PHOTO])
    crf["fields"].append({**PHOTO, "name": "report", "accept": ["pdf", "png"], "max_size_kb": 512})
    protocol_load([write(tmp_path, crf=crf)], user=system_user())
    schema = schema_for(CrfDefinition.objects.get(code="MINI"))
    report = schema.item("report")
    assert (report.type, report.accept, report.max_size_kb) == ("file", ("pdf", "png"), 512)
    photo = next(c for c in schema.item("lesions").children if c.name == "photo")
    assert (photo.accept, photo.max_size_kb) == (("image",), 2048)


@pytest.mark.parametrize(
    ("field", "path", "message"),
    [
        ({"name": "scan", "label": "Scan", "type": "file", "max_size_kb": 10}, "fields[4]", "'accept' is required on, and only allowed on, a file field"),
        ({"name": "scan", "label": "Scan", "type": "file", "accept": [], "max_size_kb": 10}, "fields[4]", "'accept' lists at least one kind"),
        ({"name": "scan", "label": "Scan", "type": "file", "accept": ["image"]}, "fields[4]", "a file field needs 'max_size_kb'"),
        ({"name": "scan", "label": "Scan", "type": "file", "accept": ["exe"], "max_size_kb": 10}, "fields[4].accept[0]", "'image', 'jpeg', 'png' or 'pdf'"),
        ({"name": "scan", "label": "Scan", "type": "file", "accept": ["pdf"], "max_size_kb": 999999}, "fields[4].max_size_kb", "less than or equal to 51200"),
        ({"name": "note", "label": "Note", "type": "text", "max_size_kb": 10}, "fields[4]", "'max_size_kb' only applies to a file field"),
        ({"name": "note", "label": "Note", "type": "text", "accept": ["pdf"]}, "fields[4]", "'accept' is required on, and only allowed on, a file field"),
    ],
)
def test_a_bad_file_item_is_refused_with_its_place(tmp_path, field, path, message):
    crf = mutate(CRF, "fields", [*CRF["fields"], field])
    assert_rejected(write(tmp_path, crf=crf), "mini.yaml", path, message)
