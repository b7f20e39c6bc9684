#!/usr/bin/env bash
# A local Parley cluster in one command: PostgreSQL (its own data folder, as the `postgres` user
# when run as root), `nats-server -js`, N nodes of `parley serve` (default 3) on free loopback
# ports sharing the PostgreSQL store, and HAProxy in front as the one public address (HTTP and
# WebSocket on one port, TLS passed through to the nodes on another).
#
#   tools/cluster.sh [N]
#
# Prints each node's `listening` line, then
#   {"event":"cluster","url":"http://127.0.0.1:P","https":"https://127.0.0.1:Q","nodes":[…],
#    "store":"postgresql://…","bus":"nats://127.0.0.1:B","natsMonitor":"http://127.0.0.1:M"}
# and then the demo line (every node runs with --demo; they share one demo account). Ctrl-C
# (SIGINT) or SIGTERM stops everything it started and removes the folder.
#
# Environment: PARLEY_BIN (default build/default/src/app/parley), PARLEY_CLUSTER_DIR (the working
# folder; default a new one under /tmp, removed at the end; a given one is kept), PARLEY_NODE_ARGS
# (more `parley serve` flags for every node), PARLEY_CLUSTER_NATS_PORT (the NATS port; default a
# free one), PARLEY_NODE_BUS_<I> (node I's `--bus` URL instead of the shared server's: a proxy
# in front of it that a fault test closes to cut that node off from NATS).
#
# Each node's pid is in $PARLEY_CLUSTER_DIR/nodeI.pid; a node that ends does not stop the others.
# SIGUSR1 restarts PostgreSQL as a crash would (`pg_ctl stop -m immediate`, then a start on the
# same port: crash recovery), for fault tests; `{"event":"postgres","restarted":true,"downMs":D}`
# is printed once it accepts connections again.
#
# What the nodes share: the store (accounts, conversations, functions, bots), the TLS CA and
# leaf, the consumer JWT key, the secrets key, and the bus (`--bus nats://…`: a deploy, bot or
# image-allowlist change on one node is applied by the others). What is not built yet: the
# README, "Running a cluster".
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-3}"
if ! [[ "$n" =~ ^[1-9][0-9]?$ ]]; then
  echo "usage: tools/cluster.sh [N]   (1 to 99 nodes; default 3)" >&2
  exit 2
fi
PARLEY="${PARLEY_BIN:-$here/build/default/src/app/parley}"
[ -x "$PARLEY" ] || { echo "cluster: no parley binary at $PARLEY (run tools/build.sh, or set PARLEY_BIN)" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# What it needs, from apt (Debian 12: postgresql 15, nats-server 2.9, haproxy 2.6).
missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/postgres" ] || missing+=(postgresql)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "cluster: installing ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
export PATH="$PATH:/usr/sbin"
PGBIN="$(pg_bin)"

keep_dir=1
if [ -z "${PARLEY_CLUSTER_DIR:-}" ]; then
  PARLEY_CLUSTER_DIR="$(mktemp -d /tmp/parley-cluster-XXXXXX)"
  keep_dir=0
fi
work="$PARLEY_CLUSTER_DIR"
mkdir -p "$work"
chmod 755 "$work"

pids=()
pg_pid=""
stopping=0
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  # Balancer first, then the nodes (SIGTERM: they drain), then the bus and the database.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$pg_pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" stop -m fast -w >/dev/null 2>&1 || true
    wait "$pg_pid" 2>/dev/null || true
  fi
  [ "$keep_dir" = 1 ] || rm -rf "$work"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT
fail() { echo "cluster: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# ---- PostgreSQL in $work/pg --------------------------------------------------------------------
pg_port="$(free_port)"
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
if [ ! -f "$work/pg/data/PG_VERSION" ]; then
  as_pg "$PGBIN/initdb" -D "$work/pg/data" -A trust -U postgres -E UTF8 --no-locale --no-instructions \
    >"$work/pg/initdb.log" 2>&1 || fail "initdb failed (see $work/pg/initdb.log)"
fi
start_pg() {
  as_pg "$PGBIN/postgres" -D "$work/pg/data" -k "$work/pg" -p "$pg_port" -c listen_addresses=127.0.0.1 \
    -c max_connections=200 >>"$work/pg/server.log" 2>&1 &
  pg_pid=$!
  for _ in $(seq 1 300); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
    kill -0 "$pg_pid" 2>/dev/null || fail "postgres exited (see $work/pg/server.log)"
    sleep 0.1
  done
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || fail "postgres did not start (see $work/pg/server.log)"
}
start_pg
"$PGBIN/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='parley'" | grep -q 1 ||
  "$PGBIN/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE parley" >/dev/null
store="postgresql://postgres@127.0.0.1:$pg_port/parley"

# ---- NATS with JetStream -----------------------------------------------------------------------
nats_port="${PARLEY_CLUSTER_NATS_PORT:-$(free_port)}"
nats_monitor="$(free_port)"  # NATS's HTTP monitoring (/varz, /jsz): what bench/cluster reads
mkdir -p "$work/nats"
nats-server -js -a 127.0.0.1 -p "$nats_port" -m "$nats_monitor" -sd "$work/nats" >"$work/nats/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$nats_port" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "nats-server exited (see $work/nats/server.log)"
  sleep 0.1
done

# ---- The nodes ---------------------------------------------------------------------------------
http_port="$(free_port)"
https_port="$(free_port)"
web_args=()
[ -f "$here/web/dist/index.html" ] && web_args=(--web "$here/web/dist")
read -r -a extra <<<"${PARLEY_NODE_ARGS:-}"
for i in $(seq 1 "$n"); do
  node_bus_var="PARLEY_NODE_BUS_$i"
  node_bus="${!node_bus_var:-nats://127.0.0.1:$nats_port}"
  "$PARLEY" serve --data "$work/node$i" --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 \
    --store "$store" --bus "$node_bus" --node "node$i" --public-url "https://127.0.0.1:$https_port" --demo \
    "${web_args[@]}" "${extra[@]}" >"$work/node$i.out" 2>"$work/node$i.log" &
  pids+=($!)
  echo "$!" >"$work/node$i.pid"
done
node_pids=("${pids[@]:1}")
for i in $(seq 1 "$n"); do
  for _ in $(seq 1 600); do
    grep -q '"event":"demo"' "$work/node$i.out" 2>/dev/null && break
    kill -0 "${node_pids[$((i - 1))]}" 2>/dev/null || { tail -n 20 "$work/node$i.log" >&2; fail "node$i exited"; }
    sleep 0.1
  done
  grep -q '"event":"demo"' "$work/node$i.out" || fail "node$i did not start (see $work/node$i.log)"
done
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
hostport() { echo "${1#*://}"; }

# ---- HAProxy: HTTP/WebSocket balanced per request, TLS passed through per connection -----------
cfg="$work/haproxy.cfg"
{
  echo "global"
  echo "  maxconn 4000"
  echo "defaults"
  echo "  timeout connect 5s"
  echo "  timeout client 1h"
  echo "  timeout server 1h"
  echo "  timeout tunnel 1h"
  # A connection refused by a node (dead, not yet marked down by the health check) is tried again
  # on another node instead of answered 503.
  echo "  retries 3"
  echo "  option redispatch 1"
  echo "frontend http_in"
  echo "  mode http"
  echo "  bind 127.0.0.1:$http_port"
  echo "  default_backend nodes_http"
  echo "backend nodes_http"
  echo "  mode http"
  echo "  balance roundrobin"
  echo "  option httpchk GET /healthz"
  echo "  http-response set-header X-Parley-Node %s"
  for i in $(seq 1 "$n"); do
    line="$(grep '"event":"listening"' "$work/node$i.out")"
    echo "  server node$i $(hostport "$(field "$line" http)") check inter 1s"
  done
  echo "frontend https_in"
  echo "  mode tcp"
  echo "  bind 127.0.0.1:$https_port"
  echo "  default_backend nodes_https"
  echo "backend nodes_https"
  echo "  mode tcp"
  echo "  balance roundrobin"
  for i in $(seq 1 "$n"); do
    line="$(grep '"event":"listening"' "$work/node$i.out")"
    echo "  server node$i $(hostport "$(field "$line" https)") check inter 1s"
  done
} >"$cfg"
haproxy -q -f "$cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$http_port" 2>/dev/null && break
  sleep 0.1
done

nodes="["
for i in $(seq 1 "$n"); do
  line="$(grep '"event":"listening"' "$work/node$i.out")"
  echo "$line"
  [ "$i" = 1 ] || nodes+=","
  nodes+="$line"
done
nodes+="]"
python3 -c 'import json,sys; print(json.dumps({"event":"cluster","url":sys.argv[1],"https":sys.argv[2],"nodes":[{"node":n["node"],"http":n["http"],"https":n["https"]} for n in json.loads(sys.argv[3])],"store":sys.argv[4],"bus":sys.argv[6],"natsMonitor":sys.argv[5]}, separators=(",",":")))' \
  "http://127.0.0.1:$http_port" "https://127.0.0.1:$https_port" "$nodes" "$store" "http://127.0.0.1:$nats_monitor" \
  "nats://127.0.0.1:$nats_port"
grep '"event":"demo"' "$work/node1.out"

# Until a signal (the trap stops everything) or until PostgreSQL, NATS or HAProxy ends. A node
# that ends (killed, crashed) is reported and the others go on: they take its conversations over
# once its leases expire (`--lease-ms`).
restart_pg=0
trap 'restart_pg=1' USR1
declare -A reported=()
while :; do
  if [ "$restart_pg" = 1 ]; then
    restart_pg=0
    down_at=$(date +%s%3N)
    as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" stop -m immediate -w >/dev/null 2>&1 || true
    wait "$pg_pid" 2>/dev/null || true
    start_pg
    echo "{\"event\":\"postgres\",\"restarted\":true,\"downMs\":$(($(date +%s%3N) - down_at))}"
  fi
  infra=("${pids[0]}" "${pids[$((${#pids[@]} - 1))]}" "$pg_pid")
  for p in "${infra[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "cluster: a process ended; stopping everything" >&2; exit 1; }
  done
  for i in $(seq 1 "$n"); do
    p="${node_pids[$((i - 1))]}"
    if [ -z "${reported[$i]:-}" ] && ! kill -0 "$p" 2>/dev/null; then
      reported[$i]=1
      echo "cluster: node$i ended; the other nodes go on" >&2
    fi
  done
  sleep 0.5
done
