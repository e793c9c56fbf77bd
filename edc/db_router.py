"""Reads that can go to the streaming replica (issue 22): exports, safety summaries, operational reports.

With `REPLICA_DATABASE_URL` set, settings add a `replica` database alias and this router. Code that
only reads, and tolerates data a few seconds old, wraps its reads in `replica_reads()`:

    with replica_reads():
        rows = list(...)          # from the replica when its lag is within REPLICA_MAX_LAG_SECONDS

Everything else reads from the primary, and every write goes to the primary whatever the context.
The lag is measured on the replica (pg_last_xact_replay_timestamp, 0 when it has replayed all it
received), at most every REPLICA_CHECK_SECONDS per process; a replica that is too far behind, or
unreachable, sends the reads back to the primary until it catches up. `replica_status()` is what
/healthz shows to staff."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)

REPLICA = "replica"
_replica_wanted: contextvars.ContextVar[bool] = contextvars.ContextVar("edc_replica_reads", default=False)

# Lag 0 when the replica replayed everything it received (no recent transaction is not lag);
# NULL on a server that is not in recovery (a primary, or the test mirror): no lag either.
LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END, pg_is_in_recovery()"
)


class _Status:
    lock = threading.Lock()
    checked_at: float = 0.0
    usable: bool = False
    lag: float | None = None
    in_recovery: bool | None = None
    error: str = ""


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def _check() -> None:
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(LAG_SQL)
            lag, in_recovery = cursor.fetchone()
        _Status.lag, _Status.in_recovery, _Status.error = float(lag), bool(in_recovery), ""
        _Status.usable = _Status.lag <= settings.REPLICA_MAX_LAG_SECONDS
        if not _Status.usable:
            log.warning("replica lag %.1f s > %s s: reads go to the primary", _Status.lag, settings.REPLICA_MAX_LAG_SECONDS)
    except Exception as exc:  # noqa: BLE001 - an unreachable replica only means reads stay on the primary
        _Status.usable, _Status.lag, _Status.error = False, None, type(exc).__name__
        log.warning("replica unreachable (%s): reads go to the primary", _Status.error)
        try:
            connections[REPLICA].close()
        except Exception:  # noqa: BLE001
            pass
    _Status.checked_at = time.monotonic()


def replica_usable(*, fresh: bool = False) -> bool:
    """Whether replica-eligible reads go to the replica now (lag measured at most every
    REPLICA_CHECK_SECONDS, or now with `fresh`)."""
    if not replica_configured():
        return False
    with _Status.lock:
        if fresh or time.monotonic() - _Status.checked_at >= settings.REPLICA_CHECK_SECONDS:
            _check()
        return _Status.usable


def replica_status() -> dict:
    """For /healthz (staff): configured, used, lag in seconds, the bound, the last error."""
    if not replica_configured():
        return {"configured": False}
    used = replica_usable()
    return {
        "configured": True, "used": used, "lag_seconds": None if _Status.lag is None else round(_Status.lag, 3),
        "max_lag_seconds": settings.REPLICA_MAX_LAG_SECONDS, **({"error": _Status.error} if _Status.error else {}),
    }


# The replica has replayed the primary's WAL up to a position (or is no replica: the test mirror).
CAUGHT_UP_SQL = "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= %s::pg_lsn"
CAUGHT_UP_POLL_SECONDS = 0.01


def replica_caught_up(*, timeout: float | None = None) -> bool:
    """Wait until the replica has replayed everything committed on the primary before this call
    (the primary's WAL position now), at most `timeout` seconds (REPLICA_MAX_LAG_SECONDS by
    default). True when it has: reads from the replica then see every transaction committed
    before the call, as a read from the primary would. False when it is not usable or too slow."""
    if not replica_usable():
        return False
    timeout = settings.REPLICA_MAX_LAG_SECONDS if timeout is None else timeout
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            (position,) = cursor.fetchone()
        deadline = time.monotonic() + timeout
        while True:
            with connections[REPLICA].cursor() as cursor:
                cursor.execute(CAUGHT_UP_SQL, [position])
                if cursor.fetchone()[0]:
                    return True
            if time.monotonic() >= deadline:
                log.warning("replica not caught up with %s within %s s: reads go to the primary", position, timeout)
                return False
            time.sleep(CAUGHT_UP_POLL_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the primary then serves the reads
        log.warning("replica catch-up check failed (%s): reads go to the primary", type(exc).__name__)
        return False


@contextmanager
def replica_reads(*, caught_up: bool = False, wait: float | None = None) -> Iterator[None]:
    """Reads in this block may go to the replica (bounded lag); writes never do.

    With `caught_up`, only once the replica has replayed every transaction committed before the
    block (`replica_caught_up`): the block's reads are then as fresh as the primary's at its start,
    never older (the safety summaries, the operational reports: docs/architecture.md). `wait`
    bounds the wait for it in seconds (a page a user waits for: REPLICA_PAGE_WAIT_SECONDS; by
    default REPLICA_MAX_LAG_SECONDS, for background work); past it the primary serves the reads.
    A block entered inside a transaction of the primary reads there (the transaction's own writes
    are on no replica)."""
    wanted = True
    if caught_up:
        wanted = not connections["default"].in_atomic_block and replica_caught_up(timeout=wait)
    token = _replica_wanted.set(wanted)
    try:
        yield
    finally:
        _replica_wanted.reset(token)


def reading_alias() -> str:
    """The alias reads go to right now (for code that opens its own cursor)."""
    return REPLICA if _replica_wanted.get() and replica_usable() else "default"


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str:  # noqa: ANN001, ANN003
        # Explicit outside the block too: an object read from the replica must not pull its related
        # objects from there later (Django would follow the instance's database otherwise).
        return reading_alias()

    def db_for_write(self, model, **hints) -> str:  # noqa: ANN001, ANN003
        return "default"

    def allow_relation(self, obj1, obj2, **hints) -> bool:  # noqa: ANN001, ANN003
        return True  # the same data on both

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints) -> bool:  # noqa: ANN003
        return db == "default"  # the replica gets its schema by replication
