#!/usr/bin/env bash
# Shared set-up of the shell integration tests: a temporary folder removed on exit, `fail`
# (prints the server's log), `json` (one Python expression over a JSON document on stdin), and
# `start_demo_server` (a real `parley serve --demo` on port 0, HTTP and HTTPS, then a CLI login as
# the demo admin). Source it after setting PARLEY:
#
#   PARLEY=path/to/parley; source "$(dirname "$0")/lib.sh"; start_demo_server
#
# After start_demo_server: $https, $ca, $account, $admin, $password, $PARLEY_CONFIG (the CLI's
# saved login, in $tmp) and $bearer.
tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- server log" >&2
  tail -n 40 "$tmp/server.err" >&2 || true
  exit 1
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# How long the server may take to print its demo line: password hashing and V8's start-up are
# slow on a loaded machine.
: "${PARLEY_TEST_START_SECONDS:=90}"

start_demo_server() {
  "$PARLEY" serve --data "$tmp/data" --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 --demo \
    >"$tmp/server.out" 2>"$tmp/server.err" &
  server_pid=$!
  local deadline=$((SECONDS + PARLEY_TEST_START_SECONDS))
  until grep -q '"event":"demo"' "$tmp/server.out" 2>/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || fail "the server exited before it was ready"
    [ "$SECONDS" -lt "$deadline" ] || fail "the server was not ready after ${PARLEY_TEST_START_SECONDS} s"
    sleep 0.1
  done
  local listening demo
  listening="$(grep '"event":"listening"' "$tmp/server.out")"
  demo="$(grep '"event":"demo"' "$tmp/server.out")"
  https="$(echo "$listening" | json 'd["https"]')"
  ca="$(echo "$listening" | json 'd["ca"]')"
  account="$(echo "$demo" | json 'd["account"]')"
  admin="$(echo "$demo" | json 'd["admin"]["username"]')"
  password="$(echo "$demo" | json 'd["admin"]["password"]')"
  export PARLEY_CONFIG="$tmp/cli.json"
}

# Logs the CLI in as the demo admin and sets $bearer.
login_demo_admin() {
  "$PARLEY" login --server "$https" --account "$account" --username "$admin" --password "$password" \
    --ca "$ca" >/dev/null || fail "login"
  bearer="$(json 'd["bearer"]' <"$PARLEY_CONFIG")"
}
