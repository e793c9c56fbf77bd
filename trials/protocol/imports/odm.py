"""CDISC ODM 1.3.2 metadata -> CRF and trial YAML (through the loader).

What maps to what (docs/guide-data-manager.md, "Importing from ODM / ClinicalTrials.gov"):
- FormDef -> a CRF (`F.<CODE>.V<n>`, our own export's OIDs, give the code back; other OIDs give a
  code from the OID). ItemGroupDef -> a section (non-repeating) or a repeating group.
- ItemDef DataType/Length/SignificantDigits -> the item type (integer, decimal with precision, text
  or long text beyond 2,000 characters, date, datetime; boolean and 1/0 Yes/No code lists -> yes_no),
  CodeList (or EnumeratedItems) -> choices; our export's one-1/0-item-per-option (`item.code`) ->
  a multiple choice again; MeasurementUnitRef -> unit; Question -> label, Description -> help.
- RangeCheck GE/LE (hard) -> min/max; other comparators and soft checks -> CEL checks.
- MethodDef -> a calculation when its FormalExpression is CEL (or our score library's
  `score(input=…)`); ConditionDef -> show_if when CEL (our export writes `!(show_if)` as the
  collection exception). Anything else is listed in the report as not translated, never dropped
  silently (the item keeps its data type).
- StudyEventDef -> visit definitions (Scheduled), the unscheduled visit's CRFs (Unscheduled), the
  participant logs (Common). ODM 1.3.2 carries no timing: day offsets and windows are `# TODO:`.
- Translated text: the project's language, else English, else the untagged or first one is the CRF's
  default language; the other languages (en, fr, es: trials.protocol.content) are kept as the CRF's
  `languages` when every text of the CRF has them (labels, help, units, decodes, section and form
  titles; our export writes them all), else left out and listed in the report.
Our own export's built-in forms (F.VISIT, F.SUBJECT, F.AE: visit status, participant, adverse
events) and its `SE.SUBJECT` event are not CRFs of the protocol and are skipped when the file says
`SourceSystem="EDC"`.

Safety: the size is checked before parsing; lxml parses with entities unresolved, no network, no
huge tree, and a DOCTYPE is refused (no XXE, no entity expansion). ODM 1.3.2 files are validated
against the official schema (schemas/odm-1.3.2/, CDISC's licence beside it); ODM 1.3.1 / 1.3
files (REDCap's project XML) are read leniently, their vendor extensions ignored.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from lxml import etree

from trials.protocol.schema import CONTENT_LANGUAGES
from trials.protocol.imports.common import (
    MAX_BYTES,
    MAX_ITEMS,
    ImportFailed,
    ImportProblem,
    ImportResult,
    as_code,
    as_name,
    check_size,
    dump_yaml,
    unique,
    validate_and_write,
)

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SCHEMA_DIR = Path(__file__).parent / "schemas" / "odm-1.3.2"
BUILT_IN_FORMS = {"F.VISIT", "F.SUBJECT", "F.AE"}
BUILT_IN_EVENTS = {"SE.SUBJECT"}
YES_WORDS = {"yes", "oui", "ja", "sí", "si", "sim", "y"}
NO_WORDS = {"no", "non", "nein", "não", "nao", "n"}
REFUSED_TYPES = {"hexBinary", "base64Binary", "hexFloat", "base64Float"}
TEXT_TYPES = {"text", "string", "URI", "durationDatetime", "intervalDatetime", "time", "partialTime", "incompleteTime"}
OUR_FORM = re.compile(r"^F\.(?P<code>[A-Z0-9][A-Z0-9_-]{0,39})\.V(?P<version>\d+)$")
SCORE_CALL = re.compile(r"^(?P<score>[a-z][a-z0-9_]*)\((?P<args>.*)\)$", re.DOTALL)
COMPARATORS = {"LT": "<", "LE": "<=", "GT": ">", "GE": ">=", "EQ": "==", "NE": "!="}


def odm_schema() -> etree.XMLSchema:
    """The official ODM 1.3.2 schema, from the copy shipped with the project (no network)."""
    return _schema()


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "ODM1-3-2.xsd"), parser))


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


def parse_odm(path: Path, label: str) -> etree._ElementTree:
    """The ODM document, refused with `file:line: problem` when too large, malformed, in another
    namespace, carrying a DOCTYPE, or (ODM 1.3.2) invalid against the official schema."""
    content = check_size(path, label, MAX_BYTES)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False, remove_comments=True
    )
    try:
        document = etree.fromstring(content, parser).getroottree()
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise ImportFailed([ImportProblem(label, f"not well-formed XML: {exc.msg}", line)]) from None
    if document.docinfo.doctype:
        raise ImportFailed([ImportProblem(label, "a DOCTYPE (DTD or entities) is not allowed in an ODM file", 1)])
    root = document.getroot()
    if etree.QName(root).namespace != NS or etree.QName(root).localname != "ODM":
        raise ImportFailed([ImportProblem(
            label, f"the root element is {root.tag}, not ODM in the namespace {NS}", root.sourceline
        )])
    count = sum(1 for _ in root.iter(_q("ItemDef")))
    if count > MAX_ITEMS:
        raise ImportFailed([ImportProblem(label, f"{count:,} ItemDefs; imports are limited to {MAX_ITEMS:,} items")])
    version = root.get("ODMVersion", "")
    if version == "1.3.2":
        schema = odm_schema()
        if not schema.validate(document):
            raise ImportFailed([
                ImportProblem(label, f"not valid ODM 1.3.2: {error.message}", error.line)
                for error in list(schema.error_log)[:20]
            ])
    elif version not in {"1.3.1", "1.3", "1.3.0"}:
        raise ImportFailed([ImportProblem(label, f"ODMVersion '{version}' is not read (use ODM 1.3.2)", root.sourceline)])
    return document


def translated(element: etree._Element | None, tag: str) -> tuple[str, dict[str, str]]:
    """The text of a TranslatedText holder in the project's language (else English, else untagged,
    else the first), and the other languages' texts."""
    holder = element.find(_q(tag)) if element is not None else None
    if holder is None:
        return "", {}
    texts: dict[str, str] = {}
    for entry in holder.findall(_q("TranslatedText")):
        texts.setdefault((entry.get(XML_LANG) or "").lower(), " ".join((entry.text or "").split()))
    if not texts:
        return "", {}
    language = settings.LANGUAGE_CODE.split("-")[0].lower()
    for wanted in (settings.LANGUAGE_CODE.lower(), language, "en", ""):
        if wanted in texts:
            chosen = wanted
            break
    else:
        chosen = next(iter(texts))
    others = {lang or "?": text for lang, text in texts.items() if lang != chosen and text}
    return texts[chosen], others


def translated_language(element: etree._Element | None, tag: str) -> str:
    """The language `translated` chose for a holder ("" when untagged or absent)."""
    holder = element.find(_q(tag)) if element is not None else None
    if holder is None:
        return ""
    tags = [(entry.get(XML_LANG) or "").lower() for entry in holder.findall(_q("TranslatedText"))]
    language = settings.LANGUAGE_CODE.split("-")[0].lower()
    for wanted in (settings.LANGUAGE_CODE.lower(), language, "en", ""):
        if wanted in tags:
            return wanted
    return tags[0] if tags else ""


class _Reader:
    """One MetaDataVersion read into CRF and trial dicts."""

    def __init__(self, document: etree._ElementTree, label: str):
        self.label = label
        self.root = document.getroot()
        self.ours = self.root.get("SourceSystem") == "EDC"
        self.redcap = self.root.get("SourceSystem") == "REDCap"
        self.problems: list[ImportProblem] = []
        self.report: list[str] = []
        self.result = ImportResult()
        studies = self.root.findall(_q("Study"))
        if not studies:
            raise ImportFailed([ImportProblem(label, "no Study element: the file holds no metadata", self.root.sourceline)])
        self.study = studies[0]
        if len(studies) > 1:
            self.report.append(f"{len(studies)} studies in the file: only the first ({self.study.get('OID')}) is imported.")
        versions = self.study.findall(_q("MetaDataVersion"))
        if not versions:
            raise ImportFailed([ImportProblem(label, "no MetaDataVersion in the Study", self.study.sourceline)])
        self.mdv = versions[-1]
        if len(versions) > 1:
            self.report.append(f"{len(versions)} MetaDataVersions: the last ({self.mdv.get('OID')}) is imported.")
        if self.mdv.find(_q("Include")) is not None:
            self.report.append("MetaDataVersion/Include (a prior version's metadata) is not followed: only this version's definitions are read.")
        self.defs: dict[str, dict[str, etree._Element]] = {}
        for tag in ("StudyEventDef", "FormDef", "ItemGroupDef", "ItemDef", "CodeList", "MethodDef", "ConditionDef"):
            self.defs[tag] = {e.get("OID"): e for e in self.mdv.findall(_q(tag))}
        self.units = {e.get("OID"): e for e in self.study.iter(_q("MeasurementUnit"))}
        self.translations: dict[str, int] = {}
        # Text in the default language -> {language: text} for texts given in several languages.
        self.texts_i18n: dict[str, dict[str, str]] = {}
        self.untranslated: list[str] = []
        self._check_references()
        self._vendor_extensions()

    def _vendor_extensions(self) -> None:
        """REDCap's branching logic and calculations ride on `redcap:` attributes: not ODM, not read
        here (import_redcap translates them), but listed so that none is lost silently."""
        for element in self.mdv.iter(_q("ItemDef")):
            for attribute, value in element.attrib.items():
                name = etree.QName(attribute).localname
                if "redcap" in (etree.QName(attribute).namespace or "") and name in {"BranchingLogic", "Calculation"} and value:
                    self.untranslated.append(f"{self.label}:{element.sourceline}: REDCap {name} of {element.get('OID')} "
                                             f"({value}): not translated here; use import_redcap with the data dictionary")

    # -- References --------------------------------------------------------------------

    def _check_references(self) -> None:
        """Every OID reference resolves (the XSD does not check them)."""
        targets = {
            "StudyEventOID": "StudyEventDef", "FormOID": "FormDef", "ItemGroupOID": "ItemGroupDef", "ItemOID": "ItemDef",
            "CodeListOID": "CodeList", "MethodOID": "MethodDef", "CollectionExceptionConditionOID": "ConditionDef",
            "MeasurementUnitOID": None,
        }
        for element in self.mdv.iter():
            if not isinstance(element.tag, str):
                continue
            for attribute, kind in targets.items():
                value = element.get(attribute)
                if value is None:
                    continue
                known = self.units if kind is None else self.defs[kind]
                if value in known:
                    continue
                # A reference that misses its definition's prefix (CDISC's own CDASH example writes
                # CL.SEX for ODM.CL.SEX): resolved when exactly one definition ends with it, and reported.
                near = [oid for oid in known if oid.endswith("." + value)]
                if len(near) == 1:
                    known[value] = known[near[0]]
                    self.report.append(f"{self.label}:{element.sourceline}: {attribute}=\"{value}\" names no definition; "
                                       f"read as {near[0]}, the one OID ending with it")
                else:
                    self.problems.append(ImportProblem(
                        self.label, f"{etree.QName(element).localname} {attribute}=\"{value}\" names no {kind or 'MeasurementUnit'}",
                        element.sourceline,
                    ))
        if self.problems:
            raise ImportFailed(self.problems)

    def text(self, element: etree._Element | None, tag: str, what: str) -> str:
        value, others = translated(element, tag)
        kept = {lang: text for lang, text in others.items() if lang in CONTENT_LANGUAGES}
        chosen = translated_language(element, tag).split("-")[0] or settings.LANGUAGE_CODE.split("-")[0]
        if kept and value and chosen in CONTENT_LANGUAGES:
            self.texts_i18n.setdefault(value, {chosen: value, **kept})
            # Our export's multiple-choice option items read "item: option" in every language.
            parts = [text.split(": ") for text in (value, *kept.values())]
            if len({len(p) for p in parts}) == 1 and len(parts[0]) > 1:
                for index in range(len(parts[0])):
                    self.texts_i18n.setdefault(
                        ": ".join(parts[0][:index + 1]) if index < len(parts[0]) - 1 else parts[0][index],
                        dict(zip([chosen, *kept], [": ".join(p[:index + 1]) if index < len(parts[0]) - 1 else p[index] for p in parts], strict=True)),
                    )
        for language in set(others) - set(kept):
            self.translations[language] = self.translations.get(language, 0) + 1
        return value

    # -- Items -------------------------------------------------------------------------

    def codelist(self, oid: str) -> tuple[list[dict], bool, str] | None:
        """(choices, integer codes, name) of a code list; None for an external one."""
        element = self.defs["CodeList"][oid]
        if element.find(_q("ExternalCodeList")) is not None:
            return None
        choices = []
        codes: set[str] = set()
        for entry in element.findall(_q("CodeListItem")) + element.findall(_q("EnumeratedItem")):
            value = entry.get("CodedValue", "")
            if len(value) > 40:  # a choice code holds 40 characters: the full value stays as the label
                short = unique(value[:40].rstrip(), codes, 40)
                self.report.append(f"{self.label}:{entry.sourceline}: code list {oid}: the code '{value}' is longer "
                                   f"than 40 characters: coded as '{short}'")
                value = short
            codes.add(value)
            label = self.text(entry, "Decode", f"code list {oid}") or value
            choices.append({"code": value, "label": label})
        integer = element.get("DataType") == "integer" and all(re.fullmatch(r"-?\d+", c["code"]) for c in choices)
        for choice in choices:
            if integer:
                choice["code"] = int(choice["code"])
        return choices, integer, element.get("Name", oid)

    @staticmethod
    def is_yes_no(choices: list[dict]) -> bool:
        codes = {str(c["code"]): c["label"].strip().lower() for c in choices}
        return set(codes) == {"1", "0"} and codes["1"] in YES_WORDS and codes["0"] in NO_WORDS

    def condition(self, oid: str, item_name: str) -> str | None:
        element = self.defs["ConditionDef"][oid]
        expression = element.find(_q("FormalExpression"))
        if expression is None or (expression.get("Context") or "").upper() != "CEL":
            context = expression.get("Context") if expression is not None else "no FormalExpression"
            self.untranslated.append(f"{self.label}:{element.sourceline}: ConditionDef {oid} ({context}) on item "
                                     f"{item_name}: not translated; the item is always shown")
            return None
        text = " ".join((expression.text or "").split())
        return _negate(text)

    def method(self, oid: str, item_name: str) -> dict | None:
        element = self.defs["MethodDef"][oid]
        expression = element.find(_q("FormalExpression"))
        context = expression.get("Context", "") if expression is not None else ""
        text = " ".join((expression.text or "").split()) if expression is not None else ""
        if context.upper() == "CEL" and text:
            return {"cel": text}
        if context == "EDC score library":
            match = SCORE_CALL.match(text)
            if match:
                inputs = {}
                for part in filter(None, (p.strip() for p in match["args"].split(","))):
                    key, _sep, value = part.partition("=")
                    inputs[key.strip()] = value.strip()
                return {"score": match["score"], **({"inputs": inputs} if inputs else {})}
        self.untranslated.append(f"{self.label}:{element.sourceline}: MethodDef {oid} ({context or 'no FormalExpression'}) "
                                 f"of item {item_name}: not translated; the item is entered, not calculated")
        return None

    @staticmethod
    def edc_file(element: etree._Element) -> dict | None:
        """A file item as this EDC's ODM export writes it: text data with
        Alias Context="EDC" Name="file accept=image,pdf max_size_kb=10240"."""
        for alias in element.iterfind(_q("Alias")):
            name = alias.get("Name") or ""
            if alias.get("Context") == "EDC" and name.startswith("file "):
                options = dict(part.split("=", 1) for part in name.split()[1:] if "=" in part)
                try:
                    return {"type": "file", "accept": [k for k in options.get("accept", "").split(",") if k],
                            "max_size_kb": int(options.get("max_size_kb", ""))}
                except ValueError:
                    return None
        return None

    def item(self, ref: etree._Element, taken: set[str]) -> dict | None:
        element = self.defs["ItemDef"][ref.get("ItemOID")]
        oid = element.get("OID")
        data_type = element.get("DataType", "")
        raw_name = element.get("Name", oid)
        name = as_name(raw_name)
        if name in reserved_names():
            self.report.append(f"{self.label}:{element.sourceline}: item {oid}: '{name}' is a name expressions reserve; "
                               f"renamed {name}_item")
            name = f"{name}_item"
        name = unique(name, taken, 60)
        label = self.text(element, "Question", oid) or element.get("Name") or oid
        description = self.text(element, "Description", oid)
        field: dict[str, Any] = {"name": name, "label": label}
        if data_type in REFUSED_TYPES:
            self.problems.append(ImportProblem(self.label, f"ItemDef {oid}: DataType {data_type} is not a CRF item type "
                                               "(binary data cannot be entered on a form)", element.sourceline))
            return None
        choices = None
        codelist_ref = element.find(_q("CodeListRef"))
        if codelist_ref is not None:
            read = self.codelist(codelist_ref.get("CodeListOID"))
            if read is None:
                self.untranslated.append(f"{self.label}:{codelist_ref.sourceline}: item {oid}: an external code list "
                                         "is not translated; the item is free text")
            else:
                choices = read[0]
        method = self.method(ref.get("MethodOID"), name) if ref.get("MethodOID") else None
        numeric = False
        if method is not None:
            field["type"] = "calculated"
            field["calculation"] = method
            numeric = True
            if data_type in {"float", "double"} and element.get("SignificantDigits"):
                field["precision"] = min(int(element.get("SignificantDigits")), 10)
        elif choices is not None and (data_type == "boolean" or self.is_yes_no(choices)):
            field["type"] = "yes_no"
        elif choices:
            field["type"] = "single_choice"
            field["choices"] = choices
        elif data_type == "boolean":
            field["type"] = "yes_no"
        elif data_type == "integer":
            field["type"], numeric = "integer", True
        elif data_type in {"float", "double"}:
            field["type"], numeric = "decimal", True
            if element.get("SignificantDigits"):
                field["precision"] = min(int(element.get("SignificantDigits")), 10)
        elif data_type in {"date", "partialDate", "incompleteDate"}:
            field["type"] = "date"
            if data_type != "date":
                self.report.append(f"{self.label}:{element.sourceline}: item {oid} is a {data_type}: imported as a full date")
        elif data_type in {"datetime", "partialDatetime", "incompleteDatetime"}:
            field["type"] = "datetime"
            if data_type != "datetime":
                self.report.append(f"{self.label}:{element.sourceline}: item {oid} is a {data_type}: imported as a full date and time")
        elif (edc_file := self.edc_file(element)) is not None:  # our export's file item (see trials/exports/odm.py)
            field.update(edc_file)
        elif data_type in TEXT_TYPES:
            length = int(element.get("Length") or 0)
            field["type"] = "long_text" if length > 2000 else "text"
            if data_type not in {"text", "string"}:
                self.report.append(f"{self.label}:{element.sourceline}: item {oid} is a {data_type}: imported as text")
        else:
            self.problems.append(ImportProblem(self.label, f"ItemDef {oid}: unknown DataType '{data_type}'", element.sourceline))
            return None
        if ref.get("Mandatory") == "Yes" and field["type"] != "calculated":
            field["required"] = True
        if description and description != label:
            field["help"] = description
        unit_ref = element.find(_q("MeasurementUnitRef"))
        if unit_ref is not None:
            unit = self.units[unit_ref.get("MeasurementUnitOID")]
            field["unit"] = self.text(unit, "Symbol", unit.get("OID")) or unit.get("Name", "")
        checks = []
        for check in element.findall(_q("RangeCheck")):
            checks += self.range_check(check, field, numeric)
        if checks:
            field["checks"] = checks
        condition_oid = ref.get("CollectionExceptionConditionOID")
        if condition_oid:
            show_if = self.condition(condition_oid, name)
            if show_if:
                field["show_if"] = show_if
        field["_raw_name"] = raw_name
        field["_line"] = element.sourceline
        field["_codelist"] = codelist_ref.get("CodeListOID") if codelist_ref is not None else None
        return field

    def range_check(self, check: etree._Element, field: dict, numeric: bool) -> list[dict]:
        comparator = check.get("Comparator", "")
        values = [(v.text or "").strip() for v in check.findall(_q("CheckValue"))]
        soft = check.get("SoftHard") == "Soft"
        message = self.text(check, "ErrorMessage", "RangeCheck")
        where = f"{self.label}:{check.sourceline}"
        if check.find(_q("FormalExpression")) is not None or not values:
            self.untranslated.append(f"{where}: RangeCheck on {field['name']} (expression or no value): not translated")
            return []
        if not numeric:
            self.untranslated.append(f"{where}: RangeCheck {comparator} on the non-numeric item {field['name']}: not translated")
            return []
        try:
            numbers = [Decimal(v) for v in values]
        except InvalidOperation:
            self.untranslated.append(f"{where}: RangeCheck on {field['name']}: '{values[0]}' is not a number; not translated")
            return []
        if not soft and comparator in {"GE", "LE"} and len(numbers) == 1:
            key = "min" if comparator == "GE" else "max"
            bound = numbers[0]
            field[key] = bound if key not in field else (max if key == "min" else min)(field[key], bound)
            return []
        name = field["name"]
        if comparator in COMPARATORS and len(numbers) == 1:
            expression = f"{name} == null || {name} {COMPARATORS[comparator]} {numbers[0]}"
        elif comparator in {"IN", "NOTIN"}:
            listed = ", ".join(str(n) for n in numbers)
            expression = f"{name} == null || {'' if comparator == 'IN' else '!'}({name} in [{listed}])"
        else:
            self.untranslated.append(f"{where}: RangeCheck {comparator} on {name}: not translated")
            return []
        return [{"expression": expression, "message": message or f"{name}: {comparator} {', '.join(values)}",
                 "severity": "soft" if soft else "hard"}]

    # -- Forms -------------------------------------------------------------------------

    def forms(self) -> dict[str, tuple[str, dict, int]]:
        """FormDef OID -> (CRF code, CRF dict, line); the latest version when our export has several."""
        crfs: dict[str, tuple[str, dict, int]] = {}
        codes: dict[str, tuple[int, str]] = {}  # code -> (version, form OID)
        taken: set[str] = set()
        for oid, form in self.defs["FormDef"].items():
            if self.ours and oid in BUILT_IN_FORMS:
                continue
            match = OUR_FORM.match(oid) if self.ours else None
            if match:
                code, version = match["code"], int(match["version"])
                previous = codes.get(code)
                if previous and previous[0] > version:
                    continue
                if previous:
                    del crfs[previous[1]]
                    self.report.append(f"CRF {code}: version {version} imported; version {previous[0]} left out")
                codes[code] = (version, oid)
            else:
                bare = re.sub(r"^Form\.", "", oid) if self.redcap else re.sub(r"^(.*\.)?F\.", "", oid)
                code = unique(as_code(bare or form.get("Name", ""), "CRF"), taken)
            title = re.sub(r" \(v\d+\)$", "", form.get("Name") or code) if match else (form.get("Name") or code)
            crfs[oid] = (code, self.crf(form, code, title), form.sourceline)
        return crfs

    def crf(self, form: etree._Element, code: str, title: str) -> dict:
        taken: set[str] = set()
        fields: list[dict] = []
        sections: list[str] = []
        refs = form.findall(_q("ItemGroupRef"))
        record_id = self.mdv.get("{https://projectredcap.org}RecordIdField") if self.redcap else None

        def kept(ref: etree._Element) -> list[etree._Element]:
            item_refs = self.defs["ItemGroupDef"][ref.get("ItemGroupOID")].findall(_q("ItemRef"))
            if self.redcap:  # REDCap's record id and form-status items are the EDC's own business here
                item_refs = [r for r in item_refs if r.get("ItemOID") != record_id and not r.get("ItemOID", "").endswith("_complete")]
            return item_refs

        refs = [r for r in refs if kept(r)]
        plain_groups = [r for r in refs if self.defs["ItemGroupDef"][r.get("ItemGroupOID")].get("Repeating") != "Yes"]
        for ref in refs:
            group = self.defs["ItemGroupDef"][ref.get("ItemGroupOID")]
            item_refs = kept(ref)
            items = [f for f in (self.item(r, taken) for r in item_refs) if f is not None]
            group_name = self.text(group, "Description", group.get("OID")) or group.get("Name") or group.get("OID")
            if group.get("Repeating") == "Yes":
                row_ids = [f for f in items if f["_raw_name"].endswith("._row_id")]
                base = row_ids[0]["_raw_name"].removesuffix("._row_id") if row_ids else group.get("Name", "rows")
                children = _multiple_choices([f for f in items if f not in row_ids], set())
                group_field = {"name": unique(as_name(base), taken, 60), "label": group.get("Name") or base,
                               "type": "repeating_group", "fields": children, "_line": group.sourceline}
                fields.append(group_field)
                continue
            is_main = group.get("OID", "").endswith(".MAIN") or (len(plain_groups) == 1 and group_name in {title, form.get("Name")})
            section = None if is_main else group_name
            if section and section not in sections:
                sections.append(section)
            for field in _multiple_choices(items, taken):
                if section:
                    field["section"] = section
                fields.append(field)
        crf: dict[str, Any] = {"code": code, "title": title}
        description = self.text(form, "Description", form.get("OID"))
        if description and description != title:  # our export writes a multilingual CRF's title there
            crf["description"] = description
        crf["source"] = f"Imported from the ODM file {Path(self.label).name}, FormDef {form.get('OID')}"
        if sections:
            crf["sections"] = [{"name": s} for s in sections]
        crf["fields"] = fields
        return crf

    # -- Events ------------------------------------------------------------------------

    def events(self, crf_codes: dict[str, str]) -> tuple[list[dict], list[str], list[str]]:
        """(visits, unscheduled CRFs, log CRFs) in the Protocol's order."""
        order = [ref.get("StudyEventOID") for ref in self.mdv.findall(f"{_q('Protocol')}/{_q('StudyEventRef')}")]
        order += [oid for oid in self.defs["StudyEventDef"] if oid not in order]
        visits, unscheduled, logs = [], [], []
        taken: set[str] = set()
        for oid in order:
            event = self.defs["StudyEventDef"][oid]
            if self.ours and oid in BUILT_IN_EVENTS:
                continue
            links = []
            for ref in event.findall(_q("FormRef")):
                code = crf_codes.get(ref.get("FormOID"))
                if code and all(link["crf"] != code for link in links):
                    links.append({"crf": code, "required": ref.get("Mandatory") == "Yes"})
            kind = event.get("Type", "Scheduled")
            if kind == "Unscheduled":
                unscheduled += [link["crf"] for link in links if link["crf"] not in unscheduled]
                continue
            if kind == "Common":
                logs += [link["crf"] for link in links if link["crf"] not in logs]
                continue
            label = event.get("Name") or oid
            visit_code = unique(as_code(oid.removeprefix("SE.") if self.ours else oid, "VISIT"), taken)
            lower = label.lower()
            visit_kind = "screening" if "screen" in lower else "baseline" if "baseline" in lower else "follow_up"
            visits.append({
                "code": visit_code, "label": label, "kind": visit_kind, "anchor": "enrolment", "day_offset": 0,
                "crfs": [link["crf"] if link["required"] else link for link in links],
                "_line": event.sourceline,
            })
        return visits, unscheduled, logs


@lru_cache(maxsize=1)
def reserved_names() -> frozenset[str]:
    from trials.protocol.loader import RESERVED_NAMES

    return frozenset(RESERVED_NAMES)


def _negate(text: str) -> str:
    """show_if from a collection-exception condition: `!(x)` gives `x` back, anything else `!(…)`."""
    if text.startswith("!(") and text.endswith(")"):
        depth = 0
        for index, char in enumerate(text[1:], 1):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and index != len(text) - 1:
                break
        else:
            return text[2:-1].strip()
    return f"!({text})"


def _multiple_choices(items: list[dict], taken: set[str]) -> list[dict]:
    """Our export writes a multiple choice as one 1/0 item per option (`item.code`, question
    `label: option`): give the multiple choice back; other items pass through."""
    out: list[dict] = []
    index = 0
    while index < len(items):
        field = items[index]
        raw = field["_raw_name"]
        base, _dot, _code = raw.rpartition(".")
        run = []
        if base and field["type"] == "yes_no" and re.fullmatch(r"[a-z][a-z0-9_]*", base):
            while index + len(run) < len(items):
                candidate = items[index + len(run)]
                c_base, _d, _c = candidate["_raw_name"].rpartition(".")
                if c_base != base or candidate["type"] != "yes_no":
                    break
                run.append(candidate)
        prefix = _common_label(run) if run else None
        if run and prefix:
            choices = []
            for option in run:
                option_code = option["_raw_name"].rpartition(".")[2]
                choices.append({"code": int(option_code) if re.fullmatch(r"-?\d+", option_code) else option_code,
                                "label": option["label"][len(prefix) + 2:]})
            merged = {"name": base if base not in taken else unique(base, taken, 60), "label": prefix,
                      "type": "multiple_choice", "choices": choices, "_raw_name": base, "_line": field["_line"]}
            taken.add(merged["name"])
            for key in ("show_if", "section"):
                if key in field:
                    merged[key] = field[key]
            out.append(merged)
            index += len(run)
            continue
        out.append(field)
        index += 1
    return out


def _common_label(run: list[dict]) -> str | None:
    labels = [r["label"] for r in run]
    prefix = labels[0].split(": ")[0]
    for cut in range(len(labels[0].split(": ")) - 1, 0, -1):  # the longest "label: " all options share
        candidate = ": ".join(labels[0].split(": ")[:cut])
        if all(label.startswith(candidate + ": ") and len(label) > len(candidate) + 2 for label in labels):
            return candidate
    return None if not all(label.startswith(prefix + ": ") for label in labels) else prefix


def _clean(field: dict, result: ImportResult, relpath: str, loc: str, label: str) -> dict:
    result.origin(relpath, loc, label, field.get("_line"))
    out = {k: v for k, v in field.items() if not k.startswith("_")}
    if "fields" in out:
        out["fields"] = [_clean(child, result, relpath, f"{loc}.fields[{i}]", label) for i, child in enumerate(out["fields"])]
    return out


def _with_languages(crf: dict, reader: _Reader, result: ImportResult, label: str) -> dict:
    """The CRF in every language all its texts have (title, section titles, labels, help, units,
    choices): each text becomes a {language: text} mapping and `languages` is declared; a language
    some text lacks is left out, and said in the report."""
    table = reader.texts_i18n
    texts: list[tuple[dict, str]] = [(crf, "title")]
    texts += [(section, "name") for section in crf.get("sections") or []]

    def walk(fields: list[dict]) -> None:
        for field in fields:
            texts.extend((field, key) for key in ("label", "help", "unit") if field.get(key))
            if isinstance(field.get("choices"), list):
                texts.extend((choice, "label") for choice in field["choices"])
            walk(field.get("fields") or [])

    walk(crf["fields"])
    found = [table.get(str(obj.get(key) or "")) for obj, key in texts]
    translated = [f for (obj, key), f in zip(texts, found, strict=True) if f or key != "unit"]
    if not translated or not all(translated):
        counts: dict[str, int] = {}
        for texts_ in filter(None, found):
            for lang in list(texts_)[1:]:  # the first is the text's own (default) language
                counts[lang] = counts.get(lang, 0) + 1
        if counts:
            listed = ", ".join(f"{lang} ({n})" for lang, n in sorted(counts.items()))
            result.report.append(f"{label}: CRF {crf['code']}: texts in {listed} not kept: not every text of the CRF has them")
        return crf
    default = next(iter(translated[0]))
    languages = [default] + sorted(set.intersection(*(set(f) for f in translated)) - {default})
    dropped = sorted(set.union(*(set(f) for f in translated)) - set(languages))
    if dropped:
        result.report.append(f"{label}: CRF {crf['code']}: texts in {', '.join(dropped)} not kept: not every text of the CRF has them")
    if len(languages) < 2:
        return crf
    for (obj, key), found_texts in zip(texts, found, strict=True):
        if found_texts:
            obj[key] = {lang: found_texts[lang] for lang in languages}
    out = {"code": crf["code"], "title": crf["title"], "default_language": default, "languages": languages}
    out.update({k: v for k, v in crf.items() if k not in out})
    # The imported wording is the file's, not a validated translation: say where it stands.
    out["translation_status"] = {lang: "to_be_validated" for lang in languages if lang != default}
    return out


def import_odm(paths: list[Path | str], out: Path | str | None = None) -> ImportResult:
    """Import the metadata of each ODM file as CRF (and, with study events, trial) YAML; validate it
    with the loader, then write it under `out` (`crfs/<code>.yaml`, `<trial>.yaml`). Raises
    ImportFailed (nothing written) on any problem."""
    result = ImportResult()
    problems: list[Any] = []
    for path in map(Path, paths):
        label = str(path)
        try:
            document = parse_odm(path, label)
            reader = _Reader(document, label)
            forms = reader.forms()
            if reader.problems:
                raise ImportFailed(reader.problems)
        except ImportFailed as exc:
            problems += exc.problems
            continue
        codes = {oid: code for oid, (code, _crf, _line) in forms.items()}
        for oid, (code, crf, line) in forms.items():
            relpath = f"crfs/{code.lower()}.yaml"
            if relpath in result.files:
                problems.append(ImportProblem(label, f"CRF {code} is also imported from another file", line, oid))
                continue
            result.origin(relpath, "", label, line)
            crf["fields"] = [_clean(f, result, relpath, f"fields[{i}]", label) for i, f in enumerate(crf["fields"])]
            crf = _with_languages(crf, reader, result, label)
            if not crf["fields"]:
                problems.append(ImportProblem(label, f"FormDef {oid} has no item a CRF can hold", line, oid))
                continue
            header = [f"CRF {code} imported from {path.name} (CDISC ODM), FormDef {oid}."]
            result.files[relpath] = dump_yaml(crf, header=header)
        visits, unscheduled, logs = reader.events(codes)
        if visits:
            relpath_trial, trial = _trial(reader, visits, unscheduled, logs, result)
            result.files[relpath_trial] = trial
        else:
            result.report.append(f"{label}: no scheduled StudyEventDef: CRFs only, no trial file.")
        result.report += reader.report
        result.report += reader.untranslated
        if reader.translations:
            languages = ", ".join(f"{lang} ({n})" for lang, n in sorted(reader.translations.items()))
            result.report.append(f"{label}: texts in languages the EDC has no CRF content for, not kept: {languages}")
        result.report.append(f"{label}: {len(forms)} CRF(s), {len(visits)} visit(s); "
                             f"{len(reader.untranslated)} definition(s) not translated (listed above).")
    if problems:
        raise ImportFailed(problems)
    validate_and_write(result, Path(out) if out else None)
    return result


def _trial(reader: _Reader, visits: list[dict], unscheduled: list[str], logs: list[str], result: ImportResult) -> tuple[str, str]:
    variables = reader.study.find(_q("GlobalVariables"))
    name = (variables.findtext(_q("StudyName")) or "").strip() if variables is not None else ""
    description = " ".join((variables.findtext(_q("StudyDescription")) or "").split()) if variables is not None else ""
    protocol = (variables.findtext(_q("ProtocolName")) or "").strip() if variables is not None else ""
    code = as_code(name or reader.study.get("OID", ""), "IMPORTED")
    relpath = f"{code.lower()}.yaml"
    comments: dict[str, list[str]] = {}
    todo = "TODO: not in ODM 1.3.2 metadata; give the real value"
    data: dict[str, Any] = {"code": code, "title": description or name or code, "short_title": name}
    data["phase"], comments["phase"] = "na", [todo]
    data["study_type"] = "interventional"
    data["design"], comments["design"] = "open_label", [f"{todo} (and arms, randomization, masking)"]
    data["masking"] = {"level": "none", "masked": []}
    data["target_enrolment"], comments["target_enrolment"] = 1, [todo]
    data["status"] = "not_yet_recruiting"
    data["sponsor"], comments["sponsor"] = "TODO", [todo]
    data["conditions"], comments["conditions"] = ["TODO"], [todo]
    data["source"] = f"Imported from the ODM file {Path(reader.label).name} (Study {reader.study.get('OID')}, protocol {protocol or '-'})"
    data["sites"] = [{"code": "SITE1", "name": "TODO", "city": "TODO", "country": "ZZ", "time_zone": "UTC",
                      "recruitment_status": "not_yet_recruiting"}]
    comments["sites"] = ["TODO: the sites (ODM AdminData Locations are not imported): code, name, city, ISO country, time zone."]
    if logs:
        data["logs"] = logs
    if unscheduled:
        data["unscheduled"] = {"crfs": unscheduled}
    for index, visit in enumerate(visits):
        result.origin(relpath, f"visits[{index}]", reader.label, visit.pop("_line", None))
    data["visits"] = visits
    comments["visits"] = [
        "TODO: ODM 1.3.2 has no visit timing: every day_offset is 0 and no window is set; give each visit's",
        "TODO: anchor, day_offset and window, and check its kind (screening/baseline/treatment/follow_up/end_of_study).",
    ]
    header = [f"Trial skeleton imported from {Path(reader.label).name} (CDISC ODM {reader.root.get('ODMVersion')}).",
              "Assumption: the visits and CRFs are the file's; everything marked TODO needs a person."]
    return relpath, dump_yaml(data, comments, header)
