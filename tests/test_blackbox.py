"""Black-box pass (issue 16), in the spirit of the one that found its faults, bounded to run in a
couple of minutes on SQLite with Django's test client (no browser):

- every demo role (fixtures/demo_users.yaml) crawls the internal links reachable from the home page
  (and the admin index for staff), breadth first, to a bounded depth and page count: no answer is
  a 5xx;
- every participant action form is refused (403) or absent for each role that may not submit it;
- every POST form found on the crawled pages is submitted with hostile values (huge integers,
  non-numeric ids, long unicode and SQL-ish strings, impossible and out-of-range dates): no answer
  is a 5xx (a 4xx or a form error is the right answer).

The data: the seed trials, the demo accounts and a few participants made through the real
services (enrolled and allocated, one in screening, one with an adverse event)."""

from __future__ import annotations

import html
import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import reverse

from tests.exports.conftest import adverse_event, randomized
from tests.participants.conftest import TLS, _seeded, demo, screen, user  # noqa: F401 - module-scoped seeds
from trials.participants.models import Participant
from trials.participants.services import user_acts_at

pytestmark = pytest.mark.django_db

with open(settings.EDC_DEMO_USERS_FILE, encoding="utf-8") as users_file:
    ROLES = [entry["username"] for entry in yaml.safe_load(users_file)["users"]]

MAX_PAGES = 80  # per role
MAX_DEPTH = 3
MAX_FORMS = 30  # distinct POST forms fuzzed per role
# Links the crawl does not follow: leaving the session, files, and destructive admin pages.
SKIP = ("logout", "/static/", "/media/", "/download", "/delete/", "/jsi18n/", "/history/", "/healthz")
# Forms not fuzzed: the login (it would lock the account out) and leaving the session.
SKIP_FORMS = ("login", "logout", "/delete/", "sessions/end", "/i18n/setlang")

HUGE = "99999999999999999999"
HOSTILE = [
    {"int": HUGE, "text": HUGE, "date": "99999999-99-99", "datetime": "2026-13-45T25:61"},
    {"int": "abc", "text": "x'; DROP TABLE participants_participant; --" + "é漢字\u202e" * 700, "date": "1900-01-01",
     "datetime": "1900-01-01T00:00"},
    {"int": "-1", "text": "-99999999999999999999", "date": "9999-12-31", "datetime": "0000-00-00T00:00"},
]

LINK = re.compile(r"""href=["'](/[^"'#]*)""")
FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.DOTALL | re.IGNORECASE)
ATTR = re.compile(r"""([\w-]+)\s*=\s*["']([^"']*)["']""")
FIELD = re.compile(r"<(input|select|textarea)\b([^>]*)>", re.IGNORECASE)
SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.DOTALL | re.IGNORECASE)
OPTION = re.compile(r"""<option\b[^>]*value=["']([^"']+)["']""", re.IGNORECASE)

PARTICIPANT_ACTIONS = [
    "participant_enrol", "participant_treatment", "participant_status", "participant_anchor", "participant_screen_fail",
    "participant_allocate", "participant_consent", "ae_new",
]


@pytest.fixture(scope="module")
def world(_seeded, django_db_blocker):  # noqa: ANN001, ANN201, F811
    """Participants in the module's seeded transaction (rolled back with it)."""
    with django_db_blocker.unblock(), transaction.atomic():
        allocated = randomized("TLS")
        adverse_event(allocated)
        screen(TLS)
        randomized("GRE", consent=16)
    return True


def _internal(url: str) -> str | None:
    url = html.unescape(url)
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or any(skip in parts.path for skip in SKIP):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _forms(page: str, url: str, method: str = "post") -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """The page's forms of `method`: (action, {field name: kind}, {select name: its first real choice})."""
    found = []
    for attrs, body in FORM.findall(page):
        attributes = dict(ATTR.findall(attrs))
        if attributes.get("method", "get").lower() != method:
            continue
        action = _internal(urljoin(url, html.unescape(attributes.get("action", "")) or url))
        if action is None or any(skip in action for skip in SKIP_FORMS):
            continue
        fields: dict[str, str] = {}
        for tag, field_attrs in FIELD.findall(body):
            field = dict(ATTR.findall(field_attrs))
            name = field.get("name")
            if not name or name == "csrfmiddlewaretoken":
                continue
            kind = field.get("type", "text" if tag.lower() != "select" else "select").lower()
            fields[name] = {"number": "int", "date": "date", "datetime-local": "datetime", "hidden": "int", "select": "int",
                            "checkbox": "int", "radio": "int"}.get(kind, "text")
        choices = {}
        for select_attrs, options in SELECT.findall(body):
            name = dict(ATTR.findall(select_attrs)).get("name")
            values = [html.unescape(v) for v in OPTION.findall(options)]
            if name and values:
                choices[name] = values[0]
        found.append((action, fields, choices))
    return found


def _crawl(client: Client, starts: list[str]) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Breadth-first GETs from `starts`: the (url, status) answers and the HTML of each page."""
    queue = deque((start, 0) for start in starts)
    seen: set[str] = set()
    answers: list[tuple[str, int]] = []
    pages: dict[str, str] = {}
    while queue and len(seen) < MAX_PAGES:
        url, depth = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        answers.append((url, response.status_code))
        if response.status_code in (301, 302) and (target := _internal(urljoin(url, response["Location"]))):
            queue.appendleft((target, depth))
            continue
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        page = response.content.decode(errors="replace")
        pages[url] = page
        if depth < MAX_DEPTH:
            queue.extend((link, depth + 1) for link in map(_internal, LINK.findall(page)) if link and link not in seen)
    return answers, pages


def _login(client: Client, username: str):  # noqa: ANN202
    account = user(username)
    client.force_login(account)
    return account


@pytest.mark.parametrize("username", ROLES)
def test_every_role_crawls_and_fuzzes_without_a_server_error(world, demo, username: str) -> None:  # noqa: ANN001, ARG001, F811
    client = Client(raise_request_exception=False)
    account = _login(client, username)
    starts = [reverse("home")] + ([reverse("admin:index")] if account.is_staff else [])
    answers, pages = _crawl(client, starts)
    assert len(answers) > 3, answers  # the crawl reached pages beyond the home page
    errors = [(url, status) for url, status in answers if status >= 500]
    assert errors == [], errors

    forms: dict[tuple[str, tuple[str, ...]], tuple[dict[str, str], dict[str, str]]] = {}
    for url, page in pages.items():
        for action, fields, choices in _forms(page, url):
            forms.setdefault((action, tuple(sorted(fields))), (fields, choices))
    failures = []
    for (action, _names), (fields, choices) in list(forms.items())[:MAX_FORMS]:
        for number, values in enumerate(HOSTILE):
            data = {name: values[kind] for name, kind in fields.items()}
            if number != 1:  # a real choice (an admin action, a format) with hostile values around it
                data.update(choices)
            response = client.post(action, data)
            if response.status_code >= 500:
                failures.append((action, sorted(data), response.status_code))
        _login(client, username)  # a form may have ended the session (password change): go on as her
    _login(client, username)
    # Forged ids in the path (a huge integer where a row id goes) and hostile values in every GET
    # form (filters, worklists): a 404 or the page, never a 5xx.
    forged = {re.sub(r"/\d+/", f"/{HUGE}/", url, count=1) for url in pages if re.search(r"/\d+/", url)}
    for url in sorted(forged)[:MAX_FORMS]:
        if (status := client.get(url).status_code) >= 500:
            failures.append((url, "GET", status))
    searches = {}
    for url, page in pages.items():
        for action, fields, _choices in _forms(page, url, method="get"):
            searches.setdefault((action, tuple(sorted(fields))), fields)
    for (action, _names), fields in list(searches.items())[:MAX_FORMS]:
        for values in HOSTILE:
            if (status := client.get(action, {name: values[kind] for name, kind in fields.items()}).status_code) >= 500:
                failures.append((action, "GET form", status))
    assert failures == [], failures


@pytest.mark.parametrize("username", ["sponsor.toulouse", "monitor.du", "dsmb.statistician", "coordinator.mexico", "datamanager"])
def test_participant_action_forms_are_refused_to_roles_that_cannot_submit_them(world, demo, client, username: str) -> None:  # noqa: ANN001, ARG001, F811
    """GET of an action form by a role without the right to act at the participant's site: 403
    (404 for a participant outside her sites)."""
    account = _login(client, username)
    shown = []
    checked = 0
    for participant in Participant.objects.select_related("site"):
        if user_acts_at(account, participant.site):
            continue
        for name in PARTICIPANT_ACTIONS:
            status = client.get(reverse(name, args=[participant.pk])).status_code
            checked += 1
            if status not in (403, 404):
                shown.append((name, participant.number, status))
    assert checked and shown == [], shown
