#!/usr/bin/env bash
# Quick start, command 2: installs what is missing, then builds and runs the
# whole test suite twice: with gcc, optimised as a release (-O3, where
# inlining brings out warnings -O2 hides), and with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer. Warnings are errors in both
# builds (TF_WERROR, off in a plain cmake build). Then it
# fuzzes every harness in fuzz/ for 10 s and runs the concurrency tests under
# ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
tf_install_missing "${TF_TEST_PACKAGES[@]}"

# The S3 tests need a store: a single-node Ceph (scripts/ceph.sh) is started
# here and removed at the end, unless one is up already (.ci/run starts its
# own; so may you, to run the tests often) or TF_S3_TESTS=0 skips them.
if [ "${TF_S3_TESTS:-1}" != 0 ] && [ ! -s "${TF_CEPH_DIR:-/tmp/tcpfile-ceph}/s3.env" ]; then
  tf_install_missing "${TF_S3_PACKAGES[@]}"
  trap 'scripts/ceph.sh down' EXIT
  scripts/ceph.sh up
fi

jobs=$(nproc)
# run_suite DIR CTEST_ARGS -- CMAKE_ARGS...
run_suite() {
  local dir=$1; shift
  local ctest_args=()
  while [ "$1" != -- ]; do ctest_args+=("$1"); shift; done
  shift
  echo "== $dir: $*"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTF_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs" >/dev/null
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${ctest_args[@]}"
}

# gcc as packagers build: Release, -O3 (CMake's default for Release, spelt
# out so that it stays so), so that what only inlining reveals fails here.
# The S3 tests (label s3, against the Ceph that .ci/run starts) run once, in
# the sanitizer build, where they find more: they are bound by the store's
# speed, not ours, and the time budget of the whole run is 8 minutes.
run_suite build-test-gcc -LE s3 -- -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS_RELEASE="-O3 -DNDEBUG"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  run_suite build-test-clang-asan -- -DCMAKE_C_COMPILER=clang -DTF_SANITIZE=ON

# Fuzzing: each libFuzzer harness for 10 s (fuzz/run.sh); then the
# concurrency tests under ThreadSanitizer (scripts/tsan.sh).
fuzz/run.sh 10
scripts/tsan.sh
