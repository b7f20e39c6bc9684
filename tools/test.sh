#!/usr/bin/env bash
# One command: install everything, build, and run the tests. Idempotent.
#   1. default build (RelWithDebInfo): unit, integration (real binary, node-agent-sdk) and
#      browser end-to-end tests, then the tests labelled "slow" one at a time (crash and drain
#      under load, memory bounds; tools/test.sh --slow runs only those), then the tests
#      labelled "postgres" (the store contract on a PostgreSQL server they start themselves), then
#      the test labelled "cluster" (tools/cluster.sh with two nodes behind HAProxy);
#   2. clang-16 -Wthread-safety -Werror over the libraries and the parley binary (thread-safety
#      preset; PARLEY_SKIP_THREAD_SAFETY=1 skips it);
#   3. the libFuzzer targets (fuzz preset, clang-16), each for 20,000 inputs or 40 s
#      (PARLEY_SKIP_FUZZ=1 skips them; tools/fuzz.sh 1000000 is the full run);
#   4. ASan+UBSan (+LeakSanitizer) build: unit and integration tests (e2e excluded: chromium under
#      ASan is noise).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
"$here/tools/setup.sh"
jobs="$(nproc)"
# Formatting is part of the tests (clang-format, config at the root).
unformatted=$(git ls-files '*.cpp' '*.h' | xargs -r clang-format --dry-run -Werror 2>&1 | grep -c "error:" || true)
if [ "$unformatted" != 0 ]; then
  echo "clang-format: $unformatted formatting problems; run: git ls-files '*.cpp' '*.h' | xargs clang-format -i" >&2
  exit 1
fi
"$here/tools/build.sh" default
if [ "${1:-}" = "--slow" ]; then
  ctest --test-dir build/default --output-on-failure -L slow -j1
  exit 0
fi
ctest --preset default -j"$jobs"
# The slow ones load the machine themselves: one at a time.
ctest --test-dir build/default --output-on-failure -L slow -j1
ctest --test-dir build/default --output-on-failure -L postgres -j1
ctest --test-dir build/default --output-on-failure -L cluster -j1
if [ "${PARLEY_SKIP_THREAD_SAFETY:-0}" != 1 ]; then
  # clang's thread-safety analysis: the annotated locking (src/common/thread_annotations.h) is
  # checked at compile time; any violation fails the build (-Werror).
  "$here/tools/build.sh" thread-safety
fi
if [ "${PARLEY_SKIP_FUZZ:-0}" != 1 ]; then
  # Bounded fuzz runs: 20,000 inputs or 40 s per target, whichever comes first; any crash,
  # hang, leak or sanitizer report fails the tests.
  PARLEY_FUZZ_MAX_SECONDS="${PARLEY_FUZZ_MAX_SECONDS:-40}" "$here/tools/fuzz.sh" "${PARLEY_FUZZ_RUNS:-20000}"
fi
if [ "${PARLEY_SKIP_ASAN:-0}" != 1 ]; then
  "$here/tools/build.sh" asan
  # Leak detection on (the preset sets ASAN_OPTIONS): memory errors, leaks and UB fail the run.
  ctest --preset asan -j"$jobs"
fi
echo "tests: all passed"
