"""Eligibility: the checklist built from a trial's criteria, answered from the screening data where
the data allow (a criterion's CEL expression over the eligibility CRFs, or over one lesion's row
for lesion-level criteria), and by the coordinator otherwise.

A criterion is "met" when its statement is true. A participant is eligible when every inclusion
criterion is met, no exclusion criterion is met and, in a trial with lesion-level criteria, at
least one lesion meets every lesion inclusion and no lesion exclusion. The stored coding stays
met / not met for both kinds; people read an exclusion criterion as "Excluded: yes / no"
(`answer_label`), never "Met / Not met", which made an investigator click "Not met" to include.

An expression may decide only some cases and give null for the rest (`hyperbaric_last_month ==
true ? true : null`): where it decides, a hand answer that disagrees is refused; elsewhere the
investigator answers.

A criterion may apply to some participants only (`applies_when`, CEL over the same data: ASC-DU
I04, non-childbearing potential, applies to women). Where it evaluates to false the criterion is
answered "not applicable" from the data and neither includes nor excludes; "not applicable" by hand
is offered only for such criteria, and refused where the data say the criterion applies.

Criteria may read the participant's medication log: `meds` (the CONMED records) and
`screening_date`, through the functions of trials.protocol.medications (`taking`, `days_taking`,
`took_within`). With no CONMED record yet, `meds` is unknown and such criteria are answered by
hand: an empty log is not evidence of no medication.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cel
from django.utils.translation import gettext as _

from trials.participants import hooks
from trials.participants.models import CriterionAnswer, Participant
from trials.protocol.models import Criterion, CriterionKind, CriterionLevel
from trials.protocol import medications
from trials.protocol.engine import ROW_ID, schema_for, to_cel

MET, NOT_MET, UNKNOWN = CriterionAnswer.MET, CriterionAnswer.NOT_MET, CriterionAnswer.UNKNOWN
NOT_APPLICABLE = CriterionAnswer.NOT_APPLICABLE
_PROGRAMS: dict[str, cel.Program] = {}


@dataclass(frozen=True)
class Automatic:
    answer: str
    basis: str


@dataclass
class Evaluation:
    """What the screening data say: answers keyed by (criterion code, lesion row id or "")."""

    answers: dict[tuple[str, str], Automatic] = field(default_factory=dict)
    lesions: dict[str, str] = field(default_factory=dict)  # row id -> a short label
    # Whether a criterion with `applies_when` applies, where the data decide it.
    applies: dict[tuple[str, str], bool] = field(default_factory=dict)


def _program(expression: str) -> cel.Program:
    program = _PROGRAMS.get(expression)
    if program is None:
        program = _PROGRAMS[expression] = cel.compile(expression)
    return program


def _decide(expression: str, context: dict) -> tuple[bool, str] | None:
    """An expression's value over the data with its basis, or None when the data do not decide it."""
    program = _program(expression)
    names = list(program.variables())
    # The medication log may be null (no record yet): the expression says what that means.
    if any(context.get(name) is None for name in names if name not in medications.CRITERION_NAMES):
        return None
    functions = [name for name in program.functions() if name in medications.FUNCTIONS]
    values = {name: context.get(name) for name in names}
    try:
        if functions:
            environment = cel.Context()
            for name in functions:
                environment.add_function(name, medications.FUNCTIONS[name])
            environment.update(values)
            value = program.execute(environment)
        else:
            value = program.execute(values)
    except Exception:  # noqa: BLE001 - an expression the data cannot answer is left to the coordinator
        return None
    if not isinstance(value, bool):
        return None
    return value, ", ".join(f"{name} = {_show(context.get(name))}" for name in sorted(names))


def _apply(criterion: Criterion, context: dict, applies: dict | None = None, key: tuple[str, str] = ("", "")) -> Automatic | None:
    """The criterion's answer from the data, or None when the data do not (yet) decide it."""
    if criterion.applies_when:
        decided = _decide(criterion.applies_when, context)
        if decided is not None and applies is not None:
            applies[key] = decided[0]
        if decided is not None and not decided[0]:
            return Automatic(NOT_APPLICABLE, _("does not apply: %(basis)s") % {"basis": decided[1]})
    if not criterion.expression:
        return None
    decided = _decide(criterion.expression, context)
    if decided is None:
        return None
    return Automatic(MET if decided[0] else NOT_MET, decided[1])


def answer_label(kind: str, answer: str) -> str:
    """How an answer reads on the checklist and in messages: an exclusion criterion as "Excluded: yes/no"."""
    if kind == CriterionKind.EXCLUSION:
        labels = {MET: _("Excluded: yes"), NOT_MET: _("Excluded: no"), UNKNOWN: _("Unknown"), NOT_APPLICABLE: _("Not applicable")}
        return str(labels.get(answer, answer))
    return str(CriterionAnswer(answer).label) if answer in CriterionAnswer.values else answer


def answer_choices(kind: str, *, not_applicable: bool = False) -> list[tuple[str, str]]:
    """The checklist's answers for a criterion of `kind`, in the order shown (stored code, label);
    "not applicable" only for a criterion that applies to some participants (`applies_when`)."""
    codes = (MET, NOT_MET, UNKNOWN, NOT_APPLICABLE) if not_applicable else (MET, NOT_MET, UNKNOWN)
    return [(code, answer_label(kind, code)) for code in codes]


def _show(value: object) -> str:
    if value is None:
        return _("not recorded")
    if isinstance(value, list):  # the medication log
        return "[" + "; ".join(f"{r['name']} ({r['class']}) {r['start']}–{r['stop'] or _('ongoing')}" for r in value) + "]"
    if value is True:
        return _("yes")
    if value is False:
        return _("no")
    return str(value)


def _cel_values(entry) -> dict:  # noqa: ANN001 - a trials.visits CrfEntry (participants.hooks.screening_entries)
    schema = schema_for(entry.crf)
    return {item.name: to_cel(item, entry.answers.get(item.name)) for item in schema.items if item.type != "group"}


def _screening_date(participant: Participant, entries: dict) -> str:
    """The date criteria are judged at: the date of the screening visit (the visit of the first
    eligibility CRF entered), else the site's today."""
    dates = [e.visit.visit_date for e in entries.values() if e.visit.visit_date]
    return (min(dates) if dates else participant.site.today()).isoformat()


def evaluate(participant: Participant) -> Evaluation:
    trial = participant.trial
    settings_ = trial.eligibility or {}
    lesion_spec = settings_.get("lesion")
    codes = set(settings_.get("crfs", [])) | ({lesion_spec["crf"]} if lesion_spec else set())
    entries = hooks.screening_entries(participant, codes)  # the first entry of each eligibility CRF (trials.visits)
    context: dict = {"screening_date": _screening_date(participant, entries), "meds": hooks.medication_log(participant)}
    for code in settings_.get("crfs", []):
        if code in entries:
            context.update(_cel_values(entries[code]))
    result = Evaluation()
    rows: list[dict] = []
    if lesion_spec and lesion_spec["crf"] in entries:
        entry = entries[lesion_spec["crf"]]
        schema = schema_for(entry.crf)
        group = next((i for i in schema.items if i.name == lesion_spec["group"]), None)
        children = {c.name: c for c in (group.children if group else ())}
        for index, row in enumerate(entry.answers.get(lesion_spec["group"]) or [], start=1):
            row_id = row.get(ROW_ID)
            if not row_id:
                continue
            label = row.get("ulcer_id") or row.get("label") or _("lesion %(n)s") % {"n": index}
            result.lesions[row_id] = str(label)
            rows.append({ROW_ID: row_id, **{name: to_cel(child, row.get(name)) for name, child in children.items()}})
    for criterion in trial.criteria.filter(is_active=True):
        if criterion.level == CriterionLevel.LESION:
            for row in rows:
                auto = _apply(criterion, row, result.applies, (criterion.code, row[ROW_ID]))
                if auto is not None:
                    result.answers[(criterion.code, row[ROW_ID])] = auto
        else:
            auto = _apply(criterion, context, result.applies, (criterion.code, ""))
            if auto is not None:
                result.answers[(criterion.code, "")] = auto
    return result


@dataclass
class Assessment:
    """The stored checklist judged: eligible (True/False), or None while answers are missing."""

    failed: list[tuple[Criterion, str]] = field(default_factory=list)
    unanswered: list[tuple[Criterion, str]] = field(default_factory=list)
    lesions: dict[str, str] = field(default_factory=dict)
    eligible_lesions: list[str] = field(default_factory=list)
    no_eligible_lesion: bool = False
    no_lesion_recorded: bool = False

    @property
    def eligible(self) -> bool | None:
        if self.failed or self.no_eligible_lesion:
            return False
        return None if self.unanswered or self.no_lesion_recorded else True

    def _name(self, criterion: Criterion, lesion: str) -> str:
        return f"{criterion.code} ({self.lesions.get(lesion, lesion)})" if lesion else criterion.code

    def failed_summary(self) -> str:
        parts = [self._name(c, lesion) + " " + (_("not met") if c.kind == CriterionKind.INCLUSION else _("excluded")) for c, lesion in self.failed]
        if self.no_eligible_lesion:
            parts.append(_("no eligible lesion"))
        return "; ".join(parts)

    def summary(self) -> str:
        if self.eligible is False:
            return _("not eligible: %(failed)s") % {"failed": self.failed_summary()}
        if self.eligible is None and not self.unanswered:
            return _("eligibility is not established: no lesion is recorded in the screening CRF")
        if self.eligible is None:
            names = ", ".join(self._name(c, lesion) for c, lesion in self.unanswered[:8])
            more = len(self.unanswered) - 8
            return _("eligibility is not established: %(names)s%(more)s unanswered or unknown") % {
                "names": names, "more": _(" and %(n)s more") % {"n": more} if more > 0 else ""}
        return _("eligible")


def assess(participant: Participant, evaluation: Evaluation | None = None) -> Assessment:
    """Judge the checklist (a criterion answered "unknown" counts as not established).

    Criteria the screening data decide are judged on the data as they are now, not on the answer
    stored when the checklist was saved: a CRF corrected since (a date of birth, an ulcer row) counts,
    and a stored automatic answer the data no longer decide is not established. The coordinator's
    answers count for the rest."""
    evaluation = evaluation or evaluate(participant)
    criteria = list(participant.trial.criteria.filter(is_active=True).order_by("order"))
    stored = {(a.criterion_id, a.lesion): a.answer for a in participant.eligibility_answers.all() if not a.automatic}
    by_code = {c.code: c for c in criteria}
    for (code, lesion), auto in evaluation.answers.items():
        if code in by_code:
            stored[(by_code[code].pk, lesion)] = auto.answer
    result = Assessment(lesions=evaluation.lesions)
    lesion_criteria = [c for c in criteria if c.level == CriterionLevel.LESION]
    for criterion in criteria:
        if criterion.level == CriterionLevel.LESION:
            continue
        answer = stored.get((criterion.pk, ""), UNKNOWN)
        _judge(result, criterion, "", answer)
    if lesion_criteria and not evaluation.lesions:
        result.no_lesion_recorded = True
    elif lesion_criteria:
        pending = False
        for lesion in evaluation.lesions:
            lesion_result = Assessment(lesions=evaluation.lesions)
            for criterion in lesion_criteria:
                _judge(lesion_result, criterion, lesion, stored.get((criterion.pk, lesion), UNKNOWN))
            if lesion_result.eligible:
                result.eligible_lesions.append(lesion)
            elif lesion_result.eligible is None:
                pending = True
                result.unanswered.extend(lesion_result.unanswered)
        if result.eligible_lesions:
            # One eligible lesion is enough: the others' open questions do not hold up enrolment.
            result.unanswered = [(c, lesion) for c, lesion in result.unanswered if not lesion]
        elif not pending:
            result.no_eligible_lesion = True
    return result


def _judge(result: Assessment, criterion: Criterion, lesion: str, answer: str) -> None:
    if answer == NOT_APPLICABLE:
        return  # neither includes nor excludes
    if answer == UNKNOWN:
        result.unanswered.append((criterion, lesion))
    elif (criterion.kind == CriterionKind.INCLUSION) != (answer == MET):
        result.failed.append((criterion, lesion))


