#!/usr/bin/env bash
# scripts/tsan.sh [CTEST_REGEX]
#
# Builds with clang -fsanitize=thread (build directory $TF_TSAN_BUILD_DIR,
# default build-tsan; TF_SANITIZE stays OFF, as TSan and ASan do not mix)
# and runs the concurrency tests: the loopback, integrity, server and
# pipelined-get and digest integration tests (a server with its worker threads, client
# threads, parallel transfers, many connections, stops with requests in
# flight), the thread pool's tests (jobs handed between threads), the users
# tests (logins checked on the auth threads, delayed failures, a stop with
# logins in flight), the disk pool's tests (storage calls on the pool while
# the loop serves others, stops and disconnects with jobs in flight) and the
# CLI server tests (the server process with concurrent clients and signals).
# CTEST_REGEX replaces that selection; each cmocka test is its own ctest
# entry, named PROGRAM.TEST (test_server.io_timeout).
#
# ThreadSanitizer writes its reports to files rather than stderr, so that a
# report from a program run inside a test (the CLI server) is caught even
# when the test does not look at its exit status; any report fails the run
# and is printed in full.
set -euo pipefail
cd "$(dirname "$0")/.."

regex=${1:-^((test_loopback|test_integrity|test_server|test_getmany|test_aclient|test_digest|test_threadpool|test_tls_loopback|test_auth|test_offloop)\\..+|cli_server|cli_tls|cli_users)$}
dir=${TF_TSAN_BUILD_DIR:-build-tsan}
reports=$PWD/$dir/tsan-reports

echo "== tsan: building in $dir"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTF_SANITIZE=OFF -DTF_BUILD_FUZZ=OFF -DTF_WERROR=ON \
  -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null

rm -rf "$reports"
mkdir -p "$reports"
echo "== tsan: ctest -R '$regex'"
rc=0
opts=halt_on_error=0:second_deadlock_stack=1:log_path=$reports/tsan
TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}$opts" \
  ctest --test-dir "$dir" -R "$regex" --output-on-failure -j"$(nproc)" || rc=$?

shopt -s nullglob
found=("$reports"/tsan.*)
if [ ${#found[@]} -gt 0 ]; then
  echo "== tsan: ${#found[@]} process(es) reported (reports in $reports):"
  for f in "${found[@]}"; do
    echo "---- $f"
    cat "$f"
  done
  rc=1
fi
[ "$rc" -eq 0 ] && echo "== tsan: no reports"
exit "$rc"
