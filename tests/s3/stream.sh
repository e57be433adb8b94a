#!/usr/bin/env bash
# stream.sh - a put of known size, not resumable, through a server on S3:
# one streaming PUT of its name while the bytes come (no multipart upload
# while it is under way), its last byte held until the commit. Cut off
# mid-put - the client killed, or the server - it leaves the old version
# whole and nothing else in the bucket, and the next put goes through.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
SIZE=$((24 << 20)) # over a part (16 MiB): a multipart upload before
HOLD=$((20 << 20))
"$FAULTKIT" fill "$TMP/A" $SIZE 1 "$TMP/B" $SIZE 2
start_s3 srv

expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/A" --as data.bin
[[ $(s3_keys) == $'.tcpfile-tmp/d/data.bin\ndata.bin' ]] || fail "objects after put: $(s3_keys)"
expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/got"
same "$TMP/A" "$TMP/got" || fail "get: not the bytes put"
pass "a put of $((SIZE >> 20)) MiB: the object and its digest beside it, got back whole"

# The client cut off mid-put: the PUT is cut, the old version stays.
hold_transfer put $H "$PORT" "$TMP/B" data.bin --hold-at $HOLD
[[ -z $("$S3TOOL" uploads "$S3_PREFIX/") ]] ||
  fail "a multipart upload under way for a put of known size"
kill_bg "$FK_PID"
sleep 0.5
expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/got"
same "$TMP/A" "$TMP/got" || fail "a put cut off changed data.bin"
[[ $(s3_keys) == $'.tcpfile-tmp/d/data.bin\ndata.bin' ]] || fail "objects after the cut: $(s3_keys)"
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/B" --as data.bin
expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/got"
same "$TMP/B" "$TMP/got" || fail "the put after the cut did not store its bytes"
pass "a client cut off mid-put (one PUT, no multipart upload): the old version whole, the next put stored"

# The server killed mid-put: the store drops the PUT it never finished.
hold_transfer put $H "$PORT" "$TMP/A" data.bin --hold-at $HOLD
kill_server "$SERVER_PID"
kill_bg "$FK_PID"
start_s3 srv2
expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/got"
same "$TMP/B" "$TMP/got" || fail "a server killed mid-put left data.bin changed"
[[ $(s3_keys) == $'.tcpfile-tmp/d/data.bin\ndata.bin' ]] || fail "objects after the kill: $(s3_keys)"
[[ -z $("$S3TOOL" uploads "$S3_PREFIX/") ]] || fail "multipart uploads left behind"
pass "the server killed mid-put: nothing of the cut PUT shows, the old version whole"
stop_server "$SERVER_PID"
