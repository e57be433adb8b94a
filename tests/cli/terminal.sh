#!/usr/bin/env bash
# terminal.sh - what tcpfile-client shows a person: -v/--verbose, list -h
# (human sizes and local times), and, on a real terminal (a pseudo-terminal
# made by script(1), when it is installed), the human listing by default and
# the progress bar of a long transfer; none of it with -q.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
H=127.0.0.1
printf 'hello\n' >"$ROOT/a.txt"
touch -d '2001-02-03T04:05:06Z' "$ROOT/a.txt"
head -c 3000000 /dev/urandom >"$ROOT/big.bin"
touch -d '2001-02-03T04:05:06Z' "$ROOT/big.bin"

# ---- -v / --verbose ---------------------------------------------------------------
expect 0 "$CLIENT" -v $H "$PORT" get a.txt --to "$TMP/a.txt" list
grep -qE "^tcpfile-client: connecting to $H port $PORT \(libtcpfile [0-9.]+; timeouts: connect 10 s, stalled transfer 30 s" "$TMP/err" ||
  fail "-v: no connection line: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: connected in [0-9.]+ s; the server takes names of up to 255 bytes$' \
  "$TMP/err" || fail "-v: no handshake line: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: get "a.txt" to "[^"]+": 6 bytes in [0-9.]+ s, [0-9.]+ [KMG]?i?B/s$' \
  "$TMP/err" || fail "-v: no timing line for get: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: list: 2 files in [0-9.]+ s$' "$TMP/err" ||
  fail "-v: no timing line for list: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: 2 of 2 operations done in [0-9.]+ s; connection closed$' \
  "$TMP/err" || fail "-v: no closing line: $(cat "$TMP/err")"
[[ $(wc -l <"$TMP/out") == 2 ]] || fail "-v changed what list prints on stdout"
expect 0 "$CLIENT" --verbose --timeout 2.5 $H "$PORT" list
grep -qF 'timeouts: connect 2.5 s, stalled transfer 2.5 s' "$TMP/err" ||
  fail "--verbose does not show the --timeout given: $(cat "$TMP/err")"
expect 0 "$CLIENT" -v -q $H "$PORT" list
[[ ! -s $TMP/err ]] || fail "-v -q: the last one should win, got: $(cat "$TMP/err")"
pass "-v shows connection details, the server's name limit and each operation's time"

# ---- -H / --human, anywhere on the line ------------------------------------------------------
# A POSIX TZ string needs no time zone database: JST-9 is UTC+9.
want=$(printf '%10s  %s  %s\n%10s  %s  %s' '6 B' '2001-02-03 13:05' a.txt \
  '2.9 MiB' '2001-02-03 13:05' big.bin)
TZ=JST-9 expect 0 "$CLIENT" $H "$PORT" list -H
[[ $(cat "$TMP/out") == "$want" ]] || fail "list -H printed:
$(cat "$TMP/out")
expected:
$want"
TZ=JST-9 expect 0 "$CLIENT" -H $H "$PORT" list
[[ $(cat "$TMP/out") == "$want" ]] || fail "-H HOST PORT list printed: $(cat "$TMP/out")"
TZ=JST-9 expect 0 "$CLIENT" --human $H "$PORT" list list
[[ $(cat "$TMP/out") == "$want"$'\n'"$want" ]] || fail "--human list list"
expect 0 "$CLIENT" -h
grep -q '^Usage: ' "$TMP/out" || fail "-h is not help"
expect 2 "$CLIENT" $H "$PORT" list -x
stderr_one_line_with '"-x"'
pass "-H and --human, anywhere, show human sizes and local times; -h is help"

# ---- on a terminal ----------------------------------------------------------------------
# A chroot or container without /dev/pts has script(1) but no terminals.
if ! command -v script >/dev/null || ! script -qec true /dev/null </dev/null >/dev/null 2>&1; then
  echo "ok - skipped the terminal checks: script(1) cannot make a pseudo-terminal here"
  echo "all $CHECKS checks passed"
  exit 0
fi

# on_tty COMMAND: runs the shell command COMMAND with its standard output
# and error on a pseudo-terminal; what it printed (carriage returns kept)
# goes to $TMP/tty.
on_tty() {
  timeout "$CALL_TIMEOUT" script -qec "$1" /dev/null </dev/null >"$TMP/tty" 2>&1 ||
    fail "on a terminal, $1 failed: $(cat "$TMP/tty")"
}

on_tty "TZ=JST-9 '$CLIENT' $H $PORT list"
[[ $(tr -d '\r' <"$TMP/tty") == "$want" ]] || fail "list on a terminal printed:
$(cat "$TMP/tty")"
pass "list on a terminal shows human sizes and local times"

# A get to standard output read by a pipe that waits before it reads:
# stdout is the pipe, stderr the terminal, and the transfer lasts more than
# a second, so the bar appears.
on_tty "'$CLIENT' $H $PORT get big.bin --to - | { sleep 1.5; cat >'$TMP/big.copy'; }"
cmp "$ROOT/big.bin" "$TMP/big.copy" || fail "the get under the progress bar is corrupt"
grep -aqE '^'$'\r''get big\.bin \[[# ]+\] +[0-9]+%  [0-9.]+ [KM]i?B / 2\.9 MiB  [0-9.]+ [KMG]?i?B/s  ETA [0-9]+:[0-9]{2} *'$'\r' \
  "$TMP/tty" || fail "no progress bar on the terminal: $(od -c "$TMP/tty" | head -20)"
last=$(tr '\r' '\n' <"$TMP/tty" | grep -v '^ *$' | tail -n 1)
[[ $last == 'tcpfile-client: get "big.bin" to standard output: 3000000 bytes in '* ]] ||
  fail "the bar was not erased before the summary line: $last"
pass "a transfer longer than a moment draws a progress bar on the terminal, then erases it"

on_tty "'$CLIENT' -q $H $PORT get big.bin --to - | { sleep 1.5; cat >/dev/null; }"
[[ ! -s $TMP/tty ]] || fail "-q still drew on the terminal: $(od -c "$TMP/tty" | head)"
on_tty "'$CLIENT' $H $PORT get a.txt --to '$TMP/quick.txt'"
[[ $(cat "$TMP/tty") == 'tcpfile-client: get "a.txt" to "'"$TMP"'/quick.txt": 6 bytes in '*$' s\r' ]] ||
  fail "a quick transfer drew a bar: $(od -c "$TMP/tty" | head)"
pass "no bar with -q, nor for a quick transfer"

echo "all $CHECKS checks passed"
