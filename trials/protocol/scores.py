"""The score library: clinical scores calculated from the answers of one CRF entry.

Pure Python, no Django. A `calculated` CRF field names a score (`calculation.score`) and, for a score
that takes arguments, maps each argument to a field or a context name (`calculation.inputs`); the CRF
engine calls `compute()`. Scores without arguments read their items by the field names of the seed
CRFs (seeds/crfs/*.yaml). A score never raises on bad data: when it cannot be calculated its value is
None, `missing` names the absent items and `note` says why.

Results are versioned: bump SCORE_LIBRARY_VERSION, and the `version` of every score concerned,
whenever any result could change, so that a stored value can be traced to the rules that made it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from functools import wraps
from types import MappingProxyType
from typing import Any

SCORE_LIBRARY_VERSION = "1.1.0"

# Names an input may give instead of a field; the same set as trials.protocol.loader.CONTEXT_NAMES.
_CONTEXT_NAMES = frozenset({"visit_date", "consent_date", "today"})
# An input may also read another CRF of the participant, as CEL expressions do: `baseline.DAS28.tjc28`
# (namespace, CRF code, item; the engine puts those CRFs' answers in `context["crfs"]`).
_CRF_INPUT = re.compile(r"^(visit|previous|baseline)\.([A-Z0-9][A-Z0-9_-]*)\.([a-z][a-z0-9_]*)$")

# Every calculation runs in this Decimal context, whatever the caller's thread has set.
_ARITHMETIC = Context(prec=28)


@dataclass(frozen=True)
class ScoreResult:
    """A calculated score. `value` is None when it cannot be calculated, and `note` then says why.

    `missing` names the CRF fields that were unanswered. It can be non-empty next to a value when the
    instrument's published missing-item rule still allows the calculation (HAQ-DI: 6 of 8 categories).
    """

    value: Decimal | int | None
    category: str | None = None
    missing: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Score:
    """A registered score: the function, the version of its rules and the publication it follows."""

    name: str
    function: Callable[..., ScoreResult]
    version: str
    source: str
    inputs: tuple[str, ...] | None
    description: str


SCORES: dict[str, Score] = {}


class _Unusable(ValueError):
    """An answer that cannot enter a calculation (not a number, out of range); the message is the note."""


def score(
    name: str, *, source: str, inputs: tuple[str, ...] | None = None, version: str = "1.0.0"
) -> Callable[[Callable[..., ScoreResult]], Callable[..., ScoreResult]]:
    """Register a score function in SCORES under `name`.

    With `inputs`, the function takes those arguments as keywords, their values looked up by
    `compute`; with `inputs=None` it takes `(answers, context)` and reads its items by field name.
    An unusable answer inside the function becomes a result with no value and a note.
    """

    def register(function: Callable[..., ScoreResult]) -> Callable[..., ScoreResult]:
        if name in SCORES:
            raise ValueError(f"score '{name}' is registered twice")
        if not function.__doc__:
            raise ValueError(f"score '{name}' needs a one-line docstring saying what it measures")

        @wraps(function)
        def calculate(*args: Any, **kwargs: Any) -> ScoreResult:
            with localcontext(_ARITHMETIC):
                try:
                    return function(*args, **kwargs)
                except _Unusable as problem:
                    return ScoreResult(None, note=str(problem))

        SCORES[name] = Score(
            name=name,
            function=calculate,
            version=version,
            source=source,
            inputs=tuple(inputs) if inputs is not None else None,
            description=function.__doc__.strip().splitlines()[0],
        )
        return calculate

    return register


def score_names() -> frozenset[str]:
    """The names a CRF may give as `calculation.score`."""
    return frozenset(SCORES)


def compute(
    name: str, answers: Mapping[str, Any], inputs: Mapping[str, str], context: Mapping[str, Any]
) -> ScoreResult:
    """Calculate the score `name` for one CRF entry: the single entry point of the CRF engine.

    `answers`: field name -> value (unanswered: None or absent). `inputs`: the field's
    `calculation.inputs`, score argument -> field name or context name; an argument left out reads
    the field of its own name. `context`: `visit_date`, `consent_date`, `today` and trial settings.
    A CRF that gives inputs the score does not take is a protocol error: ValueError.
    """
    try:
        definition = SCORES[name]
    except KeyError:
        known = ", ".join(sorted(SCORES))
        raise KeyError(f"unknown score '{name}' (score library {SCORE_LIBRARY_VERSION} has: {known})") from None
    inputs = inputs or {}
    context = context or {}
    if definition.inputs is None:
        if inputs:
            raise ValueError(
                f"score '{name}' reads its items by their field names and takes no inputs; got {sorted(inputs)}"
            )
        return definition.function(answers, context)
    unknown = sorted(set(inputs) - set(definition.inputs))
    if unknown:
        raise ValueError(
            f"score '{name}' takes the inputs {', '.join(definition.inputs)}; unknown: {', '.join(unknown)}"
        )
    sources = {argument: inputs.get(argument, argument) for argument in definition.inputs}
    values = {argument: _input_value(source, answers, context) for argument, source in sources.items()}
    result = definition.function(**values)
    if result.missing:
        # The engine shows the CRF's field names, not the score's argument names.
        result = replace(result, missing=tuple(sources.get(argument, argument) for argument in result.missing))
    return result


def crf_input(source: str) -> tuple[str, str, str] | None:
    """(namespace, CRF code, item) of an input that reads another CRF (`baseline.DAS28.tjc28`), else None."""
    match = _CRF_INPUT.match(source)
    return (match[1], match[2], match[3]) if match else None


def _input_value(source: str, answers: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    if source in _CONTEXT_NAMES:
        return context.get(source)
    reference = crf_input(source)
    if reference is not None:
        namespace, code, item = reference
        return ((context.get("crfs") or {}).get(namespace) or {}).get(code, {}).get(item)
    return answers.get(source)


# --- Reading answers -------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(name: str, value: Any) -> Decimal | None:
    """The answer as a Decimal; None when unanswered."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise _Unusable(f"{name}: {value!r} is not a number")
    if isinstance(value, str):
        value = value.strip()
    elif isinstance(value, float):
        value = str(value)  # the shortest repr: 70.1 reads as 70.1, not 70.0999999999999943…
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise _Unusable(f"{name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise _Unusable(f"{name}: {value!r} is not a number")
    return number


def _in_range(name: str, value: Any, low: int, high: int) -> Decimal | None:
    number = _number(name, value)
    if number is not None and not low <= number <= high:
        raise _Unusable(f"{name}: {value} is outside {low}-{high}")
    return number


def _grade(name: str, value: Any, top: int) -> int | None:
    """An item rated on a whole-number scale 0..top; None when unanswered."""
    number = _in_range(name, value, 0, top)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise _Unusable(f"{name}: {value} is not one of the answers 0-{top}")
    return int(number)


_TRUE = frozenset({"true", "yes", "y"})
_FALSE = frozenset({"false", "no", "n"})


def _flag(name: str, value: Any) -> bool | None:
    """A yes/no answer; None when unanswered."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Unusable(f"{name}: {value!r} is not a yes/no answer")


def _date(name: str, value: Any) -> dt.date | None:
    """A date answer or context date (date, datetime or ISO text); None when unanswered."""
    if _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise _Unusable(f"{name}: {value!r} is not a date")


def _round(value: Decimal, places: int) -> Decimal:
    """Rounded half-up, as published instruments report (22.45 -> 22.5, not the banker's 22.4)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _as_entered(number: Decimal) -> Decimal | int:
    return int(number) if number == number.to_integral_value() else number


def _are(count: int) -> str:
    return f"{count} is" if count == 1 else f"{count} are"


def _missing_note(what: str, needed: str, missing: tuple[str, ...]) -> str:
    return f"{what} needs {needed}; {_are(len(missing))} missing"


def _not_given(what: str, labels: Mapping[str, str], missing: tuple[str, ...]) -> str:
    """A note naming the missing arguments in words, e.g. 'BMI not calculated: the height is missing'."""
    words = " and ".join(labels[name] for name in missing)
    return f"{what} not calculated: {words} {'is' if len(missing) == 1 else 'are'} missing"


# --- Body measurements and dates -------------------------------------------------------------------


@score(
    "bmi",
    source="WHO, Obesity: preventing and managing the global epidemic, Technical Report Series 894, 2000",
    inputs=("weight_kg", "height_cm"),
)
def bmi(weight_kg: Any, height_cm: Any) -> ScoreResult:
    """Body mass index: weight (kg) divided by the square of height (m), in kg/m² to 1 decimal."""
    weight, height = _number("weight_kg", weight_kg), _number("height_cm", height_cm)
    missing = tuple(name for name, value in (("weight_kg", weight), ("height_cm", height)) if value is None)
    if missing:
        note = _not_given("BMI", {"weight_kg": "the weight", "height_cm": "the height"}, missing)
        return ScoreResult(None, missing=missing, note=note)
    if weight <= 0 or height <= 0:
        return ScoreResult(None, note="BMI needs a weight and a height above 0")
    metres = height / 100
    return ScoreResult(_round(weight / (metres * metres), 1))


@score("age_years", source="Completed years, as CDISC SDTM DM.AGE with AGEU = YEARS", inputs=("birth_date", "on_date"))
def age_years(birth_date: Any, on_date: Any) -> ScoreResult:
    """Age in completed years on a date (usually the visit date), from the date of birth."""
    born, on = _date("birth_date", birth_date), _date("on_date", on_date)
    missing = tuple(name for name, value in (("birth_date", born), ("on_date", on)) if value is None)
    if missing:
        note = _not_given("Age", {"birth_date": "the date of birth", "on_date": "the date"}, missing)
        return ScoreResult(None, missing=missing, note=note)
    if on < born:
        return ScoreResult(
            None, note=f"Age not calculated: the date {on.isoformat()} is before the date of birth {born.isoformat()}"
        )
    # A birthday on 29 February is reached on 1 March in a common year.
    return ScoreResult(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))


# --- Patient-reported scales -----------------------------------------------------------------------


@score("vas", source="Hawker GA et al., Arthritis Care Res 2011;63 Suppl 11:S240-52", inputs=("value",))
def vas(value: Any) -> ScoreResult:
    """A 100 mm visual analogue scale reading (pain, patient or physician global), checked to lie in 0-100 mm."""
    number = _in_range("VAS", value, 0, 100)
    if number is None:
        return ScoreResult(None, missing=("value",), note="VAS not answered")
    return ScoreResult(_as_entered(number))


@score("raynaud_condition_score", source="Merkel PA et al., Arthritis Rheum 2002;46:2410-20", inputs=("value",))
def raynaud_condition_score(value: Any) -> ScoreResult:
    """Raynaud Condition Score: the patient's rating of difficulty from Raynaud's phenomenon, checked to lie in 0-10."""
    number = _in_range("Raynaud Condition Score", value, 0, 10)
    if number is None:
        return ScoreResult(None, missing=("value",), note="Raynaud Condition Score not answered")
    return ScoreResult(_as_entered(number))


def _item_total(what: str, answers: Mapping[str, Any], items: tuple[str, ...], top: int) -> ScoreResult:
    """The sum of items rated 0..top, or no value if any item is unanswered."""
    grades = {item: _grade(item, answers.get(item), top) for item in items}
    missing = tuple(item for item, grade in grades.items() if grade is None)
    if missing:
        return ScoreResult(None, missing=missing, note=_missing_note(what, f"all {len(items)} items", missing))
    return ScoreResult(sum(grades.values()))


COCHIN_ITEMS = tuple(f"cochin_{number:02d}" for number in range(1, 19))


@score("cochin_total", source="Duruöz MT et al., J Rheumatol 1996;23:1167-72")
def cochin_total(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """Cochin Hand Function Scale total: the sum of the 18 items rated 0-5 (0-90, higher is worse); all 18 needed."""
    # Duruöz 1996 publishes no rule for unanswered items, so nothing is prorated: one blank item, no total.
    return _item_total("The Cochin total", answers, COCHIN_ITEMS, top=5)


# Stanford HAQ: 8 categories with their number of items (20 in all).
HAQ_CATEGORIES: tuple[tuple[str, int], ...] = (
    ("dressing", 2),
    ("arising", 2),
    ("eating", 3),
    ("walking", 2),
    ("hygiene", 3),
    ("reach", 2),
    ("grip", 3),
    ("activities", 3),
)
HAQ_MIN_CATEGORIES = 6


@score(
    "haq_di",
    source=(
        "Fries JF et al., Arthritis Rheum 1980;23:137-45; Bruce B, Fries JF, Health Qual Life Outcomes 2003;1:20 "
        "and Clin Exp Rheumatol 2005;23(5 Suppl 39):S14-8"
    ),
)
def haq_di(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """HAQ Disability Index: the mean of the category scores (0-3, higher is worse), by the Stanford rules."""
    # Stanford rules: a category scores the highest of its answered items; an aid/device or help from
    # another person for the category raises 0 or 1 to 2 (a 3 stays 3); a category with no answered
    # item is not scored (an aid alone does not score it); the index needs >= 6 of 8 categories.
    category_scores: list[int] = []
    missing: list[str] = []
    for category, size in HAQ_CATEGORIES:
        items = [f"haq_{category}_{number}" for number in range(1, size + 1)]
        grades = {item: _grade(item, answers.get(item), 3) for item in items}
        missing += [item for item, grade in grades.items() if grade is None]
        answered = [grade for grade in grades.values() if grade is not None]
        aided = any(_flag(field, answers.get(field)) for field in (f"haq_{category}_aid", f"haq_{category}_help"))
        if not answered:
            continue
        category_scores.append(max(max(answered), 2) if aided else max(answered))
    scored = len(category_scores)
    if scored < HAQ_MIN_CATEGORIES:
        return ScoreResult(
            None,
            missing=tuple(missing),
            note=f"HAQ-DI needs at least {HAQ_MIN_CATEGORIES} of 8 categories scored; {_are(scored)}",
        )
    value = _round(Decimal(sum(category_scores)) / scored, 3)
    note = "" if scored == 8 else f"Calculated from {scored} of 8 categories (Stanford rules allow 6)"
    return ScoreResult(value, missing=tuple(missing), note=note)


MRSS_AREAS = (
    "mrss_face",
    "mrss_chest",
    "mrss_abdomen",
    *(
        f"mrss_{area}_{side}"
        for area in ("fingers", "hand", "forearm", "upper_arm", "thigh", "lower_leg", "foot")
        for side in ("r", "l")
    ),
)


@score("mrss_total", source="Khanna D et al., J Scleroderma Relat Disord 2017;2:11-18")
def mrss_total(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """Modified Rodnan skin score: the sum of 17 body areas rated 0-3 (0-51); all 17 areas needed."""
    # Khanna 2017 standardises the examination of all 17 areas and gives no rule for an area not examined.
    return _item_total("The modified Rodnan skin score", answers, MRSS_AREAS, top=3)


# --- Joint counts and DAS28 ------------------------------------------------------------------------

DAS28_JOINTS = tuple(
    f"{joint}_{side}"
    for joint in (
        "shoulder",
        "elbow",
        "wrist",
        *(f"mcp{n}" for n in range(1, 6)),
        *(f"pip{n}" for n in range(1, 6)),
        "knee",
    )
    for side in ("r", "l")
)

DAS28_CUTOFFS: Mapping[str, Decimal] = MappingProxyType(
    {"remission": Decimal("2.6"), "low": Decimal("3.2"), "moderate": Decimal("5.1")}
)


def _joint_count(kind: str, answers: Mapping[str, Any]) -> tuple[int | None, tuple[str, ...]]:
    """How many of the 28 joints are marked tender (or swollen); None with the unanswered joints."""
    flags = {f"{kind}_{joint}": _flag(f"{kind}_{joint}", answers.get(f"{kind}_{joint}")) for joint in DAS28_JOINTS}
    missing = tuple(field for field, flag in flags.items() if flag is None)
    return (None if missing else sum(flags.values())), missing


@score("tjc28", source="Prevoo MLL et al., Arthritis Rheum 1995;38:44-8 (28-joint count)")
def tjc28(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """Tender joint count on the 28 DAS28 joints (0-28); every joint must be answered."""
    count, missing = _joint_count("tender", answers)
    if missing:
        note = _missing_note("The tender joint count", "all 28 joints", missing)
        return ScoreResult(None, missing=missing, note=note)
    return ScoreResult(count)


@score("sjc28", source="Prevoo MLL et al., Arthritis Rheum 1995;38:44-8 (28-joint count)")
def sjc28(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """Swollen joint count on the 28 DAS28 joints (0-28); every joint must be answered."""
    count, missing = _joint_count("swollen", answers)
    if missing:
        note = _missing_note("The swollen joint count", "all 28 joints", missing)
        return ScoreResult(None, missing=missing, note=note)
    return ScoreResult(count)


def _das28_limits(cutoffs: Mapping[str, Any] | None) -> dict[str, Decimal]:
    """The default cut-offs with a trial's overrides; a trial setting that is not ascending is refused."""
    limits = dict(DAS28_CUTOFFS)
    for key, value in (cutoffs or {}).items():
        if key not in limits:
            raise ValueError(f"unknown DAS28 cut-off '{key}'; expected remission, low, moderate")
        try:
            limits[key] = Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"DAS28 cut-off '{key}' is not a number: {value!r}") from None
    if not limits["remission"] <= limits["low"] <= limits["moderate"]:
        raise ValueError(f"DAS28 cut-offs must ascend (remission <= low <= moderate): {limits}")
    return limits


def das28_category(value: Decimal | float, cutoffs: Mapping[str, Any] | None = None) -> str:
    """DAS28 disease activity: remission < 2.6, low <= 3.2, moderate <= 5.1, high above (or the trial's cut-offs)."""
    limits = _das28_limits(cutoffs)
    number = Decimal(str(value))
    if number < limits["remission"]:
        return "remission"
    if number <= limits["low"]:
        return "low"
    if number <= limits["moderate"]:
        return "moderate"
    return "high"


def _das28_common(
    answers: Mapping[str, Any], reactant: str
) -> tuple[tuple[int, int, Decimal, Decimal] | None, tuple[str, ...]]:
    """Tender and swollen counts, the acute-phase reactant and the patient global, or what is missing."""
    tender, missing_tender = _joint_count("tender", answers)
    swollen, missing_swollen = _joint_count("swollen", answers)
    level = _number(reactant, answers.get(reactant))
    patient_global = _in_range("patient_global_vas", answers.get("patient_global_vas"), 0, 100)
    missing = (
        *missing_tender,
        *missing_swollen,
        *((reactant,) if level is None else ()),
        *(("patient_global_vas",) if patient_global is None else ()),
    )
    if missing:
        return None, missing
    return (tender, swollen, level, patient_global), ()


def _joints_term(tender: int, swollen: int) -> Decimal:
    return Decimal("0.56") * Decimal(tender).sqrt() + Decimal("0.28") * Decimal(swollen).sqrt()


@score("das28_esr", source="Prevoo MLL et al., Arthritis Rheum 1995;38:44-8")
def das28_esr(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """DAS28-ESR: 0.56·√TJC28 + 0.28·√SJC28 + 0.70·ln(ESR mm/h) + 0.014·patient global (mm), 2 decimals."""
    parts, missing = _das28_common(answers, "esr_mm_h")
    if parts is None:
        note = _missing_note("DAS28-ESR", "the 56 joint answers, the ESR and the patient global", missing)
        return ScoreResult(None, missing=missing, note=note)
    tender, swollen, esr, patient_global = parts
    if esr <= 0:
        return ScoreResult(None, note=f"DAS28-ESR needs an ESR above 0 mm/h (ln of {esr} is undefined)")
    value = _round(_joints_term(tender, swollen) + Decimal("0.70") * esr.ln() + Decimal("0.014") * patient_global, 2)
    return ScoreResult(value, category=das28_category(value, context.get("das28_cutoffs")))


@score(
    "das28_crp",
    source=(
        "Prevoo MLL et al., Arthritis Rheum 1995;38:44-8; CRP formula of the DAS28 website (Fransen J, Radboud UMC) "
        "as used by Inoue E et al., Ann Rheum Dis 2007;66:407-9 and Wells G et al., Ann Rheum Dis 2009;68:954-60"
    ),
)
def das28_crp(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """DAS28-CRP: 0.56·√TJC28 + 0.28·√SJC28 + 0.36·ln(CRP mg/L + 1) + 0.014·patient global + 0.96, 2 decimals."""
    parts, missing = _das28_common(answers, "crp_mg_l")
    if parts is None:
        note = _missing_note("DAS28-CRP", "the 56 joint answers, the CRP and the patient global", missing)
        return ScoreResult(None, missing=missing, note=note)
    tender, swollen, crp, patient_global = parts
    if crp < 0:
        raise _Unusable(f"crp_mg_l: {crp} is below 0")
    crp_term = Decimal("0.36") * (crp + 1).ln()
    value = _round(_joints_term(tender, swollen) + crp_term + Decimal("0.014") * patient_global + Decimal("0.96"), 2)
    # The ESR cut-offs apply unless the trial sets its own for DAS28-CRP (Inoue 2007 found them lower).
    cutoffs = context.get("das28_crp_cutoffs") or context.get("das28_cutoffs")
    return ScoreResult(value, category=das28_category(value, cutoffs))


# --- ACR response (two visits, not a per-entry field score) ----------------------------------------

ACR_LEVELS = (20, 50, 70)
ACR_JOINT_COUNTS = ("tjc28", "sjc28")
ACR_OTHER_MEASURES = ("pain_vas", "patient_global_vas", "physician_global_vas", "haq_di")
ACR_ACUTE_PHASE_REACTANTS = ("esr_mm_h", "crp_mg_l")


def _and(*values: bool | None) -> bool | None:
    """Three-valued AND: False if any is False, else None if any is unknown, else True."""
    if any(value is False for value in values):
        return False
    if any(value is None for value in values):
        return None
    return True


def _acr_met(level: int, exact: Mapping[str, Decimal | None], zero_baseline: set[str]) -> bool | None:
    """Whether ACR<level> is met: True, False, or None when a missing measure could decide it."""

    def improved(measure: str) -> bool | None:
        if measure in zero_baseline:
            return False
        pct = exact[measure]
        return None if pct is None else pct >= level

    others = [improved(measure) for measure in exact if measure not in ACR_JOINT_COUNTS]
    at_least, unknown = others.count(True), others.count(None)
    core_set = True if at_least >= 3 else False if at_least + unknown < 3 else None
    return _and(*(improved(measure) for measure in ACR_JOINT_COUNTS), core_set)


def acr_response(
    baseline: Mapping[str, Any], current: Mapping[str, Any], *, acute_phase_reactant: str | None = None
) -> dict[str, Any]:
    """ACR20/50/70 response from baseline to a later visit (Felson DT et al., Arthritis Rheum 1995;38:727-35).

    Measures are read by their CRF field names: tjc28, sjc28, pain_vas, patient_global_vas,
    physician_global_vas, haq_di and esr_mm_h or crp_mg_l (the one given, else ESR when both visits
    have it, else CRP). ACRx: at least x % improvement in tender AND swollen counts AND in at least
    3 of the other 5 measures. Decisions use the exact percentage; `improvements` reports it to 1 dp.

    Zero baseline: no percentage improvement exists. For the tender or swollen count that makes the
    response not evaluable (None). For another measure it counts as not improved.
    A missing or unusable measure is unknown: the response is None only if it could change the answer.
    """
    notes: list[str] = []
    if acute_phase_reactant is None:
        at_both_visits = [
            name for name in ACR_ACUTE_PHASE_REACTANTS if not (_blank(baseline.get(name)) or _blank(current.get(name)))
        ]
        acute_phase_reactant = at_both_visits[0] if at_both_visits else ACR_ACUTE_PHASE_REACTANTS[0]
    elif acute_phase_reactant not in ACR_ACUTE_PHASE_REACTANTS:
        raise ValueError(f"acute-phase reactant must be one of {', '.join(ACR_ACUTE_PHASE_REACTANTS)}")
    measures = (*ACR_JOINT_COUNTS, *ACR_OTHER_MEASURES, acute_phase_reactant)

    exact: dict[str, Decimal | None] = {}
    zero_baseline: set[str] = set()
    with localcontext(_ARITHMETIC):
        for measure in measures:
            try:
                before, after = _number(measure, baseline.get(measure)), _number(measure, current.get(measure))
                if any(value is not None and value < 0 for value in (before, after)):
                    raise _Unusable(f"{measure}: a value is below 0")
            except _Unusable as problem:
                notes.append(f"{problem} (treated as missing)")
                exact[measure] = None
                continue
            if before is None or after is None:
                visits = " and ".join(
                    visit for visit, value in (("baseline", before), ("the current visit", after)) if value is None
                )
                notes.append(f"{measure}: missing at {visits}")
                exact[measure] = None
            elif before == 0:
                exact[measure] = None
                zero_baseline.add(measure)
                if measure not in ACR_JOINT_COUNTS:
                    notes.append(f"{measure}: baseline 0, no percentage improvement, counted as not improved")
            else:
                exact[measure] = (before - after) / before * 100

        not_evaluable = [measure for measure in ACR_JOINT_COUNTS if measure in zero_baseline]
        result: dict[str, Any] = {
            f"acr{level}": None if not_evaluable else _acr_met(level, exact, zero_baseline) for level in ACR_LEVELS
        }
        result["improvements"] = {measure: None if pct is None else _round(pct, 1) for measure, pct in exact.items()}
    if not_evaluable:
        counts = " and ".join(not_evaluable)
        notes.insert(0, f"Not evaluable: {counts} {'is' if len(not_evaluable) == 1 else 'are'} 0 at baseline")
    result["note"] = "; ".join(notes)
    return result


# --- ACR response as CRF items: the current visit's CRFs against the baseline's ----------------------

# Every measure of `acr_response`, at the current visit and at baseline (`<measure>_baseline`).
ACR_INPUTS = tuple(
    name
    for measure in (*ACR_JOINT_COUNTS, *ACR_OTHER_MEASURES, *ACR_ACUTE_PHASE_REACTANTS)
    for name in (measure, f"{measure}_baseline")
)
ACR_SOURCE = "Felson DT et al., Arthritis Rheum 1995;38:727-35 (ACR preliminary definition of improvement in RA)"


def _acr_level(level: int, values: Mapping[str, Any]) -> ScoreResult:
    """ACR<level> met (1) or not (0) at this visit against baseline; no value when it cannot be decided."""
    measures = (*ACR_JOINT_COUNTS, *ACR_OTHER_MEASURES, *ACR_ACUTE_PHASE_REACTANTS)
    baseline = {measure: values.get(f"{measure}_baseline") for measure in measures}
    current = {measure: values.get(measure) for measure in measures}
    result = acr_response(baseline, current)
    met = result[f"acr{level}"]
    if met is None:
        return ScoreResult(None, note=result["note"] or f"ACR{level} cannot be decided")
    return ScoreResult(1 if met else 0, category=f"ACR{level} met" if met else f"ACR{level} not met", note=result["note"])


def _register_acr(level: int) -> None:
    def acr(**values: Any) -> ScoreResult:
        return _acr_level(level, values)

    acr.__doc__ = f"ACR{level} response at this visit against baseline: 1 met, 0 not met (Felson 1995 definition)."
    acr.__name__ = f"acr{level}"
    score(f"acr{level}", source=ACR_SOURCE, inputs=ACR_INPUTS)(acr)


for _level in ACR_LEVELS:
    _register_acr(_level)


# --- EULAR response ----------------------------------------------------------------------------------

# van Gestel AM et al., Arthritis Rheum 1996;39:34-40 (the EULAR response criteria), with the DAS28
# thresholds of van Gestel AM et al., Arthritis Rheum 1998;41:1845-50 and Fransen J, van Riel PLCM,
# Clin Exp Rheumatol 2005;23(5 Suppl 39):S93-9: the improvement (baseline minus current DAS28) and the
# DAS28 attained decide together.
#                            improvement > 1.2   > 0.6 and <= 1.2   <= 0.6
#   present DAS28 <= 3.2          good              moderate          none
#   3.2 < DAS28 <= 5.1            moderate          moderate          none
#   DAS28 > 5.1                   moderate          none              none
EULAR_IMPROVEMENT_LARGE = Decimal("1.2")
EULAR_IMPROVEMENT_SMALL = Decimal("0.6")
EULAR_LOW_ACTIVITY = Decimal("3.2")
EULAR_HIGH_ACTIVITY = Decimal("5.1")
EULAR_RESPONSES = {2: "good response", 1: "moderate response", 0: "no response"}


def eular_response_level(baseline: Decimal, current: Decimal) -> int:
    """EULAR response from two DAS28 values: 2 good, 1 moderate, 0 none (van Gestel 1996/1998 table)."""
    improvement = baseline - current
    if improvement > EULAR_IMPROVEMENT_LARGE:
        return 2 if current <= EULAR_LOW_ACTIVITY else 1
    if improvement > EULAR_IMPROVEMENT_SMALL:
        return 1 if current <= EULAR_HIGH_ACTIVITY else 0
    return 0


@score(
    "eular_response",
    source=(
        "van Gestel AM et al., Arthritis Rheum 1996;39:34-40; DAS28 thresholds: van Gestel AM et al., "
        "Arthritis Rheum 1998;41:1845-50; Fransen J, van Riel PLCM, Clin Exp Rheumatol 2005;23(5 Suppl 39):S93-9"
    ),
    inputs=("das28", "das28_baseline"),
)
def eular_response(das28: Any, das28_baseline: Any) -> ScoreResult:
    """EULAR response (2 good, 1 moderate, 0 none) from the DAS28 improvement since baseline and the DAS28 reached."""
    current, before = _in_range("das28", das28, 0, 10), _in_range("das28_baseline", das28_baseline, 0, 10)
    missing = tuple(name for name, value in (("das28", current), ("das28_baseline", before)) if value is None)
    if missing:
        note = _not_given("EULAR response", {"das28": "the DAS28 of this visit", "das28_baseline": "the baseline DAS28"}, missing)
        return ScoreResult(None, missing=missing, note=note)
    level = eular_response_level(before, current)
    note = f"DAS28 {_round(before, 2)} → {_round(current, 2)} (improvement {_round(before - current, 2)})"
    return ScoreResult(level, category=EULAR_RESPONSES[level], note=note)


# --- CDAI and SDAI -------------------------------------------------------------------------------------

# Aletaha D, Smolen JS, Clin Exp Rheumatol 2005;23(5 Suppl 39):S100-8 (definitions and disease-activity
# cut-offs); SDAI first published by Smolen JS et al., Rheumatology 2003;42:244-57; CDAI by Aletaha D et
# al., Arthritis Res Ther 2005;7:R796-806. The global assessments are on 0-10 cm scales (our VAS items are
# 0-100 mm: divided by 10) and the CRP in mg/dL (our items are mg/L: divided by 10).
CDAI_CUTOFFS = MappingProxyType({"remission": Decimal("2.8"), "low": Decimal("10"), "moderate": Decimal("22")})
SDAI_CUTOFFS = MappingProxyType({"remission": Decimal("3.3"), "low": Decimal("11"), "moderate": Decimal("26")})


def _activity(value: Decimal, cutoffs: Mapping[str, Decimal]) -> str:
    """remission <= the remission cut-off, low <= low, moderate <= moderate, high above (Aletaha & Smolen 2005)."""
    for category in ("remission", "low", "moderate"):
        if value <= cutoffs[category]:
            return category
    return "high"


def _cdai_parts(tjc28: Any, sjc28: Any, patient_global_vas: Any, physician_global_vas: Any) -> tuple[Decimal | None, tuple[str, ...]]:
    parts = {
        "tjc28": _in_range("tjc28", tjc28, 0, 28),
        "sjc28": _in_range("sjc28", sjc28, 0, 28),
        "patient_global_vas": _in_range("patient_global_vas", patient_global_vas, 0, 100),
        "physician_global_vas": _in_range("physician_global_vas", physician_global_vas, 0, 100),
    }
    missing = tuple(name for name, value in parts.items() if value is None)
    if missing:
        return None, missing
    return parts["tjc28"] + parts["sjc28"] + (parts["patient_global_vas"] + parts["physician_global_vas"]) / 10, ()


@score(
    "cdai",
    source="Aletaha D et al., Arthritis Res Ther 2005;7:R796-806; cut-offs Aletaha D, Smolen JS, Clin Exp Rheumatol 2005;23(5 Suppl 39):S100-8",
    inputs=("tjc28", "sjc28", "patient_global_vas", "physician_global_vas"),
)
def cdai(tjc28: Any, sjc28: Any, patient_global_vas: Any, physician_global_vas: Any) -> ScoreResult:
    """Clinical Disease Activity Index: TJC28 + SJC28 + patient and physician global (0-10 cm), 0-76."""
    value, missing = _cdai_parts(tjc28, sjc28, patient_global_vas, physician_global_vas)
    if value is None:
        return ScoreResult(None, missing=missing, note=_missing_note("CDAI", "both joint counts and both global assessments", missing))
    return ScoreResult(_round(value, 1), category=_activity(value, CDAI_CUTOFFS))


@score(
    "sdai",
    source="Smolen JS et al., Rheumatology 2003;42:244-57; cut-offs Aletaha D, Smolen JS, Clin Exp Rheumatol 2005;23(5 Suppl 39):S100-8",
    inputs=("tjc28", "sjc28", "patient_global_vas", "physician_global_vas", "crp_mg_l"),
)
def sdai(tjc28: Any, sjc28: Any, patient_global_vas: Any, physician_global_vas: Any, crp_mg_l: Any) -> ScoreResult:
    """Simplified Disease Activity Index: the CDAI plus the CRP in mg/dL, to 2 decimals."""
    value, missing = _cdai_parts(tjc28, sjc28, patient_global_vas, physician_global_vas)
    crp = _in_range("crp_mg_l", crp_mg_l, 0, 500)
    missing = (*missing, *(("crp_mg_l",) if crp is None else ()))
    if missing:
        return ScoreResult(None, missing=missing, note=_missing_note("SDAI", "both joint counts, both global assessments and the CRP", missing))
    value = value + crp / 10
    return ScoreResult(_round(value, 2), category=_activity(value, SDAI_CUTOFFS))


# --- Mouth in systemic sclerosis -----------------------------------------------------------------------

MHISS_ITEMS = tuple(f"mhiss_{number:02d}" for number in range(1, 13))


@score("mhiss_total", source="Mouthon L et al., Ann Rheum Dis 2007;66:1651-5")
def mhiss_total(answers: Mapping[str, Any], context: Mapping[str, Any]) -> ScoreResult:
    """Mouth Handicap in Systemic Sclerosis total: the sum of 12 items rated 0-4 (0-48, higher is worse); all 12 needed."""
    # Mouthon 2007 publishes no rule for unanswered items, so nothing is prorated.
    return _item_total("The MHISS total", answers, MHISS_ITEMS, top=4)
