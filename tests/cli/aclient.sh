#!/usr/bin/env bash
# aclient.sh SERVER CLIENT ACLIENT - the event-driven client's example
# (examples/aclient.c) against a real server: every name asked for on one
# command line comes back, in order, one failure among them reported on
# its own; with no server it fails with one clear line.
set -euo pipefail
ACLIENT=${3:?usage: aclient.sh tcpfile-server tcpfile-client aclient}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$1" "$2"

start_server root
ROOT=$TMP/root
H=127.0.0.1
head -c 3000000 /dev/urandom >"$ROOT/big.bin"
printf 'hello' >"$ROOT/a.txt"
: >"$ROOT/empty"

expect 0 "$ACLIENT" $H "$PORT" a.txt big.bin empty a.txt
printf 'a.txt: 5 bytes\nbig.bin: 3000000 bytes\nempty: 0 bytes\na.txt: 5 bytes\n' |
  diff - "$TMP/out" >/dev/null || fail "unexpected output: $(cat "$TMP/out")"
pass "aclient HOST PORT NAME... gets every name, in order"

expect 1 "$ACLIENT" $H "$PORT" a.txt nope empty
[[ $(wc -l <"$TMP/out") -eq 2 ]] || fail "the two files present were not both got"
stderr_one_line_with 'nope: no such file'
pass "a missing name fails alone"

stop_server "$SERVER_PID"
expect 1 "$ACLIENT" $H "$PORT" a.txt
grep -q 'connection refused' "$TMP/err" || fail "no refusal said: $(cat "$TMP/err")"
pass "no server: a clear failure"

echo "all $CHECKS checks passed"
