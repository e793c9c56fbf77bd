#!/usr/bin/env bash
# Throughput of the coordinator flow through the proxy with 1 and with 2 web nodes (issue 22), and the
# audit check: every save answered 302 wrote exactly one audit row (history row with the reason).
#   .ci/cluster/loadtest.sh NODES [USERS] [SECONDS]     e.g. .ci/cluster/loadtest.sh 1 8 60; .ci/cluster/loadtest.sh 2 8 60
# NODES=1 stops web2 (the proxy routes around it); NODES=2 starts it again. Needs `make cluster` first.
# LOCUST: the locust executable (pinned in pyproject's test extras; default: locust on PATH).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${STATE:-/var/tmp/edc-cluster}
LOCUST=${LOCUST:-locust}
NODES=${1:?1 or 2}; USERS=${2:-8}; SECONDS_=${3:-60}
OUT=${OUT:-$REPO/artifacts/cluster}; mkdir -p "$OUT"
PSQL=(ip netns exec edc-pg1 runuser -u postgres -- "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql" -h 10.77.0.31 -U postgres -d edc -tA)
audit() { "${PSQL[@]}" -c "SELECT count(*) FROM visits_historicalcrfentry WHERE history_change_reason = 'Load test'"; }

if [[ $NODES == 1 ]]; then "$REPO/.ci/cluster/cluster.sh" stop web2; else "$REPO/.ci/cluster/cluster.sh" start web2; fi
for _ in $(seq 60); do   # the proxy's view settles (2 checks 1 s apart)
  up=$(echo "show servers state web" | ip netns exec edc-proxy socat - "UNIX-CONNECT:$STATE/haproxy.sock" | awk 'NR>2 && $6==2' | wc -l)
  [[ $up == "$NODES" ]] && break; sleep 1
done
before=$(audit)
tag="nodes${NODES}-u${USERS}-t${SECONDS_}"
LOADTEST_USERS_FILE=$STATE/loadtest.json "$LOCUST" -f "$REPO/.ci/cluster/locustfile.py" --headless -u "$USERS" -r "$USERS" \
  -t "${SECONDS_}s" --stop-timeout 30 --host https://10.77.0.10 --csv "$OUT/$tag" --only-summary >"$OUT/$tag.log" 2>&1 || true
sleep 2
after=$(audit)
python3 - "$REPO/.ci/cluster" "$OUT/$tag.log" "$NODES" "$USERS" "$SECONDS_" "$((after - before))" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from summary import table
rows = table(sys.argv[2])
nodes, users, secs, audit_rows = sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
saves = rows["5 save"]["count"] - rows["5 save"]["fails"]
total = rows["Aggregated"]
print(f"nodes={nodes} users={users} seconds={secs} saves={saves} saves/s={saves/secs:.2f} "
      f"requests={total['count']} failures={total['fails']} median_ms={total['median']} "
      f"audit_rows={audit_rows} audit_equals_saves={audit_rows == saves}")
PY
