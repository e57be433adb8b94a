#!/usr/bin/env bash
# send.sh SERVER CLIENT SEND - the README's program (examples/send.c), run
# as its reader would run it: against a server, it stores the message and
# the file; with the wrong arguments or no server, it fails as it says.
set -euo pipefail
SEND=${3:?usage: send.sh tcpfile-server tcpfile-client send}
# The program passes NULL options: plaintext, on both sides.
PLAINTEXT=1
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$1" "$2"

start_server root
ROOT=$TMP/root
H=127.0.0.1
head -c 100000 /dev/urandom >"$TMP/photo.jpg"

expect 0 "$SEND" $H "$PORT" "$TMP/photo.jpg"
[[ ! -s $TMP/out && ! -s $TMP/err ]] || fail "send printed something: $(cat "$TMP/out" "$TMP/err")"
[[ $(cat "$ROOT/message.txt") == "hello over TCP" ]] || fail "message.txt holds the wrong text"
cmp "$TMP/photo.jpg" "$ROOT/photo.jpg" || fail "the file stored differs"
grep -qE ' put "message\.txt" ok 14 bytes ' "$TMP/root.out" || fail "no log line for message.txt"
grep -qE ' put "photo\.jpg" ok 100000 bytes ' "$TMP/root.out" || fail "no log line for photo.jpg"
pass "send HOST PORT FILE stores message.txt and FILE"

expect 2 "$SEND" $H "$PORT"
stderr_one_line_with 'usage: ' 'HOST PORT FILE'
expect 1 "$SEND" $H "$PORT" "$TMP/missing.jpg"
stderr_one_line_with 'put: no such file' 'missing.jpg'
stop_server "$SERVER_PID"
expect 1 "$SEND" $H "$PORT" "$TMP/photo.jpg"
stderr_one_line_with 'connect: connection refused'
pass "send fails with a clear line: usage (2), a missing file or no server (1)"

echo "all $CHECKS checks passed"
