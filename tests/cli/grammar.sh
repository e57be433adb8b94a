#!/usr/bin/env bash
# grammar.sh - a command line people already know (issue 11): options
# anywhere and "--" to end them, HOST:PORT, [V6]:PORT, tcpfile:// URLs, the
# default port, wildcards on get matched on the server, -h for help on both
# programs, -H for the human listing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
start_server root
ROOT=$TMP/root
ROOT_PORT=$PORT
mkdir -p "$TMP/w"
cd "$TMP/w"
printf 'aaa\n' >a.txt
printf 'dash\n' >-dash.txt

# ---- options anywhere, -- ends them ---------------------------------------------
expect 0 "$CLIENT" $H "$PORT" put a.txt -q --as moved.txt list --quiet
[[ ! -s $TMP/err ]] || fail "-q after the operation was not applied: $(cat "$TMP/err")"
cmp a.txt "$ROOT/moved.txt" || fail "put a.txt -q --as moved.txt"
expect 0 "$CLIENT" $H "$PORT" -q put -- -dash.txt
cmp -- -dash.txt "$ROOT/-dash.txt" || fail "put -- -dash.txt did not upload the file"
expect 2 "$CLIENT" $H "$PORT" put -dash.txt
stderr_one_line_with 'unknown option "-d"'
pass "options after HOST and after operations; -- makes -dash.txt a file"

# ---- HOST:PORT, [V6]:PORT, URL, default port -----------------------------------------
expect 0 "$CLIENT" -q "$H:$PORT" get moved.txt --to m1.txt
cmp a.txt m1.txt || fail "HOST:PORT"
expect 0 "$CLIENT" -q "tcpfile://$H:$PORT/moved.txt"
cmp a.txt moved.txt || fail "tcpfile://HOST:PORT/NAME did not save ./NAME"
printf 'spaced\n' >"$ROOT/my file.txt"
expect 0 "$CLIENT" -q "tcpfile://$H:$PORT/my%20file.txt"
cmp "$ROOT/my file.txt" "my file.txt" || fail "a URL's %20 is not decoded"
expect 2 "$CLIENT" "tcpfile://$H:$PORT/moved.txt" list
stderr_one_line_with 'a URL with a NAME is an operation itself'
expect 2 "$CLIENT" "$H:99999" list
stderr_one_line_with '"99999"'
if have_ipv6_loopback; then
  BIND=::1 start_server root6
  expect 0 "$CLIENT" -q "[::1]:$PORT" put a.txt list
  grep -q $'\ta\\.txt$' "$TMP/out" || fail "[::1]:PORT: $(cat "$TMP/out")"
  expect 0 "$CLIENT" -q "tcpfile://[::1]:$PORT/a.txt" --to v6.txt
  cmp a.txt v6.txt || fail "tcpfile://[::1]:PORT/NAME"
  stop_server "$SERVER_PID"
  PORT=$ROOT_PORT
fi
# Nothing may listen on 7878 here; either way the port used must be 7878.
st=0
timeout "$CALL_TIMEOUT" "$CLIENT" --timeout 2 $H list >/dev/null 2>"$TMP/err" || st=$?
[[ $st == 0 ]] || grep -qF "connect to $H port 7878" "$TMP/err" ||
  fail "no PORT did not mean 7878: $(cat "$TMP/err")"
pass "HOST:PORT, [V6]:PORT, tcpfile://HOST:PORT/NAME (%XX decoded), default port 7878"

# ---- wildcards on get match the server's names ------------------------------------------
printf '1\n' >"$ROOT/img-1.jpg"
printf '22\n' >"$ROOT/img-2.jpg"
mkdir -p pics
expect 0 "$CLIENT" -q $H "$PORT" get 'img-*.jpg' --to pics/
cmp "$ROOT/img-1.jpg" pics/img-1.jpg || fail "get 'img-*.jpg': img-1.jpg"
cmp "$ROOT/img-2.jpg" pics/img-2.jpg || fail "get 'img-*.jpg': img-2.jpg"
[[ $(ls pics) == $'img-1.jpg\nimg-2.jpg' ]] || fail "get 'img-*.jpg' fetched: $(ls pics)"
expect 6 "$CLIENT" $H "$PORT" get 'nothing-*.png'
stderr_one_line_with 'no file on the server matches "nothing-*.png"'
expect 2 "$CLIENT" $H "$PORT" get 'img-?.jpg' --to one.jpg
stderr_one_line_with 'matches several files'
pass "get 'img-*.jpg' gets every matching name; no match exits 6"

# ---- -h is help; -H the human listing -----------------------------------------------
for prog in "$CLIENT" "$SERVER"; do
  expect 0 "$prog" -h
  grep -q '^Usage: ' "$TMP/out" || fail "$prog -h is not help"
done
expect 0 "$CLIENT" $H "$PORT" list -H
grep -qE '^ +4 B  [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}  moved\.txt$' "$TMP/out" ||
  fail "list -H: $(cat "$TMP/out")"
pass "-h is help on both programs; -H (anywhere) lists for people"

# ---- the server's options may follow PORT and ROOT ------------------------------------
expect 2 "$SERVER" 0 "$TMP" --bogus
stderr_one_line_with 'unknown option "--bogus"'
mkdir -p "$TMP/ro"
"$SERVER" -b $H 0 "$TMP/ro" --read-only >"$TMP/ro.out" 2>"$TMP/ro.err" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
wait_banner "$TMP/ro.out" "$SERVER_PID"
expect 5 "$CLIENT" $H "$PORT" put a.txt
stderr_one_line_with 'server: permission denied'
stop_server "$SERVER_PID"
pass "tcpfile-server PORT ROOT --read-only applies the option"

echo "all $CHECKS checks passed"
