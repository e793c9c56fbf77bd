"""ClinicalTrials.gov API v2 JSON -> a trial skeleton YAML (and a small eligibility CRF), through the loader.

What the record gives is taken as written: identifiers, titles, phase, design, arms and
interventions, masking (-> blinding), conditions, ages and sex, enrolment, dates, status, sites with
their country (ISO 3166 alpha-2 by pycountry). What it does not give, or gives only as prose, is
proposed and marked in the YAML for a person:
- `# Assumption:` a value derived by a stated rule (a site's time zone from its country, or the
  zone nearest its coordinates; a month-only date as the 1st; the randomization block size);
- `# TODO:` what needs a decision (visit windows, the CRFs of each visit, expressions of criteria).
Eligibility criteria are split into one checklist item per top-level bullet or number of the
"Inclusion Criteria" / "Exclusion Criteria" lists (nested bullets stay with their parent); the
structured minimum/maximum age and sex become criteria with CEL expressions on a small
eligibility CRF (`<trial>_ELIG`: age and sex). Outcome time frames ("Week 16", "Day 1 to Month 6",
"up to 2 years") are proposed as visit definitions at day offsets (a week = 7 days, a month = 30,
a year = 365: an assumption).
Problems in the input are reported with their JSON path (`protocolSection.designModule.phases[0]`).
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from trials.protocol.imports.common import (
    ImportFailed,
    ImportProblem,
    ImportResult,
    as_code,
    check_size,
    dump_yaml,
    unique,
    validate_and_write,
)

MAX_JSON_BYTES = 10 * 1024 * 1024
PHASES = {
    ("EARLY_PHASE1",): "early_1", ("PHASE1",): "1", ("PHASE1", "PHASE2"): "1_2", ("PHASE2",): "2",
    ("PHASE2", "PHASE3"): "2_3", ("PHASE3",): "3", ("PHASE4",): "4", ("NA",): "na", (): "na",
}
MODELS = {"SINGLE_GROUP": "single_group", "PARALLEL": "parallel", "CROSSOVER": "crossover", "FACTORIAL": "factorial",
          "SEQUENTIAL": "sequential"}
ROLES = {"PARTICIPANT": "participant", "CARE_PROVIDER": "care_provider", "INVESTIGATOR": "investigator",
         "OUTCOMES_ASSESSOR": "outcomes_assessor"}
LEVELS = {0: "none", 1: "single", 2: "double", 3: "triple", 4: "quadruple"}
ARM_TYPES = {"EXPERIMENTAL": "experimental", "ACTIVE_COMPARATOR": "active_comparator",
             "PLACEBO_COMPARATOR": "placebo_comparator", "SHAM_COMPARATOR": "sham_comparator",
             "NO_INTERVENTION": "no_intervention", "OTHER": "other"}
STATUSES = {"NOT_YET_RECRUITING", "RECRUITING", "ENROLLING_BY_INVITATION", "ACTIVE_NOT_RECRUITING", "SUSPENDED",
            "TERMINATED", "COMPLETED", "WITHDRAWN"}
UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
TIME_POINT = re.compile(r"\b(day|week|month|year)s?\s*(\d+(?:\s*(?:,|and|to|-|–)\s*\d+)*)", re.IGNORECASE)
NUMBER_UNIT = re.compile(r"\b(\d+)\s*(day|week|month|year)s?\b", re.IGNORECASE)
BULLET = re.compile(r"^(?:[*\-•]|\d+[.)]|[ivxlc]+[.)])\s+", re.IGNORECASE)
AGE = re.compile(r"^\s*(\d+)\s*(year|month|week|day)s?\s*$", re.IGNORECASE)


class _Record:
    """The record and the path of each value read, for messages."""

    def __init__(self, data: Any, label: str, base: str):
        self.data, self.label, self.base = data, label, base
        self.problems: list[ImportProblem] = []

    def get(self, path: str, default: Any = None, kind: type | tuple | None = None) -> Any:
        node = self.data
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        if kind is not None and node is not None and not isinstance(node, kind):
            self.problems.append(ImportProblem(self.label, f"expected {_kind(kind)}, found {type(node).__name__}",
                                               where=f"{self.base}.{path}"))
            return default
        return node

    def where(self, path: str) -> str:
        return f"{self.base}.{path}"


def _kind(kind: type | tuple) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_record(path: Path, label: str) -> tuple[dict, str]:
    """The study object of an API v2 file (a study, or `{"studies": [one study]}`) and its JSON path."""
    content = check_size(path, label, MAX_JSON_BYTES)
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ImportFailed([ImportProblem(label, f"not UTF-8 text: {exc.reason}")]) from None
    except json.JSONDecodeError as exc:
        raise ImportFailed([ImportProblem(label, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)]) from None
    base = "$"
    if isinstance(data, dict) and "studies" in data:
        studies = data["studies"]
        if not isinstance(studies, list) or len(studies) != 1:
            count = len(studies) if isinstance(studies, list) else "no list of"
            raise ImportFailed([ImportProblem(label, f"{count} studies in the file: import one record per file", where="$.studies")])
        data, base = studies[0], "$.studies[0]"
    if not isinstance(data, dict) or not isinstance(data.get("protocolSection"), dict):
        raise ImportFailed([ImportProblem(
            label, "no protocolSection: not a ClinicalTrials.gov API v2 study record", where=f"{base}.protocolSection"
        )])
    return data, base


@lru_cache(maxsize=1)
def _zones() -> list[tuple[str, str, float, float]]:
    """(country codes, zone, latitude, longitude) from the system's zone1970.tab (tzdata)."""
    rows = []
    for candidate in (Path("/usr/share/zoneinfo/zone1970.tab"),):
        if candidate.exists():
            for line in candidate.read_text(encoding="utf-8").splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                countries, coordinates, zone = line.split("\t")[:3]
                match = re.fullmatch(r"([+-]\d+)([+-]\d+)", coordinates)
                if match:
                    rows.append((countries, zone, _degrees(match[1]), _degrees(match[2])))
    return rows


def _degrees(text: str) -> float:
    sign = -1 if text[0] == "-" else 1
    digits = text[1:]
    head = 2 if len(digits) in {4, 6} else 3
    value = int(digits[:head]) + int(digits[head:head + 2]) / 60 + (int(digits[head + 2:]) / 3600 if len(digits) > head + 2 else 0)
    return sign * value


# The zone most of each US state keeps (a few states span two: the exceptions are left to the TODO).
US_STATES = {
    "America/New_York": "Connecticut Delaware Georgia Maine Maryland Massachusetts New Hampshire New Jersey New York "
                        "North Carolina Ohio Pennsylvania Rhode Island South Carolina Vermont Virginia West Virginia "
                        "District of Columbia Florida Kentucky",
    "America/Detroit": "Michigan",
    "America/Indiana/Indianapolis": "Indiana",
    "America/Chicago": "Alabama Arkansas Illinois Iowa Kansas Louisiana Minnesota Mississippi Missouri Nebraska "
                       "North Dakota Oklahoma South Dakota Tennessee Texas Wisconsin",
    "America/Denver": "Colorado Montana New Mexico Utah Wyoming Idaho",
    "America/Phoenix": "Arizona",
    "America/Los_Angeles": "California Nevada Oregon Washington",
    "America/Anchorage": "Alaska",
    "Pacific/Honolulu": "Hawaii",
}
_STATE_ZONE = {}
for _zone, _names in US_STATES.items():
    for _state in re.findall(r"District of Columbia|(?:New|North|South|West|Rhode) \w+|\w+", _names):
        _STATE_ZONE[_state] = _zone


def time_zone(country: str, geo: dict | None, state: str | None = None) -> tuple[str | None, str]:
    """(zone, how it was chosen) for a site: the country's only zone, a US state's main zone, or the
    zone of that country whose reference city is nearest the site's coordinates."""
    if country == "US" and state in _STATE_ZONE:
        return _STATE_ZONE[state], f"the main time zone of {state}"
    try:
        import pytz

        zones = list(pytz.country_timezones.get(country, []))
    except ImportError:  # pragma: no cover - pytz comes with pandas
        zones = []
    if len(zones) == 1:
        return zones[0], f"the only time zone of {country}"
    if geo and isinstance(geo.get("lat"), int | float) and isinstance(geo.get("lon"), int | float):
        lat, lon = float(geo["lat"]), float(geo["lon"])
        candidates = [row for row in _zones() if country in row[0].split(",")]
        # Sub-zones (America/Indiana/…, America/Kentucky/…) have reference cities near the main
        # zones' borders: the main zones alone guess better.
        candidates = [row for row in candidates if row[1].count("/") == 1] or candidates
        if candidates:
            def distance(row):
                return (row[2] - lat) ** 2 + ((row[3] - lon) * math.cos(math.radians(lat))) ** 2

            nearest = min(candidates, key=distance)
            return nearest[1], (f"TODO: check it; {country} has {len(zones)} time zones and this one's reference city is the "
                                "nearest to the site's coordinates")
    if zones:
        return zones[0], f"TODO: set it; the first of {country}'s {len(zones)} time zones (the record gives no coordinates)"
    return None, ""


def country_code(name: str) -> str | None:
    import pycountry

    if not name:
        return None
    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        try:
            found = pycountry.countries.search_fuzzy(name)
        except LookupError:
            return None
        return found[0].alpha_2 if len(found) == 1 else None


def split_criteria(text: str) -> tuple[list[str], list[str], list[str]]:
    """(inclusion, exclusion, left-over paragraphs) of an eligibility text: one item per top-level
    bullet or number; nested bullets are kept with their parent item."""
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!<>=|~])", r"\1", text)  # the markdown escapes of the API
    lists: dict[str, list[str]] = {"inclusion": [], "exclusion": []}
    current: str | None = None
    leftover: list[str] = []
    top_indent: int | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        heading = re.match(r"^(?:key\s+)?(inclusion|exclusion)\s+criteria\b", stripped, re.IGNORECASE)
        if heading and not BULLET.match(stripped):
            current, top_indent = heading[1].lower(), None
            continue
        indent = len(line) - len(line.lstrip())
        if current is None:
            leftover.append(stripped)
            continue
        if BULLET.match(stripped):
            if top_indent is None:
                top_indent = indent
            if indent <= top_indent:
                lists[current].append(BULLET.sub("", stripped, count=1))
                continue
            if lists[current]:
                lists[current][-1] += "; " + BULLET.sub("", stripped, count=1)
                continue
        last = lists[current][-1] if lists[current] else None
        if last is not None and (indent > (top_indent or 0) or (top_indent is None and not last.endswith((".", ";")))):
            lists[current][-1] += " " + stripped
        elif top_indent is None:
            lists[current].append(stripped)  # criteria written as plain lines, one per line
        else:
            leftover.append(stripped)
    return lists["inclusion"], lists["exclusion"], leftover


def _age(text: str | None) -> tuple[int | None, str | None]:
    """Whole years of an age such as '18 Years' or '6 Months' (rounded down), and a note when not in years."""
    if not text:
        return None, None
    match = AGE.match(text)
    if not match:
        return None, f"age '{text}' not understood"
    number, unit = int(match[1]), match[2].lower()
    if unit == "year":
        return number, None
    years = number * UNIT_DAYS[unit] // 365
    return years, f"'{text}' written as {years} whole year(s)"


def _date(text: str | None) -> tuple[date | None, str | None]:
    if not text:
        return None, None
    try:
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return date.fromisoformat(text + "-01"), f"'{text}' gives no day: the 1st of the month"
        return date.fromisoformat(text), None
    except ValueError:
        return None, f"'{text}' is not a date"


def time_points(frames: list[str]) -> list[tuple[int, str]]:
    """(day offset, label) of each time point named in the outcome time frames."""
    found: dict[int, str] = {}
    for frame in frames:
        lowered = frame.lower()
        if "baseline" in lowered:
            found.setdefault(0, "Baseline")
        for unit, numbers in TIME_POINT.findall(frame):
            unit = unit.lower()
            for number in re.findall(r"\d+", numbers):
                found.setdefault(int(number) * UNIT_DAYS[unit], f"{unit.capitalize()} {int(number)}")
        for number, unit in NUMBER_UNIT.findall(frame):
            unit = unit.lower()
            found.setdefault(int(number) * UNIT_DAYS[unit], f"{unit.capitalize()} {int(number)}")
    return sorted(found.items())


def import_ctgov(paths: list[Path | str], out: Path | str | None = None) -> ImportResult:
    """Each record as a trial skeleton (`<trial>.yaml`) and its eligibility CRF, validated by the
    loader, written under `out` only when everything validated. Raises ImportFailed otherwise."""
    result = ImportResult()
    problems: list[Any] = []
    for path in map(Path, paths):
        label = str(path)
        try:
            lines: dict[str, int] = {}
            if path.suffix.lower() == ".xml":
                data, base, lines = load_legacy_xml(path, label)
            else:
                data, base = load_record(path, label)
            record = _Record(data, label, base)
            _skeleton(record, path, result)
            if record.problems:
                raise ImportFailed([_with_line(p, base, lines) for p in record.problems])
        except ImportFailed as exc:
            problems += exc.problems
    if problems:
        raise ImportFailed(problems)
    validate_and_write(result, Path(out) if out else None)
    return result


def _skeleton(record: _Record, path: Path, result: ImportResult) -> None:
    ps = "protocolSection"
    nct = record.get(f"{ps}.identificationModule.nctId", "", str)
    if not re.fullmatch(r"NCT\d{8}", nct or ""):
        record.problems.append(ImportProblem(record.label, f"'{nct}' is not an NCT number (NCT and 8 digits)",
                                             where=record.where(f"{ps}.identificationModule.nctId")))
        return
    report = result.report
    comments: dict[str, list[str]] = {}
    acronym = record.get(f"{ps}.identificationModule.acronym", "", str) or ""
    code = as_code(acronym or nct, nct)
    relpath = f"{code.lower()}.yaml"
    brief = record.get(f"{ps}.identificationModule.briefTitle", "", str) or ""
    official = record.get(f"{ps}.identificationModule.officialTitle", "", str) or ""
    data: dict[str, Any] = {"code": code, "title": official or brief or nct}
    if brief and brief != data["title"]:
        data["short_title"] = brief
    if acronym:
        data["acronym"] = acronym
    other = {}
    for index, info in enumerate(record.get(f"{ps}.identificationModule.secondaryIdInfos", [], list)):
        if isinstance(info, dict) and info.get("id"):
            key = info.get("domain") or info.get("type") or f"secondary_{index + 1}"
            other[unique(str(key), set(other), 200)] = str(info["id"])
    data["registry_ids"] = {"nct": nct, "org_study_id": record.get(f"{ps}.identificationModule.orgStudyIdInfo.id", None, str)}
    if other:
        data["registry_ids"]["other"] = other
    if data["registry_ids"]["org_study_id"] is None:
        del data["registry_ids"]["org_study_id"]

    # Phase, type, design, masking.
    phases = tuple(record.get(f"{ps}.designModule.phases", [], list))
    if phases not in PHASES:
        record.problems.append(ImportProblem(record.label, f"phases {list(phases)} not understood",
                                             where=record.where(f"{ps}.designModule.phases")))
        return
    data["phase"] = PHASES[phases]
    study_type = (record.get(f"{ps}.designModule.studyType", "", str) or "").upper()
    data["study_type"] = "observational" if study_type == "OBSERVATIONAL" else "interventional"
    if study_type not in {"INTERVENTIONAL", "OBSERVATIONAL"}:
        comments["study_type"] = [f"TODO: the record's study type is '{study_type or 'missing'}'; check it"]
    design_info = record.get(f"{ps}.designModule.designInfo", {}, dict) or {}
    allocation = design_info.get("allocation", "")
    masking_info = design_info.get("maskingInfo") or {}
    roles = [ROLES[r] for r in masking_info.get("whoMasked", []) if r in ROLES]
    masking_word = (masking_info.get("masking") or "NONE").upper()
    arm_groups = record.get(f"{ps}.armsInterventionsModule.armGroups", [], list)
    if data["study_type"] == "observational":
        data["design"] = "registry"
        comments["design"] = ["Assumption: an observational study is a registry here (it allocates nothing)."]
        if arm_groups:
            comments["design"].append("TODO: the record's groups/cohorts are not arms of a registry: "
                                      + "; ".join(str(g.get("label")) for g in arm_groups if isinstance(g, dict)))
    elif allocation == "RANDOMIZED" and len(arm_groups) >= 2:
        data["design"] = "randomized"
    else:
        data["design"] = "open_label"
        comments["design"] = [(f"Assumption: a non-randomized study ({allocation or 'allocation not given'}) is open label here; "
                              "TODO: a dose escalation needs its escalation block (rule, DLT window), see docs/seed-format.md.")]
        if masking_word != "NONE":
            comments["design"].append(f"TODO: the record says masking {masking_word} ({', '.join(roles)}) without "
                                      "randomization; an open-label design has no masking here: decide.")
            roles = []
    if masking_word != "NONE" and len(roles) != {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "QUADRUPLE": 4}.get(masking_word, len(roles)):
        comments["masking"] = [f"Assumption: the record says {masking_word} but names {len(roles)} masked role(s); the roles decide the level."]
    data["masking"] = {"level": LEVELS[len(set(roles))], "masked": list(dict.fromkeys(roles))}
    if design_info.get("interventionModel") in MODELS and data["design"] != "registry":
        data["intervention_model"] = MODELS[design_info["interventionModel"]]
    if design_info.get("primaryPurpose"):
        data["primary_purpose"] = str(design_info["primaryPurpose"]).lower().replace("_", " ")

    # Enrolment, status, dates, sponsor.
    count = record.get(f"{ps}.designModule.enrollmentInfo.count", None, int)
    kind = record.get(f"{ps}.designModule.enrollmentInfo.type", "", str)
    if count and count > 0:
        data["target_enrolment"] = count
        if kind == "ACTUAL":
            comments["target_enrolment"] = ["Assumption: the record gives the ACTUAL enrolment; the target was not kept."]
    else:
        data["target_enrolment"] = 1
        comments["target_enrolment"] = ["TODO: the record gives no enrolment: set the target."]
    status = record.get(f"{ps}.statusModule.overallStatus", "", str) or ""
    data["status"] = status.lower() if status in STATUSES else "not_yet_recruiting"
    if status not in STATUSES:
        comments["status"] = [f"TODO: the record's status is '{status or 'missing'}': choose one of ours."]
    for key, source in (("start_date", "startDateStruct"), ("completion_date", "completionDateStruct")):
        value, note = _date(record.get(f"{ps}.statusModule.{source}.date", None, str))
        if value:
            data[key] = value
            kind = record.get(f"{ps}.statusModule.{source}.type", "", str)
            comments[key] = [f"Assumption: {note}."] if note else []
            if kind == "ESTIMATED":
                comments[key].append("Assumption: an ESTIMATED date in the record.")
        elif note:
            comments[key] = [f"TODO: {note}"]
    data["sponsor"] = record.get(f"{ps}.sponsorCollaboratorsModule.leadSponsor.name", "", str) or "TODO"
    if data["sponsor"] == "TODO":
        comments["sponsor"] = ["TODO: the record names no lead sponsor."]
    officials = record.get(f"{ps}.contactsLocationsModule.overallOfficials", [], list)
    pis = [o.get("name") for o in officials if isinstance(o, dict) and o.get("role") == "PRINCIPAL_INVESTIGATOR" and o.get("name")]
    if pis:
        data["principal_investigator"] = pis[0]
    conditions = [c for c in record.get(f"{ps}.conditionsModule.conditions", [], list) if isinstance(c, str) and c.strip()]
    data["conditions"] = conditions or ["TODO"]
    if not conditions:
        comments["conditions"] = ["TODO: the record lists no condition."]

    # Eligibility: structured ages and sex, then the criteria text as a checklist.
    eligibility = record.get(f"{ps}.eligibilityModule", {}, dict) or {}
    min_age, min_note = _age(eligibility.get("minimumAge"))
    max_age, max_note = _age(eligibility.get("maximumAge"))
    age_notes = [f"Assumption: {n}." for n in (min_note, max_note) if n]
    if min_age is not None:
        data["min_age_years"] = min_age
    if max_age is not None:
        data["max_age_years"] = max_age
    if age_notes:
        comments["min_age_years" if min_age is not None else "sex"] = age_notes
    sex = {"FEMALE": "female", "MALE": "male"}.get(str(eligibility.get("sex", "ALL")).upper(), "all")
    data["sex"] = sex
    data["healthy_volunteers"] = bool(eligibility.get("healthyVolunteers", False))
    summary = record.get(f"{ps}.descriptionModule.briefSummary", "", str)
    if summary:
        data["summary"] = summary.strip()
    data["source"] = f"ClinicalTrials.gov record {nct} (API v2 JSON, {path.name}); https://clinicaltrials.gov/study/{nct}"

    elig_code = as_code(f"{code}_ELIG")
    data["eligibility"] = {"crfs": [elig_code]}
    comments["eligibility"] = [(f"TODO: {elig_code} holds only age and sex, for the structured criteria; replace it with "
                               "the trial's screening CRFs and write an expression for each criterion that allows one.")]

    # Sites.
    sites, taken = [], set()
    site_notes: list[str] = []
    locations = record.get(f"{ps}.contactsLocationsModule.locations", [], list)
    for index, location in enumerate(locations):
        where = record.where(f"{ps}.contactsLocationsModule.locations[{index}]")
        if not isinstance(location, dict):
            continue
        country = country_code(location.get("country", ""))
        if country is None:
            record.problems.append(ImportProblem(record.label, f"country '{location.get('country')}' is not an ISO 3166 country",
                                                 where=where + ".country"))
            continue
        zone, how = time_zone(country, location.get("geoPoint"), location.get("state"))
        city = location.get("city") or "TODO"
        name = location.get("facility") or f"{city} site"
        site_code = unique(as_code(city, "SITE")[:30], taken, 30)
        status = str(location.get("status", "")).upper()
        site = {"code": site_code, "name": name, "city": city, "country": country, "time_zone": zone or "UTC",
                "recruitment_status": status.lower() if status in STATUSES else data["status"]}
        pi = [c.get("name") for c in location.get("contacts", []) if isinstance(c, dict) and c.get("role") == "PRINCIPAL_INVESTIGATOR"]
        if pi and pi[0]:
            site["principal_investigator"] = pi[0]
        sites.append(site)
        site_notes.append(f"Assumption: {site_code} ({city}, {country}) in {zone or 'UTC'}: "
                          + (how if zone else "TODO: no time zone found for the country, set it"))
    if not sites:
        sites.append({"code": "SITE1", "name": "TODO", "city": "TODO", "country": "ZZ", "time_zone": "UTC",
                      "recruitment_status": data["status"]})
        site_notes.append("TODO: the record lists no location: give the sites (code, name, city, country, time zone).")
    data["sites"] = sites
    comments["sites"] = site_notes + ["TODO: site codes are made from the city: check them (they appear in participant numbers)."]

    # Arms and interventions.
    interventions = record.get(f"{ps}.armsInterventionsModule.interventions", [], list)
    arms, taken = [], set()
    if data["design"] != "registry":
        for index, group in enumerate(arm_groups):
            if not isinstance(group, dict) or not group.get("label"):
                record.problems.append(ImportProblem(record.label, "an arm group without a label",
                                                     where=record.where(f"{ps}.armsInterventionsModule.armGroups[{index}]")))
                continue
            label = group["label"]
            names = [i.get("name") for i in interventions if isinstance(i, dict) and label in (i.get("armGroupLabels") or [])]
            arm = {"code": unique(as_code(label, f"ARM{index + 1}")[:40], taken), "label": label,
                   "type": ARM_TYPES.get(str(group.get("type", "")).upper(), "other")}
            if group.get("description"):
                arm["description"] = group["description"]
            if names or group.get("interventionNames"):
                arm["intervention"] = "; ".join(names or group.get("interventionNames"))
            arms.append(arm)
    if arms:
        data["arms"] = arms
        comments["arms"] = ["Assumption: arm codes are made from the record's arm labels."]
    if data["design"] == "randomized":
        data["randomization"] = {"block_sizes": [2 * len(arms)], "stratify_by_site": True}
        comments["randomization"] = [(f"Assumption: equal allocation in permuted blocks of {2 * len(arms)}, stratified by site; "
                                     "TODO: the record gives neither block sizes nor strata.")]

    # Criteria.
    criteria = []
    text = eligibility.get("eligibilityCriteria") or ""
    inclusion, exclusion, leftover = split_criteria(text) if isinstance(text, str) else ([], [], [])
    if min_age is not None or max_age is not None:
        parts = ([f"age_years >= {min_age}"] if min_age is not None else []) + ([f"age_years <= {max_age}"] if max_age is not None else [])
        low, high = eligibility.get("minimumAge"), eligibility.get("maximumAge")
        words = f"{low} to {high}" if low and high else f"at least {low}" if low else f"at most {high}"
        criteria.append({"code": "I-AGE", "kind": "inclusion", "text": f"Age {words} (structured eligibility of the record)",
                         "expression": " && ".join(parts)})
    if sex != "all":
        criteria.append({"code": "I-SEX", "kind": "inclusion", "text": f"Sex: {sex} (structured eligibility of the record)",
                         "expression": f"sex == '{'F' if sex == 'female' else 'M'}'"})
    for kind, items, prefix in (("inclusion", inclusion, "I"), ("exclusion", exclusion, "E")):
        for number, item in enumerate(items, 1):
            criteria.append({"code": f"{prefix}{number:02d}", "kind": kind, "text": item})
    if criteria:
        data["criteria"] = criteria
        comments["criteria"] = [(f"Checklist from the record: {len(inclusion)} inclusion and {len(exclusion)} exclusion "
                                "criteria (one per top-level item; nested items kept with their parent).")]
        comments["criteria"].append("TODO: add an expression where a criterion can be computed from the screening CRFs.")
    if leftover:
        comments["criteria"] = comments.get("criteria", []) + ["Not a criterion (text outside the lists): " + _short(p) for p in leftover]

    # Visits from the outcome time frames.
    frames = [o.get("timeFrame", "") for key in ("primaryOutcomes", "secondaryOutcomes", "otherOutcomes")
              for o in record.get(f"{ps}.outcomesModule.{key}", [], list) if isinstance(o, dict)]
    points = time_points(frames)
    visits = [{"code": "SCREEN", "label": "Screening", "kind": "screening", "anchor": "enrolment", "day_offset": -28,
               "window_before_days": 0, "window_after_days": 28, "crfs": [elig_code]}]
    taken = {"SCREEN"}
    if not points or points[0][0] != 0:
        points.insert(0, (0, "Baseline"))
    for offset, label in points:
        visit_code = unique(as_code("BASELINE" if offset == 0 else _visit_code(offset)), taken)
        visits.append({"code": visit_code, "label": label, "kind": "baseline" if offset == 0 else "follow_up",
                       "anchor": "enrolment", "day_offset": offset})
    visits[-1]["kind"] = "end_of_study" if len(visits) > 2 else visits[-1]["kind"]
    data["visits"] = visits
    comments["visits"] = [
        "Assumption: screening 28 days before enrolment; the other visits are the time points the outcome time frames name",
        f"({', '.join(label for _o, label in points)}), a week = 7 days, a month = 30, a year = 365.",
        "TODO: visit windows (none set), the CRFs of each visit (only the eligibility CRF is placed), the anchor",
        "TODO: (enrolment or first treatment), and the unscheduled visit's CRFs.",
    ]
    report.append(f"{record.label}: {nct} -> {relpath}: {len(arms)} arm(s), {len(sites)} site(s), "
                  f"{len(inclusion)} inclusion and {len(exclusion)} exclusion criteria, {len(visits)} visit(s) proposed.")
    report.append(f"{record.label}: needs a person: time zones of {len(sites)} site(s) (assumed), visit windows and CRFs, "
                  "criteria expressions, randomization details — see the '# TODO:' and '# Assumption:' comments.")

    header = [f"Trial skeleton imported from ClinicalTrials.gov record {nct} ({path.name}).",
              "Values taken from the record as written; '# Assumption:' marks a value derived by a stated rule,",
              "'# TODO:' what needs a person before the trial is loaded."]
    result.files[relpath] = dump_yaml(data, {k: v for k, v in comments.items() if v}, header)

    result.files[f"crfs/{elig_code.lower()}.yaml"] = dump_yaml({
        "code": elig_code,
        "title": "Eligibility: age and sex",
        "source": f"Structured eligibility of ClinicalTrials.gov record {nct}",
        "fields": [
            {"name": "age_years", "label": "Age at screening", "type": "integer", "unit": "years", "min": 0, "max": 120,
             "required": True},
            {"name": "sex", "label": "Sex", "type": "single_choice", "required": True,
             "choices": [{"code": "F", "label": "Female"}, {"code": "M", "label": "Male"}]},
        ],
    }, header=[f"Eligibility CRF proposed for {nct}.", "TODO: replace it with the trial's demography/screening CRFs."])


# --- The legacy XML (clinical_study, the pre-2023 download format) ---------------------------

LEGACY_PHASES = {"Early Phase 1": ["EARLY_PHASE1"], "Phase 1": ["PHASE1"], "Phase 1/Phase 2": ["PHASE1", "PHASE2"],
                 "Phase 2": ["PHASE2"], "Phase 2/Phase 3": ["PHASE2", "PHASE3"], "Phase 3": ["PHASE3"],
                 "Phase 4": ["PHASE4"], "N/A": []}
LEGACY_MODELS = {"Single Group Assignment": "SINGLE_GROUP", "Parallel Assignment": "PARALLEL",
                 "Crossover Assignment": "CROSSOVER", "Factorial Assignment": "FACTORIAL",
                 "Sequential Assignment": "SEQUENTIAL"}


def _upper(text: str | None) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", (text or "").upper()).strip("_")


def _legacy_date(text: str | None) -> str | None:
    from datetime import datetime

    if not text:
        return None
    for pattern, iso in (("%B %d, %Y", "%Y-%m-%d"), ("%B %Y", "%Y-%m"), ("%Y-%m-%d", "%Y-%m-%d")):
        try:
            return datetime.strptime(text.strip(), pattern).strftime(iso)
        except ValueError:
            continue
    return text


def load_legacy_xml(path: Path, label: str) -> tuple[dict, str, dict[str, int]]:
    """A legacy `clinical_study` XML record as the API v2 structure (so one mapping serves both),
    with the XML line of each value by its v2 path, for messages."""
    from lxml import etree

    content = check_size(path, label, MAX_JSON_BYTES)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise ImportFailed([ImportProblem(label, f"not well-formed XML: {exc.msg}", exc.lineno or None)]) from None
    if root.getroottree().docinfo.doctype:
        raise ImportFailed([ImportProblem(label, "a DOCTYPE (DTD or entities) is not allowed", 1)])
    if root.tag != "clinical_study":
        raise ImportFailed([ImportProblem(label, f"the root element is {root.tag}, not clinical_study", root.sourceline)])
    lines: dict[str, int] = {}

    def text(xpath: str, v2: str | None = None) -> str | None:
        found = root.find(xpath)
        if found is None:
            return None
        if v2:
            lines[v2] = found.sourceline
        return " ".join((found.text or "").split()) or None

    ps = "protocolSection"
    masking = text("study_design_info/masking", f"{ps}.designModule.designInfo.maskingInfo") or "None (Open Label)"
    who = re.search(r"\((.*)\)", masking)
    roles = [_upper(r) for r in who[1].split(",")] if who and "Open Label" not in masking else []
    phase = text("phase", f"{ps}.designModule.phases")
    locations = []
    for index, site in enumerate(root.findall("location")):
        lines[f"{ps}.contactsLocationsModule.locations[{index}]"] = site.sourceline
        country = site.find("facility/address/country")
        if country is not None:
            lines[f"{ps}.contactsLocationsModule.locations[{index}].country"] = country.sourceline
        locations.append({
            "facility": site.findtext("facility/name"), "city": site.findtext("facility/address/city"),
            "state": site.findtext("facility/address/state"), "country": site.findtext("facility/address/country"),
            "status": _upper(site.findtext("status")) or None,
        })
    arms = [{"label": g.findtext("arm_group_label"), "type": _upper(g.findtext("arm_group_type")),
             "description": " ".join((g.findtext("description") or "").split())} for g in root.findall("arm_group")]
    interventions = [{"name": i.findtext("intervention_name"), "type": _upper(i.findtext("intervention_type")),
                      "armGroupLabels": [a.text for a in i.findall("arm_group_label")]} for i in root.findall("intervention")]
    enrollment = root.find("enrollment")
    data = {ps: {
        "identificationModule": {
            "nctId": text("id_info/nct_id", f"{ps}.identificationModule.nctId"),
            "orgStudyIdInfo": {"id": text("id_info/org_study_id")},
            "secondaryIdInfos": [{"id": e.text} for e in root.findall("id_info/secondary_id") if e.text],
            "briefTitle": text("brief_title"), "officialTitle": text("official_title"), "acronym": text("acronym") or "",
        },
        "statusModule": {
            "overallStatus": _upper(text("overall_status")),
            "startDateStruct": {"date": _legacy_date(text("start_date", f"{ps}.statusModule.startDateStruct"))},
            "completionDateStruct": {"date": _legacy_date(text("completion_date", f"{ps}.statusModule.completionDateStruct"))},
        },
        "sponsorCollaboratorsModule": {"leadSponsor": {"name": text("sponsors/lead_sponsor/agency")}},
        "descriptionModule": {"briefSummary": text("brief_summary/textblock") or ""},
        "conditionsModule": {"conditions": [c.text for c in root.findall("condition") if c.text]},
        "designModule": {
            "studyType": _upper(text("study_type")),
            "phases": LEGACY_PHASES.get(phase or "N/A", [phase]),
            "designInfo": {
                "allocation": _upper(text("study_design_info/allocation")),
                "interventionModel": LEGACY_MODELS.get(text("study_design_info/intervention_model") or "", ""),
                "primaryPurpose": _upper(text("study_design_info/primary_purpose")),
                "maskingInfo": {"masking": _upper(masking.split("(")[0]) or "NONE", "whoMasked": roles},
            },
            "enrollmentInfo": {"count": int(enrollment.text) if enrollment is not None and (enrollment.text or "").strip().isdigit() else None,
                               "type": _upper(enrollment.get("type")) if enrollment is not None else ""},
        },
        "armsInterventionsModule": {"armGroups": arms, "interventions": interventions},
        "outcomesModule": {
            f"{kind}Outcomes": [{"timeFrame": o.findtext("time_frame") or ""} for o in root.findall(f"{kind}_outcome")]
            for kind in ("primary", "secondary", "other")
        },
        "eligibilityModule": {
            "eligibilityCriteria": root.findtext("eligibility/criteria/textblock") or "",
            "sex": _upper(text("eligibility/gender")) or "ALL",
            "minimumAge": None if (text("eligibility/minimum_age") or "N/A") == "N/A" else text("eligibility/minimum_age"),
            "maximumAge": None if (text("eligibility/maximum_age") or "N/A") == "N/A" else text("eligibility/maximum_age"),
            "healthyVolunteers": (text("eligibility/healthy_volunteers") or "").lower().startswith("accepts"),
        },
        "contactsLocationsModule": {
            "overallOfficials": [{"name": o.findtext("last_name"), "role": _upper(o.findtext("role"))}
                                 for o in root.findall("overall_official")],
            "locations": locations,
        },
    }}
    return data, "clinical_study", lines


def _with_line(problem: ImportProblem, base: str, lines: dict[str, int]) -> ImportProblem:
    """A problem of a legacy XML record with the XML line of its value (the nearest path known)."""
    if not lines or problem.line:
        return problem
    path = problem.where.removeprefix(base + ".")
    best = max((p for p in lines if path == p or path.startswith((p + ".", p + "["))), key=len, default=None)
    if best is None:
        return problem
    return ImportProblem(problem.file, problem.message, lines[best], problem.where)


def _visit_code(offset: int) -> str:
    if offset % 365 == 0:
        return f"Y{offset // 365}"
    if offset % 30 == 0:
        return f"M{offset // 30}"
    if offset % 7 == 0:
        return f"W{offset // 7}"
    return f"D{offset}"


def _short(text: str) -> str:
    return text if len(text) <= 100 else text[:97] + "..."
