"""The restore drill of docs/deployment.md ("Backups and the restore drill"), on a throwaway
PostgreSQL cluster (initdb in a temporary folder, its own port): a base backup (pg_basebackup) with
WAL archiving on, more writes after it, then a restore to a point in time between two batches of
writes, checked by row counts of the data and of its audit trail.

The schema is the audit pattern of the EDC in miniature (a CRF entry row and its history row written
in one transaction, as simple_history does); the drill checks PostgreSQL's recovery, which does not
depend on which tables are there. About 30 s; skipped where the PostgreSQL server binaries are not
installed."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.restore_drill


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


PG_BIN = _pg_bin()
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, data: Path, port: int, sockets: Path) -> None:
        self.data, self.port, self.sockets = data, port, sockets

    def run(self, tool: str, *args: str) -> str:
        done = subprocess.run([*AS_POSTGRES, str(PG_BIN / tool), *args], capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, (tool, args, done.stdout, done.stderr)
        return done.stdout

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.data.parent / f"{self.data.name}.log"), "-w", "-t", "60",
                 "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sockets}", "start")

    def stop(self) -> None:
        subprocess.run([*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)

    def sql(self, statement: str) -> str:
        return self.run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "edc", "-tAqc", statement).strip()


DDL = """
CREATE TABLE crfentry (id bigint PRIMARY KEY, answers jsonb NOT NULL, revision int NOT NULL);
CREATE TABLE historicalcrfentry (history_id bigserial PRIMARY KEY, id bigint NOT NULL, answers jsonb NOT NULL,
  revision int NOT NULL, history_date timestamptz NOT NULL DEFAULT now(), history_change_reason text NOT NULL);
"""


def _write(cluster: Cluster, first: int, last: int, reason: str) -> None:
    """Entries first..last, each saved with its history row in the same transaction, then each
    changed once more (a second revision and history row)."""
    cluster.sql(
        "BEGIN;"
        f"INSERT INTO crfentry SELECT n, jsonb_build_object('weight', n), 1 FROM generate_series({first}, {last}) n;"
        f"INSERT INTO historicalcrfentry (id, answers, revision, history_change_reason) "
        f"SELECT n, jsonb_build_object('weight', n), 1, '{reason}' FROM generate_series({first}, {last}) n;"
        "COMMIT;"
        f"BEGIN; UPDATE crfentry SET revision = 2 WHERE id BETWEEN {first} AND {last};"
        f"INSERT INTO historicalcrfentry (id, answers, revision, history_change_reason) "
        f"SELECT id, answers, 2, '{reason} (corrected)' FROM crfentry WHERE id BETWEEN {first} AND {last}; COMMIT;"
    )


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not installed")
def test_base_backup_and_wal_archive_restore_to_a_point_in_time():
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="edc-restore-drill-"))
    root.chmod(0o755)
    for sub in ("archive", "sockets"):
        (root / sub).mkdir()
    if AS_POSTGRES:
        shutil.chown(root, "postgres")
        for sub in ("archive", "sockets"):
            shutil.chown(root / sub, "postgres")
    primary = Cluster(root / "primary", _free_port(), root / "sockets")
    restored = Cluster(root / "restored", _free_port(), root / "sockets")
    try:
        primary.run("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--no-sync")
        with open(primary.data / "postgresql.conf", "a") as conf:
            conf.write(
                "wal_level = replica\narchive_mode = on\n"
                f"archive_command = 'test ! -f {root}/archive/%f && cp %p {root}/archive/%f'\n"
                "fsync = off\n"  # a throwaway cluster: the drill tests recovery, not the disk
            )
        primary.start()
        primary.run("createdb", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "edc")
        primary.sql(DDL)
        _write(primary, 1, 100, "Before the backup")

        # 1. The base backup (what the nightly job runs), WAL archiving on since initdb.
        primary.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                    "-D", str(root / "base"), "-X", "none", "-c", "fast")

        # 2. More work after the backup, then the moment to restore to, then work to lose.
        _write(primary, 101, 150, "After the backup")
        target = primary.sql("SELECT now()")
        time.sleep(1.1)  # recovery_target_time has a resolution of the commit timestamps
        _write(primary, 151, 170, "After the target")
        assert primary.sql("SELECT count(*) FROM crfentry") == "170"
        last_wal = primary.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        primary.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while primary.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < last_wal:
            assert time.monotonic() < deadline, "the WAL segment was not archived within 30 s"
            time.sleep(0.2)
        primary.stop()  # the primary is lost

        # 3. Restore: the base backup, the archived WAL replayed up to the target, then promoted.
        shutil.copytree(root / "base", restored.data, symlinks=True)
        if AS_POSTGRES:
            subprocess.run(["chown", "-R", "postgres", str(restored.data)], check=True)
        restored.data.chmod(0o700)
        with open(restored.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"archive_mode = off\nrestore_command = 'cp {root}/archive/%f %p'\n"
                f"recovery_target_time = '{target}'\nrecovery_target_action = 'promote'\n"
            )
        (restored.data / "recovery.signal").touch()
        if AS_POSTGRES:
            shutil.chown(restored.data / "recovery.signal", "postgres")
        restored.start()
        deadline = time.monotonic() + 60
        while restored.sql("SELECT pg_is_in_recovery()") != "f":
            assert time.monotonic() < deadline, "recovery did not finish within 60 s"
            time.sleep(0.2)

        # 4. Everything committed before the target is there, nothing after it; every entry with its
        # two audit rows (the audit trail restored with the data, never one without the other).
        assert restored.sql("SELECT count(*) FROM crfentry") == "150"
        assert restored.sql("SELECT count(*) FROM crfentry WHERE revision = 2") == "150"
        assert restored.sql("SELECT count(*) FROM historicalcrfentry") == "300"
        assert restored.sql("SELECT count(*) FROM historicalcrfentry WHERE history_change_reason LIKE 'After the target%'") == "0"
        assert restored.sql(
            "SELECT count(*) FROM crfentry e WHERE (SELECT count(*) FROM historicalcrfentry h WHERE h.id = e.id) <> 2"
        ) == "0"
        # The restored server takes writes again (promoted).
        restored.sql("INSERT INTO crfentry VALUES (999, '{}', 1)")
    finally:
        restored.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert time.monotonic() - started < 120, "the drill must stay under two minutes to run in CI"
