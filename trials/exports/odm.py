"""CDISC ODM 1.3.2 export: the trial's metadata and its clinical data in one XML file.

The file is written as it is read (lxml `etree.xmlfile`): the metadata (bounded by the protocol,
not by the data) is built as one element, then each participant's `SubjectData` is built and
written on its own, so memory holds one participant at a time whatever the size of the trial.
It validates against the official schema shipped in `schemas/odm-1.3.2/` (`odm_schema()`).

Mapping (docs/architecture.md, "Exports"):
- Study `ST.<trial>`, MetaDataVersion `MDV.<trial>`; a pooled export has one Study (and one
  ClinicalData) per trial.
- StudyEventDef `SE.<visit code>` per visit definition (not repeating), `SE.UNSCHEDULED`
  (repeating, StudyEventRepeatKey = the unscheduled visit's sequence), `SE.LOG` (common and
  repeating: one event per record of a participant's log, StudyEventRepeatKey `<CRF>.<record
  number>`, e.g. `CONMED.2`) and `SE.SUBJECT` (common:
  the participant's status and dates, adverse events, and the allocation only when unblinded).
- FormDef `F.<CRF>.V<version>` per CRF version used (by the schedule or by data); every event has
  `F.VISIT` first (visit date and state).
- ItemGroupDef per section of a CRF version (not repeating) and per repeating group (repeating;
  ItemGroupRepeatKey = the row's position, the row's stable id is item `_row_id`).
- ItemDef `IT.<CRF>.<item name>`; a multiple-choice item becomes one yes/no item per choice
  (`IT.<CRF>.<item>.<code>`), like CDASH's "check all that apply". Yes/no items are integers
  with code list `CL.YN` (1 = yes, 0 = no). An item whose definition changed between versions
  gets the version as a suffix (`….V2`), so unchanged items keep one OID across versions.
- An unanswered item has no ItemData; an item answered with a missing-data code has ItemData
  IsNull="Yes" with an Annotation (Flag = the code, code list CL.MISSING; Comment = the reason).
- A calculated item's ItemRef names a MethodDef (its CEL expression, or the score of the score
  library); an item with show_if names a ConditionDef (CollectionExceptionCondition: the CEL
  `!(show_if)`); an item the SDTM mapping names has an Alias Context="SDTM" (sdtm_terms).
Blinded (the default): no allocation form, arm code list, kit code or unblinding time (the
selectors refuse to read allocations for a blinded spec); in a masked trial the arm codes and
labels are masked as "[blinded]" in every human-readable text, protocol texts included ("Day 0 -
digital injection ([blinded] or [blinded])", selectors.arm_mask), so a plain scan proves the blind. Unblinded: the
form `F.SUBJECT` has a second item group, `IG.ALLOCATION` (arm code with code list `CL.ARM`,
method, kit code, stratum, time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from lxml import etree

from trials.exports import sdtm_terms, selectors, tables
from trials.exports.attachments import attachment_value
from trials.exports.spec import ExportSpec, Progress
from trials.participants.models import AllocationMethod, ParticipantStatus
from trials.protocol.models import Arm, CrfDefinition, Site, Trial, VisitCrf, VisitDefinition
from trials.safety.models import ActionTaken, Causality, Outcome, Procedure, Seriousness
from trials.protocol.engine import MISSING_CODES, ROW_ID, CrfSchema, Item, schema_for
from trials.visits.models import CALENDAR_STATES, VisitStatus

NS = "http://www.cdisc.org/ns/odm/v1.3"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# The ODM schema the importer validates with too (protocol is the lower layer); schemas/odm-1.3.2 here
# stays for define-2.1's relative imports.
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "protocol" / "imports" / "schemas" / "odm-1.3.2"
ODM_VERSION = "1.3.2"
# Participants whose rows are read together: one query per stream per batch, memory per batch.
BATCH_SIZE = 100
UNSCHEDULED = "SE.UNSCHEDULED"
LOG_EVENT = "SE.LOG"
SUBJECT_EVENT = "SE.SUBJECT"
YES_NO_OID = "CL.YN"
ITEM_DATA = f"{{{NS}}}ItemData"
STORED_AS_IS = frozenset({"float", "date", "datetime", "choice"})
# Unit signs spelt out in measurement-unit OIDs (MU.pct, MU.degC, MU.kg_m2, MU.umol_L).
UNIT_WORDS = {"%": "pct", "°": "deg", "µ": "u", "μ": "u", "²": "2", "³": "3", "^": "e", "/": "_", " ": "_"}


def odm_schema() -> etree.XMLSchema:
    """The official ODM 1.3.2 schema, from the copy shipped with the project (no network)."""
    return _schema()


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "ODM1-3-2.xsd"), parser))


def _e(tag: str, attrib: dict | None = None, parent: etree._Element | None = None, text: str | None = None) -> etree._Element:
    """An ODM element (attributes with a None value are left out)."""
    attrs = {k: str(v) for k, v in (attrib or {}).items() if v is not None}
    if parent is None:
        element = etree.Element(f"{{{NS}}}{tag}", attrs, nsmap={None: NS})
    else:
        element = etree.SubElement(parent, f"{{{NS}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _translated(parent: etree._Element, tag: str, text: str, translations: Iterable[tuple[str, str]] = ()) -> None:
    """A text holder: one TranslatedText per language of a multilingual CRF (ODM 1.3.2 allows several,
    each with its xml:lang), else the one text in the project's language."""
    holder = _e(tag, parent=parent)
    translations = tuple(translations)
    if not translations:
        _e("TranslatedText", {XML_LANG: settings.LANGUAGE_CODE}, holder, text)
    for language, translated in translations:
        _e("TranslatedText", {XML_LANG: language}, holder, translated)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: Any) -> str:
    """Text XML can hold: control characters (never valid in XML 1.0) are dropped."""
    return _CONTROL.sub("", str(text))


def arm_mask(spec: ExportSpec) -> Callable[[str], str]:
    """selectors.arm_mask as a function that is always callable (the identity when nothing is
    masked), cached: the same few texts (visit names, labels) come back on every participant."""
    mask = selectors.arm_mask(spec)
    if mask is None:
        return lambda text: text
    return lru_cache(maxsize=100_000)(mask)


def oid_part(text: str) -> str:
    """A piece of an OID: letters, digits, '_', '-' and '.' kept, anything else as '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(text)) or "_"


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


# --- Metadata -----------------------------------------------------------------------------------


@dataclass
class CodeListSpec:
    oid: str
    name: str
    data_type: str  # integer | text
    items: tuple[tuple[str, str], ...]  # (coded value, decode)
    # A multilingual CRF's codelist: for each item, its decode in each language ((language, text), …).
    decodes: tuple[tuple[tuple[str, str], ...], ...] = ()


@dataclass
class ItemSpec:
    oid: str
    name: str
    data_type: str
    question: str
    kind: str  # how a stored value becomes an ODM value: see _odm_value
    source: str  # the answer's key (CRF item name) or the row's attribute
    option: Any = None  # the choice code of a multiple-choice option item
    length: int | None = None
    digits: int | None = None
    unit_oid: str | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    codelist_oid: str | None = None
    mandatory: bool = False
    method: tuple[str, str, str] | None = None  # a calculated item: (description, context, expression)
    condition: str | None = None  # show_if (CEL): the item is collected only when it holds
    aliases: tuple[tuple[str, str], ...] = ()  # (context, name): the SDTM variable the item maps to
    question_i18n: tuple[tuple[str, str], ...] = ()  # a multilingual CRF: (language, question) per language


@dataclass
class GroupSpec:
    oid: str
    name: str
    repeating: bool
    items: list[ItemSpec]
    source: str | None = None  # the repeating group's item name in the answers
    name_i18n: tuple[tuple[str, str], ...] = ()  # a multilingual CRF's section: its title per language (Description)


@dataclass
class FormSpec:
    oid: str
    name: str
    groups: list[GroupSpec]
    title_i18n: tuple[tuple[str, str], ...] = ()  # a multilingual CRF: its title per language (FormDef Description)


@dataclass
class EventSpec:
    oid: str
    name: str
    type: str  # Scheduled | Unscheduled | Common
    repeating: bool
    forms: list[tuple[str, bool]] = field(default_factory=list)  # (form OID, mandatory)
    mandatory: bool = False


@dataclass
class StudyMetadata:
    trial: Trial
    study_oid: str
    mdv_oid: str
    events: list[EventSpec]
    forms: dict[str, FormSpec]
    items: dict[str, ItemSpec]
    codelists: dict[str, CodeListSpec]
    units: dict[str, str]  # OID -> symbol
    sites: list[Site]
    form_by_crf: dict[int, str]
    event_by_visit: dict[str, str]  # visit definition code -> event OID
    with_adverse_events: bool
    with_allocation: bool
    mask: Callable[[str], str] = lambda text: text  # arm names masked in a blinded export (arm_mask)
    signature_defs: dict[str, str] = field(default_factory=dict)  # a signature's meaning -> its SignatureDef OID
    unit_i18n: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # symbol -> per-language symbols

    def text(self, value: Any) -> str:
        """A human-readable text of the file: arm names masked, only characters XML can hold."""
        return _xml_text(self.mask(str(value)))


def _localized_items(crf: CrfDefinition, name: str) -> list[tuple[str, Item]]:
    """A multilingual CRF's item in each of its languages, the default one first; [] for one language."""
    schema = schema_for(crf)
    if len(schema.languages) < 2:
        return []
    languages = [schema.default_language] + [lang for lang in schema.languages if lang != schema.default_language]
    return [(lang, schema_for(crf, lang).item(name)) for lang in languages]


class _Registry:
    """OIDs of items, groups and code lists: one OID per distinct definition. The first version of a
    CRF that defines an item gets the plain OID; a later version with a different definition of the
    same item gets the version as a suffix."""

    def __init__(self) -> None:
        self.taken: dict[str, tuple] = {}

    def claim(self, base: str, signature: tuple, version: int | None = None) -> tuple[str, bool]:
        """The OID for this definition, and whether it is new (to be written in the metadata)."""
        for oid in (base, f"{base}.V{version}") if version is not None else (base,):
            if oid not in self.taken:
                self.taken[oid] = signature
                return oid, True
            if self.taken[oid] == signature:
                return oid, False
        counter = 2
        while True:  # a signature clash even with the version suffix (not expected): number it
            oid = f"{base}.V{version}.{counter}"
            if oid not in self.taken or self.taken[oid] == signature:
                new = oid not in self.taken
                self.taken[oid] = signature
                return oid, new
            counter += 1


def _digits(number: Decimal | None) -> int:
    if number is None:
        return 0
    return len(str(abs(int(number))))


def _numeric_length(item: Item, default: int) -> int:
    """Characters of the longest value of a numeric item (ODM Length): sign, digits and decimals."""
    if item.min is None or item.max is None:
        return default
    length = max(_digits(item.min), _digits(item.max)) + (1 if item.min < 0 else 0)
    if item.precision:
        length += item.precision + 1
    return max(length, 1)


def _data_type(item: Item) -> tuple[str, int | None, int | None]:
    """ODM DataType, Length and SignificantDigits of a CRF item."""
    kind = item.type
    if kind in {"integer", "scale"}:
        return "integer", _numeric_length(item, 10), None
    if kind == "decimal":
        return "float", _numeric_length(item, 20), item.precision
    if kind == "calculated":
        # Scores with decimals (DAS28, HAQ-DI, BMI) are floats; counts and totals are integers.
        if item.precision or (item.calculation or {}).get("cel"):
            return "float", _numeric_length(item, 20), item.precision
        return "integer", _numeric_length(item, 10), None
    if kind == "date":
        return "date", None, None
    if kind == "datetime":
        return "datetime", None, None
    if kind == "yes_no":
        return "integer", 1, None
    if kind == "single_choice":
        if all(isinstance(code, int) for code, _label in item.choices):
            return "integer", max(len(str(code)) for code, _label in item.choices), None
        return "text", max(len(str(code)) for code, _label in item.choices), None
    if kind == "long_text":
        return "text", 20000, None
    return "text", 2000, None


class _Builder:
    """Builds one trial's metadata: OIDs, forms, items, code lists, units."""

    identifier_names: set[str] = set()  # the identifying items of the CRF being read (crf_form)

    def __init__(self, trial: Trial, spec: ExportSpec) -> None:
        self.trial = trial
        self.spec = spec
        self.registry = _Registry()
        self.items: dict[str, ItemSpec] = {}
        self.codelists: dict[str, CodeListSpec] = {}
        self.units: dict[str, str] = {}
        self.unit_oids: dict[str, str] = {}
        self.unit_i18n: dict[str, tuple[tuple[str, str], ...]] = {}  # symbol -> (language, symbol) of a multilingual CRF

    # Units and code lists

    def unit(self, symbol: str, translations: tuple[tuple[str, str], ...] = ()) -> str | None:
        """A MeasurementUnit per symbol (a multilingual CRF's unit: its symbol in each language too)."""
        if not symbol:
            return None
        if translations and any(text != symbol for _lang, text in translations):
            self.unit_i18n.setdefault(symbol, translations)
        if symbol not in self.unit_oids:
            readable = symbol
            for sign, word in UNIT_WORDS.items():
                readable = readable.replace(sign, word)
            base = f"MU.{oid_part(readable)}"
            oid, counter = base, 2
            while oid in self.units:
                oid, counter = f"{base}.{counter}", counter + 1
            self.unit_oids[symbol] = oid
            self.units[oid] = symbol
        return self.unit_oids[symbol]

    def codelist(self, base: str, name: str, choices: Iterable[tuple[Any, str]], version: int | None = None,
                 decodes: tuple[tuple[tuple[str, str], ...], ...] = ()) -> str:
        choices = tuple((str(code), str(label)) for code, label in choices)
        data_type = "integer" if all(re.fullmatch(r"-?\d+", code) for code, _label in choices) else "text"
        oid, new = self.registry.claim(base, ("CL", name, data_type, choices, decodes), version)
        if new:
            self.codelists[oid] = CodeListSpec(oid, name, data_type, choices, decodes)
        return oid

    def yes_no(self) -> str:
        return self.codelist(YES_NO_OID, "Yes/No", (("1", _("Yes")), ("0", _("No"))))

    def item(self, spec: ItemSpec, version: int | None = None) -> ItemSpec:
        signature = (
            "IT", spec.name, spec.data_type, spec.question, spec.kind, spec.option, spec.length, spec.digits,
            spec.unit_oid, spec.minimum, spec.maximum, spec.codelist_oid, spec.method, spec.aliases, spec.question_i18n,
        )
        oid, new = self.registry.claim(spec.oid, signature, version)
        spec.oid = oid
        if new:
            self.items[oid] = spec
        return spec

    # CRF forms

    def crf_items(self, crf: CrfDefinition, item: Item, codelist_names: dict[str, str],
                  sources: dict[str, dict] | None = None) -> list[ItemSpec]:
        """The ODM items of one CRF item (several for a multiple choice)."""
        if item.type in {"descriptive", "repeating_group"}:
            return []
        if item.identifier and not self.spec.identifiers:
            return []
        base = f"IT.{oid_part(crf.code)}.{oid_part(item.name)}"
        # A multilingual CRF: the item in each of its languages (default first), for TranslatedText per xml:lang.
        localized = _localized_items(crf, item.name)
        unit = self.unit(item.unit, tuple((lang, other.unit) for lang, other in localized))
        source = (sources or {}).get(item.name, {})
        hidden = () if self.spec.identifiers else self.identifier_names
        condition = _unnamed(source.get("show_if") or None, hidden)
        method = _method(item.name, source.get("calculation"), hidden) if item.type == "calculated" else None
        aliases = _sdtm_aliases(crf.code, item.name)
        if item.type == "file":  # ODM 1.3.2 has no file type: the item's kinds and size limit, for an import
            aliases += (("EDC", f"file accept={','.join(item.accept)} max_size_kb={item.max_size_kb}"),)
        if item.type == "multiple_choice":
            yes_no = self.yes_no()
            return [
                self.item(ItemSpec(
                    oid=f"{base}.{oid_part(code)}", name=f"{item.name}.{code}", data_type="integer",
                    question=f"{item.label}: {label}", kind="option", source=item.name, option=code, length=1,
                    codelist_oid=yes_no, condition=condition,
                    question_i18n=tuple((lang, f"{other.label}: {dict(other.choices).get(code, label)}") for lang, other in localized),
                ), crf.version)
                for code, label in item.choices
            ]
        data_type, length, digits = _data_type(item)
        codelist = None
        if item.type == "single_choice":
            list_name = codelist_names.get(item.name, item.name)
            decodes = tuple(
                tuple((lang, str(dict(other.choices).get(code, label))) for lang, other in localized) for code, label in item.choices
            ) if localized else ()
            codelist = self.codelist(f"CL.{oid_part(crf.code)}.{oid_part(list_name)}", list_name, item.choices, crf.version, decodes)
        elif item.type == "yes_no":
            codelist = self.yes_no()
        numeric = data_type in {"integer", "float"} and item.type not in {"yes_no", "single_choice"}
        kind = {"yes_no": "yes_no", "single_choice": "choice", "file": "file"}.get(item.type, data_type)
        return [self.item(ItemSpec(
            oid=base, name=item.name, data_type=data_type, question=item.label, kind=kind, source=item.name,
            length=length, digits=digits, unit_oid=unit, minimum=item.min if numeric else None,
            maximum=item.max if numeric else None, codelist_oid=codelist,
            mandatory=item.required and item.type != "calculated", method=method, condition=condition, aliases=aliases,
            question_i18n=tuple((lang, other.label) for lang, other in localized),
        ), crf.version)]

    def group(self, base: str, name: str, repeating: bool, items: list[ItemSpec], source: str | None, version: int,
              name_i18n: tuple[tuple[str, str], ...] = ()) -> GroupSpec:
        oid, _new = self.registry.claim(base, ("IG", name, repeating, tuple(i.oid for i in items), name_i18n), version)
        return GroupSpec(oid, name, repeating, items, source, name_i18n)

    def crf_form(self, crf: CrfDefinition) -> FormSpec:
        """One FormDef per CRF version: an item group per section, one per repeating group."""
        schema: CrfSchema = schema_for(crf)
        names = _codelist_names(crf.definition.get("fields", []))
        sources = tables.field_sources(crf.definition.get("fields", []))
        # Identifying items left out are not named in expressions either (tests/exports/test_blinding.py).
        self.identifier_names = {i.name for i in schema.items if i.identifier} | {
            c.name for i in schema.items for c in i.children if c.identifier}
        code = oid_part(crf.code)
        groups: list[GroupSpec] = []
        sections: dict[str, list[ItemSpec]] = {}
        order: list[tuple[str, Any]] = []  # ("section", name) or ("group", Item) in order of appearance
        for item in schema.items:
            if item.type == "repeating_group":
                order.append(("group", item))
                continue
            specs = self.crf_items(crf, item, names, sources)
            if not specs:
                continue
            if item.section not in sections:
                sections[item.section] = []
                order.append(("section", item.section))
            sections[item.section].extend(specs)
        languages = [schema.default_language] + [lang for lang in schema.languages if lang != schema.default_language]
        localized = [schema_for(crf, lang) for lang in languages] if len(languages) > 1 else []
        headings = [{s.name: s.heading for s in other.sections} for other in localized]
        for kind, what in order:
            if kind == "section":
                label = what or crf.title
                base = f"IG.{code}.{oid_part(what.upper()) if what else 'MAIN'}"
                name_i18n = tuple(
                    (lang, (heads.get(what) or what) if what else other.title)
                    for lang, heads, other in zip(languages, headings, localized, strict=True)
                ) if localized else ()
                groups.append(self.group(base, label, False, sections[what], None, crf.version, name_i18n))
            else:
                row_id = self.item(ItemSpec(
                    oid=f"IT.{code}.{oid_part(what.name)}._row_id", name=f"{what.name}._row_id", data_type="text",
                    question=_("%(group)s: row identifier") % {"group": what.label}, kind="text", source=ROW_ID,
                    length=32,
                ), crf.version)
                items = [row_id] + [s for child in what.children for s in self.crf_items(crf, child, names, sources)]
                groups.append(self.group(f"IG.{code}.{oid_part(what.name.upper())}", what.label, True, items, what.name, crf.version,
                                         tuple((lang, other.item(what.name).label) for lang, other in zip(languages, localized, strict=False))
                                         if localized else ()))
        return FormSpec(f"F.{code}.V{crf.version}", f"{crf.title} (v{crf.version})", groups,
                        tuple((lang, other.title) for lang, other in zip(languages, localized, strict=False)) if localized else ())

    # Built-in forms: visit, subject, adverse events

    def simple(self, prefix: str, name: str, question: str, data_type: str, *, kind: str | None = None,
               codelist: str | None = None, length: int | None = None, unit: str = "",
               minimum: int | None = None, maximum: int | None = None) -> ItemSpec:
        return self.item(ItemSpec(
            oid=f"IT.{prefix}.{name}", name=name, data_type=data_type, question=question, kind=kind or data_type,
            source=name, codelist_oid=codelist, length=length, unit_oid=self.unit(unit),
            minimum=Decimal(minimum) if minimum is not None else None, maximum=Decimal(maximum) if maximum is not None else None,
        ))

    def choices(self, oid: str, name: str, choices: Any) -> str:
        return self.codelist(oid, name, [(value, label) for value, label in choices.choices])

    def visit_form(self) -> FormSpec:
        items = [
            self.simple("VISIT", "visit_date", _("Visit date"), "date"),
            self.simple("VISIT", "planned_date", _("Planned date"), "date"),
            self.simple("VISIT", "status", _("Visit status"), "text", kind="choice",
                        codelist=self.choices("CL.VISIT_STATUS", "Visit status", VisitStatus), length=20),
            self.simple("VISIT", "status_reason", _("Reason (missed, not done or added visit)"), "text", length=2000),
            self.simple("VISIT", "out_of_window", _("Done outside its window"), "integer", kind="yes_no",
                        codelist=self.yes_no(), length=1),
        ]
        return FormSpec("F.VISIT", _("Visit"), [GroupSpec("IG.VISIT", _("Visit"), False, items)])

    def subject_form(self, with_allocation: bool, arms: list[Arm]) -> FormSpec:
        items = [
            self.simple("SUBJECT", "site_code", _("Site"), "text", length=40),
            self.simple("SUBJECT", "screening_number", _("Screening number"), "text", length=40),
            self.simple("SUBJECT", "subject_number", _("Subject number"), "text", length=40),
            self.simple("SUBJECT", "status", _("Status"), "text", kind="choice",
                        codelist=self.choices("CL.PARTICIPANT_STATUS", "Participant status", ParticipantStatus), length=20),
            self.simple("SUBJECT", "status_date", _("Status date"), "date"),
            self.simple("SUBJECT", "status_reason", _("Reason for the status"), "text", length=2000),
            self.simple("SUBJECT", "screening_date", _("Screening date"), "date"),
            self.simple("SUBJECT", "consent_date", _("Consent date"), "date"),
            self.simple("SUBJECT", "consent_version", _("Consent document version"), "text", length=40),
            self.simple("SUBJECT", "enrolment_date", _("Enrolment date"), "date"),
            self.simple("SUBJECT", "first_treatment_date", _("First treatment date"), "date"),
            self.simple("SUBJECT", "age_at_consent", _("Age at consent"), "integer", length=3, unit="years"),
        ]
        if self.spec.identifiers:
            items.append(self.simple("SUBJECT", "date_of_birth", _("Date of birth"), "date"))
        groups = [GroupSpec("IG.SUBJECT", _("Participant"), False, items)]
        if with_allocation:  # never in a blinded export
            # A trial without arms (a registry) has no arm code list: ODM requires a CodeList to
            # have at least one item, so the arm code is then plain text (always empty).
            arm_list = self.codelist("CL.ARM", "Arm", [(arm.code, arm.label) for arm in arms]) if arms else None
            allocation = [
                self.simple("ALLOCATION", "arm_code", _("Arm / cohort"), "text", kind="choice" if arm_list else "text",
                            codelist=arm_list, length=40),
                self.simple("ALLOCATION", "method", _("Allocation method"), "text", kind="choice",
                            codelist=self.choices("CL.ALLOCATION_METHOD", "Allocation method", AllocationMethod), length=20),
                self.simple("ALLOCATION", "kit_code", _("Kit / treatment code"), "text", length=20),
                self.simple("ALLOCATION", "stratum", _("Stratum"), "text", length=200),
                self.simple("ALLOCATION", "allocated_at", _("Allocated at"), "datetime"),
            ]
            groups.append(GroupSpec("IG.ALLOCATION", _("Allocation"), False, allocation))
        return FormSpec("F.SUBJECT", _("Participant"), groups)

    def ae_form(self) -> FormSpec:
        yn = self.yes_no()
        causality = self.choices("CL.CAUSALITY", "Causality", Causality)

        def flag(name: str, question: str) -> ItemSpec:
            return self.simple("AE", name, question, "integer", kind="yes_no", codelist=yn, length=1)

        items = [
            self.simple("AE", "number", _("AE number"), "integer", length=6),
            self.simple("AE", "verbatim_term", _("Verbatim term"), "text", length=300),
            self.simple("AE", "dictionary", _("Coding dictionary"), "text", length=60),
            self.simple("AE", "dictionary_version", _("Dictionary version"), "text", length=20),
            self.simple("AE", "llt_code", _("Lowest level term code"), "text", length=20),
            self.simple("AE", "llt", _("Lowest level term"), "text", length=200),
            self.simple("AE", "pt_code", _("Preferred term code"), "text", length=20),
            self.simple("AE", "pt", _("Preferred term"), "text", length=200),
            self.simple("AE", "soc_code", _("System organ class code"), "text", length=20),
            self.simple("AE", "soc", _("System organ class"), "text", length=200),
            self.simple("AE", "onset_date", _("Onset date"), "date"),
            self.simple("AE", "end_date", _("End date"), "date"),
            flag("ongoing", _("Ongoing")),
            self.simple("AE", "grade", _("CTCAE grade"), "integer", length=1, minimum=1, maximum=5),
            flag("serious", _("Serious")),
        ]
        for code, label in Seriousness.choices:
            items.append(self.item(ItemSpec(
                oid=f"IT.AE.seriousness.{code}", name=f"seriousness.{code}", data_type="integer",
                question=_("Seriousness: %(criterion)s") % {"criterion": label}, kind="option", source="seriousness",
                option=code, length=1, codelist_oid=yn,
            )))
        items += [
            self.simple("AE", "related_product", _("Relation to the study product"), "text", kind="choice",
                        codelist=causality, length=20),
            self.simple("AE", "procedure", _("Procedure"), "text", kind="choice",
                        codelist=self.choices("CL.PROCEDURE", "Procedure", Procedure), length=20),
            self.simple("AE", "related_procedure", _("Relation to the procedure"), "text", kind="choice",
                        codelist=causality, length=20),
            flag("expected", _("Expected")),
            self.simple("AE", "action_taken", _("Action taken"), "text", kind="choice",
                        codelist=self.choices("CL.ACTION_TAKEN", "Action taken", ActionTaken), length=20),
            self.simple("AE", "outcome", _("Outcome"), "text", kind="choice",
                        codelist=self.choices("CL.OUTCOME", "Outcome", Outcome), length=20),
            self.simple("AE", "treatment_given", _("Treatment given"), "text", length=2000),
            self.simple("AE", "aware_at", _("Site aware at"), "datetime"),
            flag("is_dlt", _("Dose-limiting toxicity")),
            flag("leads_to_withdrawal", _("Led to withdrawal")),
        ]
        return FormSpec("F.AE", _("Adverse events"), [GroupSpec("IG.AE", _("Adverse event"), True, items)])


def _codelist_names(fields: list[dict]) -> dict[str, str]:
    """Item name -> the name of the code list it uses, from the CRF file as loaded."""
    names = {}
    for spec in fields:
        if isinstance(spec.get("choices"), str):
            names[spec["name"]] = spec["choices"]
        names.update(_codelist_names(spec.get("fields") or []))
    return names


def _unnamed(text: str | None, hidden: Iterable[str]) -> str | None:
    """An expression with the names of identifying items left out replaced by "[identifier]"."""
    for name in hidden:
        if text and name in text:
            text = re.sub(rf"\b{re.escape(name)}\b", "[identifier]", text)
    return text


def _method(name: str, calculation: dict | None, hidden: Iterable[str] = ()) -> tuple[str, str, str] | None:
    """MethodDef of a calculated item: a CEL expression, or a score of the score library."""
    if not calculation:
        return None
    if calculation.get("cel"):
        return (_("Calculated by the CEL expression"), "CEL", _unnamed(str(calculation["cel"]), hidden))
    score = calculation.get("score", name)
    # Inputs in name order: PostgreSQL's jsonb does not keep the file's key order.
    inputs = ", ".join(f"{k}={_unnamed(str(v), hidden)}" for k, v in sorted((calculation.get("inputs") or {}).items()))
    return (_("Score %(score)s of the score library (trials/protocol/scores.py)") % {"score": score},
            "EDC score library", f"{score}({inputs})")


def _sdtm_aliases(crf_code: str, item_name: str) -> tuple[tuple[str, str], ...]:
    """Alias Context="SDTM" of a CRF item the SDTM mapping names (trials/exports/sdtm_terms.py)."""
    term = sdtm_terms.TESTS.get(crf_code, {}).get(item_name)
    domain = sdtm_terms.CRF_DOMAINS.get(crf_code)
    if term and domain:
        return (("SDTM", f"{domain}.{domain}ORRES where {domain}TESTCD={term.testcd}"),)
    dm = sdtm_terms.DM_ITEMS.get(crf_code, {}).get(item_name)
    if dm:
        return (("SDTM", f"DM.{dm}"),)
    return ()


MISSING_CODELIST = "CL.MISSING"


def study_metadata(spec: ExportSpec, trial: Trial, *, history_crf_ids: Iterable[int] = ()) -> StudyMetadata:
    """The trial's ODM metadata for this export: its visits, the CRF versions the schedule and the
    exported data use (and `history_crf_ids`, versions only the audit trail still names), the
    built-in visit/participant/adverse-event forms."""
    builder = _Builder(trial, spec)
    pooled = spec.trial_id is None
    codes = selectors.export_crf_codes(spec)
    links = list(
        VisitCrf.objects.filter(visit_definition__trial=trial, crf_code__in=codes, is_active=True)
        .select_related("crf").order_by("visit_definition__order", "order")
    )
    # CRF versions the exported entries were made with, per visit (None: unscheduled visits).
    exported = selectors.export_entries(spec).queryset.filter(participant__trial=trial).order_by()
    used: set[tuple[str | None, int]] = set(exported.exclude(visit__record_kind="log").values_list("visit_code", "crf_id").distinct())
    # CRF versions of the participant's log records (concomitant medications, medical history).
    logged: set[int] = set(exported.filter(visit__record_kind="log").values_list("crf_id", flat=True).distinct())
    crf_ids = {link.crf_id for link in links} | {crf_id for _visit, crf_id in used} | logged | set(history_crf_ids)
    crfs = {crf.pk: crf for crf in CrfDefinition.objects.filter(pk__in=crf_ids)}
    # Oldest versions first, so an unchanged item keeps the OID its first version gave it.
    ordered = sorted(crfs.values(), key=lambda c: (codes.index(c.code) if c.code in codes else len(codes), c.code, c.version))
    forms: dict[str, FormSpec] = {}
    visit_form = builder.visit_form()
    forms[visit_form.oid] = visit_form
    form_by_crf: dict[int, str] = {}
    for crf in ordered:
        form = builder.crf_form(crf)
        forms[form.oid] = form
        form_by_crf[crf.pk] = form.oid

    events: list[EventSpec] = []
    event_by_visit: dict[str, str] = {}
    definitions = VisitDefinition.objects.filter(trial=trial).order_by("order", "code")
    by_visit: dict[str, list[tuple[str, bool]]] = {}
    for link in links:
        by_visit.setdefault(link.visit_definition_id, []).append((form_by_crf[link.crf_id], link.required))
    for definition in definitions:
        refs = [(visit_form.oid, False)] + by_visit.get(definition.pk, [])
        for crf_id in sorted(crf_id for code, crf_id in used if code == definition.code):
            if all(oid != form_by_crf[crf_id] for oid, _m in refs):
                refs.append((form_by_crf[crf_id], False))
        if pooled and len(refs) == 1:
            continue  # a pooled export keeps the visits at which the pooled CRF is due or entered
        oid = f"SE.{oid_part(definition.code)}"
        events.append(EventSpec(oid, definition.label, "Scheduled", False, refs, mandatory=definition.is_active))
        event_by_visit[definition.code] = oid
    unscheduled = [(visit_form.oid, False)] + [(form_by_crf[crf_id], False) for code, crf_id in sorted(used, key=str) if code is None]
    events.append(EventSpec(UNSCHEDULED, _("Unscheduled visit"), "Unscheduled", True, unscheduled))
    if logged:
        log_refs = [(form_by_crf[crf_id], False) for crf_id in sorted(logged)]
        events.append(EventSpec(LOG_EVENT, _("Participant log record"), "Common", True, log_refs))

    with_allocation = not spec.blinded and not pooled
    subject = builder.subject_form(with_allocation, list(trial.arms.order_by("order", "code")) if with_allocation else [])
    forms[subject.oid] = subject
    subject_refs = [(subject.oid, True)]
    if not pooled:
        ae = builder.ae_form()
        forms[ae.oid] = ae
        subject_refs.append((ae.oid, False))
    events.insert(0, EventSpec(SUBJECT_EVENT, _("Participant"), "Common", False, subject_refs, mandatory=True))

    code = oid_part(trial.code)
    return StudyMetadata(
        trial=trial, study_oid=f"ST.{code}", mdv_oid=f"MDV.{code}", events=events, forms=forms, items=builder.items,
        codelists=builder.codelists, units=builder.units, unit_i18n=builder.unit_i18n, sites=list(selectors.export_sites(spec).filter(trial=trial)),
        form_by_crf=form_by_crf, event_by_visit=event_by_visit, with_adverse_events=not pooled,
        with_allocation=with_allocation, mask=arm_mask(spec),
    )


def study_element(meta: StudyMetadata) -> etree._Element:
    """The Study element: global variables, measurement units and the MetaDataVersion."""
    trial = meta.trial
    study = _e("Study", {"OID": meta.study_oid})
    variables = _e("GlobalVariables", parent=study)
    _e("StudyName", parent=variables, text=meta.text(trial.code))
    # The official title only: the summary and short title often name the arms, and a blinded
    # file names none (the scan in tests/exports/test_odm.py holds it to that).
    _e("StudyDescription", parent=variables, text=meta.text(trial.title))
    _e("ProtocolName", parent=variables, text=meta.text(trial.nct_id or trial.org_study_id or trial.code))
    if meta.units:
        basic = _e("BasicDefinitions", parent=study)
        for oid, symbol in meta.units.items():
            unit = _e("MeasurementUnit", {"OID": oid, "Name": meta.text(symbol)}, basic)
            _translated(unit, "Symbol", meta.text(symbol), ((lang, meta.text(text)) for lang, text in meta.unit_i18n.get(symbol, ())))
    mdv = _e("MetaDataVersion", {"OID": meta.mdv_oid, "Name": meta.text(_("%(trial)s CRF versions") % {"trial": trial.code})}, study)
    protocol = _e("Protocol", parent=mdv)
    for number, event in enumerate(meta.events, 1):
        _e("StudyEventRef", {"StudyEventOID": event.oid, "OrderNumber": number, "Mandatory": _yes_no(event.mandatory)}, protocol)
    for event in meta.events:
        element = _e("StudyEventDef", {"OID": event.oid, "Name": meta.text(event.name), "Repeating": _yes_no(event.repeating), "Type": event.type}, mdv)
        for number, (form_oid, mandatory) in enumerate(event.forms, 1):
            _e("FormRef", {"FormOID": form_oid, "OrderNumber": number, "Mandatory": _yes_no(mandatory)}, element)
    for form in meta.forms.values():
        element = _e("FormDef", {"OID": form.oid, "Name": meta.text(form.name), "Repeating": "No"}, mdv)
        if form.title_i18n:  # a multilingual CRF's title in each of its languages
            _translated(element, "Description", "", ((lang, meta.text(text)) for lang, text in form.title_i18n))
        for number, group in enumerate(form.groups, 1):
            _e("ItemGroupRef", {"ItemGroupOID": group.oid, "OrderNumber": number, "Mandatory": "No"}, element)
    written = set()
    conditions: dict[str, str] = {}  # show_if text -> ConditionDef OID
    methods: dict[tuple, str] = {}  # (description, context, expression) -> MethodDef OID
    for form in meta.forms.values():
        for group in form.groups:
            if group.oid in written:
                continue
            written.add(group.oid)
            element = _e("ItemGroupDef", {"OID": group.oid, "Name": meta.text(group.name), "Repeating": _yes_no(group.repeating)}, mdv)
            if group.name_i18n:  # a multilingual CRF's section title in each of its languages
                _translated(element, "Description", "", ((lang, meta.text(text)) for lang, text in group.name_i18n))
            for number, item in enumerate(group.items, 1):
                attributes = {"ItemOID": item.oid, "OrderNumber": number, "Mandatory": _yes_no(item.mandatory)}
                if item.condition:
                    attributes["CollectionExceptionConditionOID"] = conditions.setdefault(item.condition, f"CD.{len(conditions) + 1}")
                if item.method:
                    attributes["MethodOID"] = methods.setdefault(item.method, f"MT.{item.oid.removeprefix('IT.')}")
                _e("ItemRef", attributes, element)
    for item in meta.items.values():
        element = _e("ItemDef", {
            "OID": item.oid, "Name": meta.text(item.name), "DataType": item.data_type, "Length": item.length,
            "SignificantDigits": item.digits,
        }, mdv)
        _translated(element, "Question", meta.text(item.question), ((lang, meta.text(text)) for lang, text in item.question_i18n))
        if item.unit_oid:
            _e("MeasurementUnitRef", {"MeasurementUnitOID": item.unit_oid}, element)
        for comparator, bound in (("GE", item.minimum), ("LE", item.maximum)):
            if bound is not None:
                check = _e("RangeCheck", {"Comparator": comparator, "SoftHard": "Hard"}, element)
                _e("CheckValue", parent=check, text=_plain(bound))
        if item.codelist_oid:
            _e("CodeListRef", {"CodeListOID": item.codelist_oid}, element)
        for context, name in item.aliases:
            _e("Alias", {"Context": context, "Name": name}, element)
    missing = CodeListSpec(MISSING_CODELIST, _("Missing-data codes"), "text", tuple((c, str(label)) for c, label in MISSING_CODES))
    for codelist in [*meta.codelists.values(), missing]:
        element = _e("CodeList", {"OID": codelist.oid, "Name": meta.text(codelist.name), "DataType": codelist.data_type}, mdv)
        for number, (value, label) in enumerate(codelist.items, 1):
            entry = _e("CodeListItem", {"CodedValue": _xml_text(value), "OrderNumber": number}, element)
            decodes = codelist.decodes[number - 1] if codelist.decodes else ()
            _translated(entry, "Decode", meta.text(label), ((lang, meta.text(text)) for lang, text in decodes))
    # Branching: an item with show_if is not collected when the condition fails (CollectionException).
    for text, oid in conditions.items():
        element = _e("ConditionDef", {"OID": oid, "Name": meta.text(text)[:200]}, mdv)
        _translated(element, "Description", meta.text(_("Not collected unless: %(cel)s") % {"cel": text}))
        _e("FormalExpression", {"Context": "CEL"}, element, meta.text(f"!({text})"))
    for (description, context, expression), oid in methods.items():
        element = _e("MethodDef", {"OID": oid, "Name": oid, "Type": "Computation"}, mdv)
        _translated(element, "Description", meta.text(description))
        _e("FormalExpression", {"Context": context}, element, meta.text(expression))
    return study


def admin_element(meta: StudyMetadata, users: list[tuple[int, str, str]] | None = None) -> etree._Element:
    """AdminData: the users the AuditRecords name, and the sites, as Locations the participants
    point at (SiteRef)."""
    admin = _e("AdminData", {"StudyOID": meta.study_oid})
    for user_id, username, full_name in [*users, (None, "system", "")] if users is not None else []:
        user = _e("User", {"OID": _user_oid(user_id), "UserType": "Other"}, admin)
        _e("LoginName", parent=user, text=_xml_text(username))
        if full_name:
            _e("FullName", parent=user, text=meta.text(full_name))
    effective = meta.trial.start_date or timezone.localdate()
    for site in meta.sites:
        location = _e("Location", {"OID": _location_oid(meta.trial, site.code), "Name": meta.text(site.name), "LocationType": "Site"}, admin)
        _e("MetaDataVersionRef", {"StudyOID": meta.study_oid, "MetaDataVersionOID": meta.mdv_oid, "EffectiveDate": effective.isoformat()}, location)
    for meaning, oid in (meta.signature_defs or {}).items():
        definition = _e("SignatureDef", {"OID": oid, "Methodology": "Electronic"}, admin)
        _e("Meaning", parent=definition, text=meta.text(meaning))
        _e("LegalReason", parent=definition, text=meta.text(str(SIGNATURE_LEGAL_REASON)))
    return admin


# ODM 1.3.2 §3.1.3 SignatureDef/LegalReason: why the signature binds (the EDC's e-signature: printed
# name, date-time and meaning, the password re-entered; trials.records.models.Signature).
SIGNATURE_LEGAL_REASON = gettext_lazy(
    "Electronic signature under 21 CFR Part 11 (11.50, 11.200): the signer re-entered her password; "
    "a later change to the signed data breaks it."
)


def _signature(parent: etree._Element, row: Any, meta: StudyMetadata, location_oid: str) -> None:
    """An investigator's signature as ODM: who, where, what it means (SignatureDef) and when;
    placed after the element's AuditRecord, as §3.1.3 orders them."""
    element = etree.Element(f"{{{NS}}}Signature")
    _e("UserRef", {"UserOID": _user_oid(row.signer_id)}, element)
    _e("LocationRef", {"LocationOID": location_oid}, element)
    _e("SignatureRef", {"SignatureOID": meta.signature_defs[row.meaning]}, element)
    _e("DateTimeStamp", parent=element, text=row.signed_at.isoformat())
    first = parent[0] if len(parent) else None
    parent.insert(1 if first is not None and first.tag == f"{{{NS}}}AuditRecord" else 0, element)


def _location_oid(trial: Trial, site_code: str) -> str:
    return f"LOC.{oid_part(trial.code)}.{oid_part(site_code)}"


# --- Values -------------------------------------------------------------------------------------


def _plain(number: Decimal | float) -> str:
    if isinstance(number, Decimal):
        text = f"{number.normalize():f}"
        return "0" if text in {"-0", ""} else text
    return str(number)


def odm_value(item: ItemSpec, value: Any) -> str | None:
    """A stored value as the ODM value of the item (None: no ItemData)."""
    if value is None or value == "" or (isinstance(value, list) and item.kind != "option"):
        return None
    kind = item.kind
    if kind == "file":  # the file's name in the CSV package and its checksum (ODM 1.3.2 carries no files)
        return attachment_value(value) if isinstance(value, dict) else None
    if kind == "option":
        if not isinstance(value, list):
            return None
        return "1" if item.option in value or str(item.option) in map(str, value) else "0"
    if kind == "yes_no":
        return "1" if value else "0"
    if kind == "integer":
        return str(int(value))
    if kind == "float":
        return _plain(value) if isinstance(value, Decimal | float | int) else str(value)
    if kind in {"date", "datetime"}:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, date):
            return value.isoformat()
        return str(value)
    return str(value)


def _item_data(parent: etree._Element, items: list[ItemSpec], values: Any, mask: Callable[[str], str],
               missing: dict | None = None) -> int:
    """ItemData of a group from a dict (answers, a row) or a row object; returns how many. An item
    answered with a missing-data code is ItemData IsNull="Yes" with an Annotation: the code as a
    Flag (code list CL.MISSING) and the reason as its Comment (ODM 1.3.2 §3.1.4.1)."""
    written = 0
    is_dict = isinstance(values, dict)
    sub = etree.SubElement  # the hot loop of the export: one call per value, no helper
    for item in items:
        raw = values.get(item.source) if is_dict else getattr(values, item.source, None)
        if raw is None:
            code = missing.get(item.source) if missing else None
            if isinstance(code, dict) and code.get("code") and item.kind != "option":
                data = sub(parent, ITEM_DATA, {"ItemOID": item.oid, "IsNull": "Yes"})
                annotation = sub(data, f"{{{NS}}}Annotation", {"SeqNum": "1"})
                sub(annotation, f"{{{NS}}}Comment").text = _xml_text(mask(str(code.get("reason") or "")))
                flag = sub(annotation, f"{{{NS}}}Flag")
                sub(flag, f"{{{NS}}}FlagValue", {"CodeListOID": MISSING_CODELIST}).text = _xml_text(code["code"])
                written += 1
            continue
        if type(raw) is str and item.kind in STORED_AS_IS:  # decimals, dates and codes are stored as ODM writes them
            if raw:
                sub(parent, ITEM_DATA, {"ItemOID": item.oid, "Value": raw})
                written += 1
            continue
        value = odm_value(item, raw)
        if value is not None:
            if item.kind == "text":
                value = _xml_text(mask(value))
            sub(parent, ITEM_DATA, {"ItemOID": item.oid, "Value": value})
            written += 1
    return written


def _form_data(parent: etree._Element, form: FormSpec, values: Any, mask: Callable[[str], str],
               missing: dict | None = None) -> etree._Element:
    element = _e("FormData", {"FormOID": form.oid}, parent)
    for group in form.groups:
        if group.repeating and group.source is not None:
            rows = values.get(group.source) if isinstance(values, dict) else None
            by_row = (missing or {}).get(group.source) if missing else None
            for position, row in enumerate(rows or [], 1):
                data = _e("ItemGroupData", {"ItemGroupOID": group.oid, "ItemGroupRepeatKey": position}, element)
                row_missing = by_row.get(str(row.get(ROW_ID))) if isinstance(by_row, dict) and isinstance(row, dict) else None
                if not _item_data(data, group.items, row, mask, row_missing):
                    element.remove(data)
            continue
        data = _e("ItemGroupData", {"ItemGroupOID": group.oid}, element)
        if not _item_data(data, group.items, values, mask, missing):
            element.remove(data)
    return element


def _audit_record(form: etree._Element, change: Any, location_oid: str, mask: Callable[[str], str]) -> None:
    """The FormData's AuditRecord: the entry's last change (who, where, when, why) from the audit
    trail (ODM 1.3.2 allows one per FormData; the whole trail is in the EDC's audit pages)."""
    record = etree.Element(f"{{{NS}}}AuditRecord", {"EditPoint": "DataManagement", "UsedImputationMethod": "No"})
    _e("UserRef", {"UserOID": _user_oid(change.user_id)}, record)
    _e("LocationRef", {"LocationOID": location_oid}, record)
    _e("DateTimeStamp", parent=record, text=change.at.isoformat())
    if change.reason:
        _e("ReasonForChange", parent=record, text=_xml_text(mask(change.reason)))
    form.insert(0, record)


def _user_oid(user_id: int | None) -> str:
    return f"USR.{user_id}" if user_id is not None else "USR.SYSTEM"


def subject_element(meta: StudyMetadata, participant: Any, streams: dict[str, list]) -> etree._Element:
    """One participant's SubjectData: the participant event, then each visit with its CRFs."""
    subject = _e("SubjectData", {"SubjectKey": _xml_text(participant.subject)})
    _e("SiteRef", {"LocationOID": _location_oid(meta.trial, participant.site_code)}, subject)
    common = _e("StudyEventData", {"StudyEventOID": SUBJECT_EVENT}, subject)
    subject_form = meta.forms["F.SUBJECT"]
    values = {name: getattr(participant, name, None) for group in subject_form.groups[:1] for name in (i.source for i in group.items)}
    allocation = (streams.get("allocations") or [None])[0]
    if allocation is not None:
        values.update({i.source: getattr(allocation, i.source, None) for group in subject_form.groups[1:] for i in group.items})
    _form_data(common, subject_form, values, meta.mask)
    if meta.with_adverse_events and streams.get("adverse_events"):
        ae_form = meta.forms["F.AE"]
        form = _e("FormData", {"FormOID": ae_form.oid}, common)
        group = ae_form.groups[0]
        for ae in streams["adverse_events"]:
            data = _e("ItemGroupData", {"ItemGroupOID": group.oid, "ItemGroupRepeatKey": ae.number}, form)
            _item_data(data, group.items, ae, meta.mask)
    entries_by_visit: dict[int, list] = {}
    for entry in streams.get("entries", []):
        entries_by_visit.setdefault(entry.visit_id, []).append(entry)
    visits = list(streams.get("visits", []))
    known = {visit.id for visit in visits}
    for visit_id, entries in entries_by_visit.items():
        if visit_id not in known:  # an entry whose visit row is outside the visit rows (not expected)
            first = entries[0]
            visits.append(_VisitStub(visit_id, first.visit_code, first.visit_sequence, first.visit_date))
    visit_form = meta.forms["F.VISIT"]
    last_change = {change.entry_id: change for change in streams.get("audit", [])}  # time order: the last wins
    location = _location_oid(meta.trial, participant.site_code)
    signatures: dict[int | None, Any] = {}
    for row in streams.get("signatures", []):  # newest first: ODM has one Signature per element
        signatures.setdefault(row.visit_id, row)
    if None in signatures:  # the whole casebook
        _signature(subject, signatures[None], meta, location)
    for visit in visits:
        entries = entries_by_visit.get(visit.id, [])
        if getattr(visit, "kind", None) == "log":
            # A log record: its one entry, in the participant-level repeating event (no visit form).
            if entries:
                event = _e("StudyEventData", {"StudyEventOID": LOG_EVENT, "StudyEventRepeatKey": f"{entries[0].crf_code}.{visit.sequence}"}, subject)
                _form_data(event, meta.forms[meta.form_by_crf[entries[0].crf_id]], entries[0].answers or {}, meta.mask)
            continue
        event_oid = meta.event_by_visit.get(visit.visit_code) if visit.visit_code else UNSCHEDULED
        if event_oid is None:
            continue  # a pooled export: a visit at which the pooled CRF is not due
        if not entries and visit.visit_date is None and (visit.status is None or visit.status in CALENDAR_STATES):
            continue  # a planned visit that has not happened (nor been missed): nothing to say yet
        attrs = {"StudyEventOID": event_oid}
        if event_oid == UNSCHEDULED:
            attrs["StudyEventRepeatKey"] = visit.sequence
        event = _e("StudyEventData", attrs, subject)
        if visit.id in signatures:
            _signature(event, signatures[visit.id], meta, location)
        _form_data(event, visit_form, visit, meta.mask)
        for entry in entries:
            form = _form_data(event, meta.forms[meta.form_by_crf[entry.crf_id]], entry.answers or {}, meta.mask, entry.missing or None)
            if entry.id in last_change:
                _audit_record(form, last_change[entry.id], location, meta.mask)
    return subject


@dataclass(frozen=True)
class _VisitStub:
    id: int
    visit_code: str | None
    sequence: int
    visit_date: date | None
    planned_date: date | None = None
    status: str | None = None
    status_reason: str | None = None
    out_of_window: bool | None = None


# --- Streaming ----------------------------------------------------------------------------------


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def rows_by_participant(participants: Iterable, streams: dict[str, selectors.Rows], size: int = BATCH_SIZE) -> Iterator[tuple[Any, dict[str, list]]]:
    """Each participant row with its rows of every stream (entries, visits, AEs …), read a batch
    of participants at a time: one query per stream per batch, memory bounded by the batch, and
    no reliance on two queries sorting alike. The streams keep the selectors' scope and order
    (they are only narrowed to the batch's participants)."""
    for batch in _batches(participants, size):
        ids = [p.id for p in batch]
        grouped: dict[str, dict[int, list]] = {}
        for name, rows in streams.items():
            narrowed = selectors.Rows(rows.queryset.filter(participant_id__in=ids), rows.transform)
            by: dict[int, list] = {}
            for row in narrowed:
                by.setdefault(row.participant_id, []).append(row)
            grouped[name] = by
        for participant in batch:
            yield participant, {name: by.get(participant.id, []) for name, by in grouped.items()}


def _streams(spec: ExportSpec, trial: Trial, meta: StudyMetadata) -> dict[str, selectors.Rows]:
    entries = selectors.export_entries(spec)
    streams = {
        "entries": selectors.Rows(entries.queryset.filter(participant__trial=trial), entries.transform),
        "visits": selectors.export_visits(spec),
        "audit": selectors.export_entry_audit(spec),
        "signatures": selectors.export_signatures(spec),
    }
    if meta.with_adverse_events:
        streams["adverse_events"] = selectors.export_adverse_events(spec)
    if meta.with_allocation:
        streams["allocations"] = selectors.export_allocations(spec)
    return streams


def count(spec: ExportSpec) -> int:
    """Rows the progress bar counts: participants, CRF entries and adverse events."""
    total = selectors.export_participants(spec).count() + selectors.export_entries(spec).count()
    if spec.trial_id is not None:
        total += selectors.export_adverse_events(spec).count()
    return total


def _granularity(spec: ExportSpec, trials: list[Trial]) -> str | None:
    """ODM 1.3.2 §2.1 Granularity, the breadth of the file: "All" for a whole trial (every site,
    every CRF), "SingleSite" for every CRF of one site of a trial that has several; none of its
    values describes a subset of CRFs, of several sites or a pooled file, so it is then left out
    (the attribute is optional)."""
    if spec.trial_id is None or spec.crf_codes or len(trials) != 1:
        return None
    exported = len(selectors.export_site_ids(spec))
    total = Site.objects.filter(trial=trials[0]).count()
    if exported == total:
        return "All"
    return "SingleSite" if exported == 1 else None


def write(spec: ExportSpec, out: BinaryIO, progress: Progress) -> None:
    """Write the ODM file of the export into `out`, a participant at a time."""
    trials = list(selectors.export_trials(spec))
    if spec.trial_id is not None and not trials:
        raise PermissionDenied(_("You no longer have access to this trial."))
    metas = [study_metadata(spec, trial) for trial in trials]
    signatures = selectors.export_signatures(spec)
    for meta in metas:
        meanings = sorted(set(signatures.queryset.filter(participant__trial=meta.trial).values_list("meaning", flat=True)))
        meta.signature_defs = {meaning: f"SD.{oid_part(meta.trial.code)}.{n}" for n, meaning in enumerate(meanings, 1)}
    now = timezone.now().replace(microsecond=0)
    scope = trials[0].code if spec.trial_id is not None and trials else f"POOLED.{spec.pooled_crf}"
    attrs = {
        "FileType": "Snapshot", "FileOID": f"EDC.{oid_part(scope)}.{now:%Y%m%dT%H%M%S}",
        "CreationDateTime": now.isoformat(), "ODMVersion": ODM_VERSION, "Originator": "EDC",
        "SourceSystem": "EDC", "SourceSystemVersion": _software_version(),
    }
    if (granularity := _granularity(spec, trials)) is not None:
        attrs["Granularity"] = granularity
    if spec.cutoff is not None:
        attrs["AsOfDateTime"] = selectors.cutoff_end(spec).isoformat()
    participants = selectors.export_participants(spec)
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{NS}}}ODM", attrs, nsmap={None: NS}):
            for meta in metas:
                xf.write(study_element(meta), pretty_print=True)
            users = selectors.export_audit_users(spec)
            for index, meta in enumerate(metas):  # the users once (their OIDs are the file's)
                xf.write(admin_element(meta, users if index == 0 else None), pretty_print=True)
            for meta in metas:
                with xf.element(f"{{{NS}}}ClinicalData", {"StudyOID": meta.study_oid, "MetaDataVersionOID": meta.mdv_oid}):
                    xf.write("\n")
                    done = 0
                    trial_participants = selectors.Rows(participants.queryset.filter(trial=meta.trial), participants.transform)
                    for participant, streams in rows_by_participant(trial_participants, _streams(spec, meta.trial, meta)):
                        xf.write(subject_element(meta, participant, streams))
                        xf.write("\n")
                        done += 1 + len(streams["entries"]) + len(streams.get("adverse_events", []))
                        if done >= 500:
                            xf.flush()
                            progress(done)
                            done = 0
                    if done:
                        progress(done)


def _software_version() -> str:
    return str(getattr(settings, "EDC_VERSION", "") or getattr(settings, "SOFTWARE_VERSION", "") or "dev")
