"""Property-based tests of the CRF page: whatever is posted to it, by a browser or by hand.

Hypothesis draws submissions from the real field names of seed CRFs (VITALS, DEMOG, DU_ASSESS,
COCHIN) with values a user or a forger could send, and posts them through Django's test client to
the real view, services, database and templates. Every example runs inside a savepoint that is
rolled back, so each one starts from the same data. A server error is raised by the test client,
so "never a 500" is checked on every request.

Deterministic by default (the suite must stay green); `CRF_FUZZ=explore` draws new inputs on every
run and `CRF_FUZZ_EXAMPLES=<n>` raises the number of examples.
"""

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edc.audit import system_user
from tests.visits.conftest import iso, visit_with
from trials.demo.participants import participant_register
from trials.protocol.models import Site
from trials.protocol.engine import MISSING_CODES, ROW_ID, CrfSchema, Item, schema_for
from trials.visits.forms import CrfSubmission
from trials.visits.models import CrfEntry, Visit
from trials.visits.services import crf_entry_for, entry_context

pytestmark = pytest.mark.django_db

CRF_CODES = ("VITALS", "DEMOG", "DU_ASSESS", "COCHIN")
SAVE_ACTIONS = ("save", "complete", "complete_next", "save_next")  # save_next: handled by the view, no button
OTHER_ACTIONS = ("add_row:ulcers", "add_row:", "add_row:no_such_group", "", "delete", "SAVE")
EXPLORE = os.environ.get("CRF_FUZZ") == "explore"
SCALE = int(os.environ.get("CRF_FUZZ_EXAMPLES", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE, deadline=None, derandomize=not EXPLORE, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- Submissions that pass: one per CRF -------------------------------------------------------


def valid_post(code: str) -> dict:
    """A complete, valid submission of the CRF (DU_ASSESS also raises one soft warning)."""
    if code == "VITALS":
        return {
            "crf-height_cm": "165", "crf-weight_kg": "60", "crf-systolic_bp": "120", "crf-diastolic_bp": "80",
            "crf-heart_rate": "70",
        }
    if code == "DEMOG":
        return {
            "crf-initials": "JD", "crf-date_of_birth": "1960-01-01", "crf-sex": "F", "crf-dominant_hand": "right",
            "crf-smoking_status": "never", "crf-alcohol_use_disorder": "false", "crf-drug_abuse": "false",
        }
    if code == "DU_ASSESS":
        row = {
            "ulcer_id": "U1", "hand": "right", "location": "distal_to_pip", "finger": "2", "beyond_pip": "true",
            "ischemic": "true", "over_calcinosis": "false", "active": "true", "due_to_other_condition": "false",
            "osteomyelitis_or_uncontrolled_infection": "false", "infected_requiring_systemic_antibiotics": "false",
            "requires_urgent_surgery": "false", "length_mm": "4.0", "width_mm": "3.5",
        }
        return {
            "crf-assessment_date": iso(1), "crf-number_active_du": "1",
            "ulcers-TOTAL_FORMS": "1", "ulcers-INITIAL_FORMS": "0",
            **{f"ulcers-0-{name}": value for name, value in row.items()},
        }
    if code == "COCHIN":
        return {f"crf-cochin_{n:02d}": str(n % 6) for n in range(1, 19)}
    raise KeyError(code)


def filled(code: str, **extra: str) -> dict:
    """The valid submission as the page posts it on a first save (warnings confirmed)."""
    return {**valid_post(code), "revision": "0", "action": "save", "confirm_warnings": "on", **extra}


# --- Values -----------------------------------------------------------------------------------

ODD_VALUES = (
    "", " ", "\t\n", "NaN", "nan", "-NaN", "sNaN", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999",
    "1E+5", "0", "-0", "-1", "007", "0x1F", "1_000", "１２", "٣", "1,5", "3.14159", ".5", "5.", "+7", "1e2",
    "true", "false", "True", "on", "off", "yes", "None", "null", "undefined", "[]", "{}", "[1, 2]", "\x00", "a\x00b",
    "<script>alert(1)</script>", "' OR 1=1 --", "{{ 7*7 }}", "{% debug %}", "%s%s%n", "../../etc/passwd", "🧪" * 3,
    "2024-02-30", "2023-02-29", "31/12/2020", "12/31/20", "2020-1-1", "20200101", "0001-01-01", "9999-12-31",
    "10000-01-01", "2020-13-01", "2020-00-10", "2020-01-01T25:00", "2020-01-01T10:00:00+14:00", "-2020-01-01", "today",
    "U1", "U100", "other", "former", "never", "current", "right", "left", "F", "M",
    *(code for code, _label in MISSING_CODES),
)
DATE_FORMATS = (
    "%d/%m/%Y", "%m/%d/%y", "%Y%m%d", "%d.%m.%Y", "%B %d, %Y", "%Y-%m-%d", "%Y-%m-%dT%H:%M", "%d %b %Y", "%y-%m-%d",
)
HUGE_VALUES = ("x" * 100_000, "9" * 100_000, "é€" * 50_000, "1." + "0" * 99_998)

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates: not UTF-8
nasty_scalars = st.one_of(
    st.sampled_from(ODD_VALUES),
    text,
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(repr),
    st.decimals().map(str),
    st.tuples(st.dates(min_value=date(1, 1, 1)), st.sampled_from(DATE_FORMATS)).map(lambda d: d[0].strftime(d[1])),
)


def valid_values(item: Item, today: date, consent: date) -> st.SearchStrategy:
    """Values the page itself could send for the item (they may still break a rule of the CRF)."""
    kind = item.type
    if kind == "yes_no":
        return st.sampled_from(["true", "false"])
    if item.choices and kind in {"single_choice", "scale"}:
        return st.sampled_from([str(code) for code, _label in item.choices])
    if kind == "multiple_choice":
        return st.lists(st.sampled_from([str(code) for code, _label in item.choices]), unique=True, min_size=1)
    low = int(item.min) if item.min is not None else -1000
    high = int(item.max) if item.max is not None else 1000
    if kind in {"integer", "scale"}:
        return st.integers(low, high).map(str)
    if kind == "decimal":
        places = item.precision if item.precision is not None else 2
        return st.decimals(min_value=low, max_value=high, places=places, allow_nan=False, allow_infinity=False).map(str)
    if kind == "date":
        return st.dates(min_value=consent, max_value=today - timedelta(days=1)).map(date.isoformat)
    if kind == "datetime":
        return st.dates(min_value=consent, max_value=today - timedelta(days=1)).map(lambda d: f"{d.isoformat()}T10:30")
    return st.one_of(st.from_regex(r"\A(U[0-9]{1,2}|[A-Z]{2,3})\Z"), text)


def field_value(item: Item, today: date, consent: date) -> st.SearchStrategy:
    """Mostly a value the page could send; else a nasty one, or several values for one name."""
    valid = valid_values(item, today, consent)
    return st.one_of(valid, valid, nasty_scalars, st.lists(st.one_of(valid, nasty_scalars), min_size=2, max_size=3))


# --- Submissions ------------------------------------------------------------------------------


def input_items(items: tuple[Item, ...]) -> list[Item]:
    return [i for i in items if i.type not in {"repeating_group"}]


def shown_names(schema: CrfSchema) -> list[str]:
    """The `_shown` values the page posts: items on the page before the change (htmx live evaluation)."""
    names = [i.name for i in schema.items if i.is_input]
    return names + [f"{g.name}-{index}-{c.name}" for g in schema.groups for index in range(2) for c in g.children]


def real_field_names(schema: CrfSchema, rows: int = 2) -> list[str]:
    """Every name the page posts (and the names of calculated and descriptive items, for tampering)."""
    names = []
    for item in schema.items:
        if item.type == "repeating_group":
            names += [f"{item.name}-TOTAL_FORMS", f"{item.name}-INITIAL_FORMS"]
            for index in range(rows):
                prefix = f"{item.name}-{index}-"
                names += [f"{prefix}{ROW_ID}", f"{prefix}DELETE", *(f"{prefix}{child.name}" for child in item.children)]
                required = [child.name for child in item.children if child.required]
                names += [f"{prefix}{name}__missing{part}" for name in required for part in ("", "_reason")]
        else:
            names.append(f"crf-{item.name}")
            if item.required:
                names += [f"crf-{item.name}__missing", f"crf-{item.name}__missing_reason"]
    return names


@st.composite
def submissions(draw: st.DrawFn, schema: CrfSchema, *, today: date, consent: date) -> dict:
    """The CRF's valid submission (or nothing) with a few items changed, dropped, marked missing or tampered with."""
    base = valid_post(schema.code)
    fields: dict = dict(base) if draw(st.integers(0, 3)) else {}

    def change(items: tuple[Item, ...], prefix: str) -> None:
        # A few items per example: drawing every item of a 17-item row overruns Hypothesis's buffer.
        for item in draw(st.lists(st.sampled_from(input_items(items)), max_size=4, unique_by=lambda i: i.name)):
            name = f"{prefix}{item.name}"
            mode = draw(st.sampled_from(("value", "value", "drop", "missing")))
            if mode == "value":
                fields[name] = draw(field_value(item, today, consent) if item.is_input else nasty_scalars)
            elif mode == "drop":
                fields.pop(name, None)
            elif mode == "missing" and item.required:
                if draw(st.booleans()):
                    fields.pop(name, None)
                codes = st.sampled_from(["not_done", "unknown", "not_applicable", "", "bogus"]) | text
                fields[f"{name}__missing"] = draw(codes)
                fields[f"{name}__missing_reason"] = draw(st.sampled_from(["", "  ", "patient refused"]) | text)

    change(schema.items, "crf-")
    for group in schema.groups:
        first_row = {k.removeprefix(f"{group.name}-0-"): v for k, v in base.items() if k.startswith(f"{group.name}-0-")}
        rows = draw(st.integers(0, 3))
        for index in range(rows):
            prefix = f"{group.name}-{index}-"
            if fields:  # a row as the page posts it, then changed
                fields.update({f"{prefix}{k}": v for k, v in first_row.items()})
            change(group.children, prefix)
            fields[f"{prefix}{ROW_ID}"] = draw(st.sampled_from(["", "", uuid.uuid4().hex]) | text)
            if draw(st.integers(0, 5)) == 0:
                fields[f"{prefix}DELETE"] = draw(st.sampled_from(["on", "true", "", "1"]))
        if rows or fields or draw(st.booleans()):
            fields[f"{group.name}-TOTAL_FORMS"] = str(rows) if draw(st.integers(0, 3)) else draw(management_values)
            fields[f"{group.name}-INITIAL_FORMS"] = draw(st.sampled_from(["0", "0", str(rows)]) | management_values)
    # Names the page never sends: calculated items, unknown items, other rows.
    for _ in range(draw(st.integers(0, 2))):
        fields[draw(unknown_names | st.sampled_from(real_field_names(schema)))] = draw(nasty_scalars)
    # At most two huge values: a POST over DATA_UPLOAD_MAX_MEMORY_SIZE is refused before the view (400).
    for _ in range(draw(st.integers(0, 2))):
        fields[draw(st.sampled_from(real_field_names(schema)))] = draw(st.sampled_from(HUGE_VALUES))
    return fields


def first_save_revisions() -> st.SearchStrategy:
    """Revisions posted for a CRF never saved: mostly 0, sometimes anything (a 409, never a 500)."""
    return st.just("0") | st.sampled_from(["", "abc", "5", "-1"])


def stale_revisions(current: int) -> st.SearchStrategy:
    """Anything `int()` does not read as the entry's current revision."""

    def not_current(value: str) -> bool:
        try:
            return int(value) != current
        except ValueError:
            return True

    numbers = st.integers(-(10**20), 10**20).filter(lambda n: n != current).map(str)
    return numbers | st.one_of(text, st.sampled_from(["", "1.0", "one", "1e0", " "])).filter(not_current)


unknown_names = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_\-]{1,30}\Z"),
    st.sampled_from([
        "crf-__proto__", "crf-", "crf-no_such_item", "crf-bmi", "crf-age_years", "crf-cochin_total",
        "crf-cochin_instruction",
        "ulcers-99-hand", "ulcers-0-no_such_item", "ulcers-MIN_NUM_FORMS", "ulcers-MAX_NUM_FORMS", "ulcers--1-hand",
        "_shown", "revision", "csrfmiddlewaretoken",
    ]),
)
# Row counts a forger may send (the formset never builds more than the CRF's max_rows).
management_values = st.one_of(
    st.sampled_from(["", " ", "abc", "-1", "-1000000", "1.5", "1e2", "٣", "０", "2 ", "NaN", "None"]),
    st.sampled_from(["9" * 5000, "-" + "9" * 30]),
    st.integers(-(10**6), 40).map(str),
)


# --- Helpers ----------------------------------------------------------------------------------


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run one example in a savepoint and undo whatever it wrote."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def post(client: Client, url: str, fields: dict, *, urlencoded=True, htmx=False, language="en"):  # noqa: ANN001, ANN201
    """POST as a browser form (urlencoded) or as multipart; `htmx` adds the HX-Request header."""
    headers = {"Accept-Language": language, **({"HX-Request": "true"} if htmx else {})}
    if urlencoded:
        body = urlencode(fields, doseq=True)
        return client.post(url, body, content_type="application/x-www-form-urlencoded", headers=headers)
    return client.post(url, fields, headers=headers)


def footprint() -> tuple:
    """Everything a save writes: the entries and their audit trail."""
    entries = CrfEntry.objects.order_by("pk").values_list("pk", "revision", "status", "answers", "missing", "warnings")
    return CrfEntry.history.count(), list(entries)


def page_messages(submission: CrfSubmission) -> list[str]:
    """Every message the submission holds for the user: parse errors, CRF rules, warnings."""
    messages = [m for errors in submission.form.errors.values() for m in errors]
    for formset in submission.formsets.values():
        messages += list(formset.non_form_errors())
        messages += [m for form in formset.forms for errors in form.errors.values() for m in errors]
    outcome = submission.outcome
    messages += [m for errors in outcome.errors.values() for m in errors]
    for rows in outcome.row_errors.values():
        messages += [m for fields in rows.values() for errors in fields.values() for m in errors]
    messages += [w["message"] for w in outcome.warnings]
    return [str(m) for m in messages]


def assert_stored_sanely(entry: CrfEntry, schema: CrfSchema, forged_row_ids: set[str] = frozenset()) -> None:
    """Only the CRF's items are stored, never a hidden one; rows carry server-checked identities."""
    storable = {i.name for i in schema.items if i.type != "descriptive"}
    assert "\\u0000" not in json.dumps([entry.answers, entry.missing])  # PostgreSQL's jsonb refuses NUL
    assert set(entry.answers) <= storable
    assert set(entry.missing) <= storable
    shown = CrfSubmission(schema, answers=entry.answers, missing=entry.missing, context=entry_context(entry.visit))
    outcome = shown.evaluate_stored(entry.answers, entry.missing)
    assert not outcome.hidden & {name for name, value in entry.answers.items() if value not in (None, [])}
    for group in schema.groups:
        rows = entry.answers.get(group.name) or []
        ids = [row[ROW_ID] for row in rows]
        assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == len(ids)
        assert not set(ids) & forged_row_ids
        children = {c.name for c in group.children}
        for index, row in enumerate(rows):
            assert set(row) <= children | {ROW_ID}
            hidden = (outcome.hidden_in_rows.get(group.name) or {}).get(index, set())
            assert not {name for name in hidden if row.get(name) is not None}


@pytest.fixture
def pages(participant) -> dict:
    """Per CRF code: the visit where it is due, its page and its schema."""
    out = {}
    for code in CRF_CODES:
        visit = visit_with(participant, code)
        out[code] = (visit, reverse("crf_entry", args=[visit.pk, code]), schema_for(crf_entry_for(visit, code).crf))
    return out


@pytest.fixture
def entering(client, coordinator) -> Client:
    client.force_login(coordinator)
    return client


def dates_of(participant) -> dict:
    return {"today": timezone.localdate(), "consent": participant.consent_date}


# --- 1. Never a server error ------------------------------------------------------------------


@fuzz(50)
@given(data=st.data())
def test_any_submission_gets_a_page_a_redirect_or_a_conflict(participant, pages, entering, data):
    """Random submissions, actions and htmx headers: 200, 302 or 409, never a 500; live posts write nothing."""
    code = data.draw(st.sampled_from(CRF_CODES), label="crf")
    visit, url, schema = pages[code]
    fields = data.draw(submissions(schema, **dates_of(participant)), label="fields")
    action = data.draw(st.none() | st.sampled_from(SAVE_ACTIONS + OTHER_ACTIONS), label="action")
    if action is not None:
        fields["action"] = action
    existing = data.draw(st.booleans(), label="saved before")
    revisions = (st.just("1") | st.just("1") | stale_revisions(1)) if existing else first_save_revisions()
    fields["revision"] = data.draw(revisions, label="revision")
    fields["_shown"] = data.draw(st.lists(st.sampled_from(shown_names(schema)) | text, max_size=6), label="_shown")
    htmx = data.draw(st.booleans(), label="htmx")
    with rolled_back():
        if existing:
            assert post(entering, url, filled(code)).status_code == 302
        before = footprint()
        response = post(entering, url, fields, urlencoded=data.draw(st.booleans(), label="urlencoded"), htmx=htmx)
        event(f"{code} {'live' if htmx and action is None else action or 'no action'} -> {response.status_code}")
        assert response.status_code in {200, 302, 409}
        live = action is None and htmx or (action or "").startswith("add_row:")
        if live:
            assert response.status_code == 200 and footprint() == before
        if response.status_code == 302:
            entry = CrfEntry.objects.get(visit=visit, crf_code=code)
            assert entry.revision == (2 if existing else 1)
            assert_stored_sanely(entry, schema)
            assert entering.get(url).status_code == 200  # what was stored shows again
        if response.status_code == 409:
            assert footprint() == before


# --- 2. A page shown again after a save wrote nothing and says why ----------------------------


@fuzz(50)
@given(data=st.data())
def test_a_refused_save_writes_nothing_and_shows_every_message(participant, coordinator, pages, entering, data):
    """On a save action, a 200 means nothing was written and every message is on the page."""
    code = data.draw(st.sampled_from(CRF_CODES), label="crf")
    visit, url, schema = pages[code]
    fields = data.draw(submissions(schema, **dates_of(participant)), label="fields")
    fields["action"] = data.draw(st.sampled_from(SAVE_ACTIONS), label="action")
    fields["confirm_warnings"] = data.draw(st.sampled_from(["on", "", "off"]), label="confirm")
    reasons = st.sampled_from(["", "transcription error", "transcription error"]) | text
    fields["reason"] = data.draw(reasons, label="reason")
    existing = data.draw(st.booleans(), label="existing complete entry")
    with rolled_back():
        if existing:  # a complete entry: every change then needs a reason
            assert post(entering, url, filled(code, action="complete")).status_code == 302
        fields["revision"] = "1" if existing else "0"
        before = footprint()
        htmx = data.draw(st.booleans(), label="htmx")
        response = post(entering, url, fields, htmx=htmx)
        event(f"{code} {'edit' if existing else 'first save'} -> {response.status_code}")
        if htmx:  # an htmx request is a live re-evaluation whatever button it carries: never a save
            assert response.status_code == 200 and footprint() == before
            return
        assert response.status_code in {200, 302}
        if response.status_code == 302:
            entry = CrfEntry.objects.get(visit=visit, crf_code=code)
            assert entry.revision == (2 if existing else 1)
            assert_stored_sanely(entry, schema)
            assert entering.get(url).status_code == 200  # what was stored shows again
            return
        assert footprint() == before
        page = response.content.decode()
        submission = response.context["submission"]
        assert "Nothing was saved" in page or 'data-testid="warnings"' in page
        for message in page_messages(submission):
            assert escape(message) in page, message


# --- 3. Tampering -----------------------------------------------------------------------------


@fuzz(25)
@given(data=st.data())
def test_unknown_and_calculated_names_are_never_stored(pages, entering, data):
    """Names the page never sends are ignored; calculated items are computed by the server."""
    code = data.draw(st.sampled_from(("VITALS", "COCHIN")), label="crf")
    visit, url, schema = pages[code]
    names = unknown_names.filter(lambda n: n not in {"revision", "csrfmiddlewaretoken"})
    extra = data.draw(st.dictionaries(names, nasty_scalars, max_size=5))
    fields = {**extra, **valid_post(code), "revision": "0", "action": "complete"}
    with rolled_back():
        response = post(entering, url, fields)
        assert response.status_code == 302
        entry = CrfEntry.objects.get(visit=visit, crf_code=code)
        assert_stored_sanely(entry, schema)
        if code == "VITALS":
            assert entry.answers["bmi"] == "22.0"
        else:
            assert entry.answers["cochin_total"] == sum(n % 6 for n in range(1, 19))


@fuzz(20)
@given(data=st.data())
def test_a_hidden_item_posted_with_a_value_is_never_stored(participant, pages, entering, data):
    """DEMOG: smoking never, yet a stop date and pack-years are posted: saved without them."""
    visit, url, schema = pages["DEMOG"]
    today = timezone.localdate()
    fields = {
        **valid_post("DEMOG"), "revision": "0", "action": "complete",
        "crf-smoking_stop_date": data.draw(st.dates(max_value=today).map(date.isoformat), label="stop date"),
        "crf-smoking_pack_years": data.draw(st.decimals(0, 200, places=1).map(str), label="pack-years"),
    }
    with rolled_back():
        response = post(entering, url, fields)
        assert response.status_code == 302
        entry = CrfEntry.objects.get(visit=visit, crf_code="DEMOG")
        assert "smoking_stop_date" not in entry.answers and "smoking_pack_years" not in entry.answers
        assert_stored_sanely(entry, schema)


def test_an_unreadable_value_in_a_hidden_item_does_not_block_the_save(pages, entering):
    visit, url, _schema = pages["DEMOG"]
    response = post(entering, url, {**filled("DEMOG", action="complete"), "crf-smoking_stop_date": "garbage"})
    assert response.status_code == 302
    assert "smoking_stop_date" not in CrfEntry.objects.get(visit=visit, crf_code="DEMOG").answers


def test_parse_failure_message_is_shown(pages, entering):
    _visit, url, _schema = pages["VITALS"]
    response = post(entering, url, {**filled("VITALS"), "crf-weight_kg": "abc"})
    assert response.status_code == 200
    assert "Enter a number." in response.content.decode()
    assert "Some answers could not be read" in response.content.decode()


@fuzz(20)
@given(forged=text.filter(lambda s: not _is_uuid(s)) | st.sampled_from(["../x", "0" * 31, "g" * 32, "<b>", "' OR 1=1"]))
def test_a_forged_row_identity_is_never_stored(pages, entering, forged):
    """A `_row_id` that is not a UUID is replaced by one the server makes (or the save is refused: NUL)."""
    visit, url, schema = pages["DU_ASSESS"]
    fields = {**filled("DU_ASSESS", action="complete"), f"ulcers-0-{ROW_ID}": forged}
    with rolled_back():
        response = post(entering, url, fields)
        assert response.status_code in {200, 302}
        entries = CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS")
        if response.status_code == 200:
            assert not entries.exists()
            return
        entry = entries.get()
        assert len(entry.answers["ulcers"]) == 1
        assert_stored_sanely(entry, schema, forged_row_ids={forged})


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(hex=value)
    except ValueError:
        return False
    return True


def test_a_row_identity_the_server_never_issued_is_not_stored(pages, entering):
    visit, url, _schema = pages["DU_ASSESS"]
    forged = uuid.uuid4().hex
    fields = {**filled("DU_ASSESS", action="complete"), f"ulcers-0-{ROW_ID}": forged}
    assert post(entering, url, fields).status_code == 302
    assert CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS").answers["ulcers"][0][ROW_ID] != forged


@fuzz(30)
@given(
    total=management_values, initial=management_values,
    action=st.sampled_from(["save", "add_row:ulcers", None]), htmx=st.booleans(),
)
def test_tampered_row_counts_are_never_a_server_error(pages, entering, total, initial, action, htmx):
    """ulcers-TOTAL_FORMS / INITIAL_FORMS negative, non-numeric or odd: a page, never a 500."""
    visit, url, schema = pages["DU_ASSESS"]
    fields = {**filled("DU_ASSESS"), "ulcers-TOTAL_FORMS": total, "ulcers-INITIAL_FORMS": initial}
    if action:
        fields["action"] = action
    else:
        del fields["action"]
    with rolled_back():
        before = footprint()
        response = post(entering, url, fields, htmx=htmx)
        assert response.status_code in {200, 302}
        if response.status_code == 302:
            assert_stored_sanely(CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS"), schema)
        else:
            assert footprint() == before


def test_a_million_rows_on_a_stale_revision_is_a_conflict(pages, entering):
    """ulcers-TOTAL_FORMS=10^6 (the conflict page is the cheapest page that still parses the rows)."""
    visit, url, _schema = pages["DU_ASSESS"]
    assert post(entering, url, filled("DU_ASSESS")).status_code == 302
    before = footprint()
    fields = {"ulcers-TOTAL_FORMS": "1000000", "ulcers-INITIAL_FORMS": "1000000", "revision": "5", "action": "save"}
    assert post(entering, url, fields).status_code == 409
    assert footprint() == before


def test_a_tampered_row_count_never_builds_more_rows_than_the_crf_allows(pages, entering):
    _visit, url, schema = pages["DU_ASSESS"]
    group = schema.item("ulcers")
    response = post(entering, url, {**filled("DU_ASSESS"), "ulcers-TOTAL_FORMS": str(2 * group.max_rows)})
    assert response.status_code == 200
    assert len(response.context["submission"].formsets["ulcers"].forms) <= group.max_rows


def test_an_unknown_choice_code_in_a_row_is_a_message_not_a_500(pages, entering):
    visit, url, _schema = pages["DU_ASSESS"]
    for action, htmx in (("save", False), ("add_row:ulcers", False), (None, True)):  # save, add a row, live (htmx)
        fields = {**valid_post("DU_ASSESS"), "ulcers-0-hand": "up", "revision": "0"}
        if action:
            fields["action"] = action
        response = post(entering, url, fields, htmx=htmx)
        assert response.status_code == 200
        assert not CrfEntry.objects.filter(visit=visit, crf_code="DU_ASSESS").exists()
        if action == "save":
            assert "Select a valid choice" in response.content.decode()


# --- Values the page accepts -----------------------------------------------------------------


def test_a_missing_data_reason_over_500_characters_is_refused_not_cut(pages, entering):
    visit, url, _schema = pages["VITALS"]
    fields = {
        **valid_post("VITALS"), "crf-height_cm": "", "crf-height_cm__missing": "not_done",
        "crf-height_cm__missing_reason": "x" * 600, "revision": "0", "action": "save",
    }
    response = post(entering, url, fields)
    assert response.status_code == 200
    assert "Keep the reason under 500 characters." in response.content.decode()
    assert not CrfEntry.objects.filter(visit=visit, crf_code="VITALS").exists()


def test_a_nul_character_in_a_missing_data_reason_is_never_stored(pages, entering):
    visit, url, _schema = pages["VITALS"]
    fields = {
        **valid_post("VITALS"), "crf-height_cm": "", "crf-height_cm__missing": "not_done",
        "crf-height_cm__missing_reason": "a\x00b", "revision": "0", "action": "save",
    }
    assert post(entering, url, fields).status_code in {200, 302}
    stored = CrfEntry.objects.filter(visit=visit, crf_code="VITALS").values_list("missing", flat=True)
    assert not any("\\u0000" in json.dumps(missing) for missing in stored)


def test_a_nul_character_in_a_reason_for_change_is_never_stored(pages, entering):
    visit, url, _schema = pages["VITALS"]
    assert post(entering, url, filled("VITALS", action="complete")).status_code == 302
    fields = {**filled("VITALS", action="complete", revision="1", reason="typo\x00fixed"), "crf-heart_rate": "72"}
    assert post(entering, url, fields).status_code in {200, 302}
    reasons = CrfEntry.objects.get(visit=visit, crf_code="VITALS").history.values_list("history_change_reason", flat=True)
    assert not any("\x00" in reason for reason in reasons)


def test_a_typed_date_means_the_same_day_in_every_language(pages, entering):
    visit, url, _schema = pages["DEMOG"]
    stored = set()
    for language in ("en", "fr"):
        with rolled_back():
            fields = {**valid_post("DEMOG"), "crf-date_of_birth": "01/02/1960", "revision": "0", "action": "complete"}
            response = post(entering, url, fields, language=language)
            assert response.status_code in {200, 302}
            saved = response.status_code == 302
            stored.add(CrfEntry.objects.get(visit=visit, crf_code="DEMOG").answers["date_of_birth"] if saved else None)
    assert len(stored) == 1, stored


def test_minus_zero_is_stored_as_zero(pages, entering):
    visit, url, _schema = pages["DU_ASSESS"]
    fields = {**filled("DU_ASSESS"), "ulcers-0-length_mm": "-0", "ulcers-0-width_mm": "-0"}
    assert post(entering, url, fields).status_code == 302
    row = CrfEntry.objects.get(visit=visit, crf_code="DU_ASSESS").answers["ulcers"][0]
    assert (row["length_mm"], row["width_mm"]) == ("0.0", "0.0")


# --- 4. Other sites ---------------------------------------------------------------------------


@pytest.fixture
def grenoble_participant(demo_users):
    """A participant at Grenoble (ASC-DU), a site coordinator.toulouse does not have."""
    today = timezone.localdate()
    return participant_register(
        site=Site.objects.get(trial__code="ASC-DU", code="GRE"), consent_date=today - timedelta(days=20), anchor_date=today - timedelta(days=10),
        user=system_user(),
    )


@fuzz(25)
@given(data=st.data())
def test_another_sites_visits_are_404_and_nothing_is_written(grenoble_participant, participant, pages, entering, data):
    """Another site's visit ids (and ids of no visit) with any CRF code and data: 404, nothing written."""
    code = data.draw(st.sampled_from(CRF_CODES), label="crf")
    _own_visit, _url, schema = pages[code]
    their_visits = list(grenoble_participant.visits.values_list("pk", flat=True))
    no_visit = Visit.objects.aggregate(last=Max("pk"))["last"] + 1
    visit_pk = data.draw(st.sampled_from(their_visits) | st.integers(no_visit, 10**30), label="visit")
    url = reverse("crf_entry", args=[visit_pk, code])
    fields = {**data.draw(submissions(schema, **dates_of(participant)), label="fields"), "revision": "0"}
    fields["action"] = data.draw(st.sampled_from(SAVE_ACTIONS + OTHER_ACTIONS), label="action")
    with rolled_back():
        before = footprint()
        assert entering.get(url).status_code == 404
        assert post(entering, url, fields, htmx=data.draw(st.booleans(), label="htmx")).status_code == 404
        assert footprint() == before


def test_a_site_monitor_cannot_save(participant, pages, client):
    """monitor.du sees Toulouse's participants but does not enter data: 403, nothing written."""
    client.force_login(get_user_model().objects.get(username="monitor.du"))
    _visit, url, _schema = pages["VITALS"]
    assert client.get(url).status_code == 200
    before = footprint()
    assert post(client, url, {**valid_post("VITALS"), "revision": "0", "action": "complete"}).status_code == 403
    assert footprint() == before


# --- 5. CSRF ----------------------------------------------------------------------------------


@fuzz(15)
@given(data=st.data())
def test_a_post_without_the_csrf_token_is_refused(participant, coordinator, pages, data):
    """With CSRF checks on (as in production), a POST with no or a wrong token is 403 and writes nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(coordinator)
    code = data.draw(st.sampled_from(CRF_CODES), label="crf")
    _visit, url, _schema = pages[code]
    fields = filled(code, action=data.draw(st.sampled_from(SAVE_ACTIONS + OTHER_ACTIONS), label="action"))
    token = data.draw(st.none() | st.sampled_from(["", "x" * 64]) | text, label="token")
    if token is not None:
        fields["csrfmiddlewaretoken"] = token
    with rolled_back():
        before = footprint()
        response = post(client, url, fields, htmx=data.draw(st.booleans(), label="htmx"))
        assert response.status_code == 403
        assert footprint() == before


def test_the_same_post_with_the_pages_csrf_token_is_accepted(coordinator, pages):
    """The control of the test above: the refusal is the token's doing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(coordinator)
    _visit, url, _schema = pages["VITALS"]
    client.get(url)
    token = client.cookies["csrftoken"].value
    response = post(client, url, filled("VITALS", csrfmiddlewaretoken=token))
    assert response.status_code == 302


# --- 6. Stale revisions -----------------------------------------------------------------------


def test_a_wrong_revision_on_a_first_save_is_a_conflict_not_a_500(pages, entering):
    visit, url, _schema = pages["VITALS"]
    for revision in ("abc", "5"):
        assert post(entering, url, {**valid_post("VITALS"), "revision": revision, "action": "save"}).status_code == 409
    assert not CrfEntry.objects.filter(visit=visit, crf_code="VITALS").exists()


def test_a_stale_revision_0_is_a_conflict_even_when_the_data_is_invalid(pages, entering):
    _visit, url, _schema = pages["VITALS"]
    assert post(entering, url, filled("VITALS")).status_code == 302
    before = footprint()
    assert post(entering, url, {"revision": "0", "action": "save"}).status_code == 409
    assert footprint() == before


@fuzz(30)
@given(data=st.data())
def test_a_stale_revision_is_a_conflict_and_the_stored_answers_stay(participant, pages, entering, data):
    """After a valid save (revision 1), any submission on another revision is 409 and changes nothing."""
    for code in ("VITALS", "DU_ASSESS"):
        visit, url, _schema = pages[code]
        if not CrfEntry.objects.filter(visit=visit, crf_code=code).exists():  # once per test: examples do not write
            assert post(entering, url, filled(code)).status_code == 302
    code = data.draw(st.sampled_from(("VITALS", "DU_ASSESS")), label="crf")
    _visit, url, schema = pages[code]
    fields = data.draw(submissions(schema, **dates_of(participant)), label="fields")
    fields["revision"] = data.draw(stale_revisions(1), label="revision")
    fields["action"] = data.draw(st.sampled_from(SAVE_ACTIONS), label="action")
    fields["confirm_warnings"] = "on"
    with rolled_back():
        before = footprint()
        htmx = data.draw(st.booleans(), label="htmx")
        response = post(entering, url, fields, htmx=htmx)
        assert footprint() == before
        if htmx:  # a live re-evaluation, whatever button it carries: never a save, never a conflict
            assert response.status_code == 200
            return
        assert response.status_code == 409
        assert "changed while you were editing" in response.content.decode()
