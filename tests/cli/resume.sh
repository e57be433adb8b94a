#!/usr/bin/env bash
# resume.sh - --resume says what it does (issue 11): "resuming at X of Y",
# "already complete", "changed on the server, starting over" (and then
# gets the file right), and the summary counts the bytes moved this time.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
start_server root
ROOT=$TMP/root
mkdir -p "$TMP/w"
cd "$TMP/w"
head -c 3000000 /dev/urandom >"$ROOT/big.bin"
PART=.big.bin.tcpfile-part

# A part file holding the first megabyte.
head -c 1000000 "$ROOT/big.bin" >"$PART"
expect 0 "$CLIENT" --resume $H "$PORT" get big.bin
cmp "$ROOT/big.bin" big.bin || fail "the resumed get differs"
grep -qxF 'tcpfile-client: get "big.bin": resuming at 977 KiB of 2.9 MiB' "$TMP/err" ||
  fail "no resuming line: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: get "big\.bin": 2000000 bytes in ' "$TMP/err" ||
  fail "the summary does not count this time's 2000000 bytes: $(cat "$TMP/err")"
pass "a resumed get says where it resumes; its summary counts this time's bytes"

# TCPFILE_RESUME=1 makes --resume the default; --no-resume overrides it.
rm big.bin
head -c 1000000 "$ROOT/big.bin" >"$PART"
TCPFILE_RESUME=1 expect 0 "$CLIENT" --no-resume $H "$PORT" get big.bin
grep -q 'resuming' "$TMP/err" && fail "--no-resume resumed: $(cat "$TMP/err")"
[[ -e $PART ]] || fail "a get without resuming touched the part file"
rm big.bin
TCPFILE_RESUME=1 expect 0 "$CLIENT" $H "$PORT" get big.bin
cmp "$ROOT/big.bin" big.bin || fail "TCPFILE_RESUME=1: the get differs"
grep -qF 'resuming at 977 KiB of 2.9 MiB' "$TMP/err" ||
  fail "TCPFILE_RESUME=1 did not resume: $(cat "$TMP/err")"
pass "TCPFILE_RESUME=1 resumes by default; --no-resume does not"

# The whole file already there, not yet renamed.
rm big.bin
cp "$ROOT/big.bin" "$PART"
expect 0 "$CLIENT" --resume $H "$PORT" get big.bin
cmp "$ROOT/big.bin" big.bin || fail "the complete part file was not published"
grep -qxF 'tcpfile-client: get "big.bin": already complete' "$TMP/err" ||
  fail "no \"already complete\": $(cat "$TMP/err")"
grep -qE '^tcpfile-client: get "big\.bin": 0 bytes in ' "$TMP/err" ||
  fail "an already complete get moved bytes: $(cat "$TMP/err")"
pass "a part file that is the whole file is \"already complete\", 0 bytes moved"

# The file changed on the server since: the prefix kept no longer matches.
rm big.bin
head -c 1000000 /dev/urandom >"$PART"
expect 0 "$CLIENT" --resume $H "$PORT" get big.bin
cmp "$ROOT/big.bin" big.bin || fail "after \"changed on the server\" the file is wrong"
grep -qF 'get "big.bin": changed on the server since the 1000000 bytes kept' "$TMP/err" ||
  fail "no \"changed on the server\": $(cat "$TMP/err")"
grep -q 'checksum mismatch' "$TMP/err" && fail "reported as a checksum failure: $(cat "$TMP/err")"
grep -qE '^tcpfile-client: get "big\.bin": 3000000 bytes in ' "$TMP/err" ||
  fail "the summary after starting over: $(cat "$TMP/err")"
[[ ! -e $PART ]] || fail "the part file is left over"
# ...or it shrank below what was kept.
rm big.bin
head -c 4000000 /dev/urandom >"$PART"
expect 0 "$CLIENT" --resume $H "$PORT" get big.bin
cmp "$ROOT/big.bin" big.bin || fail "after a shrunk file the result is wrong"
grep -qF 'get "big.bin": changed on the server (shorter than the 4000000 bytes kept), starting over' \
  "$TMP/err" || fail "no line for a file shorter than the part: $(cat "$TMP/err")"
pass "a file changed on the server is \"changed on the server, starting over\", then right"

# A put interrupted with --resume continues where the server stopped.
head -c 8000000 /dev/urandom >up.bin
set -m
"$CLIENT" --resume --limit-rate 4M $H "$PORT" put up.bin 2>"$TMP/int.err" &
pid=$!
set +m
wait_bytes "$ROOT/.tcpfile-tmp" 65536 # the server has kept some of it
kill -INT "$pid"
st=0
wait "$pid" || st=$?
[[ $st == 130 ]] || fail "the interrupted put exited $st: $(cat "$TMP/int.err")"
grep -qF 'the same put with --resume continues' "$TMP/int.err" ||
  fail "the interrupted put did not say what it kept: $(cat "$TMP/int.err")"
expect 0 "$CLIENT" --resume $H "$PORT" put up.bin
cmp up.bin "$ROOT/up.bin" || fail "the resumed put stored the wrong data"
grep -qE '^tcpfile-client: put "up\.bin": resuming at [0-9.]+ [KM]iB of 7\.6 MiB$' "$TMP/err" ||
  fail "the resumed put did not say where it resumed: $(cat "$TMP/err")"
pass "an interrupted put --resume continues, saying where"

# A put --resume while the server still holds an earlier attempt of it
# (here a stopped client; after Ctrl-C, a connection not yet seen dead)
# waits, saying so, instead of failing at once with "busy".
head -c 8000000 /dev/urandom >held.bin
"$CLIENT" -q --resume --limit-rate 2M $H "$PORT" put held.bin 2>/dev/null &
holder=$!
for ((i = 0; i < 100; i++)); do
  [[ -n $(ls -A "$ROOT/.tcpfile-tmp" 2>/dev/null) ]] && break
  sleep 0.05
done
sleep 0.2
kill -STOP "$holder"
# The holder dies once the second put says it waits (or after 10 s), not
# after a fixed time, which a loaded machine's second client can outlast
# before it even connects.
timeout "$CALL_TIMEOUT" "$CLIENT" --resume $H "$PORT" put held.bin >"$TMP/out" 2>"$TMP/err" &
second=$!
for ((i = 0; i < 500; i++)); do
  [[ $(<"$TMP/err") == *'waiting'* ]] && break
  sleep 0.02
done
kill -KILL "$holder"
wait "$holder" 2>/dev/null || true
st=0
wait "$second" || st=$?
[[ $st == 0 ]] || fail "the put that waited exited $st: $(cat "$TMP/err")"
cmp held.bin "$ROOT/held.bin" || fail "the put that waited stored the wrong data"
grep -qF 'put "held.bin": the server is still busy with the interrupted attempt; waiting' \
  "$TMP/err" || fail "no waiting line: $(cat "$TMP/err")"
pass "put --resume waits while the server holds an earlier attempt, then continues"

echo "all $CHECKS checks passed"
