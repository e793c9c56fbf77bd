"""Synthetic trials of any size, for benchmarks and load tests (`manage.py synth_trial`).

A synthetic trial is made the way a real one is: its protocol is written as YAML files (a trial
file and one file per CRF, the format of docs/seed-format.md) and loaded with
`trials.protocol.loader.protocol_load`, so it passes every check a seed trial passes. Its data
(participants screened, consented, found eligible, enrolled and allocated; every visit done; every
CRF complete; some adverse events) are then written in bulk with `edc.audit.audited_bulk_create`,
one history row per row with the reason "synthetic trial". Writing them through the per-entry
services would take hours for 100,000 entries; the rows are built to be the rows those services
leave behind (statuses, dates, subject numbers and their counters, consent, the CRF version each
visit asks for, revision 1, answers in the engine's storage form), which tests/protocol/
test_synth_trial.py checks against the CRF engine.

Everything is drawn from pseudo-random generators seeded with `seed`, the participant's index and
the trial code, so the same parameters give the same trial (dates are counted back from the day
of generation: the last visit of every participant is in the past).
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import reset_queries, transaction
from django.utils import timezone

from edc.audit import audited_bulk_create, audited_save, system_user
from edc.db import analyze
from trials.participants.models import (
    Allocation,
    AllocationList,
    AllocationMethod,
    AllocationSlot,
    Consent,
    CriterionAnswer,
    EligibilityAnswer,
    NumberKind,
    NumberSequence,
    Participant,
    ParticipantStatus,
)
from trials.participants.services import KIT_ALPHABET, permuted_blocks
from trials.protocol.loader import protocol_load
from trials.protocol.models import Trial, VisitCrf, VisitDefinition
from trials.safety.models import ActionTaken, AdverseEvent, Causality, ClockKind, Outcome, Procedure, ReportingClock, Seriousness
from trials.protocol import scores
from trials.protocol.engine import CrfSchema, Item, schema_for, to_storage
from trials.visits.models import CrfEntry, EntryStatus, Visit, VisitStatus

REASON = "synthetic trial"
CODE_MAX = 36  # CRF codes are "<trial code>-Cnn" (at most 40 characters)
# (city, country, IANA time zone) of the sites, in turn.
CITIES = (
    ("Paris", "FR", "Europe/Paris"),
    ("Mexico City", "MX", "America/Mexico_City"),
    ("Lyon", "FR", "Europe/Paris"),
    ("Madrid", "ES", "Europe/Madrid"),
    ("Montreal", "CA", "America/Toronto"),
    ("Berlin", "DE", "Europe/Berlin"),
    ("Guadalajara", "MX", "America/Mexico_City"),
    ("Lisbon", "PT", "Europe/Lisbon"),
)
# The item types of a CRF, in turn: item n has ITEM_TYPES[(n - 1) % 10].
ITEM_TYPES = ("integer", "decimal", "single_choice", "text", "date", "decimal", "integer", "single_choice", "yes_no", "text")
PREFIX = {"integer": "int", "decimal": "dec", "single_choice": "choice", "text": "text", "date": "date", "yes_no": "yn"}
CODELISTS = {
    "grade": [{"code": n, "label": label} for n, label in enumerate(("None", "Mild", "Moderate", "Severe", "Very severe"))],
    "finding": [
        {"code": "absent", "label": "Absent"},
        {"code": "present", "label": "Present"},
        {"code": "not_assessed", "label": "Not assessed"},
    ],
}
# Free text as sites write it: commas, quotes, accents and the odd semicolon reach every export.
TEXTS = (
    "No change", "Stable", "Improved since last visit", "Slight worsening, to be followed",
    'Patient reports "much better"', "Contrôle sans particularité", "Seen with her daughter; no concern",
    "Dose taken at 08:00, with food", "Skin intact", "Reviewed by the investigator",
)
AE_TERMS = ("Headache", "Nausea", "Fatigue", "Injection site pain", "Rash", "Dizziness", "Cough", "Arthralgia",
            "Upper respiratory tract infection", "Diarrhoea")
VISIT_INTERVAL_DAYS = 14
WINDOW_DAYS = 3
RECRUITMENT_DAYS = 720
OPTIONAL_BLANK_RATE = 0.02  # an optional item is left unanswered this often


@dataclass(frozen=True)
class SynthParams:
    """What a synthetic trial is made of; the same parameters make the same trial."""

    code: str
    participants: int
    visits: int = 10
    crfs: int = 5
    items: int = 30
    sites: int = 4
    seed: int = 1
    randomized: bool = False
    repeating_group: bool = False  # the last CRF also has a repeating group of 1-3 rows
    aes_per_participant: float = 1.0

    def check(self) -> None:
        """Refuse parameters that cannot make a valid trial, with a message naming them."""
        errors = []
        if len(self.code) > CODE_MAX:
            errors.append(f"--code: at most {CODE_MAX} characters")
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9_-]*", self.code):
            errors.append("--code: capitals, digits, '_' and '-' only (e.g. SYN-2000)")
        for name, value, low, high in (
            ("participants", self.participants, 1, 1_000_000), ("visits", self.visits, 1, 99), ("crfs", self.crfs, 1, 99),
            ("items", self.items, 1, 999), ("sites", self.sites, 1, 99),
        ):
            if not low <= value <= high:
                errors.append(f"--{name}: between {low} and {high}")
        if not 0 <= self.aes_per_participant <= 4:
            errors.append("--aes: between 0 and 4 per participant")
        if self.randomized and math.ceil(self.participants / self.sites) > 10000:
            errors.append("--randomized: at most 10000 participants per site (the allocation list's limit)")
        if errors:
            raise ValidationError(errors)

    @property
    def source(self) -> str:
        """How the trial was made, stored on it: a second run with the same parameters is a no-op."""
        return "Synthetic trial made by manage.py synth_trial: " + json.dumps(asdict(self), sort_keys=True)


@dataclass
class SynthResult:
    trial: Trial
    created: bool
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    analyzed: list[str] = field(default_factory=list)  # the tables ANALYZEd after the load (PostgreSQL)


# --- The protocol, as the loader reads it ---------------------------------------------------


def crf_code(params: SynthParams, number: int) -> str:
    return f"{params.code}-C{number:02d}"


def _item_spec(n: int) -> dict:
    kind = ITEM_TYPES[(n - 1) % len(ITEM_TYPES)]
    spec: dict[str, Any] = {"name": f"{PREFIX[kind]}_{n:02d}", "label": f"{kind.replace('_', ' ').capitalize()} item {n}", "type": kind}
    if kind == "integer":
        spec.update(min=0, max=200 if n % 2 else 20, unit="count" if n % 2 else "")
    elif kind == "decimal":
        spec.update(min=0, max=500, precision=1 if n % 3 else 2, unit="mg/L" if n % 2 else "kg")
    elif kind == "single_choice":
        spec.update(choices="grade" if n % 2 else "finding")
    if n % 3 == 1:
        spec["required"] = True
    return spec


def crf_definition(params: SynthParams, number: int) -> dict:
    """CRF number `number` (1-based) as a CRF file holds it."""
    fields = [_item_spec(n) for n in range(1, params.items + 1)]
    if params.repeating_group and number == params.crfs:
        fields.append({
            "name": "lesions", "label": "Lesions", "type": "repeating_group", "min_rows": 1, "max_rows": 5,
            "fields": [
                {"name": "lesion_id", "label": "Lesion identifier", "type": "text", "required": True},
                {"name": "lesion_size_mm", "label": "Size", "type": "decimal", "precision": 1, "unit": "mm", "min": 0, "max": 100},
                {"name": "lesion_seen_on", "label": "Seen on", "type": "date"},
            ],
        })
    return {
        "code": crf_code(params, number),
        "title": f"Synthetic CRF {number} of {params.code}",
        "description": f"{params.items} generated items ({', '.join(sorted(set(ITEM_TYPES)))}).",
        "source": "manage.py synth_trial",
        "codelists": CODELISTS,
        "fields": fields,
    }


def trial_dates(params: SynthParams, today: date) -> dict[str, date]:
    """The calendar of the trial: the last visit of the last participant ends before `today`."""
    last_offset = VISIT_INTERVAL_DAYS * (params.visits - 1)
    latest_enrolment = today - timedelta(days=last_offset + WINDOW_DAYS + 4)
    start = latest_enrolment - timedelta(days=RECRUITMENT_DAYS + 14 + 30)
    return {"latest_enrolment": latest_enrolment, "start": start, "consent_approved": start - timedelta(days=20)}


def trial_definition(params: SynthParams, today: date) -> dict:
    """The trial file: N sites, two arms, V visits each asking for every CRF."""
    dates = trial_dates(params, today)
    half = math.ceil(params.participants / 2)
    trial: dict[str, Any] = {
        "code": params.code,
        "title": f"Synthetic trial {params.code}: {params.participants} participants, {params.visits} visits, "
                 f"{params.crfs} CRFs of {params.items} items",
        "short_title": f"Synthetic {params.code}",
        "phase": "2",
        "study_type": "interventional",
        "design": "randomized" if params.randomized else "open_label",
        "intervention_model": "parallel",
        "primary_purpose": "treatment",
        "masking": {"level": "double", "masked": ["participant", "investigator"]} if params.randomized
        else {"level": "none", "masked": []},
        "target_enrolment": params.participants,
        "status": "recruiting",
        "start_date": dates["start"],
        "sponsor": "Synthetic data (not a real trial)",
        "conditions": ["Synthetic condition"],
        "min_age_years": 18,
        "summary": "Generated for benchmarks and load tests; every value is made up.",
        "source": params.source,
        "numbering": {"screening": "{site}-S{seq:05d}", "subject": "{site}-{seq:05d}"},
        "consent_documents": [{"version": "1.0", "approved_on": dates["consent_approved"], "title": "Synthetic consent"}],
        "sites": [
            {
                "code": f"S{n:02d}", "name": f"Synthetic site {n}", "city": CITIES[(n - 1) % len(CITIES)][0],
                "country": CITIES[(n - 1) % len(CITIES)][1], "time_zone": CITIES[(n - 1) % len(CITIES)][2],
                "recruitment_status": "recruiting",
            }
            for n in range(1, params.sites + 1)
        ],
        "arms": [
            {"code": "A", "label": "Active", "type": "experimental", "planned_size": half, "intervention": "Synthetic product"},
            {"code": "B", "label": "Placebo" if params.randomized else "Control",
             "type": "placebo_comparator" if params.randomized else "no_intervention", "planned_size": half},
        ],
        "criteria": [
            {"code": "I01", "kind": "inclusion", "text": "Aged 18 years or over."},
            {"code": "E01", "kind": "exclusion", "text": "Known allergy to the study product."},
        ],
        "visits": [
            {
                "code": f"V{n:02d}", "label": "Baseline" if n == 1 else f"Visit {n}",
                "kind": "baseline" if n == 1 else ("end_of_study" if n == params.visits else "follow_up"),
                "day_offset": VISIT_INTERVAL_DAYS * (n - 1),
                "window_before_days": 0 if n == 1 else WINDOW_DAYS, "window_after_days": WINDOW_DAYS,
                "crfs": [crf_code(params, c) for c in range(1, params.crfs + 1)],
            }
            for n in range(1, params.visits + 1)
        ],
    }
    if params.randomized:
        trial["randomization"] = {"block_sizes": [2, 4], "stratify_by_site": True}
    return trial


def protocol_write(params: SynthParams, folder: Path, today: date) -> Path:
    """Write the trial and its CRFs as YAML files under `folder` (crfs/ + the trial file)."""
    (folder / "crfs").mkdir(parents=True, exist_ok=True)
    for number in range(1, params.crfs + 1):
        path = folder / "crfs" / f"{crf_code(params, number).lower()}.yaml"
        path.write_text(yaml.safe_dump(crf_definition(params, number), sort_keys=False, allow_unicode=True), encoding="utf-8")
    trial_file = folder / f"{params.code.lower()}.yaml"
    trial_file.write_text(yaml.safe_dump(trial_definition(params, today), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return folder


# --- Answers --------------------------------------------------------------------------------


def _day_between(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, max(0, (last - first).days)))


def _value(item: Item, rng: random.Random, first_day: date, last_day: date) -> Any:
    """A parsed answer valid for the item (the form's cleaned value)."""
    kind = item.type
    if kind == "integer":
        return rng.randint(int(item.min), int(item.max))
    if kind == "decimal":
        scale = 10 ** (item.precision or 0)
        return Decimal(rng.randint(int(item.min * scale), int(item.max * scale))) / scale
    if kind == "single_choice":
        return rng.choice(item.choices)[0]
    if kind == "yes_no":
        return rng.random() < 0.5
    if kind == "date":
        return _day_between(rng, first_day, last_day)
    if kind == "file":
        return None  # files are uploaded on the CRF page; synthetic data has none
    return rng.choice(TEXTS)


def entry_answers(schema: CrfSchema, rng: random.Random, *, consent_date: date, visit_date: date) -> dict:
    """A complete CRF entry's answers in the engine's storage form (CrfEntry.answers): every
    required item answered, a few optional ones left empty, dates between consent and the visit."""
    answers: dict[str, Any] = {}
    for item in schema.items:
        if item.type == "repeating_group":
            rows = []
            for index in range(rng.randint(max(1, item.min_rows or 1), min(3, item.max_rows or 3))):
                row: dict[str, Any] = {"_row_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex}
                for child in item.children:
                    value = f"L{index + 1}" if child.name == "lesion_id" else _value(child, rng, consent_date, visit_date)
                    row[child.name] = to_storage(child, value)
                rows.append(row)
            answers[item.name] = rows
            continue
        if not item.is_input:
            continue
        blank = not item.required and rng.random() < OPTIONAL_BLANK_RATE
        answers[item.name] = None if blank else to_storage(item, _value(item, rng, consent_date, visit_date))
    # The engine stores top-level items first, then each group (trials.protocol.engine.validate_answers).
    return {k: v for k, v in answers.items() if not isinstance(v, list)} | {k: v for k, v in answers.items() if isinstance(v, list)}


# --- Writing --------------------------------------------------------------------------------


def _chunks(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(total, start + size))


class _Writer:
    """Builds and bulk-writes the rows of one synthetic trial, a chunk of participants at a time."""

    def __init__(self, params: SynthParams, trial: Trial, user, today: date):
        self.params, self.trial, self.user, self.today = params, trial, user, today
        self.sites = list(trial.sites.order_by("code"))
        self.zones = {site.pk: ZoneInfo(site.time_zone) for site in self.sites}
        self.arms = list(trial.arms.order_by("code"))
        self.document = trial.consent_documents.get()
        self.criteria = list(trial.criteria.order_by("order"))
        self.definitions = list(VisitDefinition.objects.filter(trial=trial).order_by("order"))
        self.links = {
            d.pk: list(VisitCrf.objects.filter(visit_definition=d).select_related("crf").order_by("order"))
            for d in self.definitions
        }
        self.schemas = {link.crf_id: schema_for(link.crf) for links in self.links.values() for link in links}
        self.dates = trial_dates(params, today)
        self.slots: dict[tuple[str, int], AllocationSlot] = {}
        self.counts: dict[str, int] = {}
        self.models: dict[str, type] = {}  # the models written, to ANALYZE after the load

    def rng(self, *parts: object) -> random.Random:
        return random.Random("/".join(map(str, (self.params.seed, self.params.code, *parts))))

    def create(self, model: type, rows: list, batch_size: int = 1000) -> list:
        self.counts[model.__name__] = self.counts.get(model.__name__, 0) + len(rows)
        self.models.setdefault(model.__name__, model)
        return audited_bulk_create(model, rows, user=self.user, reason=REASON, batch_size=batch_size)

    def allocation_list(self) -> None:
        """The randomization list a data manager would generate (allocation_list_generate), one
        stratum per site, enough slots for the participants of the largest site."""
        seed = f"synthetic/{self.params.seed}/{self.params.code}"
        count = math.ceil(self.params.participants / len(self.sites))
        strata = [f"site={site.code}" for site in self.sites]
        block_sizes = list(self.trial.randomization["block_sizes"])
        allocation_list = audited_save(
            AllocationList(trial=self.trial, seed=seed, block_sizes=block_sizes, slots_per_stratum=count, strata=strata,
                           generated_by=self.user),
            user=self.user, reason=REASON,
        )
        self.counts["AllocationList"] = 1
        by_code = {arm.code: arm for arm in self.arms}
        kit_rng = random.Random(f"{seed}/kits")
        used: set[str] = set()
        rows = []
        for stratum in strata:
            blocks = permuted_blocks(seed=seed, stratum=stratum, arms=[a.code for a in self.arms], ratio=[1, 1],
                                     block_sizes=block_sizes, count=count)
            for sequence, (block, size, code) in enumerate(blocks, start=1):
                kit = ""
                while not kit or kit in used:
                    kit = "K" + "".join(kit_rng.choice(KIT_ALPHABET) for _ in range(6))
                used.add(kit)
                rows.append(AllocationSlot(allocation_list=allocation_list, stratum=stratum, sequence=sequence, block=block,
                                           block_size=size, arm=by_code[code], kit_code=kit))
        for slot in self.create(AllocationSlot, rows):
            self.slots[(slot.stratum, slot.sequence)] = slot

    def participants(self, indexes: range) -> None:
        """Participants `indexes` (0-based across the trial) with everything they have."""
        people = []
        for index in indexes:
            site = self.sites[index % len(self.sites)]
            seq = index // len(self.sites) + 1
            rng = self.rng("participant", index)
            enrolled = self.dates["latest_enrolment"] - timedelta(days=rng.randint(0, RECRUITMENT_DAYS))
            consented = enrolled - timedelta(days=rng.randint(0, 14))
            numbering = self.trial.numbering
            person = Participant(
                trial=self.trial, site=site,
                screening_number=numbering["screening"].format(trial=self.trial.code, site=site.code, seq=seq),
                subject_number=numbering["subject"].format(trial=self.trial.code, site=site.code, seq=seq),
                # on treatment from the enrolment day (participant_start_treatment)
                status=ParticipantStatus.ON_TREATMENT, status_date=enrolled, screening_date=consented,
                consent_date=consented, consent_document=self.document, enrolment_date=enrolled,
                first_treatment_date=enrolled,
            )
            person.synth_index, person.synth_seq = index, seq
            people.append(person)
        saved = self.create(Participant, people)
        for person, original in zip(saved, people, strict=True):
            person.synth_index, person.synth_seq = original.synth_index, original.synth_seq
        self._consents_and_eligibility(saved)
        self._allocations(saved)
        visits = self._visits(saved)
        self._entries(visits)
        self._adverse_events(saved, visits)

    def _consents_and_eligibility(self, people: list[Participant]) -> None:
        consents, answers = [], []
        for person in people:
            consented_at = datetime.combine(person.consent_date, dt_time(9, 0), tzinfo=self.zones[person.site_id])
            consents.append(Consent(participant=person, document=self.document, consented_at=consented_at, obtained_by=self.user))
            for criterion in self.criteria:
                met = CriterionAnswer.MET if criterion.kind == "inclusion" else CriterionAnswer.NOT_MET
                answers.append(EligibilityAnswer(participant=person, criterion=criterion, answer=met, note=REASON))
        self.create(Consent, consents)
        self.create(EligibilityAnswer, answers)

    def _allocations(self, people: list[Participant]) -> None:
        rows = []
        for person in people:
            if self.params.randomized:
                stratum = f"site={person.site.code}"
                slot = self.slots[(stratum, person.synth_seq)]
                rows.append(Allocation(participant=person, arm_id=slot.arm_id, method=AllocationMethod.RANDOMIZATION, slot=slot,
                                       kit_code=slot.kit_code, stratum=stratum, allocated_by=self.user))
            else:
                arm = self.arms[self.rng("arm", person.synth_index).randint(0, len(self.arms) - 1)]
                rows.append(Allocation(participant=person, arm=arm, method=AllocationMethod.ASSIGNMENT, allocated_by=self.user))
        self.create(Allocation, rows)

    def _visits(self, people: list[Participant]) -> list[Visit]:
        """Every visit of the schedule (schedule_generate), done on a day in its window
        (visit_record_date); one in a hundred a couple of days late."""
        rows = []
        for person in people:
            rng = self.rng("visits", person.synth_index)
            for definition in self.definitions:
                planned = person.enrolment_date + timedelta(days=definition.day_offset)
                start = planned - timedelta(days=definition.window_before_days)
                end = planned + timedelta(days=definition.window_after_days)
                done = end + timedelta(days=2) if rng.random() < 0.01 else _day_between(rng, start, end)
                visit = Visit(
                    participant=person, definition=definition, label=definition.label, order=definition.order,
                    planned_date=planned, window_start=start, window_end=end, visit_date=done,
                    status=VisitStatus.DONE, out_of_window=not (start <= done <= end),
                )
                visit.synth_person = person
                rows.append(visit)
        saved = self.create(Visit, rows)
        for visit, original in zip(saved, rows, strict=True):
            visit.synth_person = original.synth_person
        return saved

    def _entries(self, visits: list[Visit]) -> None:
        """Every CRF of every visit, complete, on the CRF version the visit asks for."""
        rows = []
        for visit in visits:
            person = visit.synth_person
            for link in self.links[visit.definition_id]:
                rng = self.rng("entry", person.synth_index, visit.order, link.crf_code)
                answers = entry_answers(self.schemas[link.crf_id], rng, consent_date=person.consent_date, visit_date=visit.visit_date)
                rows.append(CrfEntry(
                    participant=person, visit=visit, crf=link.crf, crf_code=link.crf_code, status=EntryStatus.COMPLETE,
                    answers=answers, revision=1, score_library_version=scores.SCORE_LIBRARY_VERSION,
                ))
        self.create(CrfEntry, rows, batch_size=500)

    def _adverse_events(self, people: list[Participant], visits: list[Visit]) -> None:
        """About `aes_per_participant` AEs each (0-4), between consent and the last visit; one in
        twenty serious (hospitalisation), its 24-hour clock started and reported in time."""
        last_visit: dict[int, date] = {}
        for visit in visits:
            last_visit[visit.participant_id] = max(last_visit.get(visit.participant_id, visit.visit_date), visit.visit_date)
        rate = self.params.aes_per_participant
        events = []
        for person in people:
            rng = self.rng("aes", person.synth_index)
            count = sum(1 for _ in range(4) if rng.random() < rate / 4)
            for number in range(1, count + 1):
                onset = _day_between(rng, person.consent_date, last_visit[person.pk])
                zone = self.zones[person.site_id]
                aware_at = datetime.combine(onset + timedelta(days=rng.randint(0, 1)), dt_time(10, 0), tzinfo=zone)
                serious = rng.random() < 0.05
                ongoing = rng.random() < 0.2
                end = None if ongoing else min(onset + timedelta(days=rng.randint(1, 30)), self.today - timedelta(days=1))
                events.append(AdverseEvent(
                    participant=person, number=number, verbatim_term=rng.choice(AE_TERMS), onset_date=onset, end_date=end,
                    ongoing=ongoing, grade=rng.choices([1, 2, 3, 4], weights=[55, 30, 12, 3])[0],
                    seriousness=[Seriousness.HOSPITALISATION] if serious else [], serious=serious,
                    related_product=rng.choice(Causality.values), expected=True, procedure=Procedure.NONE,
                    related_procedure=Causality.NOT_RELATED, action_taken=ActionTaken.NONE,
                    outcome=Outcome.NOT_RECOVERED if ongoing else Outcome.RECOVERED, aware_at=aware_at,
                    serious_aware_at=aware_at if serious else None,
                ))
        saved = self.create(AdverseEvent, events)
        clocks = [
            ReportingClock(adverse_event=ae, kind=ClockKind.SAE_24H, started_at=ae.aware_at, due_at=ae.aware_at + timedelta(hours=24),
                           reported_at=ae.aware_at + timedelta(hours=6), reported_by=self.user)
            for ae in saved if ae.serious
        ]
        self.create(ReportingClock, clocks)

    def number_sequences(self) -> None:
        """The sites' number counters, so the next real screening or enrolment continues the series."""
        per_site = [len(range(n, self.params.participants, len(self.sites))) for n in range(len(self.sites))]
        NumberSequence.objects.bulk_create([
            NumberSequence(site=site, kind=kind, last=last)
            for site, last in zip(self.sites, per_site, strict=True) for kind in (NumberKind.SCREENING, NumberKind.SUBJECT) if last
        ])


def synth_trial_generate(
    params: SynthParams,
    *,
    user=None,
    folder: Path | None = None,
    chunk: int = 200,
    progress: Callable[[int, int], None] | None = None,
) -> SynthResult:
    """Make the synthetic trial `params` describes, in one transaction.

    The protocol is written as YAML under `folder` (a temporary folder when None) and loaded
    with the loader; the data follow in bulk, `chunk` participants at a time (memory stays flat).
    A trial with the same code made with the same parameters is left as it is (created=False);
    any other trial with that code is refused with a ValidationError."""
    if settings.IS_PRODUCTION:
        raise ImproperlyConfigured("Synthetic trials are not made in production.")
    params.check()
    user = user or system_user()
    started = time.perf_counter()
    existing = Trial.objects.filter(code=params.code).first()
    if existing is not None:
        if existing.source == params.source:
            return SynthResult(trial=existing, created=False, counts={"Participant": existing.participants.count()})
        raise ValidationError(
            f"A trial with code {params.code} already exists and was not made with these parameters; "
            "choose another --code (a trial is never deleted)."
        )
    # The earliest of the sites' local dates: no date is in the future at any site.
    today = min(timezone.localdate(timezone=ZoneInfo(zone)) for _c, _n, zone in CITIES[: params.sites])
    with tempfile.TemporaryDirectory(prefix="synth-trial-") as scratch:
        target = folder or Path(scratch)
        protocol_write(params, target, today)
        with transaction.atomic():
            protocol_load([target], user=user)
            trial = Trial.objects.get(code=params.code)
            writer = _Writer(params, trial, user, today)
            if params.randomized:
                writer.allocation_list()
            done = 0
            for indexes in _chunks(params.participants, chunk):
                writer.participants(indexes)
                reset_queries()  # with DEBUG on, Django keeps every (large) INSERT it ran
                done += len(indexes)
                if progress:
                    progress(done, params.participants)
            writer.number_sequences()
        # The planner's statistics for the tables just filled (PostgreSQL; nothing on SQLite).
        analyzed = analyze(*writer.models.values())
    return SynthResult(trial=trial, created=True, counts=writer.counts, seconds=time.perf_counter() - started, analyzed=analyzed)

