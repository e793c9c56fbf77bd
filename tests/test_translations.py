"""The French and Spanish catalogues of the interface (edc/locale, docs/translations.md): every string
of the code is in them, translated, not fuzzy, with its placeholders and HTML kept, and the committed
compiled catalogues (.mo) say the same as the .po files (a machine without gettext serves them as is)."""

import ast
import contextlib
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import translation

LOCALE = Path(settings.BASE_DIR) / "edc" / "locale"
LANGUAGES = ["fr", "es"]
# GNU gettext manual, "Plural forms" (and Unicode CLDR): French singular for 0 and 1, Spanish for 1 only.
PLURAL_FORMS = {"fr": "nplurals=2; plural=(n > 1);", "es": "nplurals=2; plural=(n != 1);"}
# Where the interface's strings live: what `makemessages` reads of the repository when run with the
# --ignore options of docs/translations.md (static/js has no gettext: no djangojs domain).
CODE = ["edc", "trials", "templates"]

PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")
BRACE = re.compile(r"\{[^{}]*\}")
TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9]*)")


def catalogue(language: str) -> polib.POFile:
    return polib.pofile(str(LOCALE / language / "LC_MESSAGES" / "django.po"))


def entries(po: polib.POFile) -> list[polib.POEntry]:
    return [entry for entry in po if not entry.obsolete]


def name(entry: polib.POEntry) -> str:
    return (f"[{entry.msgctxt}] " if entry.msgctxt else "") + entry.msgid


def placeholders(entry: polib.POEntry, text: str) -> Counter:
    """What must survive translation: %-placeholders (python-format), {…} (python-brace-format), tags."""
    found: list[str] = []
    if "python-format" in entry.flags:
        found += PERCENT.findall(text)
    if "python-brace-format" in entry.flags:
        found += BRACE.findall(text)
    found += [f"<{tag}>" for tag in TAG.findall(text)]
    return Counter(found)


def translations(entry: polib.POEntry) -> list[tuple[str, str]]:
    """(source, translation) pairs: one for a simple entry; for a plural entry the first form against
    the singular, every other form against the plural."""
    if not entry.msgid_plural:
        return [(entry.msgid, entry.msgstr)]
    return [(entry.msgid if index == 0 else entry.msgid_plural, text) for index, text in sorted(entry.msgstr_plural.items())]


@pytest.mark.parametrize("language", LANGUAGES)
def test_header_declares_the_language_and_its_plural_forms(language):
    po = catalogue(language)
    assert po.metadata["Language"] == language
    assert po.metadata["Plural-Forms"] == PLURAL_FORMS[language]
    assert po.metadata["Content-Type"] == "text/plain; charset=UTF-8"
    assert not po.metadata_is_fuzzy


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_none_is_fuzzy(language):
    problems = []
    for entry in entries(catalogue(language)):
        if entry.fuzzy:
            problems.append(f"fuzzy: {name(entry)}")
        forms = [text for _source, text in translations(entry)]
        if entry.msgid_plural and len(forms) != 2:
            problems.append(f"{len(forms)} plural forms, 2 expected: {name(entry)}")
        if not forms or any(not text.strip() for text in forms):
            problems.append(f"missing or empty: {name(entry)}")
    assert problems == [], f"{len(problems)} entries of {language} need a translator:\n" + "\n".join(problems)


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders_and_tags(language):
    problems = []
    for entry in entries(catalogue(language)):
        for source, text in translations(entry):
            if text and placeholders(entry, source) != placeholders(entry, text):
                problems.append(f"{source!r} -> {text!r}")
            if text and source.endswith("\n") != text.endswith("\n"):
                problems.append(f"line end differs: {source!r} -> {text!r}")
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("language", LANGUAGES)
def test_committed_compiled_catalogue_says_what_the_po_says(language):
    po = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in entries(catalogue(language)) if e.msgid}
    mo_file = LOCALE / language / "LC_MESSAGES" / "django.mo"
    mo = {(e.msgctxt, e.msgid): (e.msgstr, e.msgstr_plural) for e in polib.mofile(str(mo_file)) if e.msgid}
    assert mo == po, "the .mo is stale: run `manage.py compilemessages` from edc/ (docs/translations.md) and commit it"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> polib.POFile:
    """Every string marked for translation in the code now, extracted by `makemessages` (xgettext)
    from a copy of the code: makemessages writes into every `locale` directory it walks past (and
    writes scratch files beside the templates), so it never runs over the repository here."""
    if shutil.which("xgettext") is None:
        pytest.skip("xgettext (GNU gettext) is not installed: cannot extract the strings of the code")
    scratch = tmp_path_factory.mktemp("makemessages")
    for top in CODE:
        shutil.copytree(
            Path(settings.BASE_DIR) / top, scratch / "code" / top, ignore=shutil.ignore_patterns("locale", "__pycache__")
        )
    with override_settings(LOCALE_PATHS=[scratch / "out"]), _working_directory(scratch / "code"):
        call_command("makemessages", locale=["fr"], keep_pot=True, verbosity=0)
    return polib.pofile(str(scratch / "out" / "django.pot"))


@contextlib.contextmanager
def _working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_has_every_string_of_the_code(extracted, language):
    known = {(e.msgctxt, e.msgid, e.msgid_plural or None) for e in entries(catalogue(language))}
    missing = [
        f"{name(e)}  ({', '.join(sorted({path for path, _line in e.occurrences}))})"
        for e in extracted
        if (e.msgctxt, e.msgid, e.msgid_plural or None) not in known
    ]
    assert missing == [], (
        f"{len(missing)} strings of the code are not in the {language} catalogue; run makemessages and translate "
        "them (docs/translations.md):\n" + "\n".join(missing)
    )


@pytest.mark.parametrize(("language", "expected"), [("fr", "Se déconnecter"), ("es", "Cerrar sesión")])
def test_the_project_catalogue_is_the_one_served(language, expected):
    # Django ships no "Log out" msgid of its own in the default domain, so only edc/locale answers.
    with translation.override(language):
        assert translation.gettext("Log out") == expected


# xgettext finds a string only in a call to one of these names (Django's makemessages keywords and
# xgettext's own for Python): `from django.utils.translation import gettext as _t` hides every `_t("…")`.
EXTRACTED_NAMES = {
    "_", "gettext", "gettext_lazy", "gettext_noop", "ngettext", "ngettext_lazy",
    "pgettext", "pgettext_lazy", "npgettext", "npgettext_lazy",
}
ALIAS = re.compile(r"from django\.utils\.translation import (.+)")


def test_translation_functions_keep_names_that_makemessages_extracts():
    hidden = []
    for top in CODE[:2]:
        for path in sorted((Path(settings.BASE_DIR) / top).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                match = ALIAS.match(line.strip())
                for imported in match.group(1).strip("()").split(",") if match else []:
                    name = imported.split(" as ")[-1].strip()
                    if imported.strip().startswith(tuple(EXTRACTED_NAMES)) and name not in EXTRACTED_NAMES:
                        hidden.append(f"{path.relative_to(settings.BASE_DIR)}:{number}: {line.strip()}")
    assert hidden == [], "strings called through these names never reach the catalogues:\n" + "\n".join(hidden)


def _literal_calls(tree: ast.AST):
    """(line, msgid) of every call of a gettext name with a literal message, wherever it sits:
    also inside an f-string's expression, where xgettext does not look."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in EXTRACTED_NAMES:
            index = 1 if node.func.id.startswith(("pgettext", "npgettext")) else 0
            if len(node.args) > index and isinstance(node.args[index], ast.Constant) and isinstance(node.args[index].value, str):
                yield node.lineno, node.args[index].value


def test_every_literal_message_of_the_python_code_is_extracted(extracted):
    # A `_("…")` written inside an f-string's braces is served untranslated for ever: xgettext skips it,
    # and `makemessages --no-obsolete` then drops its translation (seen: the CRF item's "Cannot answer?").
    known = {e.msgid for e in extracted}
    lost = []
    for top in CODE[:2]:
        for path in sorted((Path(settings.BASE_DIR) / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            lost += [f"{path.relative_to(settings.BASE_DIR)}:{line}: {msgid!r}"
                     for line, msgid in _literal_calls(tree) if msgid not in known]
    assert lost == [], "these messages never reach the catalogues (move the call out of the f-string):\n" + "\n".join(lost)
