#!/usr/bin/env bash
# Builds the libFuzzer targets (the fuzz preset: clang-16, ASan+UBSan) and runs each one for a
# number of inputs, one target at a time, niced.
#
#   tools/fuzz.sh                 # 1,000,000 inputs per target
#   tools/fuzz.sh 20000           # what CI runs (tools/test.sh)
#   tools/fuzz.sh 1000000 protocol_fuzz rest_fuzz
#   PARLEY_FUZZ_MAX_SECONDS=40 tools/fuzz.sh 20000   # also stop each target after 40 s
#
# Seeds: fuzz/seeds/<target>/ (plus, for the structured-content targets, the corpus' sc/
# examples, read in place). New inputs are kept in build/fuzz/corpus/<target>/, so a later run
# goes on from there; crashing inputs land in build/fuzz/artifacts/<target>/. The schema and
# the structured-content examples come from $PARLEY_CORPUS_DIR (default: ../shared/corpus beside
# the source tree). Exits non-zero when a target finds a crash, a hang, a leak or a sanitizer
# report; prints inputs, execs/s and new coverage per target.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
runs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(protocol_fuzz rest_fuzz richcontent_fuzz response_fuzz)
export PARLEY_CORPUS_DIR="${PARLEY_CORPUS_DIR:-$here/../shared/corpus}"
if [ ! -d "$PARLEY_CORPUS_DIR/schema" ]; then
  echo "fuzz: no schema under $PARLEY_CORPUS_DIR; set PARLEY_CORPUS_DIR to the corpus folder" >&2
  exit 2
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)"

# Leaks are checked per input by libFuzzer; UBSan reports abort the run.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=0
summary=()
for t in "${targets[@]}"; do
  name="${t%_fuzz}"
  bin="build/fuzz/fuzz/$t"
  work="build/fuzz/corpus/$name"
  artifacts="build/fuzz/artifacts/$name"
  log="build/fuzz/logs/$name.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  dirs=("$work" "fuzz/seeds/$name")
  flags=()
  if [ "${PARLEY_FUZZ_MAX_SECONDS:-0}" != 0 ]; then flags+=(-max_total_time="$PARLEY_FUZZ_MAX_SECONDS"); fi
  case "$name" in
    protocol | rest)
      # Stateful targets: their world grows from input to input, which libFuzzer's per-input
      # leak check takes for a leak and answers with a rerun and a full LeakSanitizer scan of
      # the heap (most of the time per input). Leaks are still checked once, at exit.
      flags+=(-detect_leaks=0)
      ;;
  esac
  case "$name" in
    richcontent | response)
      for d in valid invalid quickreplies metadata malformed; do
        [ -d "$PARLEY_CORPUS_DIR/sc/$d" ] && dirs+=("$PARLEY_CORPUS_DIR/sc/$d")
      done
      ;;
  esac
  echo "fuzz: $t, $runs inputs (log: $log)"
  start=$(date +%s)
  set +e
  nice -n 10 "$bin" -runs="$runs" -dict="fuzz/dicts/$name.dict" -max_len=16384 -timeout=60 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" "${flags[@]}" "${dirs[@]}" \
    >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    failed=1
    summary+=("$t: FAILED (exit $rc) after ${secs}s; see $log and $artifacts/")
    tail -40 "$log" >&2
  else
    summary+=("$t: ${execs:-?} inputs, ${rate:-?} execs/s, ${added:-?} new inputs, ${rss:-?} MiB peak, ${secs}s")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit $failed
