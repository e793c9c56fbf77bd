"""CDISC ODM 1.3.2 export: every seed trial with data validates against the official schema, the
values read back equal the database, OIDs resolve, and a blinded file names no arm.

The data are made through the real services (participants screened, consented, enrolled and
allocated; visit dates recorded; every CRF of the schedule answered; adverse events), with answers
drawn from each CRF's definition. The helpers here are shared by test_sdtm.py and test_stats.py.
"""

from __future__ import annotations

import io
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone
from lxml import etree

from edc.audit import system_user
from tests.conftest import SEEDS
from trials.exports import odm
from trials.exports.spec import ExportSpec
from trials.demo.participants import participant_register
from trials.participants.models import Allocation, Participant
from trials.protocol.loader import protocol_load
from trials.protocol.models import Arm, Site, Trial
from trials.safety import services as safety_services
from trials.safety.models import AdverseEvent
from trials.protocol.engine import ROW_ID, CrfSchema, Item, schema_for
from trials.visits.models import CrfEntry, Visit
from trials.visits.schedule import visit_add_unscheduled, visit_record_date
from trials.visits.services import crf_entry_save_answers

pytestmark = pytest.mark.django_db

NS = {"odm": odm.NS}
SEED_SITES = {  # a site per seed trial where the demo accounts work
    "ASC-DU": ("TLS", "GRE"),
    "ADSVF-SSC-HANDS": ("INCMNSZ",),
    "SSC-FATGRAFT-REG": ("TLS", "MEX"),
    "EASC-RA": ("MAD-LP",),
}
TEXTS = ("Seen by the investigator", "No remarks", "Ulcer cleaned; dressing changed", "Patient well")


# --- Data made through the services ---------------------------------------------------------


def _answer(item: Item, rng: random.Random, first: date, last: date, zone: ZoneInfo):
    """A parsed answer for the item, within its range (edit checks may still refuse it: retried)."""
    kind = item.type
    low = int(item.min) if item.min is not None else 0
    high = int(item.max) if item.max is not None else max(low, 100)
    if kind in {"integer", "scale"}:
        return rng.randint(low, high)
    if kind == "decimal":
        scale = 10 ** (item.precision or 0)
        return Decimal(rng.randint(low * scale, high * scale)) / scale
    if kind == "single_choice":
        return rng.choice(item.choices)[0]
    if kind == "multiple_choice":
        return [code for code, _label in rng.sample(item.choices, rng.randint(1, len(item.choices)))]
    if kind == "yes_no":
        return rng.random() < 0.5
    if kind == "date":
        return first + timedelta(days=rng.randint(0, max(0, (last - first).days)))
    if kind == "datetime":
        return datetime.combine(last, time(10, rng.randint(0, 59)), tzinfo=zone)
    if kind == "file":
        return None  # files are uploaded on the CRF page, never imported
    if item.name == "ulcer_id":
        return f"U{rng.randint(1, 9)}"
    if item.name == "initials":
        return "JD"
    return rng.choice(TEXTS)


def random_answers(schema: CrfSchema, rng: random.Random, *, first: date, last: date, zone: ZoneInfo,
                   overrides: dict | None = None) -> dict:
    answers: dict = {}
    for item in schema.items:
        if item.type == "repeating_group":
            answers[item.name] = [
                {child.name: _answer(child, rng, first, last, zone) for child in item.children if child.is_input}
                for _row in range(rng.randint(max(1, item.min_rows or 0), min(3, item.max_rows or 3)))
            ]
        elif item.is_input and (item.required or rng.random() < 0.9):
            born = item.name == "date_of_birth"
            answers[item.name] = _answer(item, rng, date(1950, 1, 1) if born else first, date(1990, 1, 1) if born else last, zone)
    if "number_active_du" in answers and "ulcers" in answers:
        # DU_ASSESS: the count of active ulcers agrees with the rows (a CRF-level check, issue 13).
        answers["number_active_du"] = sum(1 for row in answers["ulcers"] if row.get("active") is True)
    for name, value in (overrides or {}).items():
        if any(item.name == name for item in schema.items):
            answers[name] = value
    return answers


def _linked_answers(visit: Visit, answers: dict) -> dict:
    """Answers another record fixes (DU_INJECTION): the kit is the allocation's, and each injected
    ulcer is one on the ulcer assessment of the visit."""
    if "kit_code" in answers:
        allocation = Allocation.objects.filter(participant=visit.participant_id).first()
        answers["kit_code"] = allocation.kit_code if allocation else answers["kit_code"]
    if answers.get("ulcers_injected"):
        assessed = CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").first()
        ids = [row["ulcer_id"] for row in (assessed.answers.get("ulcers") or [])] if assessed else []
        rows = answers["ulcers_injected"][: len(ids)] if ids else answers["ulcers_injected"]
        answers["ulcers_injected"] = [{**row, "ulcer_id": ids[i]} if ids else row for i, row in enumerate(rows)]
    return answers


def fill_crf(visit: Visit, crf_code: str, rng: random.Random, user=None, overrides: dict | None = None) -> CrfEntry:
    """Answer a CRF of the visit through crf_entry_save_answers; answers an edit check refuses are
    drawn again (a few tries), so every entry is one the engine accepts."""
    participant = visit.participant
    crf = visit.definition.visit_crfs.get(crf_code=crf_code).crf if visit.definition else None
    schema = schema_for(crf)
    zone = ZoneInfo(participant.site.time_zone)
    last = visit.visit_date or participant.site.today()
    problems = None
    for _attempt in range(60):
        answers = random_answers(schema, rng, first=participant.consent_date, last=last, zone=zone, overrides=overrides)
        answers = _linked_answers(visit, answers)
        try:
            return crf_entry_save_answers(
                user=user or system_user(), visit=visit, crf_code=crf_code, answers=answers, complete=True,
                reason="Test data",
            )
        except ValidationError as error:
            problems = error
    raise AssertionError(f"{crf_code}: no valid answers drawn ({problems})")


def participant_with_data(trial_code: str, site_code: str, rng: random.Random, *, visits: int = 4,
                          adverse_events: int = 1, overrides: dict | None = None) -> Participant:
    """An enrolled, allocated (as the trial allocates) and treated participant whose first `visits`
    visits took place on their planned date and have every CRF answered, with adverse events."""
    site = Site.objects.select_related("trial").get(trial__code=trial_code, code=site_code)
    today = site.today()
    consent = today - timedelta(days=200)
    participant = participant_register(
        site=site, user=system_user(), consent_date=consent, anchor_date=today - timedelta(days=190),
        first_treatment_date=today - timedelta(days=190),
    )
    for visit in participant.visits.select_related("definition").order_by("order", "sequence")[:visits]:
        if visit.planned_date and visit.visit_date is None and visit.planned_date <= today:
            visit = visit_record_date(visit, user=system_user(), visit_date=max(visit.planned_date, consent))
        visit.refresh_from_db()
        for link in visit.definition.visit_crfs.filter(is_active=True).order_by("order"):
            if not CrfEntry.objects.filter(visit=visit, crf_code=link.crf_code).exists():
                fill_crf(visit, link.crf_code, rng, overrides=overrides)
    for number in range(adverse_events):
        onset = today - timedelta(days=150 - number)
        safety_services.ae_save(AdverseEvent(
            participant=participant, verbatim_term=rng.choice(["Headache", "Local pain", "Bruising at the injection site"]),
            onset_date=onset, end_date=onset + timedelta(days=3), ongoing=False, grade=rng.randint(1, 3),
            related_product="possible", seriousness=["hospitalisation"] if number == 1 else [], outcome="recovered",
            procedure="none", related_procedure="not_related", action_taken="none",
            aware_at=datetime.combine(onset, time(12), tzinfo=UTC),
        ), user=system_user())
    participant.refresh_from_db()
    return participant


def user(username: str):
    return get_user_model().objects.get(username=username)


def spec_for(username: str, trial_code: str, **options) -> ExportSpec:
    """An export spec of every site the user sees in the trial."""
    from trials.protocol.selectors import sites_for_user

    trial = Trial.objects.get(code=trial_code)
    who = user(username)
    sites = tuple(sites_for_user(who, trial=trial, include_inactive=True).values_list("pk", flat=True))
    return ExportSpec(user_id=who.pk, trial_id=trial.pk, site_ids=sites, **options)


def export_bytes(module, spec: ExportSpec, writer: str = "write") -> tuple[bytes, list[int]]:
    out = io.BytesIO()
    ticks: list[int] = []
    getattr(module, writer)(spec, out, ticks.append)
    return out.getvalue(), ticks


def arm_words(trial: Trial) -> list[str]:
    return [w for arm in Arm.objects.filter(trial=trial) for w in (arm.code, arm.label)]


# --- ODM ------------------------------------------------------------------------------------


def parse_valid(content: bytes) -> etree._ElementTree:
    """The document, after checking it against the official schema and its OID references."""
    document = etree.parse(io.BytesIO(content))
    schema = odm.odm_schema()
    assert schema.validate(document), schema.error_log.filter_from_errors()[:5]
    root = document.getroot()
    defined = {e.get("OID") for e in root.iter() if e.get("OID")}
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("OID") and name != "OID" and name not in {"FileOID", "PriorFileOID"}:
                assert value in defined, f"{element.tag} {name}={value} is not defined"
    return document


def item_values(document: etree._ElementTree) -> dict[tuple, str]:
    """Every ItemData value keyed by (subject, event, repeat key, form, group, group repeat key, item)."""
    values = {}
    for subject in document.iterfind(".//odm:SubjectData", NS):
        for event in subject.iterfind("odm:StudyEventData", NS):
            for form in event.iterfind("odm:FormData", NS):
                for group in form.iterfind("odm:ItemGroupData", NS):
                    for item in group.iterfind("odm:ItemData", NS):
                        key = (
                            subject.get("SubjectKey"), event.get("StudyEventOID"), event.get("StudyEventRepeatKey"),
                            form.get("FormOID"), group.get("ItemGroupOID"), group.get("ItemGroupRepeatKey"),
                            item.get("ItemOID"),
                        )
                        assert key not in values, key
                        values[key] = item.get("Value")
    return values


def expected_values(entry: CrfEntry, *, identifiers: bool = False) -> dict[str, object]:
    """What the ODM file must say for an entry: item name (or group[row].item) -> stored answer."""
    expected = {}
    schema = schema_for(entry.crf)
    for item in schema.items:
        if item.type == "repeating_group":
            for position, row in enumerate(entry.answers.get(item.name) or [], 1):
                expected[f"{item.name}[{position}]._row_id"] = row[ROW_ID]
                for child in item.children:
                    if child.is_input and row.get(child.name) is not None:
                        expected[f"{item.name}[{position}].{child.name}"] = (child, row[child.name])
        elif item.type not in {"descriptive"} and entry.answers.get(item.name) is not None:
            if item.identifier and not identifiers:
                continue
            expected[item.name] = (item, entry.answers[item.name])
    return expected


def as_odm(item: Item, value: object) -> object:
    """A stored answer as the ODM file writes it (multiple choices: the set of ticked codes)."""
    if item.type == "yes_no":
        return "1" if value else "0"
    if item.type == "multiple_choice":
        return {str(code) for code in value}
    return str(value)


def read_entry(document: etree._ElementTree, entry: CrfEntry) -> dict[str, object]:
    """An entry's values as read back from the file, keyed like expected_values."""
    form_oid = f"F.{entry.crf_code}.V{entry.crf.version}"
    clinical = document.find(f"odm:ClinicalData[@StudyOID='ST.{entry.participant.trial.code}']", NS)
    subject = clinical.find(f"odm:SubjectData[@SubjectKey='{entry.participant.screening_number}']", NS)
    event_oid = f"SE.{entry.visit.definition.code}" if entry.visit.definition else odm.UNSCHEDULED
    event = subject.find(f"odm:StudyEventData[@StudyEventOID='{event_oid}']", NS)
    form = event.find(f"odm:FormData[@FormOID='{form_oid}']", NS)
    assert form is not None, (entry.participant.number, event_oid, form_oid)
    items = {i.get("OID"): i for i in document.iterfind(".//odm:ItemDef", NS)}
    groups = {g.get("OID"): g for g in document.iterfind(".//odm:ItemGroupDef", NS)}
    found: dict[str, object] = {}
    for group in form.iterfind("odm:ItemGroupData", NS):
        repeat = group.get("ItemGroupRepeatKey")
        for data in group.iterfind("odm:ItemData", NS):
            name = items[data.get("ItemOID")].get("Name")
            value = data.get("Value")
            base, _dot, option = name.partition(".")
            if repeat:
                group_name = _group_item(entry, base)
                if base == group_name:  # the row id
                    found[f"{group_name}[{repeat}]._row_id"] = value
                    continue
                key = f"{group_name}[{repeat}].{base}"
            else:
                key = base
            if option and option != "_row_id":
                if value == "1":
                    found.setdefault(key, set()).add(option)
                else:
                    found.setdefault(key, set())
            else:
                found[key] = value
        assert groups[group.get("ItemGroupOID")].get("Repeating") == ("Yes" if repeat else "No")
    return found


def _group_item(entry: CrfEntry, name: str) -> str:
    schema = schema_for(entry.crf)
    for group in schema.groups:
        if name == group.name or any(child.name == name for child in group.children):
            return group.name
    raise AssertionError(name)



# --- The data of this module (made once, rolled back at the end) ----------------------------

# Recognisable values in the identifying items (initials, date of birth) of one participant.
CANARY = {"initials": "QXZ", "date_of_birth": date(1911, 11, 11)}


def make_trial_data() -> None:
    """Participants with data in the four seed trials: ASC-DU randomized at two sites (one
    participant with a serious AE and the canary identifiers, one with an unscheduled visit),
    ADSVF-SSC-HANDS assigned, the registry at two sites, EASC-RA in its first dose cohort."""
    rng = random.Random(8)
    participant_with_data("ASC-DU", "TLS", rng, adverse_events=2, overrides=CANARY)
    participant_with_data("ASC-DU", "TLS", rng)
    other = participant_with_data("ASC-DU", "GRE", rng)
    extra = visit_add_unscheduled(other, user=system_user(), label="Ulcer check", planned_date=other.site.today() - timedelta(days=5),
                                  reason="Ulcer check")
    visit_record_date(extra, user=system_user(), visit_date=other.site.today() - timedelta(days=5))
    for trial_code, sites in (("ADSVF-SSC-HANDS", ("INCMNSZ", "INCMNSZ")), ("SSC-FATGRAFT-REG", ("TLS", "MEX")),
                              ("EASC-RA", ("MAD-LP", "MAD-LP"))):
        for site_code in sites:
            participant_with_data(trial_code, site_code, rng)


@pytest.fixture(scope="module")
def _trial_data(django_db_setup, django_db_blocker):
    """The seeds, the demo accounts and make_trial_data(), once per module, inside a transaction
    rolled back at the end (each test runs in a savepoint inside it)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
                protocol_load([SEEDS], user=system_user())
                call_command("load_demo", "--no-participants", verbosity=0, stdout=StringIO())
                make_trial_data()
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def trial_data(_trial_data, db):
    """The data of make_trial_data()."""


def arm_leaks(content: bytes, trial: Trial) -> list[str]:
    """The arm codes and labels of the trial found in a file, any case, anywhere (no exception for
    protocol texts: the blinded writers mask arm names even there)."""
    text = content.decode("utf-8", errors="replace").lower()
    return sorted({word for word in arm_words(trial) if word.lower() in text})


# --- Tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("trial_code", sorted(SEED_SITES))
def test_odm_of_each_seed_trial_validates_and_reads_back_equal(trial_data, trial_code):
    spec = spec_for("datamanager", trial_code)
    content, ticks = export_bytes(odm, spec)
    document = parse_valid(content)
    assert sum(ticks) == odm.count(spec) > 0
    root = document.getroot()
    assert root.get("FileType") == "Snapshot" and root.get("ODMVersion") == "1.3.2" and root.get("FileOID")
    entries = CrfEntry.objects.filter(participant__trial__code=trial_code).select_related("crf", "visit__definition", "participant")
    assert entries.count() >= 8
    for entry in entries:
        expected = {
            key: (value if isinstance(value, str) and key.endswith("._row_id") else as_odm(*value))
            for key, value in expected_values(entry).items()
        }
        assert read_entry(document, entry) == expected, entry.crf_code
    # Participants, visits and adverse events read back too.
    values = item_values(document)
    for participant in Participant.objects.filter(trial__code=trial_code):
        key = (participant.screening_number, odm.SUBJECT_EVENT, None, "F.SUBJECT", "IG.SUBJECT", None)
        assert values[key + ("IT.SUBJECT.status",)] == participant.status
        assert values[key + ("IT.SUBJECT.consent_date",)] == participant.consent_date.isoformat()
        assert values[key + ("IT.SUBJECT.site_code",)] == participant.site.code
        for ae in participant.adverse_events.all():
            row = (participant.screening_number, odm.SUBJECT_EVENT, None, "F.AE", "IG.AE", str(ae.number))
            assert values[row + ("IT.AE.verbatim_term",)] == ae.verbatim_term
            assert values[row + ("IT.AE.grade",)] == str(ae.grade)
            assert values[row + ("IT.AE.seriousness.hospitalisation",)] == ("1" if "hospitalisation" in ae.seriousness else "0")
        for visit in participant.visits.filter(visit_date__isnull=False, definition__isnull=False):
            key = (participant.screening_number, f"SE.{visit.definition.code}", None, "F.VISIT", "IG.VISIT", None, "IT.VISIT.visit_date")
            assert values[key] == visit.visit_date.isoformat()


def test_metadata_maps_types_ranges_code_lists_and_repeating_groups(trial_data):
    document = parse_valid(export_bytes(odm, spec_for("datamanager", "ASC-DU"))[0])
    defs = {i.get("OID"): i for i in document.iterfind(".//odm:ItemDef", NS)}
    number = defs["IT.DU_ASSESS.number_active_du"]
    assert number.get("DataType") == "integer"
    checks = {c.get("Comparator"): c.findtext("odm:CheckValue", namespaces=NS) for c in number.iterfind("odm:RangeCheck", NS)}
    assert checks == {"GE": "0", "LE": "50"}
    length = defs["IT.DU_ASSESS.length_mm"]
    assert (length.get("DataType"), length.get("SignificantDigits")) == ("float", "1")
    assert length.find("odm:MeasurementUnitRef", NS).get("MeasurementUnitOID") == "MU.mm"
    assert defs["IT.DU_ASSESS.assessment_date"].get("DataType") == "date"
    assert defs["IT.DU_ASSESS.hand"].find("odm:CodeListRef", NS).get("CodeListOID") == "CL.DU_ASSESS.hand"
    assert defs["IT.DU_ASSESS.finger"].get("DataType") == "integer"  # integer codes
    assert defs["IT.DU_ASSESS.active"].find("odm:CodeListRef", NS).get("CodeListOID") == odm.YES_NO_OID
    assert defs["IT.DU_ASSESS.active"].findtext("odm:Question/odm:TranslatedText", namespaces=NS) == "Active ulcer"
    hand = document.find(".//odm:CodeList[@OID='CL.DU_ASSESS.hand']", NS)
    assert [(i.get("CodedValue"), i.findtext("odm:Decode/odm:TranslatedText", namespaces=NS)) for i in hand] == [
        ("right", "Right"), ("left", "Left")]
    groups = {g.get("OID"): g for g in document.iterfind(".//odm:ItemGroupDef", NS)}
    assert groups["IG.DU_ASSESS.ULCERS"].get("Repeating") == "Yes"
    assert groups["IG.DU_ASSESS.ASSESSMENT"].get("Repeating") == "No"
    # A multiple choice is one yes/no item per choice.
    assert defs["IT.CAPILLAROSCOPY.fingers_examined.r2"].findtext("odm:Question/odm:TranslatedText", namespaces=NS) == (
        "Fingers examined: Right index")
    events = {e.get("OID"): e for e in document.iterfind(".//odm:StudyEventDef", NS)}
    assert events["SE.D0"].get("Type") == "Scheduled" and events["SE.D0"].get("Repeating") == "No"
    assert events[odm.UNSCHEDULED].get("Repeating") == "Yes"
    d0_forms = [r.get("FormOID") for r in events["SE.D0"].iterfind("odm:FormRef", NS)]
    assert d0_forms[0] == "F.VISIT" and "F.DU_ASSESS.V1" in d0_forms and "F.COCHIN.V1" in d0_forms
    # The unscheduled visit of the GRE participant, with its repeat key.
    unscheduled = document.findall(f".//odm:StudyEventData[@StudyEventOID='{odm.UNSCHEDULED}']", NS)
    assert [e.get("StudyEventRepeatKey") for e in unscheduled] == ["1"]
    # Sites as locations the subjects point at.
    locations = {loc.get("OID") for loc in document.iterfind(".//odm:AdminData/odm:Location", NS)}
    refs = {ref.get("LocationOID") for ref in document.iterfind(".//odm:SiteRef", NS)}
    assert refs == {"LOC.ASC-DU.TLS", "LOC.ASC-DU.GRE"} and refs <= locations


def test_blinded_odm_names_no_arm_and_unblinded_gives_each_allocation(trial_data):
    trial = Trial.objects.get(code="ASC-DU")
    assert Allocation.objects.filter(participant__trial=trial).count() == 3
    for username in ("datamanager", "sponsor.toulouse", "dsmb.statistician"):
        content, _ticks = export_bytes(odm, spec_for(username, "ASC-DU"))  # blinded: the default
        parse_valid(content)
        assert arm_leaks(content, trial) == [], username
        # The visit "Day 0 - digital injection (AdMSC or placebo)" keeps its name, arms masked.
        assert b"Day 0 - digital injection ([blinded] or [blinded])" in content
        assert b"IG.ALLOCATION" not in content and b"CL.ARM" not in content and b"kit_code" not in content
        for kit in Allocation.objects.filter(participant__trial=trial).values_list("kit_code", flat=True):
            assert kit and kit.encode() not in content
    # The scan finds arms when they are there: the DSMB's unblinded export gives each participant's arm.
    content, _ticks = export_bytes(odm, spec_for("dsmb.statistician", "ASC-DU", blinded=False))
    document = parse_valid(content)
    assert arm_leaks(content, trial) != []
    values = item_values(document)
    for allocation in Allocation.objects.filter(participant__trial=trial).select_related("participant", "arm"):
        key = (allocation.participant.screening_number, odm.SUBJECT_EVENT, None, "F.SUBJECT", "IG.ALLOCATION", None)
        assert values[key + ("IT.ALLOCATION.arm_code",)] == allocation.arm.code
        assert values[key + ("IT.ALLOCATION.kit_code",)] == allocation.kit_code


def test_identifying_items_are_left_out_unless_asked(trial_data):
    content, _ticks = export_bytes(odm, spec_for("datamanager", "ASC-DU"))
    assert b"QXZ" not in content and b"1911-11-11" not in content
    assert b"IT.DEMOG.initials" not in content and b"IT.DEMOG.date_of_birth" not in content
    document = parse_valid(content)
    ages = [v for k, v in item_values(document).items() if k[-1] == "IT.SUBJECT.age_at_consent"]
    assert len(ages) == 3 and all(v.isdigit() for v in ages)
    with_identifiers = export_bytes(odm, spec_for("datamanager", "ASC-DU", identifiers=True))[0]
    parse_valid(with_identifiers)
    assert b'Value="QXZ"' in with_identifiers and b'Value="1911-11-11"' in with_identifiers


def site_sponsor(site: Site):
    """A sponsor who may export one site of the trial only."""
    from trials.protocol.services import study_role_grant

    who = get_user_model().objects.create_user(username=f"sponsor.{site.code.lower()}.only")
    study_role_grant(user=who, trial=site.trial, role="sponsor", site=site, granted_by=system_user(), reason="Test")
    return who


def subject_keys(spec: ExportSpec) -> list[str]:
    document = parse_valid(export_bytes(odm, spec)[0])
    return sorted(s.get("SubjectKey") for s in document.iterfind(".//odm:SubjectData", NS))


def test_scope_sites_and_cutoff(trial_data):
    tls = Site.objects.get(trial__code="ASC-DU", code="TLS")
    every = spec_for("datamanager", "ASC-DU")
    only_tls = ExportSpec(user_id=every.user_id, trial_id=every.trial_id, site_ids=(tls.pk,))
    assert len(subject_keys(every)) == 3
    tls_subjects = sorted(Participant.objects.filter(site=tls).values_list("screening_number", flat=True))
    assert subject_keys(only_tls) == tls_subjects
    # Sites the requester may not export are dropped even if the spec names them.
    asked = ExportSpec(user_id=site_sponsor(tls).pk, trial_id=every.trial_id, site_ids=every.site_ids)
    assert subject_keys(asked) == tls_subjects
    # A cut-off before any data: the metadata, no subject.
    yesterday = ExportSpec(user_id=every.user_id, trial_id=every.trial_id, site_ids=every.site_ids,
                           cutoff=timezone.now().date() - timedelta(days=1))
    document = parse_valid(export_bytes(odm, yesterday)[0])
    assert document.find(".//odm:SubjectData", NS) is None and document.find(".//odm:ItemDef", NS) is not None
    assert document.getroot().get("AsOfDateTime")


def test_empty_export_is_a_valid_metadata_file(trial_data):
    spec = spec_for("datamanager", "ASC-DU")
    empty = ExportSpec(user_id=spec.user_id, trial_id=spec.trial_id, site_ids=())
    content, ticks = export_bytes(odm, empty)
    document = parse_valid(content)
    assert sum(ticks) == odm.count(empty) == 0
    assert document.find(".//odm:ClinicalData", NS) is not None and document.find(".//odm:SubjectData", NS) is None
    assert document.find(".//odm:FormDef[@OID='F.DU_ASSESS.V1']", NS) is not None


def test_queries_do_not_grow_with_participants(trial_data, django_assert_max_num_queries):
    """A batch of participants costs one query per stream, whatever its size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    both = spec_for("datamanager", "ASC-DU")
    tls = Site.objects.get(trial__code="ASC-DU", code="TLS")
    counts = []
    for spec in (ExportSpec(user_id=both.user_id, trial_id=both.trial_id, site_ids=(tls.pk,)), both):
        with CaptureQueriesContext(connection) as queries:
            export_bytes(odm, spec)
        counts.append(len(queries))
    assert Participant.objects.filter(trial__code="ASC-DU").count() > Participant.objects.filter(site=tls).count()
    assert counts[0] == counts[1]


def test_a_changed_crf_version_gets_its_own_form_and_keeps_unchanged_item_oids(trial_data, tmp_path):
    import shutil

    import yaml

    shutil.copytree(SEEDS, tmp_path / "seeds")
    vitals = tmp_path / "seeds" / "crfs" / "vitals.yaml"
    data = yaml.safe_load(vitals.read_text())
    changed = next(f for f in data["fields"] if f["name"] == "heart_rate")
    changed["max"] = 200  # a new range: a new definition of the item
    vitals.write_text(yaml.safe_dump(data, sort_keys=False))
    protocol_load([tmp_path / "seeds"], user=system_user())
    participant = participant_with_data("ASC-DU", "TLS", random.Random(3), visits=4, adverse_events=0)
    new = CrfEntry.objects.get(participant=participant, crf_code="VITALS", visit__definition__code="SCREEN")
    assert new.crf.version == 2
    document = parse_valid(export_bytes(odm, spec_for("datamanager", "ASC-DU"))[0])
    forms = {f.get("OID") for f in document.iterfind(".//odm:FormDef", NS)}
    assert {"F.VITALS.V1", "F.VITALS.V2"} <= forms
    defs = {i.get("OID") for i in document.iterfind(".//odm:ItemDef", NS)}
    assert {"IT.VITALS.weight_kg", "IT.VITALS.heart_rate", "IT.VITALS.heart_rate.V2"} <= defs
    assert "IT.VITALS.weight_kg.V2" not in defs
    old = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="VITALS", crf__version=1).first()
    for entry in (old, new):
        expected = {key: as_odm(*value) for key, value in expected_values(entry).items()}
        assert read_entry(document, entry) == expected
    v2 = document.find(".//odm:ItemGroupDef[@OID='IG.VITALS.BLOOD_PRESSURE_AND_HEART_RATE.V2']", NS)
    assert "IT.VITALS.heart_rate.V2" in [r.get("ItemOID") for r in v2]


def test_pooled_odm_has_a_study_per_trial(trial_data):
    who = user("datamanager")
    from trials.protocol.selectors import sites_for_user

    sites = tuple(sites_for_user(who, include_inactive=True).values_list("pk", flat=True))
    spec = ExportSpec(user_id=who.pk, trial_id=None, site_ids=sites, pooled_crf="VITALS")
    content, ticks = export_bytes(odm, spec)
    document = parse_valid(content)
    assert sum(ticks) == odm.count(spec)
    studies = [s.get("OID") for s in document.iterfind("odm:Study", NS)]
    clinical = [c.get("StudyOID") for c in document.iterfind("odm:ClinicalData", NS)]
    trials = sorted(set(CrfEntry.objects.filter(crf_code="VITALS").values_list("participant__trial__code", flat=True)))
    assert len(trials) >= 2 and studies == clinical == [f"ST.{code}" for code in trials]
    forms = {f.get("OID") for f in document.iterfind(".//odm:FormDef", NS)}
    assert forms <= {"F.VISIT", "F.SUBJECT", "F.VITALS.V1"}
    for entry in CrfEntry.objects.filter(crf_code="VITALS").select_related("crf", "visit__definition", "participant"):
        assert read_entry(document, entry) == {key: as_odm(*value) for key, value in expected_values(entry).items()}


def test_missing_codes_methods_conditions_and_sdtm_aliases(trial_data):
    """ODM 1.3.2 (issue 17): an item answered with a missing-data code is ItemData IsNull="Yes"
    with an Annotation (the code as a Flag of code list CL.MISSING, the reason as Comment) instead
    of vanishing; a calculated item's ItemRef names a MethodDef, an item with show_if a ConditionDef
    (CollectionExceptionCondition, §3.1.4.1.1: the item is *not* collected when it holds, so the
    CEL is the negation); SDTM names as Alias Context="SDTM"."""
    vitals = CrfEntry.objects.filter(participant__trial__code="ASC-DU", crf_code="VITALS").select_related("visit", "participant").first()
    crf_entry_save_answers(
        user=system_user(), visit=vitals.visit, crf_code="VITALS", complete=True, reason="Scale broken",
        answers={"height_cm": Decimal("165"), "systolic_bp": 120, "diastolic_bp": 80, "heart_rate": 70},
        missing={"weight_kg": {"code": "not_done", "reason": "Scale broken"}},
    )
    document = parse_valid(export_bytes(odm, spec_for("datamanager", "ASC-DU"))[0])
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{vitals.participant.screening_number}']", NS)
    nulls = [data for data in subject.iterfind(".//odm:ItemData[@ItemOID='IT.VITALS.weight_kg']", NS) if data.get("IsNull") == "Yes"]
    assert len(nulls) == 1 and nulls[0].get("Value") is None
    assert nulls[0].findtext("odm:Annotation/odm:Comment", namespaces=NS) == "Scale broken"
    flag = nulls[0].find("odm:Annotation/odm:Flag/odm:FlagValue", NS)
    assert (flag.text, flag.get("CodeListOID")) == ("not_done", "CL.MISSING")
    codes = [i.get("CodedValue") for i in document.iterfind(".//odm:CodeList[@OID='CL.MISSING']/odm:CodeListItem", NS)]
    assert codes == ["not_done", "unknown", "not_applicable"]

    ref = document.find(".//odm:ItemRef[@ItemOID='IT.VITALS.bmi']", NS)
    method = document.find(f".//odm:MethodDef[@OID='{ref.get('MethodOID')}']", NS)
    assert method.get("Type") == "Computation"
    assert method.findtext("odm:FormalExpression", namespaces=NS) == "bmi(height_cm=height_cm, weight_kg=weight_kg)"
    ref = document.find(".//odm:ItemRef[@ItemOID='IT.DEMOG.smoking_stop_date']", NS)
    condition = document.find(f".//odm:ConditionDef[@OID='{ref.get('CollectionExceptionConditionOID')}']", NS)
    expression = condition.find("odm:FormalExpression", NS)
    assert (expression.get("Context"), expression.text) == ("CEL", "!(smoking_status == 'former')")
    alias = document.find(".//odm:ItemDef[@OID='IT.VITALS.weight_kg']/odm:Alias", NS)
    assert (alias.get("Context"), alias.get("Name")) == ("SDTM", "VS.VSORRES where VSTESTCD=WEIGHT")


def test_audit_records_name_who_changed_each_form_when_and_why(trial_data):
    """ODM 1.3.2 §3.1.3 AuditRecord: each FormData carries the entry's last change from the audit
    trail — UserRef to a User defined in AdminData, LocationRef to the site, DateTimeStamp and
    ReasonForChange (the reason recorded with the change)."""
    entry = CrfEntry.objects.filter(participant__trial__code="EASC-RA", crf_code="VITALS").select_related(
        "visit__definition", "participant__site", "crf").first()
    saved = crf_entry_save_answers(
        user=user("coordinator.madrid"), visit=entry.visit, crf_code="VITALS", complete=True, reason="Transcription error",
        answers={**{k: v for k, v in entry.answers.items() if k != "bmi"}, "heart_rate": 71},
    )
    document = parse_valid(export_bytes(odm, spec_for("datamanager", "EASC-RA"))[0])
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{entry.participant.screening_number}']", NS)
    event = subject.find(f"odm:StudyEventData[@StudyEventOID='SE.{entry.visit.definition.code}']", NS)
    form = event.find(f"odm:FormData[@FormOID='F.VITALS.V{entry.crf.version}']", NS)
    record = form.find("odm:AuditRecord", NS)
    last = saved.history.order_by("-history_date", "-history_id").first()
    assert record.findtext("odm:ReasonForChange", namespaces=NS) == "Transcription error"
    assert datetime.fromisoformat(record.findtext("odm:DateTimeStamp", namespaces=NS)) == last.history_date
    user_oid = record.find("odm:UserRef", NS).get("UserOID")
    login = document.findtext(f".//odm:AdminData/odm:User[@OID='{user_oid}']/odm:LoginName", namespaces=NS)
    assert login == "coordinator.madrid"
    assert record.find("odm:LocationRef", NS).get("LocationOID") == subject.find("odm:SiteRef", NS).get("LocationOID")


def test_granularity_says_how_much_of_the_trial_the_file_holds(trial_data):
    """ODM 1.3.2 §2.1 (ODM element, Granularity): "All" the entire study; "SingleSite" the clinical
    data of one site; a subset of forms has no value of its own, so the optional attribute is left
    out rather than claiming "All"."""
    whole = parse_valid(export_bytes(odm, spec_for("datamanager", "ASC-DU"))[0]).getroot()
    assert whole.get("Granularity") == "All"
    one_site = spec_for("datamanager", "ASC-DU")
    one_site = ExportSpec(user_id=one_site.user_id, trial_id=one_site.trial_id, site_ids=one_site.site_ids[:1])
    assert Site.objects.filter(trial__code="ASC-DU").count() > 1
    assert parse_valid(export_bytes(odm, one_site)[0]).getroot().get("Granularity") == "SingleSite"
    forms = parse_valid(export_bytes(odm, spec_for("datamanager", "ASC-DU", crf_codes=("VITALS",)))[0]).getroot()
    assert "Granularity" not in forms.attrib


def test_an_unblinded_export_of_a_trial_without_arms_is_valid(trial_data):
    """ODM 1.3.2: a CodeList has one or more CodeListItems (or an ExternalCodeList); the registry
    has no arms, so its unblinded export has no arm code list rather than an empty one (found by
    the ODM import's round trip)."""
    assert not Arm.objects.filter(trial__code="SSC-FATGRAFT-REG").exists()
    document = parse_valid(export_bytes(odm, spec_for("datamanager", "SSC-FATGRAFT-REG", blinded=False))[0])
    assert document.find(".//odm:CodeList[@OID='CL.ARM']", NS) is None
    assert document.find(".//odm:ItemDef[@OID='IT.ALLOCATION.arm_code']", NS) is not None
