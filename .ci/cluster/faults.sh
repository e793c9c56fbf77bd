#!/usr/bin/env bash
# Fault drills on the running cluster (issue 22), each printing what it checked. Needs `make cluster`.
#   .ci/cluster/faults.sh [web|worker|schedule|redis|beat|all]
# web:    under load (locust, 8 users, 45 s) SIGKILL web1 at 15 s, start it again at 30 s: the proxy routes
#         around it; requests in flight on web1 fail (counted); every saved entry has exactly one audit row
#         per revision (no partial write) and the audit rows equal the saves answered 302.
# worker: an ODM export; SIGKILL the worker node running it: the stale scan (every minute; heartbeat timeout
#         1 minute in the lab) queues it again, the other worker runs it to the end; then the killed node's own
#         message, delivered again when it restarts, does nothing: one file, one "Export finished".
# schedule: 600 participants without visits, 3 SAE clocks past half time; the periodic work enqueued (schedule
#         batch, reminders, clock alerts, nightly summaries); SIGKILL the worker node running the batch; the next
#         scans (and the same nightly tick again) complete it on the other worker: visits, reminders, clock alerts
#         and summaries exist once each.
# redis:  workers stopped, an export requested, Redis restarted (no persistence: the message is lost); the
#         housekeeping scan (hourly; run here as if 11 minutes had passed) enqueues it again; it finishes.
# beat:   stop the beat that holds the lock: the standby on the other node takes it within its poll; a SIGKILLed
#         holder's lock expires after its TTL (30 s) before the standby starts; one beat at any time.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${STATE:-/var/tmp/edc-cluster}
PY=${PY:-$REPO/.venv/bin/python}
LOCUST=${LOCUST:-locust}
C="$REPO/.ci/cluster/cluster.sh"
OUT=${OUT:-$REPO/artifacts/cluster}; mkdir -p "$OUT"
# shellcheck disable=SC2046
drill() { env $(PY=$PY "$C" env) "$PY" "$REPO/.ci/cluster/drill.py" "$@"; }
PSQL=(ip netns exec edc-pg1 runuser -u postgres -- "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql" -h 10.77.0.31 -U postgres -d edc -tA)
audit() { "${PSQL[@]}" -c "SELECT count(*) FROM visits_historicalcrfentry WHERE history_change_reason = 'Load test'"; }
say() { printf '[faults] %s\n' "$*"; }
wait_job() {  # wait_job ID STATE SECONDS
  local got; got=$(drill wait "$1" "$2" "$3"); say "job $1: $got"; [[ $got == "$2"* ]]
}

web() {
  "$C" start web1; "$C" start web2; sleep 4
  before=$(audit)
  LOADTEST_USERS_FILE=$STATE/loadtest.json "$LOCUST" -f "$REPO/.ci/cluster/locustfile.py" --headless -u 8 -r 8 -t 45s \
    --stop-timeout 30 --host https://10.77.0.10 --csv "$OUT/fault-web" --only-summary >"$OUT/fault-web.log" 2>&1 &
  local locust=$!
  sleep 15; say "SIGKILL web1"; "$C" kill web1
  sleep 15; say "start web1"; "$C" start web1
  wait $locust || true; sleep 2
  after=$(audit)
  python3 - "$REPO/.ci/cluster" "$OUT/fault-web.log" "$((after - before))" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from summary import table
rows = table(sys.argv[2])
ok = rows["5 save"]["count"] - rows["5 save"]["fails"]
fails = {n: r["fails"] for n, r in rows.items() if r["fails"]}
print(f"[faults] web: saves answered 302={ok} audit rows={sys.argv[3]} failed requests={fails or 0}")
PY
  grep -A8 "Error report" "$OUT/fault-web.log" | sed 's/^/[faults]   /' || true
  say "entries whose revision differs from their audit rows (partial writes): $(drill integrity)"
}

receiver() {  # receiver TASK: wait for the worker node whose log receives TASK next; print it
  local task=$1 victim="" w
  declare -A seen
  for w in worker1 worker2; do seen[$w]=$(grep -c "$task.*received" "$STATE/logs/$w.log" || true); done
  echo "ready" >&2
  for _ in $(seq 300); do   # polled every 0.1 s
    for w in worker1 worker2; do
      [[ $(grep -c "$task.*received" "$STATE/logs/$w.log" || true) -gt ${seen[$w]} ]] && victim=$w
    done
    [[ -n $victim ]] && break; sleep 0.1
  done
  echo "$victim"
}

worker() {
  "$C" start worker1; "$C" start worker2; sleep 3
  local out=$STATE/receiver.out
  receiver export_run_task >"$out" 2>/dev/null &
  local watcher=$!; sleep 0.5
  job=$(drill export casebooks); say "export job $job requested (casebooks: a PDF per participant, minutes)"
  wait $watcher || true; victim=$(cat "$out")
  [[ -n $victim ]] || { say "no worker received the export"; return 1; }
  drill wait "$job" running 60 >/dev/null; sleep 5
  say "SIGKILL $victim (it runs the export: $(drill job "$job"))"; "$C" kill "$victim"
  local t0=$SECONDS
  wait_job "$job" done 240 || true   # the stale scan (beat, every minute): heartbeat older than 1 minute (lab setting)
  say "done $((SECONDS - t0)) s after the kill; $(drill attempts "$job")"
  say "the other worker ran it: $(grep -h "export_run_task.*succeeded" "$STATE"/logs/worker*.log | tail -1 | cut -c1-80)"
  "$C" start "$victim"; sleep 15   # (Redis gives its unacknowledged message back after the visibility timeout)
  say "after $victim restarted: $(drill attempts "$job")"
}

schedule() {
  "$C" start worker1; "$C" start worker2; sleep 3
  drill sched-prepare 600
  local out=$STATE/receiver.out
  receiver schedule_batch >"$out" 2>/dev/null &
  local watcher=$!; sleep 0.5
  say "periodic work enqueued (schedule batch of $(drill sched-enqueue) participants, reminders, clock alerts, nightly summaries)"
  wait $watcher || true; victim=$(cat "$out")
  [[ -n $victim ]] || { say "no worker received the batch"; return 1; }
  drill sched-wait 40   # some schedules written, most not
  say "SIGKILL $victim mid-batch (participants with / without visits: $(drill sched-progress))"; "$C" kill "$victim"
  say "after the kill: $(drill sched-check)"
  if [[ ${RESTART_VICTIM:-0} == 1 ]]; then "$C" start "$victim"; say "$victim started again (systemd: Restart=always)"; fi
  say "the next ticks: $(drill sched-rescan 11)"
  for _ in $(seq 240); do read -r _done left <<<"$(drill sched-progress)"; [[ $left == 0 ]] && break; sleep 1; done
  sleep 10   # the reminders, alerts and summaries enqueued with them
  say "after the scans: $(drill sched-check)"
  "$C" start "$victim"
}
# (RESTART_VICTIM=1: the killed node comes back before the next ticks, for when the other node is busy
# with a long export: worker concurrency 1 in the lab.)

redis() {
  "$C" stop worker1; "$C" stop worker2
  job=$(drill export); say "export job $job requested while no worker runs"
  say "restart Redis (no persistence: queued messages lost)"; "$C" stop redis; "$C" start redis; sleep 2
  "$C" start worker1; "$C" start worker2; sleep 8
  for b in beat1 beat2; do   # the beat holding the lock could not renew it in the new Redis: it stopped
    [[ -f $STATE/pids/$b.pid ]] && kill -0 "$(cat "$STATE/pids/$b.pid")" 2>/dev/null || { say "$b stopped (lock lost with Redis): restart it (systemd: Restart=always)"; "$C" start "$b"; }
  done
  say "after the restart: $(drill job "$job")"
  say "housekeeping scan: $(drill scan 11)"
  wait_job "$job" done 180 || true
}

beat() {
  holder() { redis-cli -h 10.77.0.40 get edc:beat-lock; }
  "$C" start beat1; "$C" start beat2; sleep 5
  h=$(holder); say "lock held by $h; the other beat_locked waits"
  node=${h%%:*}; other=$([[ $node == beat1 ]] && echo beat2 || echo beat1)
  say "stop $node (SIGTERM: beat stops, the lock is released)"; "$C" stop "$node"
  for i in $(seq 40); do h2=$(holder); [[ $h2 == "$other"* ]] && break; sleep 1; done
  say "after ${i} s the lock is held by $h2"
  "$C" start "$node"; sleep 3; say "$node started again: it waits ($(tail -n 1 "$STATE/logs/$node.log" | cut -c25-))"
  say "SIGKILL $other (the holder; its lock expires after its TTL, 30 s)"; "$C" kill "$other"
  for i in $(seq 60); do h3=$(holder); [[ $h3 == "$node"* ]] && break; sleep 1; done
  say "after ${i} s the lock is held by $h3"
  "$C" start "$other"; sleep 3
  say "holder now $(holder); beat_locked processes alive: $(for b in beat1 beat2; do [[ -f $STATE/pids/$b.pid ]] && kill -0 "$(cat "$STATE/pids/$b.pid")" 2>/dev/null && echo -n "$b "; done)"
}

case ${1:-all} in
  web) web ;; worker) worker ;; schedule) schedule ;; redis) redis ;; beat) beat ;;
  all) web; worker; schedule; redis; beat ;;
  *) echo "usage: $0 [web|worker|schedule|redis|beat|all]"; exit 2 ;;
esac
