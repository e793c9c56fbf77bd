"""The participant's questionnaire, a few questions per screen: steps, parsing, answers kept in the session.

Both ways in (participant mode on the site's tablet, a personal link on her phone) run the same
steps: one step per section of the CRF, a long section cut into screens of three questions (HAQ-DI's
categories hold 2-3 questions), items outside sections one per step, calculated items never
shown. Answers are kept as typed in the session until the last step, then parsed and saved through
the CRF's own validator (`services.pro_submit`); nothing is written to trial data before that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.utils.translation import gettext as _

from trials.protocol.engine import DECLINED, CrfSchema, Item, validate_answers
from trials.visits.forms import form_field

DECLINE_VALUE = "__declined__"  # "I prefer not to answer", posted as the item's value
SCREEN_QUESTIONS = 3  # HAQ-DI's categories (2-3 questions) stay whole


@dataclass
class Question:
    item: Item
    kind: str  # "text" (descriptive), "choice", "multi", "vas", "number", "input", "date"
    choices: list[tuple[str, str]] = field(default_factory=list)
    value: Any = ""
    declined: bool = False
    error: str = ""

    @property
    def name(self) -> str:
        return self.item.name


def _kind(item: Item, parser: forms.Field | None) -> tuple[str, list[tuple[str, str]]]:
    if item.type == "descriptive" or parser is None:
        return "text", []
    if item.type == "multiple_choice":
        return "multi", [(str(v), str(label)) for v, label in parser.choices]
    if isinstance(parser, forms.TypedChoiceField):
        return "choice", [(str(v), str(label)) for v, label in parser.choices if v != ""]
    if parser.widget.attrs.get("data-edc-slider"):
        return "vas", []
    if item.type in {"integer", "decimal"}:
        return "number", []
    if item.type == "date":
        return "date", []
    return "input", []


def steps_for(schema: CrfSchema) -> list[list[Item]]:
    """The screens of a questionnaire: a section per screen, items without a section one by one
    (an instruction stays with the question after it)."""
    steps: list[list[Item]] = []
    for section, items in schema.blocks:
        shown = [i for i in items if i.type not in {"calculated", "repeating_group"}]
        if not shown:
            continue
        if section is not None:
            steps.extend(_chunks(shown))
            continue
        pending: list[Item] = []
        for item in shown:
            pending.append(item)
            if item.type != "descriptive":
                steps.append(pending)
                pending = []
        if pending:
            steps.append(pending)
    return steps


def _chunks(items: list[Item]) -> list[list[Item]]:
    """A long section in screens of at most SCREEN_QUESTIONS questions (COCHIN's eight kitchen
    items would be a long scroll on a phone); its instructions stay on the first screen."""
    screens: list[list[Item]] = [[]]
    for item in items:
        if item.type != "descriptive" and sum(i.type != "descriptive" for i in screens[-1]) == SCREEN_QUESTIONS:
            screens.append([])
        screens[-1].append(item)
    return [screen for screen in screens if screen]


def _parse(item: Item, raw: Any) -> tuple[Any, str]:  # noqa: ANN401
    """The item's value from what was posted, or an error message."""
    parser = form_field(item)
    if parser is None:
        return None, ""
    try:
        return parser.clean(raw), ""
    except forms.ValidationError as error:
        return None, " ".join(str(m) for m in error.messages)


def parsed(schema: CrfSchema, stored: dict) -> tuple[dict, dict]:
    """All kept answers as the validator takes them: values, and the declined items as missing codes."""
    answers: dict = {}
    missing: dict = {}
    for step in steps_for(schema):
        for item in step:
            if item.type == "descriptive":
                continue
            raw = stored.get(item.name)
            if raw == DECLINE_VALUE and item.prefer_not_to_answer:
                missing[item.name] = {"code": DECLINED}
                answers[item.name] = None
                continue
            value, _error = _parse(item, raw)
            answers[item.name] = value
    return answers, missing


def hidden_items(schema: CrfSchema, stored: dict, context: dict) -> set[str]:
    """Items the CRF's branching hides given the answers so far (never asked)."""
    answers, missing = parsed(schema, stored)
    return set(validate_answers(schema, answers, missing=missing, context=context).hidden)


def questions(step: list[Item], stored: dict, errors: dict | None = None) -> list[Question]:
    shown = []
    for item in step:
        parser = form_field(item) if item.type != "descriptive" else None
        kind, choices = _kind(item, parser)
        raw = stored.get(item.name, [] if kind == "multi" else "")
        declined = raw == DECLINE_VALUE
        shown.append(Question(item, kind, choices, "" if declined else raw, declined, (errors or {}).get(item.name, "")))
    return shown


def read_step(step: list[Item], post, *, check: bool) -> tuple[dict, dict]:  # noqa: ANN001
    """What the participant posted for one screen, and (when `check`) a message per unreadable or
    missing answer. Unanswered items are kept as unanswered."""
    values: dict = {}
    errors: dict = {}
    for item in step:
        if item.type == "descriptive":
            continue
        if item.type == "multiple_choice":
            raw: Any = post.getlist(item.name)
        else:
            raw = (post.get(item.name) or "").strip()
        if item.prefer_not_to_answer and post.get(f"decline-{item.name}") == "on" and raw in ("", []):
            raw = DECLINE_VALUE
        if raw == DECLINE_VALUE and not item.prefer_not_to_answer:
            raw = ""
        values[item.name] = raw
        if not check or raw == DECLINE_VALUE:
            continue
        if raw in ("", []):
            if item.required:
                errors[item.name] = (
                    _("Please answer this question, or choose “I prefer not to answer”.") if item.prefer_not_to_answer
                    else _("Please answer this question.")
                )
            continue
        _value, error = _parse(item, raw)
        if error:
            errors[item.name] = error
    return values, errors
