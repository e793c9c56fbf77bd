"""JSON answers -> the parsed values the CRF engine takes (what the page's form fields produce).

The engine validates parsed values (dates, Decimals, choice codes); JSON brings strings, numbers,
booleans, lists and objects of any kind. Each value is parsed by its item's type here, and a value
of the wrong kind is a field error (400), never an exception in the engine.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.translation import gettext as _

from trials.protocol.engine import CrfSchema, Item

NOT_ENTERED = frozenset({"calculated", "descriptive"})


class Unparseable(ValueError):
    pass


def _code(item: Item, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Unparseable(_("Give one of the listed codes."))
    if isinstance(value, str) and "\x00" in value:
        raise Unparseable(_("This value contains a character that cannot be stored."))
    codes = {str(code): code for code, _label in item.choices}
    return codes.get(str(value), str(value))


def _value(item: Item, value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str) and "\x00" in value:
        raise Unparseable(_("This value contains a character that cannot be stored."))
    kind = item.type
    if kind in {"text", "long_text"}:
        if not isinstance(value, str):
            raise Unparseable(_("Give a text."))
        return value
    if kind == "yes_no":
        if not isinstance(value, bool):
            raise Unparseable(_("Give true or false."))
        return value
    if kind in {"integer", "scale"} and not item.choices:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            raise Unparseable(_("Give a whole number."))
        return int(value)
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Unparseable(_("Give a number."))
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise Unparseable(_("Give a number.")) from None
        if not number.is_finite():
            raise Unparseable(_("Give a number."))
        return number
    if kind == "date":
        try:
            return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else _bad_date()
        except ValueError:
            raise Unparseable(_("Give a date as YYYY-MM-DD.")) from None
    if kind == "datetime":
        try:
            return datetime.fromisoformat(value) if isinstance(value, str) else _bad_date()
        except ValueError:
            raise Unparseable(_("Give a date and time in ISO 8601.")) from None
    if kind in {"single_choice", "scale"}:
        return _code(item, value)
    if kind == "multiple_choice":
        if not isinstance(value, list):
            raise Unparseable(_("Give a list of codes."))
        return [_code(item, v) for v in value]
    raise Unparseable(_("This item is not entered."))


def _bad_date() -> date:
    raise ValueError


def parse_answers(schema: CrfSchema, answers: dict) -> tuple[dict, dict[str, list[str]]]:
    """(parsed answers, errors by item name). Unknown names are errors: a typo must not pass as
    an unanswered item."""
    items = {item.name: item for item in schema.items}
    parsed: dict = {}
    errors: dict[str, list[str]] = {}
    for name, value in answers.items():
        item = items.get(name)
        if item is None or item.type in NOT_ENTERED:
            errors[name] = [_("No such item in this CRF version.") if item is None else _("This item is calculated, not entered.")]
            continue
        if item.type == "repeating_group":
            if value is None:
                parsed[name] = []
                continue
            if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
                errors[name] = [_("Give a list of rows (objects).")]
                continue
            children = {c.name: c for c in item.children}
            rows = []
            for index, row in enumerate(value, start=1):
                out = {}
                for key, cell in row.items():
                    if key == "_row_id":
                        out[key] = str(cell) if cell is not None else None
                        continue
                    child = children.get(key)
                    if child is None or child.type in NOT_ENTERED:
                        errors[f"{name}[{index}].{key}"] = [_("No such item in this group.") if child is None else _("This item is calculated, not entered.")]
                        continue
                    try:
                        out[key] = _value(child, cell)
                    except Unparseable as problem:
                        errors[f"{name}[{index}].{key}"] = [str(problem)]
                rows.append(out)
            parsed[name] = rows
            continue
        try:
            parsed[name] = _value(item, value)
        except Unparseable as problem:
            errors[name] = [str(problem)]
    return parsed, errors
