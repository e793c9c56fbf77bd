"""Define-XML 2.1 for an SDTM package: the metadata of every dataset written (datasets, variables
with the lengths as written, code lists with the CDISC CT version, origins, methods and comments),
made from the same `Dataset` objects the XPT files were written from, so the two cannot disagree.
Validated against the official schema vendored in `schemas/define-2.1/` (`define_schema()`).

Code lists list the values that occur in the package (Define-XML: a code list may be the subset
used); each names its NCI codelist code (Alias Context="nci:ExtCodeID") where CDISC has one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from django.conf import settings
from lxml import etree

from trials.exports import sdtm_terms
from trials.exports.sdtm import CHAR, Dataset
from trials.exports.spec import ExportSpec
from trials.protocol.models import Trial

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NS = "http://www.cdisc.org/ns/def/v2.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
DEFINE_NAME = "define.xml"
SCHEMA_DIR = Path(__file__).parent / "schemas" / "define-2.1"
STANDARD_IG, STANDARD_CT = "STD.SDTMIG", "STD.CT"

# NCI codes of the CDISC SDTM codelists used (SDTM CT, sdtm_terms.CT_VERSION).
CODELISTS = {
    "SEX": ("C66731", "Sex"), "NY": ("C66742", "No Yes Response"), "AGEU": ("C66781", "Age Unit"),
    "EPOCH": ("C99079", "Epoch"), "NCOMPLT": ("C66727", "Completion/Reason for Non-Completion"),
    "ND": ("C66789", "Not Done"), "UNIT": ("C71620", "Unit"), "RACE": ("C74457", "Race"),
    "ETHNIC": ("C66790", "Ethnic Group"), "ACN": ("C66767", "Action Taken with Study Treatment"),
    "OUT": ("C66768", "Outcome of Event"), "NRIND": ("C78736", "Reference Range Indicator"),
    "SPECTYPE": ("C78734", "Specimen Type"), "IECAT": ("C66797", "Category of Inclusion/Exclusion"),
    "TSPARMCD": ("C66738", "Trial Summary Parameter Test Code"), "TSPARM": ("C67152", "Trial Summary Parameter Test Name"),
    "ARMNULRS": ("C142179", "Arm Null Reason"), "STENRF": ("C66728", "Relation to Reference Period"),
    "DSCAT": ("C74558", "Category for Disposition Event"), "VSTESTCD": ("C66741", "Vital Signs Test Code"),
    "VSTEST": ("C67153", "Vital Signs Test Name"), "LBTESTCD": ("C65047", "Laboratory Test Code"),
    "LBTEST": ("C67154", "Laboratory Test Name"), "ROUTE": ("C66729", "Route of Administration Response"),
    "FREQ": ("C71113", "Frequency"),
}
EXTERNAL = {"COUNTRY": ("ISO 3166", "ISO 3166-1 alpha-3")}
DOMAIN_CLASS = {
    "DM": "SPECIAL PURPOSE", "SV": "EVENTS", "AE": "EVENTS", "DS": "EVENTS", "EX": "INTERVENTIONS", "SU": "INTERVENTIONS",
    "CM": "INTERVENTIONS", "PR": "INTERVENTIONS", "MH": "EVENTS", "IE": "FINDINGS",
    "VS": "FINDINGS", "LB": "FINDINGS", "QS": "FINDINGS", "SC": "FINDINGS", "FA": "FINDINGS",
    "TS": "TRIAL DESIGN", "TA": "TRIAL DESIGN", "TE": "TRIAL DESIGN", "TV": "TRIAL DESIGN", "TI": "TRIAL DESIGN",
}
STRUCTURES = {
    "DM": "One record per subject", "SV": "One record per subject per actual visit",
    "AE": "One record per adverse event per subject", "DS": "One record per disposition status or protocol milestone per subject",
    "EX": "One record per administration per subject", "SU": "One record per substance type per reported occurrence per subject",
    "TS": "One record per trial summary parameter value", "TA": "One record per planned Element per Arm",
    "TE": "One record per planned Element", "TV": "One record per planned Visit per Arm",
    "TI": "One record per I/E criterion",
    "CM": "One record per recorded intervention occurrence or constant-dosing interval per subject",
    "MH": "One record per medical history event per subject", "PR": "One record per recorded procedure per occurrence per subject",
    "IE": "One record per inclusion/exclusion criterion not met per subject",
}
METHODS = {  # variable (or suffix) -> (method OID, description)
    "DY": ("MT.STUDYDAY", "Study day: date - RFSTDTC + 1 on or after RFSTDTC, date - RFSTDTC before it (no day 0)."),
    "SEQ": ("MT.SEQ", "Sequence number: 1, 2 … per subject in the order the records are read, unique across the "
                      "datasets of a split domain."),
    "EPOCH": ("MT.EPOCH", "Epoch of the visit's kind (screening, baseline, treatment, follow-up); a record outside a "
                          "visit: SCREENING before the first treatment, TREATMENT from it."),
    "LOBXFL": ("MT.LOBXFL", "Y on the last non-missing result of each test on or before the first treatment (RFXSTDTC)."),
    "AGE": ("MT.AGE", "Completed years between the date of birth and the date of informed consent."),
    "RFPENDTC": ("MT.RFPENDTC", "End of participation (status date) when ended, else the latest visit or adverse-event date."),
}
BLINDED_COMMENT = ("Blinded export: every allocated subject has the value BLINDED; the arm is withheld from blinded "
                   "recipients (ARMNRS gives the reason when a subject has no arm).")


@cache
def define_schema() -> etree.XMLSchema:
    """The Define-XML 2.1 schema (it includes ODM 1.3.2, vendored in schemas/odm-1.3.2)."""
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / "define2-1-0.xsd")))


def _o(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _d(tag: str) -> str:
    return f"{{{DEF_NS}}}{tag}"


def _description(parent: etree._Element, text: str) -> None:
    description = etree.SubElement(parent, _o("Description"))
    etree.SubElement(description, _o("TranslatedText"), {XML_LANG: "en"}).text = text


def data_type(name: str, kind: str) -> str:
    if kind == CHAR:
        return "datetime" if name.endswith("DTC") else "text"
    if name.endswith(("SEQ", "DY")) or name in {"AGE", "TAETORD"}:
        return "integer"
    return "float"


def method_of(name: str, domain: str) -> tuple[str, str] | None:
    if name in METHODS:
        return METHODS[name]
    suffix = name[len(domain):] if name.startswith(domain) else ""
    return METHODS.get(suffix)


def _value_lists(mdv: etree._Element, datasets: list[Dataset]) -> dict[tuple[str, str], list[etree._Element]]:
    """Value-level metadata (Define-XML 2.1 §5.3.6 def:ValueListDef, §5.3.7 def:WhereClauseDef) for
    the --ORRES of each findings dataset: one value-level ItemDef per test code in the data, its
    data type and length from that test's results, applied where --TESTCD EQ the code. The lists
    and where clauses are added to `mdv` (they come before the ItemGroupDefs); the value-level
    ItemDefs are returned, by (dataset, variable), to follow the variables' ItemDefs."""
    found: dict[tuple[str, str], list[etree._Element]] = {}
    for dataset in datasets:
        levels = dataset.value_levels()
        if not levels:
            continue
        orres, testcd = f"{dataset.domain}ORRES", f"{dataset.domain}TESTCD"
        value_list = etree.SubElement(mdv, _d("ValueListDef"), {"OID": f"VL.{dataset.name}.{orres}"})
        items = []
        for order, (code, (label, width, numeric, places)) in enumerate(sorted(levels.items()), 1):
            oid = f"IT.{dataset.name}.{orres}.{code}"
            where = f"WC.{dataset.name}.{testcd}.{code}"
            ref = etree.SubElement(value_list, _o("ItemRef"), {"ItemOID": oid, "OrderNumber": str(order), "Mandatory": "No"})
            etree.SubElement(ref, _d("WhereClauseRef"), {"WhereClauseOID": where})
            clause = etree.Element(_d("WhereClauseDef"), {"OID": where})
            check = etree.SubElement(clause, _o("RangeCheck"), {
                "Comparator": "EQ", "SoftHard": "Soft", _d("ItemOID"): f"IT.{dataset.name}.{testcd}"})
            etree.SubElement(check, _o("CheckValue")).text = code
            found.setdefault(("", ""), []).append(clause)  # placed after every ValueListDef below
            kind = ("float" if places else "integer") if numeric and width else "text"
            item = etree.Element(_o("ItemDef"), {
                "OID": oid, "Name": orres, "DataType": kind, "Length": str(max(1, width)), "SASFieldName": orres})
            if kind == "float":
                item.set("SignificantDigits", str(places))
            _description(item, f"{label or code} ({code}): result as collected")
            etree.SubElement(item, _d("Origin"), {"Type": "Collected", "Source": "Investigator"})
            items.append(item)
        found[(dataset.name, orres)] = items
    for clause in found.pop(("", ""), []):
        mdv.append(clause)
    return found


def define_xml(spec: ExportSpec, datasets: list[Dataset]) -> bytes:
    """The define.xml of the package whose datasets are `datasets` (as written)."""
    trial = Trial.objects.get(pk=spec.trial_id)
    study = trial.code
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    root = etree.Element(_o("ODM"), {
        "FileType": "Snapshot", "FileOID": f"DEFINE.{study}.{now}", "CreationDateTime": now, "ODMVersion": "1.3.2",
        "Originator": "EDC", "SourceSystem": "EDC", "SourceSystemVersion": str(settings.EDC_VERSION),
        _d("Context"): "Other",
    }, nsmap={None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS})
    study_element = etree.SubElement(root, _o("Study"), {"OID": f"ST.{study}"})
    globals_ = etree.SubElement(study_element, _o("GlobalVariables"))
    etree.SubElement(globals_, _o("StudyName")).text = study
    etree.SubElement(globals_, _o("StudyDescription")).text = trial.title
    etree.SubElement(globals_, _o("ProtocolName")).text = trial.org_study_id or study
    mdv = etree.SubElement(study_element, _o("MetaDataVersion"), {
        "OID": f"MDV.{study}.SDTMIG.{sdtm_terms.SDTMIG_VERSION}", "Name": f"{study} SDTM",
        "Description": "SDTM datasets exported by the EDC" + (" (blinded)" if spec.blinded else " (unblinded)"),
        _d("DefineVersion"): "2.1.0",
    })
    standards = etree.SubElement(mdv, _d("Standards"))
    etree.SubElement(standards, _d("Standard"), {
        "OID": STANDARD_IG, "Name": "SDTMIG", "Type": "IG", "Version": sdtm_terms.SDTMIG_VERSION, "Status": "Final"})
    etree.SubElement(standards, _d("Standard"), {
        "OID": STANDARD_CT, "Name": "CDISC/NCI", "Type": "CT", "PublishingSet": "SDTM", "Version": sdtm_terms.CT_VERSION,
        "Status": "Final"})

    value_lists = _value_lists(mdv, datasets)
    item_defs: list[etree._Element] = []
    values: dict[str, set[str]] = {}
    methods: dict[str, str] = {}
    comments: dict[str, str] = {}
    leaves = []
    references: list[tuple[str, etree._Element]] = []
    for dataset in datasets:
        supp = dataset.name.startswith("SUPP")
        split = dataset.name != dataset.domain and not supp
        group = etree.SubElement(mdv, _o("ItemGroupDef"), {
            "OID": f"IG.{dataset.name}", "Name": dataset.name, "Repeating": "No" if dataset.domain in {"DM"} and not supp else "Yes",
            "IsReferenceData": "Yes" if DOMAIN_CLASS.get(dataset.domain) == "TRIAL DESIGN" else "No",
            "SASDatasetName": dataset.name, "Domain": dataset.domain, "Purpose": "Tabulation",
            _d("Structure"): ("One record per IDVAR, IDVARVAL, and QNAM value per subject" if supp else
                              STRUCTURES.get(dataset.domain, "One record per finding per subject")),
            _d("StandardOID"): STANDARD_IG, _d("ArchiveLocationID"): f"LF.{dataset.name}",
        })
        _description(group, dataset.label)
        lengths = dataset.lengths()
        for order, var in enumerate(dataset.variables, 1):
            oid = f"IT.{dataset.name}.{var.name}"
            attributes = {"ItemOID": oid, "OrderNumber": str(order),
                          "Mandatory": "Yes" if var.name in {"STUDYID", "DOMAIN", "USUBJID", "RDOMAIN"} else "No"}
            if var.name in dataset.keys:
                attributes["KeySequence"] = str(dataset.keys.index(var.name) + 1)
            method = method_of(var.name, dataset.domain) if var.origin == "Derived" else None
            if method:
                attributes["MethodOID"] = method[0]
                methods[method[0]] = method[1]
            etree.SubElement(group, _o("ItemRef"), attributes)
            kind = data_type(var.name, var.type)
            item = etree.Element(_o("ItemDef"), {"OID": oid, "Name": var.name, "DataType": kind, "SASFieldName": var.name})
            if kind != "datetime":
                item.set("Length", str(lengths[var.name]))
            if var.name in {"ARMCD", "ARM", "ACTARMCD", "ACTARM"} and spec.blinded:
                comments["COM.BLINDED"] = BLINDED_COMMENT
                item.set(_d("CommentOID"), "COM.BLINDED")
            _description(item, var.label)
            codelist = var.codelist if var.codelist in CODELISTS or var.codelist in EXTERNAL else ""
            if codelist:
                references.append((codelist, etree.SubElement(item, _o("CodeListRef"), {"CodeListOID": f"CL.{codelist}"})))
                values.setdefault(codelist, set()).update(dataset.categories(var.name))
            origin = var.origin
            etree.SubElement(item, _d("Origin"), {"Type": origin, **({"Source": "Investigator"} if origin == "Collected" else {})})
            if (dataset.name, var.name) in value_lists:
                etree.SubElement(item, _d("ValueListRef"), {"ValueListOID": f"VL.{dataset.name}.{var.name}"})
            item_defs.append(item)
        if split:
            comments.setdefault(f"COM.SPLIT.{dataset.domain}", f"{dataset.domain} is split by CRF (one dataset per CRF); "
                                f"--SEQ is unique per subject across the split datasets.")
            group.set(_d("CommentOID"), f"COM.SPLIT.{dataset.domain}")
        etree.SubElement(group, _d("Class"), {"Name": DOMAIN_CLASS.get(dataset.domain, "RELATIONSHIP") if not supp else "RELATIONSHIP"})
        leaf = etree.SubElement(group, _d("leaf"), {"ID": f"LF.{dataset.name}", f"{{{XLINK_NS}}}href": f"{dataset.name.lower()}.xpt"})
        etree.SubElement(leaf, _d("title")).text = f"{dataset.name.lower()}.xpt"
        leaves.append(leaf)
    for name, reference in references:  # a code list with no value in the package is left out
        if not values.get(name) and name not in EXTERNAL:
            reference.getparent().remove(reference)
    values = {name: found for name, found in values.items() if found or name in EXTERNAL}
    for item in item_defs:
        mdv.append(item)
    for items in value_lists.values():
        for item in items:
            mdv.append(item)
    for name in sorted(values):
        if name in EXTERNAL:
            dictionary, version = EXTERNAL[name]
            codelist = etree.SubElement(mdv, _o("CodeList"), {"OID": f"CL.{name}", "Name": name, "DataType": "text"})
            etree.SubElement(codelist, _o("ExternalCodeList"), {"Dictionary": dictionary, "Version": version})
            continue
        code, label = CODELISTS[name]
        codelist = etree.SubElement(mdv, _o("CodeList"), {
            "OID": f"CL.{name}", "Name": label, "DataType": "text", _d("StandardOID"): STANDARD_CT})
        for value in sorted(values[name]):
            etree.SubElement(codelist, _o("EnumeratedItem"), {"CodedValue": value})
        etree.SubElement(codelist, _o("Alias"), {"Context": "nci:ExtCodeID", "Name": code})
    for oid, text in sorted(methods.items()):
        method = etree.SubElement(mdv, _o("MethodDef"), {"OID": oid, "Name": oid.removeprefix("MT."), "Type": "Computation"})
        _description(method, text)
    for oid, text in sorted(comments.items()):
        comment = etree.SubElement(mdv, _d("CommentDef"), {"OID": oid})
        _description(comment, text)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

