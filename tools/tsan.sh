#!/usr/bin/env bash
# Builds the tsan preset (ThreadSanitizer, g++) and runs its tests: the unit tests and the
# integration tests (the TSan-built `parley` binary driven by node-agent-sdk, the CLI, the
# function runtime's data-driven tests); e2e, web and the `slow` ones are left out (the test
# preset's filter). Not part of tools/test.sh: too long for the CI budget (see the README).
#
#   tools/tsan.sh                  # build, run every test of the preset
#   tools/tsan.sh -R store         # extra arguments go to ctest
#   PARLEY_TSAN_TARGETS="parley_server_test" tools/tsan.sh -R '^(Jwt|Net)'
#                                  # build only these targets (the tests selected must be built)
#
# Every process a test starts (the server, its function workers, the CLI) inherits TSAN_OPTIONS
# and writes its reports to build/tsan/tsan-reports/report.<pid> (a function worker opens its
# file when it starts, so a worker with nothing to report leaves an empty one); the run fails
# when a test fails or when any report was written, and prints the reports' summaries.
# Suppressions (V8 and libnode internals only): tools/tsan.supp.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
"$here/tools/setup.sh" >/dev/null
cmake --preset tsan >/dev/null
if [ -n "${PARLEY_TSAN_TARGETS:-}" ]; then
  # shellcheck disable=SC2086 # a list of target names
  cmake --build --preset tsan -j"$(nproc)" --target $PARLEY_TSAN_TARGETS
else
  cmake --build --preset tsan -j"$(nproc)"
fi
reports="$here/build/tsan/tsan-reports"
rm -rf "$reports"
mkdir -p "$reports"
# Appended to the preset's TSAN_OPTIONS: where the reports go.
export PARLEY_TSAN_OPTIONS="log_path=$reports/report"
status=0
ctest --preset tsan -j"$(nproc)" "$@" || status=$?
# A function worker opens its report file before its sandbox locks down (it could not open it
# later), so an empty report.<pid> means no report.
files=()
while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$reports" -name 'report.*' -size +0 -print0)
if [ ${#files[@]} -gt 0 ]; then
  echo "tsan: ${#files[@]} process(es) wrote reports (full text in $reports):" >&2
  grep -h '^SUMMARY: ThreadSanitizer' "${files[@]}" | sort | uniq -c >&2 || true
  status=1
fi
[ "$status" = 0 ] && echo "tsan: all passed, no reports"
exit "$status"
