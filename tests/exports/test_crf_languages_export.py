"""Exports of multilingual CRFs (issue 20): the data dictionary has a label column per language and
each translation's status; data columns keep codes and names; ODM writes a TranslatedText per
xml:lang (valid against the ODM 1.3.2 XSD) and the ODM import keeps every language."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from lxml import etree

from tests.conftest import SEEDS
from tests.exports.conftest import job_bytes, zip_members
from tests.protocol.test_import_odm import export_metadata
from trials.exports import odm as odm_export
from trials.protocol.imports import odm as odm_import
from trials.protocol.loader import protocol_check

pytestmark = pytest.mark.django_db

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
COCHIN = yaml.safe_load((SEEDS / "crfs" / "cochin.yaml").read_text(encoding="utf-8"))


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def test_the_data_dictionary_has_a_label_per_language_and_the_translation_status(demo_users, export):  # noqa: ANN001, ARG001
    files = zip_members(job_bytes(export("datamanager", "ASC-DU")))
    rows = {(r["table"], r["variable"]): r for r in read_csv(files["data_dictionary.csv"])}
    bowl = rows[("COCHIN", "cochin_01")]
    # Expected texts read from seeds/crfs/cochin.yaml (the source), not from the code.
    source = next(f for f in COCHIN["fields"] if f["name"] == "cochin_01")["label"]
    assert (bowl["label"], bowl["label_en"], bowl["label_fr"], bowl["label_es"]) == (
        source["en"], source["en"], source["fr"], source["es"])
    assert bowl["label_fr"] == "1. Pouvez-vous tenir un bol ?"
    assert bowl["translation_status"] == "fr: to_be_validated; es: to_be_validated"
    # The codes stay the codes (the default language's decodes), whatever the language.
    assert bowl["codes"].startswith("0=Yes, without difficulty; 1=Yes, with a little difficulty")
    # A one-language CRF: its label in its language only, no status.
    weight = rows[("VITALS", "weight_kg")]
    assert (weight["label_en"], weight["label_fr"], weight["label_es"], weight["translation_status"]) == (weight["label"], "", "", "")
    # The data table's columns are the item names, in no language.
    header = next(csv.reader(io.StringIO(files["COCHIN.csv"].decode("utf-8-sig"))))
    assert [c for c in header if c.startswith("cochin_")] == [f"cochin_{n:02d}" for n in range(1, 19)] + ["cochin_total"]


def test_odm_has_a_translated_text_per_language_validates_and_imports_back_with_every_language(demo_users, tmp_path: Path):  # noqa: ANN001, ARG001
    path = export_metadata("ASC-DU", tmp_path)
    document = etree.parse(str(path))
    odm_export.odm_schema().assertValid(document)
    question = document.find(".//odm:ItemDef[@OID='IT.COCHIN.cochin_01']/odm:Question", NS)
    texts = {t.get(XML_LANG): t.text for t in question.findall("odm:TranslatedText", NS)}
    assert texts == {"en": "1. Can you hold a bowl?", "fr": "1. Pouvez-vous tenir un bol ?", "es": "1. ¿Puede sostener un tazón?"}
    item_def = document.find(".//odm:ItemDef[@OID='IT.COCHIN.cochin_01']", NS)
    codelist = document.find(f".//odm:CodeList[@OID='{item_def.find('odm:CodeListRef', NS).get('CodeListOID')}']", NS)
    impossible = codelist.find("odm:CodeListItem[@CodedValue='5']/odm:Decode", NS)
    assert {t.get(XML_LANG): t.text for t in impossible.findall("odm:TranslatedText", NS)} == {
        "en": "Impossible to do", "fr": "Impossible", "es": "Imposible"}
    # A one-language CRF keeps its one TranslatedText.
    weight = document.find(".//odm:ItemDef[@Name='weight_kg']/odm:Question", NS)
    assert len(weight.findall("odm:TranslatedText", NS)) == 1

    out = tmp_path / "imported"
    result = odm_import.import_odm([path], out)
    imported = yaml.safe_load((out / "crfs" / "cochin.yaml").read_text(encoding="utf-8"))
    assert (imported["default_language"], imported["languages"]) == ("en", ["en", "es", "fr"])
    assert imported["title"] == COCHIN["title"]
    by_name = {f["name"]: f for f in imported["fields"]}
    for field in COCHIN["fields"]:
        if field["type"] == "descriptive":
            continue  # not an ODM item
        assert by_name[field["name"]]["label"] == field["label"], field["name"]
    assert [c["label"] for c in by_name["cochin_01"]["choices"]] == [c["label"] for c in COCHIN["codelists"]["cochin_answer"]]
    assert {s["name"]["fr"] for s in imported["sections"]} >= {"Cuisine", "Habillage", "Hygiène"}
    assert imported["translation_status"] == {"es": "to_be_validated", "fr": "to_be_validated"}
    assert not any("not kept" in line and "COCHIN" in line for line in result.report), result.report
    protocol_check([out])  # and it loads
