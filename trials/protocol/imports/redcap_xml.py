"""REDCap "project XML" (CDISC ODM 1.3.1 with redcap: attributes) read leniently into the same
tables as the CSV files, so one path builds the CRFs, visits and rules.

What REDCap writes (Project Setup → "Download metadata only (XML)"): FormDef (redcap:FormName,
Name = the instrument's label) → ItemGroupRef → ItemGroupDef → ItemRef → ItemDef with
redcap:Variable, redcap:FieldType (text, textarea, select, radio, checkbox, yesno, truefalse, slider,
calc, descriptive, file), redcap:TextValidationType (int and float for integer and number),
redcap:SectionHeader, redcap:FieldNote, redcap:RequiredField, redcap:Identifier,
redcap:BranchingLogic, redcap:Calculation, redcap:MatrixGroupName, redcap:CustomAlignment;
min/max as RangeCheck GE/LE; choices as CodeList (a checkbox is one boolean ItemDef per option,
`name___code`, its choices in the CodeList's redcap:CheckboxChoices); StudyEventDef
(redcap:UniqueEventName, redcap:ArmNum, redcap:DayOffset, redcap:OffsetMin/Max) with FormRefs for
the instrument-event mapping. Unknown attributes are ignored; each row keeps its XML line.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from trials.protocol.imports.redcap import MAX_BYTES, Table
from trials.protocol.loader import Problem

ODM = "http://www.cdisc.org/ns/odm/v1.3"
REDCAP = "https://projectredcap.org"
FIELD_TYPES = {"textarea": "notes", "select": "dropdown"}
VALIDATION_TYPES = {"int": "integer", "float": "number"}


def _rc(element: etree._Element, name: str) -> str:
    return (element.get(f"{{{REDCAP}}}{name}") or "").strip()


def _odm(tag: str) -> str:
    return f"{{{ODM}}}{tag}"


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    node = element.find(f".//{_odm('TranslatedText')}")
    return (node.text or "").strip() if node is not None else ""


def read_project_xml(path: Path, problems: list[Problem]) -> list[tuple[str, Table]]:
    label = path.name
    try:
        if path.stat().st_size > MAX_BYTES:
            problems.append(Problem(label, "", f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB", 1))
            return []
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        root = etree.parse(str(path), parser).getroot()
    except OSError as exc:
        problems.append(Problem(label, "", f"cannot read the file: {exc}"))
        return []
    except etree.XMLSyntaxError as exc:
        problems.append(Problem(label, "", f"not well-formed XML: {exc.msg}", exc.lineno or 1))
        return []
    version = root.find(f".//{_odm('MetaDataVersion')}")
    if root.tag != _odm("ODM") or version is None:
        problems.append(Problem(label, "", "not a REDCap project XML (no ODM MetaDataVersion)", root.sourceline or 1))
        return []
    groups = {g.get("OID"): g for g in version.iter(_odm("ItemGroupDef"))}
    items = {i.get("OID"): i for i in version.iter(_odm("ItemDef"))}
    codelists = {c.get("OID"): c for c in version.iter(_odm("CodeList"))}
    forms: dict[str, str] = {}  # FormDef OID -> form name
    titles: dict[str, str] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    checkboxes: dict[str, dict[str, str]] = {}
    for form in version.iter(_odm("FormDef")):
        name = _rc(form, "FormName") or (form.get("OID") or "").removeprefix("Form.")
        forms[form.get("OID")] = name
        titles[name] = form.get("Name") or name
        for group_ref in form.iter(_odm("ItemGroupRef")):
            group = groups.get(group_ref.get("ItemGroupOID"))
            if group is None:
                problems.append(Problem(label, "", f"unknown ItemGroupOID '{group_ref.get('ItemGroupOID')}'", group_ref.sourceline))
                continue
            for item_ref in group.iter(_odm("ItemRef")):
                item = items.get(item_ref.get("ItemOID"))
                if item is None:
                    problems.append(Problem(label, "", f"unknown ItemOID '{item_ref.get('ItemOID')}'", item_ref.sourceline))
                    continue
                row = _row(item, name, codelists)
                if row is None:
                    continue  # the form status (<form>_complete): REDCap's own bookkeeping
                if row["field_type"] == "checkbox":
                    known = checkboxes.get(row["field_name"])
                    if known is not None:  # one ItemDef per option: the first carries the field
                        have = [p for p in known["select_choices_or_calculations"].split(" | ") if p]
                        have += [p for p in row["select_choices_or_calculations"].split(" | ") if p and p not in have]
                        known["select_choices_or_calculations"] = " | ".join(have)
                        continue
                    checkboxes[row["field_name"]] = row
                rows.append((item.sourceline or 1, row))
    columns = list(rows[0][1]) if rows else ["field_name", "form_name", "field_type", "field_label"]
    tables = [("dictionary", Table(label, columns, rows, titles))]
    events, mapping = [], []
    for event in root.iter(_odm("StudyEventDef")):
        unique = _rc(event, "UniqueEventName") or (event.get("OID") or "").removeprefix("Event.")
        events.append((event.sourceline or 1, {
            "event_name": event.get("Name") or unique, "arm_num": _rc(event, "ArmNum") or "1",
            "unique_event_name": unique, "custom_event_label": _rc(event, "CustomEventLabel"),
            "day_offset": _rc(event, "DayOffset"), "offset_min": _rc(event, "OffsetMin") or "0",
            "offset_max": _rc(event, "OffsetMax") or "0",
        }))
        for ref in event.iter(_odm("FormRef")):
            form_name = forms.get(ref.get("FormOID")) or _rc(ref, "FormName")
            mapping.append((ref.sourceline or 1, {"arm_num": _rc(event, "ArmNum") or "1", "unique_event_name": unique, "form": form_name}))
    if events:
        tables.append(("events", Table(label, list(events[0][1]), events)))
    if mapping:
        tables.append(("mapping", Table(label, ["arm_num", "unique_event_name", "form"], mapping)))
    return tables


def _choices(item: etree._Element, codelists: dict) -> str:
    ref = item.find(_odm("CodeListRef"))
    codelist = codelists.get(ref.get("CodeListOID")) if ref is not None else None
    if codelist is None:
        return ""
    if _rc(codelist, "CheckboxChoices"):
        return _rc(codelist, "CheckboxChoices")
    parts = []
    for entry in codelist.iter(_odm("CodeListItem")):
        parts.append(f"{entry.get('CodedValue', '')}, {_text(entry.find(_odm('Decode')))}")
    return " | ".join(parts)


def _checkbox_choices(item: etree._Element, codelists: dict) -> str:
    """redcap:CheckboxChoices when the CodeList has it; else the option's code from `name___code`."""
    ref = item.find(_odm("CodeListRef"))
    codelist = codelists.get(ref.get("CodeListOID")) if ref is not None else None
    if codelist is not None and _rc(codelist, "CheckboxChoices"):
        return _rc(codelist, "CheckboxChoices")
    name = item.get("Name") or ""
    code = name.rpartition("___")[2] if "___" in name else ""
    return f"{code}, {code}" if code else ""


def _row(item: etree._Element, form: str, codelists: dict) -> dict[str, str] | None:
    variable = _rc(item, "Variable") or item.get("Name") or ""
    field_type = _rc(item, "FieldType") or "text"
    if variable == f"{form}_complete" and field_type in {"select", "dropdown"}:
        return None
    field_type = FIELD_TYPES.get(field_type, field_type)
    validation = _rc(item, "TextValidationType")
    limits = {"GE": "", "LE": ""}
    for check in item.iter(_odm("RangeCheck")):
        value = check.find(_odm("CheckValue"))
        if check.get("Comparator") in limits and value is not None:
            limits[check.get("Comparator")] = (value.text or "").strip()
    if field_type == "calc":
        choices = _rc(item, "Calculation")
    elif field_type == "checkbox":
        choices = _checkbox_choices(item, codelists)
    elif field_type == "slider":
        choices = ""  # the labels are not in the XML's standard attributes: the import says nothing of them
    else:
        choices = _choices(item, codelists)
    return {
        "field_name": variable, "form_name": form, "section_header": _rc(item, "SectionHeader"),
        "field_type": field_type, "field_label": _text(item.find(_odm("Question"))) or variable,
        "select_choices_or_calculations": choices, "field_note": _rc(item, "FieldNote"),
        "text_validation_type_or_show_slider_number": VALIDATION_TYPES.get(validation, validation),
        "text_validation_min": limits["GE"], "text_validation_max": limits["LE"],
        "identifier": _rc(item, "Identifier"), "branching_logic": _rc(item, "BranchingLogic"),
        "required_field": _rc(item, "RequiredField"), "custom_alignment": _rc(item, "CustomAlignment"),
        "question_number": "", "matrix_group_name": _rc(item, "MatrixGroupName"), "matrix_ranking": "",
        "field_annotation": _rc(item, "FieldAnnotation"),
    }
