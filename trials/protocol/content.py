"""CRF content in several languages: the texts of a CRF file, checked, stored and read per language.

In a CRF file a label, help text, unit, choice label, section title, edit-check message or the CRF's
title is a string
(in the CRF's `default_language`) or a mapping `{en: …, fr: …, es: …}` covering its `languages`.
The stored definition (CrfDefinition.definition) keeps, for each such key, the default-language
string under the key itself (what every reader of the definition has always read) and the mapping
under `<key>_i18n`; `localized()` reads a text in a language, falling back to the default one.
Codes, item names and expressions never depend on the language.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

from trials.protocol.schema import CONTENT_LANGUAGES

I18N = "_i18n"
FIELD_TEXTS = ("label", "help", "unit")
# A unit given as a plain string is a symbol (mm, kg/m², mg/dL): the same in every language.
NEUTRAL_WHEN_PLAIN = {"unit"}


def default_text(value: Any, default_language: str) -> str:
    """The default-language text of a string-or-mapping value."""
    if isinstance(value, dict):
        return value.get(default_language) or ""
    return value or ""


def localized(spec: dict, key: str, language: str | None) -> str:
    """`spec[key]` in `language` (a stored definition), else in the CRF's default language."""
    if language:
        text = (spec.get(key + I18N) or {}).get(language)
        if text:
            return text
    return spec.get(key) or ""


def _texts(data: dict) -> Iterator[tuple[tuple, str, Any, str]]:
    """Every translatable text of a CRF file's data: (location, key, value, what it belongs to)."""
    if not isinstance(data, dict):
        return
    yield ("title",), "title", data.get("title"), "the CRF title"
    for name, choices in (data.get("codelists") or {}).items():
        for index, choice in enumerate(choices or []):
            if isinstance(choice, dict):
                yield ("codelists", name, index, "label"), "label", choice.get("label"), f"choice {choice.get('code')!r} of codelist '{name}'"
    for index, section in enumerate(data.get("sections") or []):
        if isinstance(section, dict):
            what = f"section '{default_text(section.get('name'), data.get('default_language') or 'en')}'"
            yield ("sections", index, "name"), "name", section.get("name"), what
            yield ("sections", index, "help"), "help", section.get("help"), what

    def fields(items: list, loc: tuple) -> Iterator[tuple[tuple, str, Any, str]]:
        for index, item in enumerate(items or []):
            if not isinstance(item, dict):
                continue
            here = loc + (index,)
            what = f"item '{item.get('name')}'"
            for key in FIELD_TEXTS:
                yield here + (key,), key, item.get(key), what
            if isinstance(item.get("choices"), list):
                for c_index, choice in enumerate(item["choices"]):
                    if isinstance(choice, dict):
                        yield here + ("choices", c_index, "label"), "label", choice.get("label"), f"choice {choice.get('code')!r} of {what}"
            yield from checks(item.get("checks"), here + ("checks",), f" on {what}")
            yield from fields(item.get("fields") or [], here + ("fields",))

    def checks(rules: Any, loc: tuple, where: str = "") -> Iterator[tuple[tuple, str, Any, str]]:
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                yield loc + (index, "message"), "message", rule.get("message"), f"check {rule.get('expression')!r}{where}"

    yield from checks(data.get("checks"), ("checks",))
    yield from fields(data.get("fields") or [], ("fields",))


def check_languages(data: dict, languages: list[str], default_language: str, report: Callable[[tuple, str], None]) -> None:
    """Report each text whose languages differ from the CRF's `languages`: an unknown code, a
    language the CRF does not declare, a declared language missing (at the text's own line)."""
    wanted = list(languages)
    for loc, key, value, what in _texts(data):
        if isinstance(value, dict):
            for code in value:
                if code not in CONTENT_LANGUAGES:
                    report(loc + (code,), f"unknown language code '{code}' in the {key} of {what} (known: {', '.join(CONTENT_LANGUAGES)})")
                elif code not in wanted:
                    report(loc + (code,), f"the {key} of {what} is in '{code}', which 'languages' does not declare ({', '.join(wanted)})")
            missing = [code for code in wanted if not str(value.get(code) or "").strip()]
            if missing:
                report(loc, f"the {key} of {what} has no text in: {', '.join(missing)} (the CRF declares languages {', '.join(wanted)})")
        elif isinstance(value, str) and value.strip() and len(wanted) > 1 and key not in NEUTRAL_WHEN_PLAIN:
            missing = [code for code in wanted if code != default_language]
            report(loc, f"the {key} of {what} is only in '{default_language}': give a mapping with {', '.join(missing)} too")


def split_localized(definition: dict, default_language: str) -> dict:
    """The definition to store: each mapping text becomes its default-language string, the
    mapping kept beside it under `<key>_i18n`."""
    out = copy.deepcopy(definition)

    def split(obj: dict, keys: tuple[str, ...]) -> None:
        for key in keys:
            value = obj.get(key)
            if isinstance(value, dict):
                obj[key] = value.get(default_language) or ""
                obj[key + I18N] = value

    def fields(items: list) -> None:
        for item in items or []:
            split(item, FIELD_TEXTS)
            for rule in item.get("checks") or []:
                split(rule, ("message",))
            if isinstance(item.get("choices"), list):
                for choice in item["choices"]:
                    split(choice, ("label",))
            fields(item.get("fields") or [])

    split(out, ("title",))
    for choices in (out.get("codelists") or {}).values():
        for choice in choices:
            split(choice, ("label",))
    for section in out.get("sections") or []:
        split(section, ("name", "help"))
    for rule in out.get("checks") or []:
        split(rule, ("message",))
    fields(out.get("fields") or [])
    return out


def localized_definition(definition: dict, language: str | None) -> dict:
    """A stored definition with each text in `language` where the CRF has it (else the default
    language), for a page that reads the definition itself (the printed CRF): the reverse of
    `split_localized`, one language at a time. Codes, names and expressions are untouched."""
    out = copy.deepcopy(definition)
    if not language:
        return out

    def read(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in [k for k in obj if k.endswith(I18N)]:
                text = (obj.get(key) or {}).get(language)
                if text:
                    obj[key[: -len(I18N)]] = text
            for value in obj.values():
                read(value)
        elif isinstance(obj, list):
            for value in obj:
                read(value)

    read(out)
    return out
