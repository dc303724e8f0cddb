#!/usr/bin/env bash
# The long fuzzing run (not CI): every target (or those named) for RUNS executions each, one
# target at a time in one process, niced so that a shared machine stays usable. New inputs go to
# fuzz/work/<target>/ (the committed seeds in fuzz/corpus/<target>/ are read, never written),
# crashes to fuzz/artifacts/<target>/, logs and one summary line per target to fuzz/work/.
#
#   fuzz/run-long.sh                 # all targets, 10 M executions each
#   RUNS=1000000 fuzz/run-long.sh sdp car
#
# Environment: RUNS (10000000), SANITIZER (address; "none" builds faster and runs faster),
# NICE (19), MAX_LEN (8192 bytes per input), TIMEOUT (10 s per input), FEATURES (the groups of
# targets to build, e.g. "archive,ipfs"; all when unset), MAX_TIME (seconds per target, to stop a
# target before RUNS when time is short; unlimited when unset), TRACE_COMPARES (1; 0 builds
# without comparison tracing, about twice as fast on the parser-combinator SDP target, at some
# cost in how well the fuzzer guesses keywords; the summary's last column says which).
set -euo pipefail
cd "$(dirname "$0")"

RUNS=${RUNS:-10000000}
SANITIZER=${SANITIZER:-address}
NICE=${NICE:-19}
MAX_LEN=${MAX_LEN:-8192}
TIMEOUT=${TIMEOUT:-10}
TRIPLE=x86_64-unknown-linux-gnu

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
# cargo-fuzz passes -Z flags (the sanitizer); a stable toolchain accepts them with this set.
export RUSTC_BOOTSTRAP=1

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi

features=()
[ -n "${FEATURES:-}" ] && features=(--no-default-features --features "$FEATURES")
TRACE_COMPARES=${TRACE_COMPARES:-1}
build_flags=()
mode=$SANITIZER
if [ "$TRACE_COMPARES" = 0 ]; then build_flags+=(--no-trace-compares); mode="$SANITIZER,no-trace-compares"; fi
nice -n "$NICE" cargo fuzz build -s "$SANITIZER" "${build_flags[@]}" "${features[@]}"

mkdir -p work
summary=work/summary.tsv
[ -f "$summary" ] || printf 'target\texecutions\texec_per_s\tseconds\tcrash\tcorpus_files\tsanitizer\n' >"$summary"
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="work/$t.log"
  echo "== $t: $RUNS executions (log $log)"
  start=$(date +%s)
  status=0
  nice -n "$NICE" "target/$TRIPLE/release/$t" "work/$t" "corpus/$t" \
    -runs="$RUNS" -max_len="$MAX_LEN" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" ${MAX_TIME:+-max_total_time="$MAX_TIME"} \
    >"$log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crash=no
  if [ "$status" -ne 0 ]; then
    crash=$(ls "artifacts/$t" | head -1)
    crash=${crash:-"exit $status"}
    echo "   crash: $crash (see $log)"
  fi
  files=$(ls "work/$t" | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "${rate:-?}" "$secs" "$crash" "$files" "$mode" >>"$summary"
  echo "   ${execs:-?} executions, ${rate:-?}/s, ${secs}s, crash: $crash"
done
column -t -s $'\t' "$summary"
