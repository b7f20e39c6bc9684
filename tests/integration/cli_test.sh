#!/usr/bin/env bash
# End-to-end test of the `parley` CLI against a real `parley serve` (HTTPS, self-signed CA):
# login, function init / invoke --local / push / deploy / invoke / get / logs / schedule / pull / undeploy,
# and a build error. Usage: cli_test.sh PATH/TO/parley
set -euo pipefail
PARLEY="${1:?usage: cli_test.sh PATH/TO/parley}"
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_demo_server

mkdir -p "$tmp/proj" && cd "$tmp/proj"

# A wrong password is refused; the right one saves the bearer with mode 0600.
if "$PARLEY" login --server "$https" --account "$account" --username "$admin" --password wrong --ca "$ca" 2>"$tmp/err"; then
  fail "login with a wrong password succeeded"
fi
"$PARLEY" login --server "$https" --account "$account" --username "$admin" --password "$password" --ca "$ca" \
  || fail "login"
[ "$(stat -c %a "$PARLEY_CONFIG")" = 600 ] || fail "config mode is not 600"
[ "$(json 'd["account"]' <"$PARLEY_CONFIG")" = "$account" ] || fail "config account"

# Without --ca the self-signed server is not trusted.
cp "$PARLEY_CONFIG" "$tmp/saved.json"
python3 - "$PARLEY_CONFIG" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["ca"] = ""; json.dump(d, open(p, "w"))
PY
if "$PARLEY" function get 2>"$tmp/err"; then fail "an untrusted server was accepted"; fi
grep -q "TLS" "$tmp/err" || fail "no TLS error: $(cat "$tmp/err")"
cp "$tmp/saved.json" "$PARLEY_CONFIG"

# init + local invoke of the custom integration template.
"$PARLEY" function init clibot --event bot_connectors_custom_integration >/dev/null || fail "init"
[ -f functions/clibot/index.js ] && [ -f functions/clibot/config.json ] && [ -f functions/settings.json ] \
  || fail "init layout"
out="$("$PARLEY" function invoke clibot --local)" || fail "local invoke: $out"
echo "$out" | grep -q '"You said: hi"' || fail "local invoke result: $out"

# push (create), deploy, remote invoke.
"$PARLEY" function push clibot | grep -q "state Draft" || fail "push"
"$PARLEY" function deploy clibot | grep -q "Productive" || fail "deploy"
out="$("$PARLEY" function invoke clibot)" || fail "remote invoke: $out"
echo "$out" | grep -q '"You said: hi"' || fail "remote invoke result: $out"
"$PARLEY" function get | grep clibot | grep -q Productive || fail "get functions"
"$PARLEY" function get deployments clibot | grep -q Productive || fail "get deployments"
"$PARLEY" function logs clibot >/dev/null || fail "logs"

# schedules: create (a bad expression names its field), list, pause, delete.
if "$PARLEY" function schedule clibot --cron "0 24 * * *" 2>"$tmp/err"; then fail "bad cron accepted"; fi
grep -q "the hour field '24'" "$tmp/err" || fail "bad cron message: $(cat "$tmp/err")"
out="$("$PARLEY" function schedule clibot --cron "*/5 * * * *" --payload '{"job":"sync"}' --json)" \
  || fail "schedule create: $out"
sched="$(echo "$out" | sed -n 's/.*"uuid": *"\([^"]*\)".*/\1/p' | head -n1)"
[ -n "$sched" ] || fail "schedule uuid: $out"
"$PARLEY" function schedule clibot | grep "$sched" | grep -q "yes" || fail "schedule list"
"$PARLEY" function schedule clibot --pause "$sched" | grep -q paused || fail "schedule pause"
"$PARLEY" function schedule clibot --delete "$sched" | grep -q Deleted || fail "schedule delete"
"$PARLEY" function schedule clibot | grep -q "no schedules" || fail "schedule list after delete"

# push (update) makes it Modified; a broken edit fails to deploy with its line number.
printf 'function lambda(input, callback) {\n  callback(null, 1;\n}\n' > functions/clibot/index.js
"$PARLEY" function push clibot | grep -q "state Modified" || fail "push update"
if "$PARLEY" function deploy clibot 2>"$tmp/err"; then fail "broken code deployed"; fi
grep -q "line 2" "$tmp/err" || fail "build error without line: $(cat "$tmp/err")"

# pull restores the server's saved code into a fresh project.
mkdir -p "$tmp/proj2" && cd "$tmp/proj2"
"$PARLEY" function pull clibot >/dev/null || fail "pull"
grep -q "callback(null, 1;" functions/clibot/index.js || fail "pulled code"
"$PARLEY" function undeploy clibot | grep -q Draft || fail "undeploy"

kill -TERM "$server_pid"
wait "$server_pid" || fail "server exit code $?"
server_pid=""
echo "cli_test: ok"
