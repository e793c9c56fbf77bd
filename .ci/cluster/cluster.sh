#!/usr/bin/env bash
# The multi-node lab of issue 22 on one machine: network namespaces as hosts on a bridge (10.77.0.0/24).
#
#   .ci/cluster/cluster.sh up            # build (idempotent): network, PostgreSQL primary + replica, Redis,
#                                        # 2 web nodes (gunicorn, DJANGO_ENV=production), HAProxy, 2 workers, beat guards
#   .ci/cluster/cluster.sh down          # stop every process it started (by pid file), remove namespaces and bridge
#   .ci/cluster/cluster.sh status        # what runs, the proxy's view of the web nodes, the replica's lag
#   .ci/cluster/cluster.sh stop NODE     # stop one node's process (web1 web2 worker1 worker2 beat1 beat2 redis ...)
#   .ci/cluster/cluster.sh kill NODE     # SIGKILL it (fault drills)
#   .ci/cluster/cluster.sh start NODE    # start it again
#
# Hosts (docs/deployment.md, "Several machines"):
#   10.77.0.1  the host end of the bridge (locust, manage.py)   10.77.0.10 proxy (HAProxy, TLS on 443)
#   10.77.0.11 web1 (gunicorn on CPU 0)  10.77.0.12 web2 (CPU 1)  10.77.0.21 worker1 + beat guard  10.77.0.22 worker2 + beat guard
#   10.77.0.31 PostgreSQL primary        10.77.0.32 streaming replica                               10.77.0.40 Redis
# Everything lives under $STATE (default /var/tmp/edc-cluster); `down` removes the processes and the network,
# `down --purge` the data too. Needs root (ip netns), iproute2, haproxy, redis-server, PostgreSQL binaries.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${STATE:-/var/tmp/edc-cluster}
PY=${PY:-$REPO/.venv/bin/python}
BIN=$(dirname "$PY")
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
WEB_WORKERS=${WEB_WORKERS:-2}          # gunicorn processes per web node (the same on each node)
WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-1}
BRIDGE=edcbr0
NET=10.77.0
declare -A ADDR=([proxy]=10 [web1]=11 [web2]=12 [worker1]=21 [worker2]=22 [pg1]=31 [pg2]=32 [redis]=40)
declare -A CPU=([web1]=0 [web2]=1)
DB_URL="postgres://edc@$NET.31:5432/edc"
REPLICA_URL="postgres://edc@$NET.32:5432/edc"
REDIS="redis://$NET.40:6379/0"

log() { printf '[cluster] %s\n' "$*" >&2; }
ns() { local n=$1; shift; ip netns exec "edc-$n" "$@"; }
alive() { [[ -f $STATE/pids/$1.pid ]] && kill -0 "$(cat "$STATE/pids/$1.pid")" 2>/dev/null; }
# (`daemon` restarts a node whose pid file names a dead process)

secret() {
  [[ -f $STATE/secret ]] || (head -c 64 /dev/urandom | base64 -w0 | tr -d '/+=' > "$STATE/secret")
  cat "$STATE/secret"
}

app_env() {  # the production environment of every application node
  cat <<ENV
DJANGO_ENV=production
DJANGO_SECRET_KEY=$(secret)
ALLOWED_HOSTS=$NET.10,$NET.11,$NET.12,127.0.0.1
CSRF_TRUSTED_ORIGINS=https://$NET.10
BEHIND_TLS_PROXY=true
SECURE_SSL_REDIRECT=true
DATABASE_URL=$DB_URL
REPLICA_DATABASE_URL=$REPLICA_URL
REPLICA_MAX_LAG_SECONDS=${REPLICA_MAX_LAG_SECONDS:-5}
REDIS_URL=$REDIS
STATIC_ROOT=$STATE/static
MEDIA_ROOT=$STATE/media
EDC_VAR_DIR=$STATE/var
PYTHONPATH=$REPO
LOG_LEVEL=WARNING
EXPORT_HEARTBEAT_TIMEOUT_MINUTES=1
ENV
}

network_up() {
  ip link show $BRIDGE >/dev/null 2>&1 || {
    ip link add $BRIDGE type bridge
    ip addr add $NET.1/24 dev $BRIDGE
    ip link set $BRIDGE up
  }
  for n in "${!ADDR[@]}"; do
    ip netns list | grep -qw "edc-$n" && continue
    ip netns add "edc-$n"
    ip link add "v-$n" type veth peer name eth0 netns "edc-$n"
    ip link set "v-$n" master $BRIDGE up
    ns "$n" ip addr add "$NET.${ADDR[$n]}/24" dev eth0
    ns "$n" ip link set eth0 up
    ns "$n" ip link set lo up
  done
}

network_down() {
  for n in "${!ADDR[@]}"; do
    ip netns list | grep -qw "edc-$n" && { ip netns del "edc-$n" || true; }
    ip link show "v-$n" >/dev/null 2>&1 && { ip link del "v-$n" 2>/dev/null || true; }   # gone with its namespace
  done
  ip link show $BRIDGE >/dev/null 2>&1 && ip link del $BRIDGE
  return 0
}

pg() { runuser -u postgres -- "$PGBIN/$1" "${@:2}"; }

postgres_up() {
  mkdir -p "$STATE/pg" "$STATE/wal-archive" && chown postgres "$STATE/pg" "$STATE/wal-archive"
  if [[ ! -f $STATE/pg/primary/PG_VERSION ]]; then
    pg initdb -D "$STATE/pg/primary" -U postgres --auth=trust >/dev/null
    cat >> "$STATE/pg/primary/postgresql.conf" <<CONF
listen_addresses = '$NET.31'
wal_level = replica
max_wal_senders = 5
hot_standby = on
archive_mode = on
archive_command = 'test ! -f $STATE/wal-archive/%f && cp %p $STATE/wal-archive/%f'
max_connections = 100
shared_buffers = 128MB
unix_socket_directories = ''   # TCP only: the machine's own PostgreSQL keeps /var/run/postgresql
CONF
    # Lab only: trust on the cluster's private network. A real deployment uses scram-sha-256 and TLS.
    echo "host all,replication all $NET.0/24 trust" >> "$STATE/pg/primary/pg_hba.conf"
  fi
  if ! ns pg1 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg/primary" status >/dev/null 2>&1; then
    ns pg1 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg/primary" -l "$STATE/pg/primary.log" -w start >/dev/null
  fi
  ns pg1 runuser -u postgres -- "$PGBIN/psql" -h $NET.31 -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='edc'" | grep -q 1 \
    || ns pg1 runuser -u postgres -- "$PGBIN/psql" -h $NET.31 -U postgres -qc "CREATE ROLE edc LOGIN SUPERUSER"
  ns pg1 runuser -u postgres -- "$PGBIN/psql" -h $NET.31 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='edc'" | grep -q 1 \
    || ns pg1 runuser -u postgres -- "$PGBIN/psql" -h $NET.31 -U postgres -qc "CREATE DATABASE edc OWNER edc"
  if [[ ! -f $STATE/pg/replica/PG_VERSION ]]; then
    # A streaming replica: a base backup of the primary with -R (standby.signal + primary_conninfo) and a
    # replication slot (-C -S: the primary keeps the WAL the replica has not received, e.g. across a restart);
    # the WAL archive as a fallback (restore_command).
    ns pg1 runuser -u postgres -- "$PGBIN/psql" -h $NET.31 -U postgres -qc "SELECT pg_drop_replication_slot('edc_replica')" 2>/dev/null || true
    ns pg2 runuser -u postgres -- "$PGBIN/pg_basebackup" -h $NET.31 -U postgres -D "$STATE/pg/replica" -R -C -S edc_replica -X stream -c fast
    sed -i "s/^listen_addresses = .*/listen_addresses = '$NET.32'/; s/^archive_mode = on/archive_mode = off/" "$STATE/pg/replica/postgresql.conf"
    echo "restore_command = 'cp $STATE/wal-archive/%f %p'" >> "$STATE/pg/replica/postgresql.conf"
    # An export's snapshot lasts minutes on the standby: without feedback the primary's vacuum removes rows it
    # still sees and the standby ends the export's connection ("conflict with recovery"; drilled 2026-12-06).
    echo "hot_standby_feedback = on" >> "$STATE/pg/replica/postgresql.conf"
  fi
  if ! ns pg2 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg/replica" status >/dev/null 2>&1; then
    ns pg2 runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg/replica" -l "$STATE/pg/replica.log" -w start >/dev/null
  fi
}

postgres_down() {
  for d in replica primary; do
    n=$([[ $d == primary ]] && echo pg1 || echo pg2)
    [[ -f $STATE/pg/$d/postmaster.pid ]] || continue
    if ip netns list | grep -qw "edc-$n"; then
      ns "$n" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STATE/pg/$d" -m fast -w stop >/dev/null 2>&1 || true
    else
      pg pg_ctl -D "$STATE/pg/$d" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
}

# start NAME NODE COMMAND...: a daemon in the node's namespace, its pid in $STATE/pids, its output in $STATE/logs
daemon() {
  local name=$1 node=$2; shift 2
  alive "$name" && return 0
  mkdir -p "$STATE/pids" "$STATE/logs"
  # shellcheck disable=SC2046
  ip netns exec "edc-$node" env -i PATH="$BIN:/usr/sbin:/usr/bin:/bin" HOME=/root $(app_env) EDC_NODE="$name" \
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/pids/$name.pid"
}

start_node() {
  case $1 in
    redis) daemon redis redis redis-server --bind $NET.40 --port 6379 --save "" --appendonly no --protected-mode no ;;
    web1|web2)
      # Each web node pinned to its own CPU (taskset): the 1-node vs 2-node comparison measures a node, not the machine.
      daemon "$1" "$1" taskset -c "${CPU[$1]}" "$BIN/gunicorn" edc.wsgi --chdir "$REPO" --bind "$NET.${ADDR[$1]}:8000" \
        --workers "$WEB_WORKERS" --access-logfile - --graceful-timeout 5 ;;
    worker1|worker2)
      daemon "$1" "$1" "$BIN/celery" --workdir "$REPO" -A edc worker -Q celery,reports --concurrency "$WORKER_CONCURRENCY" \
        --hostname "$1@%h" --loglevel=INFO ;;
    beat1) daemon beat1 worker1 "$PY" "$REPO/manage.py" beat_locked --loglevel=INFO ;;
    beat2) daemon beat2 worker2 "$PY" "$REPO/manage.py" beat_locked --loglevel=INFO ;;
    proxy) proxy_config; daemon proxy proxy haproxy -db -f "$STATE/haproxy.cfg" ;;
    *) log "unknown node $1"; exit 2 ;;
  esac
}

stop_node() {  # stop_node NAME [SIGNAL]
  local name=$1 sig=${2:-TERM}
  alive "$name" || { rm -f "$STATE/pids/$name.pid"; return 0; }
  local pid; pid=$(cat "$STATE/pids/$name.pid")
  kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true   # its process group (setsid)
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$STATE/pids/$name.pid"
}

proxy_config() {
  [[ -f $STATE/proxy.pem ]] || {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$NET.10" -keyout "$STATE/proxy.key" -out "$STATE/proxy.crt" 2>/dev/null
    cat "$STATE/proxy.crt" "$STATE/proxy.key" > "$STATE/proxy.pem"
  }
  sed -e "s#@STATE@#$STATE#g" -e "s#@NET@#$NET#g" -e "s#@WEB_WORKERS@#$WEB_WORKERS#g" "$REPO/docs/deploy/haproxy.cfg" > "$STATE/haproxy.cfg"
}

app_setup() {  # migrations, static files, the load-test trial and users (once)
  mkdir -p "$STATE/static" "$STATE/media" "$STATE/var"
  # shellcheck disable=SC2046
  env $(app_env) "$PY" "$REPO/manage.py" migrate --noinput -v 0
  [[ -f $STATE/static/staticfiles.json ]] || env $(app_env) "$PY" "$REPO/manage.py" collectstatic --noinput -v 0
  if [[ ! -f $STATE/loadtest.json ]]; then
    # synth_trial refuses production settings (synthetic data never beside real data): this lab database only.
    env $(app_env) DJANGO_ENV=development "$PY" "$REPO/manage.py" synth_trial --code CLU --participants 400 --visits 3 \
      --crfs 2 --items 8 --sites 2 --aes 0 >/dev/null
    env $(app_env) DJANGO_ENV=development "$PY" "$REPO/.ci/cluster/seed_users.py" "$STATE/loadtest.json"
  fi
}

up() {
  mkdir -p "$STATE" && chmod 755 "$STATE"
  network_up
  start_node redis
  postgres_up
  app_setup
  proxy_config
  for n in web1 web2 worker1 worker2 beat1 beat2 proxy; do start_node "$n"; done
  for _ in $(seq 60); do
    curl -ksf "https://$NET.10/healthz" >/dev/null 2>&1 && break; sleep 1
  done
  status
}

down() {
  for n in proxy beat1 beat2 worker1 worker2 web1 web2 redis; do stop_node "$n"; done
  postgres_down
  network_down
  [[ ${1:-} == --purge ]] && rm -rf "$STATE"
  log "down"
}

status() {
  for n in proxy web1 web2 worker1 worker2 beat1 beat2 redis; do
    printf '%-8s %s\n' "$n" "$(alive "$n" && echo "up (pid $(cat "$STATE/pids/$n.pid"))" || echo down)"
  done
  curl -ksf "https://$NET.10/healthz" && echo || echo "proxy: /healthz failed"
  ns pg2 runuser -u postgres -- "$PGBIN/psql" -h $NET.32 -U postgres -tAc \
    "SELECT 'replica lag (s): ' || CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN '0 (all received WAL replayed)'
     ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::text, 'n/a') END" 2>/dev/null || true
  echo "show servers state web" | ns proxy socat - "UNIX-CONNECT:$STATE/haproxy.sock" 2>/dev/null \
    | awk 'NR>2 && NF>5 {print "haproxy:", $4, ($6 == 2 ? "UP" : "DOWN")}' || true
}

cmd=${1:-status}
case $cmd in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  start) start_node "$2" ;;
  stop) stop_node "$2" ;;
  kill) stop_node "$2" KILL ;;
  env) app_env ;;
  *) echo "usage: $0 up|down [--purge]|status|start NODE|stop NODE|kill NODE|env"; exit 2 ;;
esac
