"""The SDTM findings' SQL route (PostgreSQL: a CRF's entries read by COPY as one row per entry and
a column per item, melted to rows with numpy; trials.exports.sdtm.Findings) gives the same files,
byte for byte but the creation times, as the Python route (the entries read through the ORM, one
answer at a time), on a synthetic trial with odd answers injected: escapes, characters outside
ASCII, JSON numbers (1.50, 3.0) beside numbers stored as text, yes/no and choices stored as text,
a list where an item takes one answer (in an entry with a missing-data code), missing-data codes, a long text (SUPP--), an empty string,
and entries of a second CRF version that lacks an item and has one of its own."""

import io
import json
import re
import zipfile

import pytest
from django.db import connection

from trials.exports import sdtm

STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")  # the XPT headers' creation time
DEFINE_STAMP = re.compile(rb'(FileOID|CreationDateTime)="[^"]*"')
MANIFEST_STAMP = re.compile(rb'"(created|created_at|generated_at|sha256)": "[^"]*"')


def odd_trial() -> tuple[int, int]:
    """A small synthetic trial (randomized, a repeating group in its last CRF) with odd answers
    written into some entries as jsonb; returns (trial id, sponsor id)."""
    from django.contrib.auth import get_user_model

    from edc.audit import audited_save, system_user
    from trials.demo.synthetic import SynthParams, synth_trial_generate
    from trials.protocol.models import CrfDefinition, Role
    from trials.protocol.services import study_role_grant
    from trials.visits.models import CrfEntry

    params = SynthParams(code="ODD", participants=10, visits=3, crfs=3, items=12, randomized=True, repeating_group=True)
    trial = synth_trial_generate(params).trial
    sponsor, _created = get_user_model().objects.get_or_create(username="odd-sponsor")
    study_role_grant(user=sponsor, trial=trial, role=Role.SPONSOR, granted_by=system_user(), reason="test")
    first = CrfDefinition.objects.get(code="ODD-C01")
    # Version 2 of the first CRF: text_04 dropped, a text item of its own added.
    definition = dict(first.definition)
    definition["fields"] = [f for f in definition["fields"] if f["name"] != "text_04"] + [
        {"name": "text_new", "label": "New text item", "type": "text"}]
    second = audited_save(CrfDefinition(code="ODD-C01", version=2, title=first.title, definition=definition,
                                        content_sha256="0" * 64), user=system_user(), reason="test: a second version")
    entries = list(CrfEntry.objects.filter(participant__trial=trial).order_by("pk").values_list("pk", "crf_code"))
    by_crf: dict[str, list[int]] = {}
    for pk, code in entries:
        by_crf.setdefault(code, []).append(pk)
    c1, c2, c3 = by_crf["ODD-C01"], by_crf["ODD-C02"], by_crf["ODD-C03"]
    # (entry, item, jsonb) written as is; text items are text_04/text_10, decimals dec_02/dec_06,
    # integers int_01/int_07, choices choice_03 (grade, integer codes)/choice_08 (finding, text codes), yn_09.
    odd = [
        (c1[0], "text_10", '"Back\\\\slash and \\"quotes\\""'),
        (c1[0], "dec_02", "1.50"),  # a JSON number, not the usual text
        (c1[1], "text_10", '"Tab\\there"'),
        (c1[1], "dec_06", "3.0"),
        (c1[2], "text_10", '"Contr\u00f4le \u00e9l\u00e9ment \u2013 \u00fcber"'),
        (c1[2], "int_01", '"007"'),  # an integer as text
        (c1[3], "text_10", '""'),
        (c1[3], "int_07", "12.5"),
        (c1[6], "text_10", '"' + "Long text " * 30 + '"'),
        (c1[7], "yn_09", '"yes"'),
        (c1[7], "choice_03", '"2"'),
        (c1[8], "choice_03", "99"),
        (c1[8], "choice_08", '"absent"'),
        (c1[9], "text_10", "true"),
        (c1[9], "dec_02", "-0.000"),
        (c2[0], "text_10", '"Patient reports \\"much better\\""'),
        (c2[1], "text_10", '"Seen \\u0007 bell"'),
        (c2[2], "text_10", '"del\\u007f"'),
        (c2[3], "int_01", "null"),
        (c2[4], "dec_02", "1e3"),
        (c3[0], "text_04", '"  spaced  "'),
        (c3[1], "text_04", '"=1+1"'),
    ]
    with connection.cursor() as cursor:
        for pk, item, value in odd:
            cursor.execute("UPDATE visits_crfentry SET answers = jsonb_set(answers, %s, %s::jsonb) WHERE id = %s",
                           ["{" + item + "}", value, pk])
        # Missing-data codes: one on an unanswered item, one on an answered one, one on a row of the group.
        cursor.execute("UPDATE visits_crfentry SET answers = answers - 'text_10', missing = %s::jsonb WHERE id = %s",
                       ['{"text_10": {"code": "not_done", "reason": "Scale broken \u2013 \u00e9"}}', c1[10]])
        cursor.execute("UPDATE visits_crfentry SET missing = %s::jsonb WHERE id = %s",
                       ['{"int_01": {"code": "unknown"}}', c2[5]])
        cursor.execute("UPDATE visits_crfentry SET answers = jsonb_set(answers, '{text_10}', '[1]'), missing = %s::jsonb "
                       "WHERE id = %s", ['{"dec_02": {"code": "not_applicable", "reason": "n/a"}}', c2[6]])
        # Entries of version 2: their text_04 answer is not in that version (dropped), text_new is.
        cursor.execute("UPDATE visits_crfentry SET crf_id = %s, answers = answers || %s::jsonb WHERE id = ANY(%s)",
                       [second.pk, '{"text_new": "new \\"one\\""}', c1[11:20]])
        cursor.execute("UPDATE visits_crfentry SET answers = answers || '{\"text_new\": 5}'::jsonb WHERE id = %s", [c1[12]])
    return trial.pk, sponsor.pk


def package(spec, *, wide: bool) -> dict[str, bytes]:
    from tests.exports.test_odm import export_bytes

    previous = sdtm.Findings.WIDE
    sdtm.Findings.WIDE = wide
    try:
        content = export_bytes(sdtm, spec)[0]
    finally:
        sdtm.Findings.WIDE = previous
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def same_files(new: dict[str, bytes], old: dict[str, bytes]) -> None:
    assert list(new) == list(old)
    for name in new:
        x, y = new[name], old[name]
        for pattern in (STAMP, DEFINE_STAMP, MANIFEST_STAMP):
            x, y = pattern.sub(b"", x), pattern.sub(b"", y)
        assert x == y, name


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL route is PostgreSQL's (SQLite keeps the Python route)")
@pytest.mark.parametrize("blinded", [True, False])
def test_sql_route_gives_the_python_route_files(blinded, monkeypatch):
    from trials.exports.spec import ExportSpec
    from trials.protocol.models import Site

    trial_id, sponsor_id = odd_trial()
    sites = tuple(Site.objects.filter(trial_id=trial_id).order_by("pk").values_list("pk", flat=True))
    spec = ExportSpec(user_id=sponsor_id, trial_id=trial_id, site_ids=sites, blinded=blinded)
    routes = {"sql": 0, "python": 0}
    wide = sdtm.Findings.wide_rows

    def counted(self, *args):
        for pid, subject, entries in wide(self, *args):
            for entry in entries:
                routes["sql" if isinstance(entry, sdtm._WideEntry) else "python"] += 1
            yield pid, subject, entries

    monkeypatch.setattr(sdtm.Findings, "wide_rows", counted)
    monkeypatch.setattr(sdtm, "XPT_CHUNK", 50)  # chunks ending inside a batch
    monkeypatch.setattr(sdtm.Findings, "BATCH", 3)
    new = package(spec, wide=True)
    # Most entries take the SQL route; those with odd answers, missing codes or a group the Python route.
    assert routes["sql"] > 3 * routes["python"] > 0, routes
    old = package(spec, wide=False)
    assert any(name.endswith(".xpt") and name.startswith("fa") for name in new)
    same_files(new, old)


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the synthetic trial's answers are edited as jsonb")
@pytest.mark.parametrize("wide", [True, False])
def test_a_list_stored_for_a_single_answer_item_is_its_json_text_and_reported(wide):
    """A list or an object stored for an item that takes one answer, in an entry of a version whose
    items are all plain and with no missing-data code, crashed the package; it is now the result as
    its JSON text (nothing lost), listed in the manifest's warnings."""
    from trials.exports.spec import ExportSpec
    from trials.protocol.models import Site
    from trials.visits.models import CrfEntry

    trial_id, sponsor_id = odd_trial()
    pks = list(CrfEntry.objects.filter(participant__trial_id=trial_id, crf_code="ODD-C02", missing={})
               .order_by("-pk").values_list("pk", flat=True)[:2])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE visits_crfentry SET answers = jsonb_set(answers, '{text_10}', %s::jsonb) WHERE id = %s",
                       ['["x", 2]', pks[0]])
        cursor.execute("UPDATE visits_crfentry SET answers = jsonb_set(answers, '{text_10}', %s::jsonb) WHERE id = %s",
                       ['{"k": "v"}', pks[1]])
    sites = tuple(Site.objects.filter(trial_id=trial_id).order_by("pk").values_list("pk", flat=True))
    files = package(ExportSpec(user_id=sponsor_id, trial_id=trial_id, site_ids=sites), wide=wide)
    xpt = b"".join(content for name, content in files.items() if name.endswith(".xpt"))
    # json.dumps's spelling, written out by hand: a list and an object, each once as ORRES and as STRESC.
    assert xpt.count(b'["x", 2]') == 2
    assert xpt.count(b'{"k": "v"}') == 2
    manifest = json.loads(next(content for name, content in files.items() if name.endswith(".json")))
    # Three: these two and odd_trial's [1] (in an entry with a missing-data code, once skipped).
    assert any("written as its JSON text: text_10 \u00d73" in line for line in manifest["warnings"]), manifest["warnings"]
