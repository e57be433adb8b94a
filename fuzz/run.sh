#!/usr/bin/env bash
# fuzz/run.sh SECONDS [HARNESS...]
#
# Builds the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,
# undefined; build directory $TF_FUZZ_BUILD_DIR, default build-fuzz) and
# runs each for SECONDS, $TF_FUZZ_JOBS at a time (default: one per CPU).
# Every harness starts from the committed seeds in fuzz/corpus/<harness>/
# plus what earlier runs found (kept in the build directory, never in the
# repository). Prints the executions of each harness, and fails if any
# crashed, leaked, timed out (-timeout=5) or ran out of memory; the input
# responsible is left in <build>/artifacts/<harness>/ and the report in
# <build>/logs/<harness>.log.
#
# fuzz/run.sh 0 builds the harnesses and stops (scripts/test.sh builds
# ahead, while other tests run).
#
# To keep a reproducer: copy it into fuzz/corpus/<harness>/ (ctest then
# replays it in every build).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh SECONDS [HARNESS...]" >&2
  exit 2
fi
secs=$1
shift
all=(client_hello server_hello request response trailer list names server auth tree)
if [ $# -gt 0 ]; then harnesses=("$@"); else harnesses=("${all[@]}"); fi
dir=${TF_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${TF_FUZZ_JOBS:-$(nproc)}

echo "== fuzz: building the harnesses in $dir"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTF_BUILD_FUZZ=ON -DTF_BUILD_TESTS=OFF -DTF_BUILD_EXAMPLES=OFF -DTF_SANITIZE=OFF -DTF_WERROR=ON \
  >/dev/null
cmake --build "$dir" -j"$(nproc)" --target "${harnesses[@]/#/fuzz_}" >/dev/null
[ "$secs" -eq 0 ] && exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

run_one() {
  local h=$1
  local work=$dir/corpus/$h art=$dir/artifacts/$h/ log=$dir/logs/$h.log
  mkdir -p "$work" "$art" "$dir/logs"
  local rc=0
  # -print_funcs=0: naming a newly covered function starts llvm-symbolizer
  # through two pipes that stay open, which fuzz_server's check that the
  # server leaves the descriptor table as it found it took for a leak.
  "$dir/fuzz/fuzz_$h" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
    -max_len=8192 -print_final_stats=1 -print_funcs=0 -artifact_prefix="$art" \
    "$work" "fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$dir/logs/$h.rc"
}

echo "== fuzz: ${#harnesses[@]} harnesses, ${secs} s each, $jobs at a time"
running=0
for h in "${harnesses[@]}"; do
  [ -x "$dir/fuzz/fuzz_$h" ] || { echo "no harness named $h" >&2; exit 2; }
  rm -f "$dir/logs/$h.rc"
  run_one "$h" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=()
printf '%-14s %14s %10s  %s\n' harness executions exec/s result
for h in "${harnesses[@]}"; do
  log=$dir/logs/$h.log
  rc=$(cat "$dir/logs/$h.rc" 2>/dev/null || echo "?")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  execs=${execs:-?}
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  rate=${rate:-?}
  result=ok
  if [ "$rc" != 0 ]; then
    result="FAILED (exit $rc)"
    failed+=("$h")
  fi
  printf '%-14s %14s %10s  %s\n' "$h" "$execs" "$rate" "$result"
done

for h in "${failed[@]}"; do
  echo
  echo "== fuzz_$h failed; report ($dir/logs/$h.log), last lines:"
  grep -v '^#[0-9]' "$dir/logs/$h.log" | tail -n 60
  echo "== inputs left in $dir/artifacts/$h/:"
  ls -l "$dir/artifacts/$h/"
done
[ ${#failed[@]} -eq 0 ]
