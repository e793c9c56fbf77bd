"""The replica router (edc.db_router, issue 22): replica-eligible reads go to the `replica` alias
while its lag is within REPLICA_MAX_LAG_SECONDS, every write goes to the primary, and a lagging or
unreachable replica sends the reads back to the primary. On PostgreSQL with REPLICA_DATABASE_URL set
(.ci/run sets it to the primary's URL): the alias then mirrors the test database (TEST MIRROR), a
second connection to the same data, so the reads through it see only committed rows (transactional
tests)."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, router
from django.test import override_settings

from edc import db_router
from edc.db_router import ReplicaRouter, replica_reads, replica_status

pytestmark = pytest.mark.skipif(
    "replica" not in settings.DATABASES,
    reason="set REPLICA_DATABASE_URL (e.g. to DATABASE_URL: the test mirror) to test the replica router",
)

User = get_user_model()


@pytest.fixture(autouse=True)
def fresh_lag_check():
    """Each test measures the lag itself (the router re-checks at most every REPLICA_CHECK_SECONDS)."""
    db_router._Status.checked_at = 0.0
    yield
    db_router._Status.checked_at = 0.0


def test_the_router_is_installed_and_the_replica_mirrors_the_primary_in_tests():
    assert settings.DATABASE_ROUTERS == ["edc.db_router.ReplicaRouter"]
    assert settings.DATABASES["replica"]["TEST"]["MIRROR"] == "default"
    assert connections["replica"].settings_dict["NAME"] == connections["default"].settings_dict["NAME"]


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_reads_in_the_block_go_to_the_replica_and_writes_to_the_primary():
    User.objects.create_user("before-block", password="x")
    assert User.objects.all().db == "default"  # outside the block: the primary
    with replica_reads():
        assert User.objects.all().db == "replica"
        # Committed on the primary, read through the replica's connection.
        read = User.objects.get(username="before-block")
        assert read._state.db == "replica"
        assert router.db_for_write(User) == "default"
        written = User.objects.create_user("in-block", password="x")
        assert written._state.db == "default"
        # An object read from the replica is saved to the primary.
        read.first_name = "Changed"
        read.save()
    assert User.objects.get(username="before-block").first_name == "Changed"
    assert User.objects.filter(username="in-block").exists()
    # After the block, reads are back on the primary, also for an object read from the replica.
    assert router.db_for_read(User, instance=read) == "default"


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_lagging_replica_sends_reads_back_to_the_primary():
    # The test mirror is a primary (not in recovery): lag 0. A bound below 0 makes it "too far behind".
    with override_settings(REPLICA_MAX_LAG_SECONDS=-1):
        with replica_reads():
            assert User.objects.all().db == "default"
        status = replica_status()
    assert status["configured"] is True and status["used"] is False and status["lag_seconds"] == 0
    db_router._Status.checked_at = 0.0
    with replica_reads():
        assert User.objects.all().db == "replica"
    assert replica_status() == {"configured": True, "used": True, "lag_seconds": 0, "max_lag_seconds": settings.REPLICA_MAX_LAG_SECONDS}


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_an_unreachable_replica_sends_reads_to_the_primary(monkeypatch):
    def broken_cursor(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("replica down")

    monkeypatch.setattr(connections["replica"], "cursor", broken_cursor)
    with replica_reads():
        assert User.objects.all().db == "default"
    assert replica_status()["used"] is False
    assert replica_status()["error"] == "OSError"


def test_only_the_primary_is_migrated():
    r = ReplicaRouter()
    assert r.allow_migrate("default", "visits") is True
    assert r.allow_migrate("replica", "visits") is False


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_healthz_shows_the_replica_lag_to_staff(client):
    staff = User.objects.create_user("ops", password="x", is_staff=True)
    anonymous = client.get("/healthz").json()
    assert anonymous == {"status": "ok"}  # nothing about the topology to the network
    client.force_login(staff)
    body = client.get("/healthz").json()
    assert body["replica"]["configured"] is True
    assert body["replica"]["lag_seconds"] == 0
    assert body["replica"]["used"] is True


# --- Reads that wait for the replica to catch up (safety summaries, operational reports) ---------


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_caught_up_block_reads_the_replica_and_a_block_inside_a_transaction_reads_the_primary():
    from django.db import transaction

    assert db_router.replica_caught_up() is True  # the test mirror is no standby: nothing to replay
    with replica_reads(caught_up=True):
        assert User.objects.all().db == "replica"
    with transaction.atomic():
        User.objects.create_user("uncommitted", password="x")
        with replica_reads(caught_up=True):  # its own write is on no replica: read where it is
            assert User.objects.all().db == "default"
            assert User.objects.filter(username="uncommitted").exists()
    with override_settings(REPLICA_MAX_LAG_SECONDS=-1):
        db_router._Status.checked_at = 0.0
        with replica_reads(caught_up=True):
            assert User.objects.all().db == "default"


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_a_page_waits_for_the_replica_at_most_its_own_bound_then_reads_the_primary(demo_users, client, monkeypatch):  # noqa: ANN001, ARG001
    """A replica that never catches up (the position test made always false: the test mirror is no
    standby) keeps a reports page waiting REPLICA_PAGE_WAIT_SECONDS, not REPLICA_MAX_LAG_SECONDS,
    and the page is then read from the primary."""
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("the replica is PostgreSQL's")
    monkeypatch.setattr(db_router, "CAUGHT_UP_SQL", "SELECT %s::pg_lsn IS NULL")  # never caught up
    client.force_login(User.objects.get(username="monitor.du"))
    with override_settings(REPLICA_MAX_LAG_SECONDS=30, REPLICA_PAGE_WAIT_SECONDS=0.2):
        started = time.monotonic()
        with CaptureQueriesContext(connections["replica"]) as on_replica:
            response = client.get("/trials/ASC-DU/reports/")
        waited = time.monotonic() - started
    assert response.status_code == 200
    assert waited < 10, waited  # far below the 30 s of REPLICA_MAX_LAG_SECONDS
    # The replica was asked whether it had caught up (several polls) and its lag, never for the
    # page's data: no table of the EDC was read there.
    polls = [q["sql"] for q in on_replica.captured_queries if "pg_lsn" in q["sql"]]
    assert len(polls) >= 2
    assert not [q["sql"] for q in on_replica.captured_queries if 'FROM "' in q["sql"]]


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_the_safety_summary_is_computed_on_the_replica_and_stored_on_the_primary(seeds, monkeypatch):  # noqa: ANN001, ARG001
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from edc.celery import app
    from trials.protocol.models import Trial
    from trials.safety.models import SafetySummary
    from trials.safety.summary import summary_request_recompute

    if connection.vendor != "postgresql":
        pytest.skip("the replica is PostgreSQL's")
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    trial = Trial.objects.get(code="ASC-DU")
    with CaptureQueriesContext(connections["replica"]) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        assert summary_request_recompute(trial.pk) is True  # committed: the refresh runs at once (eager)
    replica_sql = " ".join(q["sql"] for q in on_replica.captured_queries)
    primary_sql = " ".join(q["sql"] for q in on_primary.captured_queries)
    assert "safety_adverseevent" in replica_sql and "safety_adverseevent" not in primary_sql  # the counts
    assert 'INSERT INTO "safety_safetysummary"' in primary_sql and "INSERT" not in replica_sql  # the writes
    assert "pg_current_wal_lsn" in primary_sql  # the position the replica had to reach first
    assert SafetySummary.objects.filter(trial=trial).count() == 2


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_the_operational_reports_are_read_from_the_replica_after_the_access_check(seeds, client):  # noqa: ANN001, ARG001
    from django.test.utils import CaptureQueriesContext

    client.force_login(User.objects.create_superuser("reports-admin", password="x" * 12))
    with CaptureQueriesContext(connections["replica"]) as on_replica, CaptureQueriesContext(connections["default"]) as on_primary:
        page = client.get("/trials/ASC-DU/reports/")
        csv = client.get("/trials/ASC-DU/reports/enrolment.csv")
    assert page.status_code == 200 and csv.status_code == 200
    replica_sql = " ".join(q["sql"] for q in on_replica.captured_queries)
    primary_sql = " ".join(q["sql"] for q in on_primary.captured_queries)
    assert "participants_participant" in replica_sql  # the reports' counts
    assert "participants_participant" not in primary_sql
    assert "protocol_trial" in primary_sql  # the access check (the user's trials)
    assert client.get("/trials/NOPE/reports/").status_code == 404
