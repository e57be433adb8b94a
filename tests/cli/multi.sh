#!/usr/bin/env bash
# multi.sh - several operations in one invocation: they share one
# connection, run in order, parse greedily (a keyword starts the next
# operation), and the first failure stops the rest with its exit status
# and a line naming those not run; --keep-going runs them all.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
LOG=$TMP/root.out
H=127.0.0.1
mkdir -p "$TMP/work"
cd "$TMP/work"
printf 'aaa\n' >a.txt
printf 'bbbb\n' >b.txt
printf 'notes\n' >notes.txt

# ---- one connection for everything --------------------------------------------
expect 0 "$CLIENT" -q $H "$PORT" put a.txt put b.txt --as remote-b.txt put notes.txt \
  get a.txt --to got-a.txt get remote-b.txt --to - list
cmp a.txt "$ROOT/a.txt" || fail "multi: put a.txt"
cmp b.txt "$ROOT/remote-b.txt" || fail "multi: put b.txt --as remote-b.txt"
cmp notes.txt "$ROOT/notes.txt" || fail "multi: put notes.txt"
cmp a.txt got-a.txt || fail "multi: get a.txt --to got-a.txt"
# stdout holds b's bytes, then the listing, in the order asked for.
{
  cat b.txt
  printf '4\t%s\ta.txt\n' "$(date -u -d "@$(stat -c %Y "$ROOT/a.txt")" +%Y-%m-%dT%H:%M:%SZ)"
} >want-head
head -c "$(stat -c %s want-head)" "$TMP/out" | cmp - want-head ||
  fail "multi: stdout is not b.txt then the listing:
$(cat "$TMP/out")"
[[ $(tail -n +2 "$TMP/out" | wc -l) == 3 ]] || fail "multi: the listing should have 3 lines"
grep -q $'\tremote-b\\.txt$' "$TMP/out" || fail "multi: list misses remote-b.txt"
n=$(grep -cE ' (put "(a|b|notes|remote-b)\.txt"|get "(a|remote-b)\.txt"|list -) ok ' "$LOG")
[[ $n == 6 ]] || fail "multi: expected 6 logged requests, found $n:
$(cat "$LOG")"
[[ $(grep -E '^[0-9]{4}-.* (put|get|list) ' "$LOG" | awk '{print $2}' | sort -u | wc -l) == 1 ]] ||
  fail "multi: the requests came over more than one connection:
$(cat "$LOG")"
pass "put, put --as, get --to, get --to -, list in one invocation over one connection"

# ---- greedy parsing ----------------------------------------------------------------
rm -f a.txt notes.txt
expect 0 "$CLIENT" -q $H "$PORT" get a.txt get notes.txt
cmp "$ROOT/a.txt" a.txt || fail "get a.txt get notes.txt: a.txt not saved as ./a.txt"
cmp "$ROOT/notes.txt" notes.txt || fail "get a.txt get notes.txt: notes.txt not saved"
[[ ! -e get ]] || fail "get NAME get ... took \"get\" as LOCAL"
expect 0 "$CLIENT" -q $H "$PORT" put b.txt list
grep -q $'\tb\\.txt$' "$TMP/out" || fail "put b.txt list: list did not run or b.txt missing"
[[ ! -e $ROOT/list ]] || fail "put LOCAL list took \"list\" as NAME"
expect 0 "$CLIENT" -q $H "$PORT" get a.txt --to ./get put ./get list
cmp "$ROOT/a.txt" get || fail "get a.txt --to ./get did not save to ./get"
cmp get "$ROOT/get" || fail "put ./get did not store \"get\""
pass "a keyword starts the next operation; ./get names a local file"

# ---- the first failure stops the run -------------------------------------------------
rm -f a.txt b.txt
before=$(wc -l <"$LOG")
expect 6 "$CLIENT" $H "$PORT" get a.txt get missing.txt get remote-b.txt --to b.txt
cmp "$ROOT/a.txt" a.txt || fail "the operation before the failure did not run"
[[ ! -e b.txt ]] || fail "an operation after the failure ran"
[[ ! -e missing.txt ]] || fail "the failed get left a file"
# stderr: the summary of the first get, one line for the failure, one
# naming what was not run.
[[ $(wc -l <"$TMP/err") == 3 ]] || fail "expected 3 stderr lines:
$(cat "$TMP/err")"
grep -q '^tcpfile-client: get "a.txt": 4 bytes' "$TMP/err" || fail "no summary for a.txt"
grep -q '^tcpfile-client: get "missing.txt": server: no such file' "$TMP/err" ||
  fail "no failure line for missing.txt"
grep -qxF 'tcpfile-client: not run (after the failure): get "remote-b.txt" to "b.txt"' \
  "$TMP/err" || fail "no line naming the operation not run"
tail -n +"$((before + 1))" "$LOG" >"$TMP/log-after"
grep -q 'remote-b' "$TMP/log-after" && fail "the server saw a request after the failure"
pass "the first failure stops the run with its status (6): $(tail -1 "$TMP/err")"

# --keep-going runs everything; the status is the highest of the failures.
rm -f a.txt b.txt
printf 'local\n' >kept.txt
expect 12 "$CLIENT" --keep-going $H "$PORT" get missing.txt get a.txt \
  get remote-b.txt --to kept.txt --no-clobber get remote-b.txt --to b.txt
cmp "$ROOT/a.txt" a.txt || fail "--keep-going: the get after a failure did not run"
cmp "$ROOT/remote-b.txt" b.txt || fail "--keep-going: the last get did not run"
[[ $(cat kept.txt) == local ]] || fail "--no-clobber replaced kept.txt"
grep -q 'not run' "$TMP/err" && fail "--keep-going left something not run: $(cat "$TMP/err")"
grep -q 'get "missing.txt": server: no such file' "$TMP/err" || fail "no line for missing.txt"
pass "--keep-going runs every operation and exits with the highest status (12 > 6)"

# A usage error anywhere means nothing runs at all.
rm -f a.txt
expect 2 "$CLIENT" $H "$PORT" get a.txt get ../x
[[ ! -e a.txt ]] || fail "an operation ran despite a usage error later on the line"
expect 2 "$CLIENT" $H "$PORT" get a.txt --to local-a.txt list a frob
[[ ! -e local-a.txt ]] || fail "an operation ran despite an unknown operation later"
pass "a usage error later on the line prevents every operation"

# ---- the names of one get go pipelined (tf_get_many) ------------------------------
# One request each, no round trip each: -v says so. A name that fails does
# not stop the other names of the same get (they were on their way), only
# the operations after it; each keeps its own line and the status is the
# failure's.
mkdir -p pipe
expect 6 "$CLIENT" -v $H "$PORT" get a.txt missing.txt remote-b.txt --to pipe/ get notes.txt --to pipe/
grep -q 'get: 3 names pipelined over one connection' "$TMP/err" ||
  fail "get a b c was not pipelined: $(cat "$TMP/err")"
cmp "$ROOT/a.txt" pipe/a.txt || fail "pipelined get: a.txt"
cmp "$ROOT/remote-b.txt" pipe/remote-b.txt || fail "pipelined get: remote-b.txt after the failure"
[[ ! -e pipe/missing.txt && ! -e pipe/notes.txt ]] || fail "pipelined get: missing.txt or notes.txt exists"
grep -q '^tcpfile-client: get "missing.txt" to "pipe/": server: no such file' "$TMP/err" ||
  fail "pipelined get: no line for missing.txt: $(cat "$TMP/err")"
grep -qF 'not run (after the failure): get "notes.txt" to "pipe/"' "$TMP/err" ||
  fail "pipelined get: the next operation ran: $(cat "$TMP/err")"
rm -rf pipe && mkdir pipe
expect 0 "$CLIENT" $H "$PORT" get a.txt remote-b.txt --to pipe/
[[ $(grep -c '^tcpfile-client: get "\(a\|remote-b\).txt" to "pipe/": [0-9]* bytes in ' "$TMP/err") == 2 ]] ||
  fail "pipelined get: expected one summary line per name: $(cat "$TMP/err")"
# To standard output too: the answers in the order of the names, the bytes
# of each whole and in place.
expect 0 "$CLIENT" -v $H "$PORT" get a.txt remote-b.txt a.txt --to -
grep -q 'get: 3 names pipelined over one connection' "$TMP/err" ||
  fail "get a b a --to - was not pipelined: $(cat "$TMP/err")"
cat "$ROOT/a.txt" "$ROOT/remote-b.txt" "$ROOT/a.txt" | cmp - "$TMP/out" ||
  fail "pipelined get to stdout: the bytes differ from a.txt remote-b.txt a.txt"
pass "get NAME... is pipelined; per-name lines and statuses are kept; to stdout in order"

# put LOCAL... goes through tf_put_many the same way.
printf 'p1\n' >p1.txt
printf 'p22\n' >p2.txt
expect 0 "$CLIENT" -v $H "$PORT" put p1.txt p2.txt
grep -q 'put: 2 names pipelined over one connection' "$TMP/err" ||
  fail "put a b was not pipelined: $(cat "$TMP/err")"
cmp p1.txt "$ROOT/p1.txt" && cmp p2.txt "$ROOT/p2.txt" || fail "pipelined put: contents"
grep -q '^tcpfile-client: put "p2.txt": 4 bytes' "$TMP/err" ||
  fail "pipelined put: no summary line for p2.txt: $(cat "$TMP/err")"
pass "put LOCAL... is pipelined, with a summary line per file"

stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "server exit status $STOP_STATUS"
echo "all $CHECKS checks passed"
