#!/usr/bin/env bash
# basic.sh - round trips through tcpfile-client and tcpfile-server: put,
# get (to a file, to ./NAME, to a directory, to stdout), put from stdin,
# the list format, quiet and verbose clients, IPv6, and the request log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
ROOT_PID=$SERVER_PID
H=127.0.0.1

# ---- files of several kinds -------------------------------------------------
mkdir -p "$TMP/src" "$TMP/dst"
printf 'hello\n' >"$TMP/src/a.txt"
: >"$TMP/src/empty"
head -c 3000000 /dev/urandom >"$TMP/src/big.bin" # several library buffers
printf 'spaced\n' >"$TMP/src/my file.txt"
printf 'utf8\n' >"$TMP/src/résumé.txt"

for f in a.txt empty big.bin "my file.txt" "résumé.txt"; do
  expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/src/$f"
  cmp "$TMP/src/$f" "$ROOT/$f" || fail "put \"$f\": stored copy differs"
  expect 0 "$CLIENT" -q $H "$PORT" get "$f" --to "$TMP/dst/$f"
  cmp "$TMP/src/$f" "$TMP/dst/$f" || fail "get \"$f\": downloaded copy differs"
done
pass "put and get round trips (text, empty, 3 MB binary, spaces, UTF-8)"

expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/src/a.txt" --as renamed.txt
cmp "$TMP/src/a.txt" "$ROOT/renamed.txt" || fail "put LOCAL --as NAME stored the wrong data"
pass "put LOCAL --as NAME stores under NAME"

# get NAME with no LOCAL saves to ./NAME; LOCAL a directory saves inside it.
mkdir -p "$TMP/cwd" "$TMP/into"
(cd "$TMP/cwd" && expect 0 "$CLIENT" -q $H "$PORT" get big.bin)
cmp "$TMP/src/big.bin" "$TMP/cwd/big.bin" || fail "get NAME did not save ./NAME"

# --resume continues from a partial download (its first megabyte here) and
# the whole-file checksum still holds; --no-checksum still gets it right.
mkdir -p "$TMP/resume"
head -c 1000000 "$TMP/src/big.bin" >"$TMP/resume/.big.bin.tcpfile-part"
expect 0 "$CLIENT" -q --resume $H "$PORT" get big.bin --to "$TMP/resume/big.bin"
cmp "$TMP/src/big.bin" "$TMP/resume/big.bin" || fail "--resume did not complete the file"
[[ ! -e $TMP/resume/.big.bin.tcpfile-part ]] || fail "--resume left its part file"
expect 0 "$CLIENT" -q --no-checksum $H "$PORT" get big.bin --to "$TMP/resume/plain.bin"
cmp "$TMP/src/big.bin" "$TMP/resume/plain.bin" || fail "--no-checksum get differs"
pass "--resume continues a partial download; --no-checksum works"
expect 0 "$CLIENT" -q $H "$PORT" get a.txt --to "$TMP/into/"
cmp "$TMP/src/a.txt" "$TMP/into/a.txt" || fail "get NAME --to DIR/ did not save DIR/NAME"
pass "get NAME saves ./NAME; get NAME --to DIR/ saves DIR/NAME"

# ---- standard input and output ---------------------------------------------
expect 0 "$CLIENT" -q $H "$PORT" get big.bin --to -
cmp "$TMP/src/big.bin" "$TMP/out" || fail "get NAME --to - wrote the wrong bytes to stdout"
[[ ! -s $TMP/err ]] || fail "quiet get to stdout printed on stderr: $(cat "$TMP/err")"
pass "get NAME --to - writes exactly the file to stdout"

timeout "$CALL_TIMEOUT" cat "$TMP/src/big.bin" |
  timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - --as piped.bin
cmp "$TMP/src/big.bin" "$ROOT/piped.bin" || fail "put - --as NAME from a pipe stored wrong data"
expect 0 "$CLIENT" -q $H "$PORT" put - --as redirected.txt <"$TMP/src/a.txt"
cmp "$TMP/src/a.txt" "$ROOT/redirected.txt" || fail "put - --as NAME from a file stored wrong data"
printf '' | timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - --as empty-pipe
[[ -f $ROOT/empty-pipe && ! -s $ROOT/empty-pipe ]] || fail "empty stdin did not store an empty file"
pass "put - --as NAME reads stdin (pipe, redirect, empty)"

# ---- list --------------------------------------------------------------------
touch -d '2001-02-03T04:05:06Z' "$ROOT/a.txt"
mkdir "$ROOT/subdir" # not a regular file: never listed
expect 0 "$CLIENT" $H "$PORT" list
[[ ! -s $TMP/err ]] || fail "list printed on stderr: $(cat "$TMP/err")"
grep -qxF "$(printf '6\t2001-02-03T04:05:06Z\ta.txt')" "$TMP/out" ||
  fail "list line for a.txt is not SIZE<TAB>MTIME<TAB>NAME: $(grep a.txt "$TMP/out")"
want=$(cd "$ROOT" && find . -maxdepth 1 -type f | wc -l)
got=$(wc -l <"$TMP/out")
[[ $got == "$want" ]] || fail "list shows $got lines for $want files:
$(cat "$TMP/out")"
while IFS=$'\t' read -r size mtime name; do
  [[ $size =~ ^[0-9]+$ ]] || fail "list: bad SIZE \"$size\""
  [[ $mtime =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
    fail "list: MTIME \"$mtime\" is not ISO 8601 UTC"
  [[ -f $ROOT/$name ]] || fail "list: \"$name\" is not a file in the root"
  [[ $size == "$(stat -c %s "$ROOT/$name")" ]] || fail "list: wrong size for \"$name\""
  [[ $mtime == "$(date -u -d "@$(stat -c %Y "$ROOT/$name")" +%Y-%m-%dT%H:%M:%SZ)" ]] ||
    fail "list: wrong MTIME for \"$name\": $mtime"
done <"$TMP/out"
LC_ALL=C sort -c -t $'\t' -k3,3 "$TMP/out" || fail "list is not sorted by name"
grep -q subdir "$TMP/out" && fail "list shows a directory"
pass "list prints SIZE<TAB>MTIME<TAB>NAME, ISO 8601 UTC, sorted, files only"

# ---- verbose and quiet clients -----------------------------------------------
expect 0 "$CLIENT" $H "$PORT" get a.txt --to "$TMP/dst/v.txt"
stderr_one_line_with 'get "a.txt"' '6 bytes'
[[ ! -s $TMP/out ]] || fail "a get to a file wrote to stdout"
expect 0 "$CLIENT" --quiet $H "$PORT" get a.txt --to "$TMP/dst/q.txt" put "$TMP/src/a.txt" --as q.txt
[[ ! -s $TMP/err && ! -s $TMP/out ]] || fail "--quiet still printed something"
pass "the client summarizes each transfer on stderr; --quiet silences it"

expect 0 "$CLIENT" --timeout 5 $H "$PORT" list
expect 0 "$CLIENT" --timeout=0.5 $H "$PORT" list
expect 0 "$CLIENT" --timeout 0 $H "$PORT" list
pass "--timeout SECONDS is accepted (whole, fractional, 0)"

# ---- IPv6 ----------------------------------------------------------------------
if have_ipv6_loopback; then
  BIND=::1 start_server root6
  expect 0 "$CLIENT" -q ::1 "$PORT" put "$TMP/src/a.txt" --as v6.txt
  expect 0 "$CLIENT" -q '[::1]' "$PORT" get v6.txt --to "$TMP/dst/v6.txt" list
  cmp "$TMP/src/a.txt" "$TMP/dst/v6.txt" || fail "IPv6 round trip differs"
  grep -qF 'server up and running on IP: ::1 port ' "$TMP/root6.out" ||
    fail "IPv6 banner: $(head -1 "$TMP/root6.out")"
  grep -qE '^\S+ \[::1\]:[0-9]+ put "v6.txt" ok ' "$TMP/root6.out" ||
    fail "IPv6 log lacks the [::1]:port peer"
  stop_server "$SERVER_PID" INT
  [[ $STOP_STATUS == 0 ]] || fail "IPv6 server exit status $STOP_STATUS after SIGINT"
  pass "IPv6: ::1 and [::1] both work; SIGINT stops the server with status 0"
else
  echo "ok - skipped IPv6 checks: ::1 is not configured on lo"
fi

# ---- the server's request log ------------------------------------------------------
LOG=$TMP/root.out
grep -qE '^\S+ 127\.0\.0\.1:[0-9]+ put "big\.bin" ok 3000000 bytes [0-9.]+ s$' "$LOG" ||
  fail "no log line for the put of big.bin:
$(cat "$LOG")"
grep -qE '^\S+ 127\.0\.0\.1:[0-9]+ get "my file\.txt" ok 7 bytes ' "$LOG" ||
  fail "no log line for the get of \"my file.txt\""
grep -qE '^\S+ 127\.0\.0\.1:[0-9]+ list - ok [0-9]+ bytes ' "$LOG" || fail "no log line for list"
tail -n +2 "$LOG" | grep -vE '^(also listening on IP|serving|server identity:|no users file:|users:) ' | grep -vE "$LOG_LINE_RE" &&
  fail "malformed log lines above"
pass "the server logs one well-formed line per request"

stop_server "$ROOT_PID" TERM
[[ $STOP_STATUS == 0 ]] || fail "server exit status $STOP_STATUS after SIGTERM"
[[ $(tail -n 1 "$LOG") == "server stopped" ]] || fail "no \"server stopped\" line"
pass "SIGTERM stops the server with status 0 and \"server stopped\""
echo "all $CHECKS checks passed"
