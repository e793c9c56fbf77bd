#!/bin/sh
# Nightly base backup of the primary (cron or a systemd timer, as the postgres user). Together with
# the WAL archive (archive_command in postgresql.conf) it allows a restore to any point in time
# after the oldest kept backup (docs/deployment.md, "Backups and the restore drill").
set -eu
DEST=/backup/edc/base/$(date -u +%Y%m%dT%H%M%SZ)
pg_basebackup -h 127.0.0.1 -U replicator -D "$DEST" -Ft -z -X none -c fast -l "edc nightly"
# Keep 14 days of base backups; WAL older than the oldest kept backup can go (pg_archivecleanup).
find /backup/edc/base -mindepth 1 -maxdepth 1 -mtime +14 -exec rm -rf {} +
