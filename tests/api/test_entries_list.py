"""The entries list's fast path (trials/api/views.py `_list_sql`, PostgreSQL): each entry written
as JSON by the database, paged by DRF's cursor. It must give exactly what the row path
(`_list_rows`, every database) and the detail give, page by page, for blinded and unblinded roles;
its scope query is compiled once per user and token but read anew on every call; the call log row
is written whatever the transaction state."""

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from edc.audit import audited_save, system_user
from tests.api.conftest import register
from tests.api.test_writes import VITALS, screening
from trials.api.models import ApiCall
from trials.api.services import call_log
from trials.api.views import CrfEntryViewSet
from trials.protocol.models import StudyRole

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL path runs on PostgreSQL only")


def _walk(client, url: str) -> list[dict]:
    """Every page following `next`, then every page back following `previous` from the last one."""
    pages = []
    while url:
        body = client.get(url).json()
        pages.append(body)
        url = body["next"] and body["next"].replace("http://testserver", "")
    url = pages[-1]["previous"] and pages[-1]["previous"].replace("http://testserver", "")
    while url:
        body = client.get(url).json()
        pages.append(body)
        url = body["previous"] and body["previous"].replace("http://testserver", "")
    return pages


@on_postgresql
def test_the_sql_path_gives_the_row_paths_pages(client_for, tls, monkeypatch):
    """Same pages (results, next and previous links), forwards and backwards, with each filter,
    for a blinded role (coordinator: rows decoded and masked) and the unblinded DSMB (rows as
    the database wrote them)."""
    others = [register("ASC-DU", "TLS") for _ in range(2)]
    writer = client_for("coordinator", scope="write")
    for participant in (tls, *others):
        answer = writer.post("/api/v1/entries/", {"visit": screening(participant).pk, "crf_code": "VITALS", "expected_revision": 0, "answers": VITALS}, format="json")
        assert answer.status_code == 201, answer.json()
    urls = [
        "/api/v1/entries/?page_size=2", "/api/v1/entries/?trial=ASC-DU&site=TLS&page_size=1", "/api/v1/entries/?crf=VITALS&page_size=2",
        "/api/v1/entries/?visit=SCREEN&page_size=3", f"/api/v1/entries/?participant={tls.pk}",
        "/api/v1/entries/?changed_since=2000-01-01T00:00:00Z&page_size=2", "/api/v1/entries/?site=NO-SUCH-SITE",
    ]
    for role in ("coordinator", "dsmb"):
        client = client_for(role)
        fast = {url: _walk(client, url) for url in urls}
        with monkeypatch.context() as patched:
            patched.setattr(CrfEntryViewSet, "list", lambda self, request, *args, **kwargs: self._list_rows(request))
            rows = {url: _walk(client, url) for url in urls}
        assert fast == rows, role
        pages = fast["/api/v1/entries/?crf=VITALS&page_size=2"]
        forward = pages[: [page["next"] for page in pages].index(None) + 1]
        assert sum(len(page["results"]) for page in forward) >= 3 and len(pages) > len(forward), role  # there, and back


@pytest.mark.parametrize("microsecond", [0, 120000])
def test_updated_at_is_iso_8601_in_utc_as_the_detail_writes_it(client_for, tls, microsecond):
    """RFC 3339 in UTC with "Z", the fraction only when there is one (Python's isoformat, which
    DRF writes): a save at a whole second has none."""
    moment = (timezone.now() - timedelta(minutes=5)).replace(microsecond=microsecond)
    with time_machine.travel(moment, tick=False):
        writer = client_for("coordinator", scope="write")
        saved = writer.post("/api/v1/entries/", {"visit": screening(tls).pk, "crf_code": "VITALS", "expected_revision": 0, "answers": VITALS}, format="json")
    assert saved.status_code == 201, saved.json()
    expected = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if microsecond else "%Y-%m-%dT%H:%M:%SZ")
    client = client_for("dsmb")
    listed = {row["id"]: row for row in client.get(f"/api/v1/entries/?participant={tls.pk}").json()["results"]}
    entry = saved.json()["id"]
    assert listed[entry]["updated_at"] == expected
    assert client.get(f"/api/v1/entries/{entry}/").json() == listed[entry]


def test_the_scope_is_read_anew_on_every_call(client_for, tls, user_of):
    """The scope query's SQL is kept per user and token, its answer never: a role ended between
    two calls of the same token leaves nothing to list; granted again, the entries are back."""
    client = client_for("coordinator")
    url = f"/api/v1/entries/?participant={tls.pk}"
    before = client.get(url).json()["results"]
    assert before
    roles = list(StudyRole.objects.filter(user=user_of("coordinator"), is_active=True))
    for role in roles:
        role.is_active = False
        audited_save(role, user=system_user(), reason="test: role ended")
    assert client.get(url).json()["results"] == []
    for role in roles:
        role.is_active = True
        audited_save(role, user=system_user(), reason="test: role granted again")
    assert client.get(url).json()["results"] == before


@pytest.mark.django_db(transaction=True)
def test_the_call_log_row_is_written_in_autocommit_and_the_session_keeps_its_settings():
    """Outside a transaction (as a request runs) the row is committed on its own; on PostgreSQL
    without waiting for the WAL flush, for that transaction only (SET LOCAL): the connection's
    later transactions commit synchronously again."""
    assert not connection.in_atomic_block
    call_log(user=None, token=None, method="GET", path="/api/v1/entries/", query="page_size=1", status=401)
    assert ApiCall.objects.filter(path="/api/v1/entries/", query="page_size=1", status=401, user=None, token=None).count() == 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_the_call_log_row_inside_a_transaction_is_a_plain_insert(db):
    """Inside an open transaction (here the test's) nothing changes that transaction's commit."""
    call_log(user=None, token=None, method="POST", path="/api/v1/labs/import/", query="", status=400)
    assert ApiCall.objects.filter(path="/api/v1/labs/import/", status=400).count() == 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
    assert isinstance(ApiCall.objects.get(path="/api/v1/labs/import/").at, datetime)


@pytest.mark.parametrize(("position", "status", "count"), [("99999999999999999999999", 200, 0), ("-99999999999999999999999", 200, None), ("abc", 404, None)])
def test_a_crafted_cursor_is_an_answer_not_an_error(client_for, tls, position, status, count):
    """DRF's cursor is base64 of `p=<position>`: any client can send one. A position beyond a
    bigint lists nothing after it (or everything after it, when negative), a position that is
    no number is an invalid cursor (404, DRF's answer to one), never a database error."""
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    answer = client_for("dsmb").get(f"/api/v1/entries/?participant={tls.pk}&cursor={cursor}")
    assert answer.status_code == status, answer.content
    if status == 200:
        listed = answer.json()["results"]
        assert len(listed) == (count if count is not None else len(client_for("dsmb").get(f"/api/v1/entries/?participant={tls.pk}").json()["results"]))
