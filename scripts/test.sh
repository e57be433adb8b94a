#!/usr/bin/env bash
# Quick start, command 2: installs what is missing, then builds and runs the
# test suite twice: with gcc, optimised as a release (-O3, where inlining
# brings out warnings -O2 hides), and with clang under AddressSanitizer +
# UndefinedBehaviorSanitizer; every test runs in at least one of the two
# (below: which where, and why). Warnings are errors in both builds
# (TF_WERROR, off in a plain cmake build). Then it fuzzes every harness in
# fuzz/ for 6 s and runs the concurrency tests under ThreadSanitizer. The
# budget of the whole run is 8 minutes on 2 cores (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
tf_install_missing "${TF_TEST_PACKAGES[@]}"

jobs=$(nproc)
logs=build-test-logs
mkdir -p "$logs"

# configure DIR CMAKE_ARGS...
configure() {
  local dir=$1; shift
  echo "== $dir: $*"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTF_WERROR=ON "$@" >/dev/null
}

# Building overlaps testing. The tests wait on sockets, timers and child
# processes far more than they compute, so while one suite runs, the next
# builds in the background at a lower priority (nice: the tests keep the
# CPU whenever they want it, so their timing is not starved). Each
# background build writes its log under $logs; ahead PID NAME waits for one
# and, should it have failed, prints its log and stops here.
# Each runs in a session of its own (setsid), so that a failure here stops
# it whole, compilers included.
BG=()
stop_background() {
  local pid
  for pid in "${BG[@]}"; do
    kill -- "-$pid" 2>/dev/null || true
  done
}
ahead() {
  local rc=0
  wait "$1" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== building $2 failed (exit $rc); its log, $logs/$2.log:"
    cat "$logs/$2.log"
    exit 1
  fi
}

# The S3 tests need a store: a single-node Ceph (scripts/ceph.sh) is started
# here and removed at the end, unless one is up already (.ci/run starts its
# own; so may you, to run the tests often) or TF_S3_TESTS=0 skips them.
ceph_down=0
if [ "${TF_S3_TESTS:-1}" != 0 ] && [ ! -s "${TF_CEPH_DIR:-/tmp/tcpfile-ceph}/s3.env" ]; then
  tf_install_missing "${TF_S3_PACKAGES[@]}"
  ceph_down=1
fi
trap 'stop_background; [ "$ceph_down" = 0 ] || scripts/ceph.sh down' EXIT
[ "$ceph_down" = 0 ] || scripts/ceph.sh up

# gcc as packagers build: Release, -O3 (CMake's default for Release, spelt
# out so that it stays so), so that what only inlining reveals fails here.
configure build-test-gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS_RELEASE="-O3 -DNDEBUG"
cmake --build build-test-gcc -j"$jobs" >/dev/null

# Ahead, while the gcc suite runs: the sanitizer build first (it is needed
# next), then the fuzzing harnesses and the TSan programs (needed last, so
# at the lowest priority).
configure build-test-clang-asan -DCMAKE_C_COMPILER=clang -DTF_SANITIZE=ON
setsid -w nice -n 10 cmake --build build-test-clang-asan -j"$jobs" >"$logs/asan.log" 2>&1 &
asan_pid=$!
BG+=("$asan_pid")
setsid -w nice -n 19 bash -c 'fuzz/run.sh 0 && TF_TSAN_BUILD_ONLY=1 scripts/tsan.sh' \
  >"$logs/fuzz-tsan.log" 2>&1 &
fuzz_tsan_pid=$!
BG+=("$fuzz_tsan_pid")

# Which tests run in which suite: every test runs in at least one.
# - The gcc suite leaves out the S3 tests (label s3): they are bound by the
#   store's speed, not ours, and find more under the sanitizers. It also
#   leaves out the fault scripts (label faultscript: a client, the server
#   or a batch killed mid-transfer, a full disk): what they check (whole
#   files or none, temporaries swept, resumes that continue) is the file
#   protocol, the same in both builds; run under ASan+UBSan they also check
#   the memory of the recovery paths they alone reach, so they run there.
#   Each takes seconds of large transfers and restarts. So does label
#   onesuite: slow tests of sizes and counts (100,000 files), whose memory
#   is what is worth checking.
# - The sanitizer suite leaves out the install tests (label install: the
#   packaged library as a user builds against it; a sanitized library is
#   never installed) and the documentation checks (label docs: the text,
#   and the programs' --help, which the gcc build answers the same).
ctest --test-dir build-test-gcc --output-on-failure -j"$jobs" -LE 's3|faultscript|onesuite'

ahead "$asan_pid" asan
echo "== build-test-clang-asan: ctest"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-test-clang-asan --output-on-failure -j"$jobs" -LE 'install|docs'

# Fuzzing: each libFuzzer harness for 6 s (fuzz/run.sh); then the
# concurrency tests under ThreadSanitizer (scripts/tsan.sh). Both were
# built ahead: here they only check that nothing changed.
ahead "$fuzz_tsan_pid" fuzz-tsan
fuzz/run.sh 6
scripts/tsan.sh
