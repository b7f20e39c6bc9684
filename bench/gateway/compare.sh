#!/usr/bin/env bash
# Parley's functions gateway beside a plain Node http server and workerd, the same lambda, wrk,
# alternating in one run (compare.mjs says what is measured). Installs what it lacks: wrk (apt)
# and workerd (npm, into bench/gateway/node_modules).
#   bench/gateway/compare.sh [seconds per run, default 5] [rounds, default 3]
# PARLEY_BIN defaults to build/default/src/app/parley. NO_WORKERD=1 leaves workerd out when it is
# not installed (no npm install).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# NO_WORKERD=1: compare with Node only (workerd is left out unless it is installed already).
if [ -z "${NO_WORKERD:-}" ] && [ ! -x "$here/node_modules/.bin/workerd" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
export PARLEY_BIN="${PARLEY_BIN:-$root/build/default/src/app/parley}"
exec node "$here/compare.mjs" "${1:-5}" "${2:-3}"
