"""The shape of a trial file and of a CRF file in seeds/ (docs/seed-format.md explains each key).

Pydantic checks types and required keys; `trials.protocol.loader` adds what needs the whole
library (unique codes, references between files, CEL expressions). Unknown keys are errors:
a misspelt key must never be silently ignored in a protocol.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from trials.protocol.ctcae import LAB_TESTS

Code = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,39}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
LabTestCode = Literal[tuple(LAB_TESTS)]  # type: ignore[valid-type]
ScoreInput = Annotated[
    str, StringConstraints(pattern=r"^([a-z][a-z0-9_]{0,62}|(visit|previous|baseline)\.[A-Z0-9][A-Z0-9_-]{0,39}\.[a-z][a-z0-9_]{0,62})$")
]

# Languages a CRF's content may be written in (docs/seed-format.md, "Languages"): the interface's
# languages (settings.LANGUAGES). A text is a string (the CRF's default language only) or a mapping
# {en: …, fr: …, es: …}; codes and variable names never change with the language.
CONTENT_LANGUAGES = ("en", "fr", "es")
ContentLanguage = Literal[CONTENT_LANGUAGES]  # type: ignore[valid-type]
# Where a translation of a published instrument stands, per language: "original" (the language the
# instrument was developed and validated in), "validated" (the published, validated translation,
# cited in `source`), "to_be_validated" (a working translation: staff pages and the data dictionary
# say so; participants are not shown the marker).
TRANSLATION_STATUSES = ("original", "validated", "to_be_validated")
# A text in one or several languages; the loader checks the codes against the CRF's `languages`.
Localized = Text | dict[str, Text]
LocalizedOptional = str | dict[str, str]

FIELD_TYPES = (
    "text",
    "long_text",
    "integer",
    "decimal",
    "date",
    "datetime",
    "single_choice",
    "multiple_choice",
    "yes_no",
    "scale",
    "calculated",
    "repeating_group",
    "descriptive",
    "file",
)
FieldType = Literal[FIELD_TYPES]  # type: ignore[valid-type]
CHOICE_TYPES = {"single_choice", "multiple_choice"}
NUMERIC_TYPES = {"integer", "decimal", "scale"}
# What a `file` item may accept: a kind is checked against the bytes (trials.visits.files), never the name.
FILE_KINDS = ("image", "jpeg", "png", "pdf")
MAX_FILE_SIZE_KB = 50 * 1024  # 50 MB: above this an upload belongs in another system (imaging, TMF)
INPUT_FIELD_TYPES = set(FIELD_TYPES) - {"calculated", "repeating_group", "descriptive"}
WIDGET_TYPES = {
    "radio": {"single_choice", "yes_no", "scale"},
    "inline_radio": {"single_choice", "yes_no", "scale"},
    "dropdown": {"single_choice"},
    "checkbox": {"multiple_choice", "yes_no"},
    "slider": {"scale", "integer", "decimal"},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


# --- CRF library --------------------------------------------------------------------------


class Choice(Strict):
    code: int | Annotated[str, StringConstraints(min_length=1, max_length=40)]
    label: Localized

    @field_validator("code", mode="before")
    @classmethod
    def _not_boolean(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("YAML reads yes/no/true/false/on/off as booleans: quote the code (e.g. 'yes')")
        return value


class Check(Strict):
    """An edit check: `expression` must be true, otherwise `message` is shown on `field`."""

    expression: Text
    message: Localized  # a text, or one per language of the CRF ({en: …, fr: …, es: …})
    severity: Literal["hard", "soft"] = "hard"
    field: Name | None = None


class Calculation(Strict):
    """A derived value: a CEL expression, or a score from the score library with its inputs."""

    cel: Text | None = None
    score: Name | None = None
    # Score argument -> a field of this CRF, a context name, or another CRF's item (`baseline.DAS28.tjc28`).
    inputs: dict[Name, ScoreInput] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> Calculation:
        if (self.cel is None) == (self.score is None):
            raise ValueError("give exactly one of 'cel' or 'score'")
        if self.cel is not None and self.inputs:
            raise ValueError("'inputs' belong to a 'score' calculation, not a 'cel' one")
        return self


class CrfField(Strict):
    name: Name
    label: Localized
    type: FieldType
    required: bool = False
    help: LocalizedOptional = ""
    unit: LocalizedOptional = ""
    min: Decimal | None = None
    max: Decimal | None = None
    precision: Annotated[int, Field(ge=0, le=10)] | None = None
    choices: list[Choice] | Name | None = None
    widget: Literal["radio", "inline_radio", "dropdown", "checkbox", "slider"] | None = None
    show_if: Text | None = None
    checks: list[Check] = Field(default_factory=list)
    calculation: Calculation | None = None
    section: str | None = None
    identifier: bool = False
    # Dates are refused before the participant's consent unless the item is history (birth, diagnosis…).
    may_precede_consent: bool = False
    fields: list[CrfField] | None = None
    min_rows: Annotated[int, Field(ge=0)] | None = None
    max_rows: Annotated[int, Field(ge=1)] | None = None
    # Row items copied, with the row's identity, into the same CRF at the participant's next visit
    # (e.g. an ulcer's identifier and location, so it can be followed until healing).
    carry_forward: list[Name] = Field(default_factory=list)
    # A laboratory result graded by CTCAE v5.0 against the site's normal range (trials.protocol.ctcae):
    # the CDISC test code; the item's unit must be the unit the grading table is written in.
    lab_test: LabTestCode | None = None
    # A `file` item: the kinds accepted (image = JPEG or PNG) and the largest size, in kilobytes.
    accept: list[Literal[FILE_KINDS]] | None = None  # type: ignore[valid-type]
    max_size_kb: Annotated[int, Field(ge=1, le=MAX_FILE_SIZE_KB)] | None = None
    # The participant may answer "I prefer not to answer" (participant-reported CRFs only, where the
    # instrument allows an item to be left unanswered): stored as the missing-data code "declined".
    prefer_not_to_answer: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CrfField:
        kind = self.type
        if (kind == "file") != (self.accept is not None):
            raise ValueError("'accept' is required on, and only allowed on, a file field (e.g. accept: [image, pdf])")
        if kind == "file" and not self.accept:
            raise ValueError("'accept' lists at least one kind: " + ", ".join(FILE_KINDS))
        if kind == "file" and self.max_size_kb is None:
            raise ValueError("a file field needs 'max_size_kb' (the largest upload, in kilobytes)")
        if self.max_size_kb is not None and kind != "file":
            raise ValueError("'max_size_kb' only applies to a file field")
        if self.prefer_not_to_answer and kind not in INPUT_FIELD_TYPES:
            raise ValueError(f"'prefer_not_to_answer' does not apply to a {kind} field")
        if self.lab_test is not None:
            if kind not in {"decimal", "integer"}:
                raise ValueError("'lab_test' belongs to a decimal or integer item")
            expected = LAB_TESTS[self.lab_test].unit
            if self.unit != expected:  # a graded unit is a UCUM-style symbol: one string in every language
                raise ValueError(f"lab_test {self.lab_test} is graded in {expected}; the item's unit is '{self.unit}'")
        if kind in CHOICE_TYPES and self.choices is None:
            raise ValueError(f"a {kind} field needs 'choices' (a list or a codelist name)")
        if self.choices is not None and kind not in CHOICE_TYPES | {"scale"}:
            raise ValueError(f"'choices' is not allowed on a {kind} field")
        if (kind == "calculated") != (self.calculation is not None):
            raise ValueError("'calculation' is required on, and only allowed on, a calculated field")
        if (kind == "repeating_group") != (self.fields is not None):
            raise ValueError("'fields' is required on, and only allowed on, a repeating_group")
        if kind == "repeating_group" and any(f.type == "repeating_group" for f in self.fields or []):
            raise ValueError("repeating groups cannot be nested")
        if self.carry_forward and kind != "repeating_group":
            raise ValueError("'carry_forward' only applies to a repeating_group")
        if self.carry_forward:
            unknown = set(self.carry_forward) - {f.name for f in self.fields or []}
            if unknown:
                raise ValueError(f"'carry_forward' names unknown row item(s): {', '.join(sorted(unknown))}")
        if (self.min_rows is not None or self.max_rows is not None) and kind != "repeating_group":
            raise ValueError("'min_rows'/'max_rows' only apply to a repeating_group")
        if self.min_rows is not None and self.max_rows is not None and self.min_rows > self.max_rows:
            raise ValueError(f"min_rows ({self.min_rows}) is greater than max_rows ({self.max_rows})")
        if self.widget and kind not in WIDGET_TYPES[self.widget]:
            raise ValueError(f"widget '{self.widget}' does not suit a {kind} field (use it on: {', '.join(sorted(WIDGET_TYPES[self.widget]))})")
        if any(check.field for check in self.checks):
            raise ValueError("a check on a field is shown on that field: 'field' only applies to CRF-level checks")
        if (self.min is not None or self.max is not None) and kind not in NUMERIC_TYPES | {"calculated"}:
            raise ValueError(f"'min'/'max' do not apply to a {kind} field")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if kind == "scale" and (self.min is None or self.max is None):
            raise ValueError("a scale field needs 'min' and 'max'")
        if self.precision is not None and kind not in {"decimal", "calculated"}:
            raise ValueError("'precision' only applies to decimal and calculated fields")
        if self.may_precede_consent and kind not in {"date", "datetime"}:
            raise ValueError("'may_precede_consent' only applies to date and datetime fields")
        if kind == "descriptive" and self.required:
            raise ValueError("a descriptive field cannot be required")
        return self


class Section(Strict):
    # The title shown; items name their section by its default-language text.
    name: Localized
    layout: Literal["stack", "matrix"] = "stack"
    help: LocalizedOptional = ""


class CrfFile(Strict):
    code: Code
    title: Localized
    # The language of its plain strings, and every language its texts exist in (default: just that one).
    default_language: ContentLanguage = "en"
    languages: list[ContentLanguage] | None = None
    translation_status: dict[ContentLanguage, Literal[TRANSLATION_STATUSES]] = Field(default_factory=dict)  # type: ignore[valid-type]
    description: str = ""
    source: str = ""
    codelists: dict[Name, list[Choice]] = Field(default_factory=dict)
    sections: list[Section] = Field(default_factory=list)
    fields: list[CrfField] = Field(min_length=1)
    checks: list[Check] = Field(default_factory=list)
    # Who answers the CRF: "participant" (patient-reported: participant mode or a personal link,
    # trials.epro) or "staff" (keyed by the site).
    respondent: Literal["participant", "staff"] = "staff"

    @property
    def content_languages(self) -> list[str]:
        return list(self.languages) if self.languages else [self.default_language]

    @model_validator(mode="after")
    def _languages_are_coherent(self) -> CrfFile:
        if self.languages is not None:
            if len(set(self.languages)) != len(self.languages):
                raise ValueError("a language is listed twice in 'languages'")
            if self.default_language not in self.languages:
                raise ValueError(f"'languages' must include the default language '{self.default_language}'")
        undeclared = sorted(set(self.translation_status) - set(self.content_languages))
        if undeclared:
            raise ValueError(f"'translation_status' names language(s) the CRF does not declare: {', '.join(undeclared)}")
        return self

    @model_validator(mode="after")
    def _respondent_is_coherent(self) -> CrfFile:
        if self.respondent == "participant":
            if any(f.type == "repeating_group" for f in self.fields):
                raise ValueError("a participant-reported CRF (respondent: participant) cannot have a repeating_group")
        else:
            declines = [f.name for f in self.fields if f.prefer_not_to_answer]
            if declines:
                raise ValueError(
                    "'prefer_not_to_answer' is for participant-reported CRFs (respondent: participant): " + ", ".join(declines)
                )
        return self


# --- Trials -------------------------------------------------------------------------------

RECRUITMENT_STATUSES = (
    "not_yet_recruiting",
    "recruiting",
    "enrolling_by_invitation",
    "active_not_recruiting",
    "suspended",
    "terminated",
    "completed",
    "withdrawn",
)
MASKED_ROLES = ("participant", "care_provider", "investigator", "outcomes_assessor")
MASKING_LEVELS = {"none": 0, "single": 1, "double": 2, "triple": 3, "quadruple": 4}
PLACEHOLDER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


class RegistryIds(Strict):
    nct: Annotated[str, StringConstraints(pattern=r"^NCT\d{8}$")] | None = None
    org_study_id: str | None = None
    other: dict[str, str] = Field(default_factory=dict)


class Masking(Strict):
    level: Literal["none", "single", "double", "triple", "quadruple"]
    masked: list[Literal[MASKED_ROLES]] = Field(default_factory=list)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _level_matches_roles(self) -> Masking:
        if len(set(self.masked)) != len(self.masked):
            raise ValueError("a masked role is listed twice")
        # ClinicalTrials.gov counts the masked parties: quadruple = all four roles.
        if len(set(self.masked)) != MASKING_LEVELS[self.level]:
            raise ValueError(
                f"masking level '{self.level}' means {MASKING_LEVELS[self.level]} masked role(s), "
                f"but 'masked' lists {len(set(self.masked))}"
            )
        return self


class SiteSpec(Strict):
    code: Code
    name: Text
    city: Text
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    time_zone: Text
    recruitment_status: Literal[RECRUITMENT_STATUSES]  # type: ignore[valid-type]
    principal_investigator: str = ""
    # The default language of the site's ePRO pages and of its users who never chose one.
    language: ContentLanguage | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Europe/Paris)") from None
        return value


class ArmSpec(Strict):
    code: Code
    label: Text
    type: Literal["experimental", "placebo_comparator", "active_comparator", "no_intervention", "sham_comparator", "other"]
    description: str = ""
    intervention: str = ""
    planned_size: Annotated[int, Field(ge=0)] | None = None
    dose: Annotated[Decimal, Field(gt=0)] | None = None
    dose_unit: str = ""
    order: Annotated[int, Field(ge=1)] | None = None
    administration_days: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dose_has_unit(self) -> ArmSpec:
        if self.dose is not None and not self.dose_unit:
            raise ValueError("a 'dose' needs a 'dose_unit'")
        return self


class CriterionSpec(Strict):
    code: Code
    kind: Literal["inclusion", "exclusion"]
    text: Text
    level: Literal["participant", "lesion"] = "participant"
    expression: Text | None = None
    applies_when: Text | None = None


class Unscheduled(Strict):
    crfs: list[Code] = Field(default_factory=list)


class VisitCrfSpec(Strict):
    crf: Code
    required: bool = True


class VisitSpec(Strict):
    code: Code
    label: Text
    kind: Literal["screening", "baseline", "treatment", "follow_up", "end_of_study"] = "follow_up"
    anchor: Literal["enrolment", "first_treatment"] = "enrolment"
    day_offset: int
    window_before_days: Annotated[int, Field(ge=0)] = 0
    window_after_days: Annotated[int, Field(ge=0)] = 0
    crfs: list[VisitCrfSpec | Code] = Field(default_factory=list)

    def crf_links(self) -> list[VisitCrfSpec]:
        return [VisitCrfSpec(crf=c) if isinstance(c, str) else c for c in self.crfs]


class Numbering(Strict):
    screening: Text = "{site}-S{seq:03d}"
    subject: Text = "{site}-{seq:03d}"

    @field_validator("screening", "subject")
    @classmethod
    def _known_placeholders(cls, pattern: str) -> str:
        names = set(PLACEHOLDER.findall(pattern))
        unknown = names - {"trial", "site", "seq"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{trial}}, {{site}} and {{seq}}")
        if "seq" not in names:
            raise ValueError("a number pattern needs {seq}")
        if "site" not in names:
            # {seq} counts per site: without {site}, two sites would hand out the same number.
            raise ValueError("a number pattern needs {site} ({seq} counts per site, numbers are unique per trial)")
        try:
            pattern.format(trial="TRIAL", site="SITE", seq=1)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"'{pattern}' is not a valid pattern: {exc}") from None
        return pattern


class StratumFactor(Strict):
    name: Name
    levels: list[Text] = Field(min_length=2)


class Randomization(Strict):
    block_sizes: list[Annotated[int, Field(ge=2)]] = Field(min_length=1)
    stratify_by_site: bool = True
    strata: list[StratumFactor] = Field(default_factory=list)


class LesionSpec(Strict):
    crf: Code
    group: Name


class Eligibility(Strict):
    crfs: list[Code] = Field(default_factory=list)
    lesion: LesionSpec | None = None


class ConsentDocumentSpec(Strict):
    version: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    approved_on: date
    title: str = ""


class Das28Cutoffs(Strict):
    remission: Annotated[Decimal, Field(gt=0)] = Decimal("2.6")
    low: Annotated[Decimal, Field(gt=0)] = Decimal("3.2")
    moderate: Annotated[Decimal, Field(gt=0)] = Decimal("5.1")

    @model_validator(mode="after")
    def _ascending(self) -> Das28Cutoffs:
        if not self.remission < self.low <= self.moderate:
            raise ValueError("DAS28 cut-offs must ascend: remission < low <= moderate")
        return self


class ScoreSettings(Strict):
    """Per-trial settings of the score library (defaults are the published ones)."""

    das28_cutoffs: Das28Cutoffs | None = None
    # Read by the DAS28-CRP score instead of `das28_cutoffs` (Inoue E et al., Ann Rheum Dis 2007;66:407-9
    # found DAS28-CRP lower than DAS28-ESR for the same patient: 2.3 / 2.7 / 4.1 are its published ones).
    das28_crp_cutoffs: Das28Cutoffs | None = None


class CohortPlacebo(Strict):
    """A placebo control inside each dose cohort: the site knows the cohort, not who of its
    participants receives placebo (drawn from the concealed allocation list, one stratum per cohort)."""

    # Participants of each cohort (by cohort code) who receive placebo; the rest of the cohort's
    # `planned_size` receives the cohort's dose.
    per_cohort: dict[Code, Annotated[int, Field(ge=1)]] = Field(min_length=1)
    # Who is masked to active vs placebo (the cohort itself is known to the site).
    masked: list[Literal[MASKED_ROLES]] = Field(min_length=1)  # type: ignore[valid-type]
    # Permuted block sizes within a cohort; empty: one block holding the whole cohort.
    block_sizes: list[Annotated[int, Field(ge=2)]] = Field(default_factory=list)

    @field_validator("masked")
    @classmethod
    def _distinct(cls, masked: list[str]) -> list[str]:
        if len(set(masked)) != len(masked):
            raise ValueError("a masked role is listed twice")
        return masked


class Escalation(Strict):
    # 3+3: sentinel, then at most one expansion to twice the sentinel, escalating on few DLTs.
    # sentinel_expansion: sentinel, a signed review, then expansion to the cohort's planned size.
    rule: Literal["3+3", "sentinel_expansion"] = "3+3"
    sentinel_size: Annotated[int, Field(ge=1)] = 3
    dlt_window_days: Annotated[int, Field(ge=1)]
    # The dose given may differ from the planned dose (dose per kg x weight) by this much at most.
    dose_tolerance_percent: Annotated[Decimal, Field(ge=0, le=100)] = Decimal("10")
    placebo: CohortPlacebo | None = None


Email = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class SafetyReporting(Strict):
    """Who hears about serious adverse events besides the site, and when reminders go out."""

    # The sponsor's safety contacts (pharmacovigilance desk): alerted about every reporting clock.
    contacts: list[Email] = Field(default_factory=list)
    # Reminders before the deadline, as fractions of the reporting time elapsed (0.5 = half time).
    alerts_at: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.5])

    @model_validator(mode="after")
    def _distinct(self) -> SafetyReporting:
        if len(set(self.alerts_at)) != len(self.alerts_at):
            raise ValueError("alerts_at lists a fraction twice")
        if len({c.casefold() for c in self.contacts}) != len(self.contacts):
            raise ValueError("contacts lists an address twice")
        return self


class QualityRuleSpec(Strict):
    """A data-quality rule over stored data (trials.monitoring.quality): `expression` must hold for
    every entry of `crf`, evaluated with the context of the CRF's own edit checks (its answers,
    `visit.`/`previous.`/`baseline.<CRF>.<item>`, `visit_date`, `consent_date`) and the participant's
    AEs and graded lab values (trials.protocol.quality); each entry where it is false gets a query on
    `item` (or on the whole entry). With `subject: adverse_event` it holds for every adverse event
    instead (no `crf`), and its query is on the AE."""

    code: Code
    message: Text
    subject: Literal["crf", "adverse_event"] = "crf"
    crf: Code | None = None
    item: Name | None = None
    expression: Text
    severity: Literal["major", "minor"] = "major"

    @model_validator(mode="after")
    def _subject_has_its_crf(self) -> QualityRuleSpec:
        if self.subject == "crf" and not self.crf:
            raise ValueError("a rule on a CRF names its 'crf' (or says 'subject: adverse_event')")
        if self.subject == "adverse_event" and self.crf:
            raise ValueError("a rule on the adverse events names no 'crf'")
        return self


class EproSettings(Strict):
    """Participant-reported outcomes (trials.epro): what the participant's own pages may show."""

    # Her initials (the `initials` item of her CRFs, e.g. DEMOG) greet her on her questionnaire
    # pages; nothing else identifying is ever shown there. Off unless the trial allows it.
    show_initials: bool = False


class TrialFile(Strict):
    code: Code
    title: Text
    short_title: str = ""
    acronym: str = ""
    registry_ids: RegistryIds = Field(default_factory=RegistryIds)
    phase: Literal["early_1", "1", "1_2", "2", "2_3", "3", "4", "na"]
    study_type: Literal["interventional", "observational"]
    design: Literal["randomized", "open_label", "dose_escalation", "registry"]
    intervention_model: Literal["single_group", "parallel", "crossover", "factorial", "sequential"] | None = None
    primary_purpose: str = ""
    masking: Masking
    target_enrolment: Annotated[int, Field(gt=0)]
    status: Literal[RECRUITMENT_STATUSES]  # type: ignore[valid-type]
    start_date: date | None = None
    completion_date: date | None = None
    sponsor: Text
    principal_investigator: str = ""
    conditions: list[Text] = Field(min_length=1)
    min_age_years: Annotated[int, Field(ge=0)] | None = None
    max_age_years: Annotated[int, Field(ge=0)] | None = None
    sex: Literal["all", "female", "male"] = "all"
    healthy_volunteers: bool = False
    follow_up_weeks: Annotated[int, Field(ge=0)] | None = None
    summary: str = ""
    source: str = ""
    numbering: Numbering = Field(default_factory=Numbering)
    randomization: Randomization | None = None
    escalation: Escalation | None = None
    safety_reporting: SafetyReporting = Field(default_factory=SafetyReporting)
    score_settings: ScoreSettings = Field(default_factory=ScoreSettings)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    consent_documents: list[ConsentDocumentSpec] = Field(default_factory=list)
    sites: list[SiteSpec] = Field(min_length=1)
    arms: list[ArmSpec] = Field(default_factory=list)
    criteria: list[CriterionSpec] = Field(default_factory=list)
    visits: list[VisitSpec] = Field(min_length=1)
    logs: list[Code] = Field(default_factory=list)
    unscheduled: Unscheduled = Field(default_factory=Unscheduled)
    quality_rules: list[QualityRuleSpec] = Field(default_factory=list)
    epro: EproSettings = Field(default_factory=EproSettings)

    @model_validator(mode="after")
    def _design_is_coherent(self) -> TrialFile:
        if self.start_date and self.completion_date and self.completion_date < self.start_date:
            raise ValueError("completion_date is before start_date")
        if self.min_age_years is not None and self.max_age_years is not None and self.min_age_years > self.max_age_years:
            raise ValueError(f"min_age_years ({self.min_age_years}) is greater than max_age_years ({self.max_age_years})")
        orders = [a.order for a in self.arms if a.order is not None]
        if len(orders) != len(set(orders)):
            raise ValueError("two arms/cohorts have the same 'order'")
        if self.design == "randomized":
            if len(self.arms) < 2:
                raise ValueError("a randomized trial needs at least two arms")
            if self.randomization is None:
                raise ValueError("a randomized trial needs a 'randomization' block (block sizes, strata)")
            # Block sizes against the arms' ratio: trials.protocol.loader (with the path of the key).
        elif self.randomization is not None:
            raise ValueError(f"'randomization' only applies to a randomized trial, not {self.design}")
        versions = [doc.version for doc in self.consent_documents]
        if len(versions) != len(set(versions)):
            raise ValueError("two consent documents have the same 'version'")
        if self.design == "open_label" and self.masking.level != "none":
            raise ValueError("an open-label trial has masking level 'none'")
        if self.design == "registry" and self.arms:
            raise ValueError("a registry allocates nothing: it has no arms")
        if self.design == "dose_escalation":
            if self.escalation is None:
                raise ValueError("a dose-escalation trial needs an 'escalation' block (rule, DLT window)")
            if not self.arms or any(a.dose is None or a.order is None for a in self.arms):
                raise ValueError("every cohort of a dose-escalation trial needs a 'dose' and an 'order'")
            self._cohort_sizes_are_coherent(self.escalation)
        elif self.escalation is not None:
            raise ValueError(f"'escalation' only applies to a dose-escalation trial, not {self.design}")
        return self

    def _cohort_sizes_are_coherent(self, escalation: Escalation) -> None:
        sentinel = escalation.sentinel_size
        if escalation.rule == "sentinel_expansion":
            short = [a.code for a in self.arms if a.planned_size is None or a.planned_size <= sentinel]
            if short:
                raise ValueError(
                    f"with rule sentinel_expansion every cohort needs a 'planned_size' above the sentinel size ({sentinel}): {', '.join(short)}"
                )
        placebo = escalation.placebo
        if placebo is None:
            return
        arms = {a.code: a for a in self.arms}
        unknown = sorted(set(placebo.per_cohort) - set(arms))
        if unknown:
            raise ValueError(f"placebo.per_cohort names unknown cohort(s): {', '.join(unknown)}")
        for code, arm in arms.items():
            n_placebo = placebo.per_cohort.get(code)
            if n_placebo is None:
                raise ValueError(f"placebo.per_cohort gives no number for cohort {code}")
            if arm.planned_size is None or n_placebo >= arm.planned_size:
                raise ValueError(f"cohort {code}: placebo ({n_placebo}) needs a larger 'planned_size' ({arm.planned_size})")
