#!/usr/bin/env bash
# End-to-end test of `parley bot test` and `parley bot replay` against a real `parley serve
# --demo` (HTTPS): the conversation tester on MESSAGING and CHAT (WELCOME first), human and JSON
# output, and replay's exit codes: 0 with no differences, 1 with differences (a changed draft),
# 2 when the replay cannot run (an unknown version). Usage: bot_cli_test.sh PATH/TO/parley
set -euo pipefail
PARLEY="${1:?usage: bot_cli_test.sh PATH/TO/parley}"
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_demo_server

login_demo_admin
api() { curl -sS --cacert "$ca" -H "Authorization: Bearer $bearer" -H 'Content-Type: application/json' \
  -X "$1" "$https/api/v1/accounts/$account/$2" ${3:+--data "$3"}; }
bots="$(api GET bots)"
bot="$(echo "$bots" | json 'd[0]["id"]')"
fn="$(echo "$bots" | json 'd[0]["functionUuid"]')"

# The tester, messaging, JSON: the session line, then one line per turn with input and review.
printf 'hello\n\nagain\n' | "$PARLEY" bot test --bot "$bot" --json >"$tmp/t.ndjson" || fail "bot test --json"
[ "$(wc -l <"$tmp/t.ndjson")" = 3 ] || fail "expected a session line and 2 turns: $(cat "$tmp/t.ndjson")"
python3 - "$tmp/t.ndjson" "$tmp/transcript.json" <<'PY' || fail "tester turns: $(cat "$tmp/t.ndjson")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
head, turns = lines[0], lines[1:]
assert head["channel"] == "MESSAGING" and head["functionVersion"]["label"] == "draft", head
assert [t["turn"] for t in turns] == [1, 2], turns
assert turns[0]["input"]["payload"]["message"] == "hello", turns[0]["input"]
assert turns[0]["input"]["payload"]["convId"] == turns[1]["input"]["payload"]["convId"]
assert turns[0]["response"] == {"messages": ["echo : hello"]}, turns[0]["response"]
assert turns[0]["review"]["verdict"] == "OK"
assert turns[1]["review"]["consumerSees"][0]["text"] == "echo : again"
json.dump({"turns": turns}, open(sys.argv[2], "w"))
PY

# The tester, chat, human output: the WELCOME turn comes first.
out="$(printf 'hi there\n' | "$PARLEY" bot test --bot "$bot" --channel chat --function-version deployed)" \
  || fail "bot test chat: $out"
echo "$out" | grep -q "CHAT conversation" || fail "no chat session: $out"
echo "$out" | grep -q "\[turn 1\] WELCOME → OK" || fail "no WELCOME turn: $out"
echo "$out" | grep -q "consumer sees: Hi! I am the demo echo bot" || fail "welcome text: $out"
echo "$out" | grep -q "\[turn 2\] hi there → OK" || fail "second turn: $out"

# Replay of the tester's transcript against the same code: no differences, exit 0.
out="$("$PARLEY" bot replay --bot "$bot" --function-version deployed --from "$tmp/transcript.json")" \
  || fail "replay against the same code did not exit 0: $out"
echo "$out" | grep -q "2 same, 0 changed" || fail "replay summary: $out"

# A changed draft: the texts differ, exit 1, in both output forms.
api PUT "functions/$fn" "$(python3 -c 'import json; print(json.dumps({"code": "function lambda(input, callback) { callback(null, {messages: [\"changed: \" + input.payload.message], context: {action: \"CLOSE_CONVERSATION\"}}); }"}))')" \
  >/dev/null || fail "update the function"
set +e
out="$("$PARLEY" bot replay --bot "$bot" --function-version draft --from "$tmp/transcript.json")"; rc=$?
set -e
[ "$rc" = 1 ] || fail "replay with differences exited $rc: $out"
echo "$out" | grep -q 'texts\[0\]: "echo : hello" → "changed: hello"' || fail "text difference: $out"
echo "$out" | grep -q 'action: null → {"action":"CLOSE_CONVERSATION"' || fail "action difference: $out"
set +e
"$PARLEY" bot replay --bot "$bot" --function-version draft --from "$tmp/transcript.json" --json >"$tmp/r.json"; rc=$?
set -e
[ "$rc" = 1 ] || fail "replay --json with differences exited $rc"
[ "$(json 'd["changed"]' <"$tmp/r.json")" = 2 ] || fail "replay --json: $(cat "$tmp/r.json")"

# The bot's own turn records (none yet: no consumer talked to it): nothing differs, exit 0.
out="$("$PARLEY" bot replay --bot "$bot" --function-version draft)" || fail "replay of no turns: $out"
echo "$out" | grep -q "replayed 0 of 0 turns" || fail "replay of no turns: $out"

# An unknown version: the replay cannot run, exit 2, the error names the versions there are.
set +e
"$PARLEY" bot replay --bot "$bot" --function-version 999 2>"$tmp/err"; rc=$?
set -e
[ "$rc" = 2 ] || fail "replay of an unknown version exited $rc"
grep -q "no version 999" "$tmp/err" || fail "unknown version message: $(cat "$tmp/err")"
# And an unknown bot in the tester: exit 1 with the server's message.
if printf 'x\n' | "$PARLEY" bot test --bot no-such-bot 2>"$tmp/err" >/dev/null; then fail "unknown bot accepted"; fi
[ -s "$tmp/err" ] || fail "no error for an unknown bot"

kill -TERM "$server_pid"; wait "$server_pid" || fail "server exit code"
server_pid=""
echo "bot CLI tests passed"
