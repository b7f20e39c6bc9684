#!/usr/bin/env bash
# Parley embedded (one node, SQLite) beside a cluster of three nodes on this machine
# (tools/cluster.sh: PostgreSQL, NATS JetStream, HAProxy), alternating, in one run, with the same
# load: parley_loadgen's consumers talking to the demo echo bot.
#
#   bench/cluster/compare.sh [ROUNDS] [CONVERSATIONS] [SECONDS]     # defaults: 3 1000 10
#
# For each run: bot turns/s, latency p50/p99, and CPU per turn of the whole system — embedded:
# the server and its function workers; cluster: the three nodes with their workers, PostgreSQL
# (postmaster and backends), nats-server and HAProxy. For the cluster also what each turn costs
# the shared parts, the inputs of the N-machine projection in docs/cluster.md: PostgreSQL
# transactions, rows written and WAL bytes per turn, and NATS messages in and out per turn.
# Prints one line per run and a table of medians; JSON of every run in $OUT (default a new
# folder under /tmp), with the nodes' logs (node1.log, ...).
#
# Environment: PARLEY_BIN (default build/bench/src/app/parley, else build/default/…), LOADGEN
# (default build/bench/bench/load/parley_loadgen).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
rounds="${1:-3}"
convs="${2:-1000}"
secs="${3:-10}"
pick() { for f in "$@"; do [ -x "$f" ] && { echo "$f"; return; }; done; echo "$1"; }
PARLEY="${PARLEY_BIN:-$(pick "$here/build/bench/src/app/parley" "$here/build/default/src/app/parley")}"
LOADGEN="${LOADGEN:-$(pick "$here/build/bench/bench/load/parley_loadgen" "$here/build/default/bench/load/parley_loadgen")}"
[ -x "$PARLEY" ] || { echo "compare: no parley binary at $PARLEY" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "compare: no loadgen at $LOADGEN (configure with -DPARLEY_BUILD_BENCHMARKS=ON)" >&2; exit 1; }
OUT="${OUT:-$(mktemp -d /tmp/parley-cluster-bench-XXXXXX)}"
mkdir -p "$OUT"
export TMPDIR="${TMPDIR:-/dev/shm}"

cluster_dir="$(mktemp -d /dev/shm/parley-cluster-XXXXXX)"
cluster_pid=""
stop_cluster() {
  if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill -TERM "$cluster_pid"
    wait "$cluster_pid" 2>/dev/null || true
  fi
  # The nodes' logs outlive the cluster's folder (a failed round is diagnosed from them).
  for f in "$cluster_dir"/node*.log; do [ -f "$f" ] && cp "$f" "$OUT/" || true; done
  [ -f "$cluster_dir/pg/server.log" ] && cp "$cluster_dir/pg/server.log" "$OUT/postgres.log" || true
  rm -rf "$cluster_dir"
}
trap stop_cluster EXIT

echo "compare: starting the cluster (3 nodes) in $cluster_dir" >&2
PARLEY_BIN="$PARLEY" PARLEY_CLUSTER_DIR="$cluster_dir" "$here/tools/cluster.sh" 3 \
  >"$OUT/cluster.out" 2>"$OUT/cluster.err" &
cluster_pid=$!
for _ in $(seq 1 1800); do
  grep -q '"event":"demo"' "$OUT/cluster.out" 2>/dev/null && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$OUT/cluster.err" >&2; echo "compare: the cluster did not start" >&2; exit 1; }
  sleep 0.1
done
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
cl="$(grep '"event":"cluster"' "$OUT/cluster.out")"
demo="$(grep '"event":"demo"' "$OUT/cluster.out" | head -n 1)"
url="$(field "$cl" 'd["url"]')"
store="$(field "$cl" 'd["store"]')"
monitor="$(field "$cl" 'd["natsMonitor"]')"
account="$(field "$demo" 'd["account"]')"
admin="$(field "$demo" 'd["admin"]["username"]')"
password="$(field "$demo" 'd["admin"]["password"]')"

# The cluster's processes: the nodes, the postmaster (its backends are its children), NATS, HAProxy.
node_pids=()
for i in 1 2 3; do node_pids+=("$(pgrep -f -- "serve --data $cluster_dir/node$i " | head -n 1)"); done
pg_pid="$(head -n 1 "$cluster_dir/pg/data/postmaster.pid")"
nats_pid="$(pgrep -f -- "nats-server .*-sd $cluster_dir/nats" | head -n 1)"
haproxy_pid="$(pgrep -f -- "haproxy .*$cluster_dir/haproxy.cfg" | head -n 1)"
for p in "${node_pids[@]}" "$pg_pid" "$nats_pid" "$haproxy_pid"; do
  [ -n "$p" ] && kill -0 "$p" || { echo "compare: a cluster process is missing" >&2; exit 1; }
done

psql_num() { echo "psql '$store' -tAXc \"$1\""; }
nats_num() { echo "curl -sf $monitor/varz | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"$1\"])'"; }
probes=(
  "--probe=pgTransactions=$(psql_num "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")"
  "--probe=pgRowsWritten=$(psql_num "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = current_database()")"
  "--probe=pgWalBytes=$(psql_num "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")"
  "--probe=natsMessagesIn=$(nats_num in_msgs)"
  "--probe=natsMessagesOut=$(nats_num out_msgs)"
)
common=(--conversations "$convs" --duration "$secs" --warmup 3 --sources 2)

run_embedded() {
  "$LOADGEN" "${common[@]}" --parley "$PARLEY" --json "$OUT/embedded-$1.json" >"$OUT/embedded-$1.txt" 2>&1
}
run_cluster() {
  "$LOADGEN" "${common[@]}" --url "$url" --account "$account" --admin-user "$admin" \
    --admin-password "$password" --server-pid "${node_pids[0]}" \
    --also-pid "${node_pids[1]}" --also-pid "${node_pids[2]}" --also-pid "$pg_pid" \
    --also-pid "$nats_pid" --also-pid "$haproxy_pid" "${probes[@]}" \
    --json "$OUT/cluster-$1.json" >"$OUT/cluster-$1.txt" 2>&1
}
for r in $(seq 1 "$rounds"); do
  for what in embedded cluster; do
    "run_$what" "$r" || { echo "compare: $what run $r failed:" >&2; tail -n 5 "$OUT/$what-$r.txt" >&2; exit 1; }
    python3 - "$OUT/$what-$r.json" "$what" "$r" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); what = sys.argv[2]
cpu = d.get("systemCpuUsPerTurn", d["serverCpuUsPerTurn"] + d["workersCpuUsPerTurn"])
extra = ""
if "probesPerTurn" in d:
    p = d["probesPerTurn"]
    extra = "; per turn: PG %.2f txns, %.2f rows, %.0f WAL bytes; NATS %.2f in, %.2f out" % (
        p["pgTransactions"], p["pgRowsWritten"], p["pgWalBytes"], p["natsMessagesIn"], p["natsMessagesOut"])
print("%-8s run %s: %6.0f turns/s  p50 %6.2f ms  p99 %7.2f ms  CPU %5.0f us/turn (%.2f cores)  load %s%s" % (
    what, sys.argv[3], d["turnsPerSecond"], d["latencyMs"]["p50"], d["latencyMs"]["p99"], cpu,
    d.get("systemCpuCores", d["serverCpuCores"] + d["workersCpuCores"]), d["loadavgAfter"], extra))
PY
  done
done

python3 - "$OUT" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def med(what, f):
    return statistics.median(f(json.load(open(f"{out}/{what}-{r}.json"))) for r in range(1, rounds + 1))
cpu = lambda d: d.get("systemCpuUsPerTurn", d["serverCpuUsPerTurn"] + d["workersCpuUsPerTurn"])
print("\nmedians of %d runs            embedded   cluster (3 nodes)" % rounds)
for name, f in (("turns/s", lambda d: d["turnsPerSecond"]), ("p50 ms", lambda d: d["latencyMs"]["p50"]),
                ("p99 ms", lambda d: d["latencyMs"]["p99"]), ("CPU us per turn", cpu)):
    print("%-28s %10.2f %10.2f" % (name, med("embedded", f), med("cluster", f)))
for k in ("pgTransactions", "pgRowsWritten", "pgWalBytes", "natsMessagesIn", "natsMessagesOut"):
    print("%-28s %10s %10.2f" % (k + " per turn", "-", med("cluster", lambda d: d["probesPerTurn"][k])))
print("JSON: " + out)
PY
