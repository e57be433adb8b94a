#!/usr/bin/env bash
# store_down.sh - the S3 store failing under a server. The shared Ceph is
# never stopped: the server reaches it through an HAProxy started here,
# which is killed to take the store away and started again to bring it
# back.
#  - At start: wrong credentials (TF_EACCES), a bucket that does not exist
#    (TF_ENOENT), a store that cannot be reached (TF_EIO with the reason):
#    the server does not start, and says why in one line.
#  - Mid-upload: the store goes away. Nothing shows under the name, the
#    client gets an error, the server stays up and answers other clients
#    (quickly, with an error), and once the store is back the same upload
#    resumes from the parts stored before the cut and ends whole.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
STORE_PORT=${TF_S3_ENDPOINT##*:}
STORE_PORT=${STORE_PORT%%/*}

# start_fails WHAT EXPECTED [ENV...] -- [OPTIONS...]: the server must exit
# 1 at start with EXPECTED in its one line on stderr.
start_fails() {
  local what=$1 want=$2 status=0
  shift 2
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  env "${envs[@]}" timeout 30 "$SERVER" --plaintext -b $H "$@" 0 >"$TMP/out" 2>"$TMP/err" ||
    status=$?
  [[ $status == 1 ]] || fail "$what: exit $status, not 1: $(cat "$TMP/err")"
  grep -qF -- "$want" "$TMP/err" || fail "$what: stderr lacks \"$want\": $(cat "$TMP/err")"
  [[ $(wc -l <"$TMP/err") == 1 ]] || fail "$what: not one line: $(cat "$TMP/err")"
  if grep -qF -- "$AWS_SECRET_ACCESS_KEY" "$TMP/err" "$TMP/out"; then
    fail "$what: the secret key is in the output"
  fi
  pass "$what: refused at start ($(sed 's/.*: \(.*\)$/\1/' "$TMP/err" | cut -c1-100))"
}

STORE=(--store "s3://$TF_S3_BUCKET/$S3_PREFIX" --s3-region "$S3_REGION")
start_fails "wrong secret key" "permission denied" \
  AWS_SECRET_ACCESS_KEY=wrong-secret -- "${STORE[@]}" --s3-endpoint "$TF_S3_ENDPOINT"
start_fails "unknown access key" "InvalidAccessKeyId" \
  AWS_ACCESS_KEY_ID=NOSUCHKEY0000000000 -- "${STORE[@]}" --s3-endpoint "$TF_S3_ENDPOINT"
start_fails "no such bucket" "no such bucket" \
  -- --store "s3://no-such-bucket-$$" --s3-endpoint "$TF_S3_ENDPOINT" --s3-region "$S3_REGION"
DOWN=$(free_port)
start_fails "store unreachable" "cannot reach the S3 store" \
  -- "${STORE[@]}" --s3-endpoint "http://127.0.0.1:$DOWN"

# ---- the store taken away mid-upload -------------------------------------------------
PROXY=$(free_port)
start_haproxy store "$PROXY" roundrobin "$STORE_PORT"
S3_ENDPOINT=http://127.0.0.1:$PROXY start_s3 srv --workers 2
printf 'small\n' >"$TMP/small"
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/small" --as small.txt

SIZE=$((48 << 20))
"$FAULTKIT" fill "$TMP/B" "$SIZE" 31
hold_transfer put $H "$PORT" "$TMP/B" big.bin --resume --hold-at $((40 << 20))
pid=$FK_PID
wait_state # the first part (16 MiB) reaches the store
kill_bg "$HAPROXY_PID" # the store is gone
kill -USR1 "$pid" 2>/dev/null || true
reap_bg "$pid"
[[ $BG_STATUS == 1 ]] || fail "the client exited $BG_STATUS with the store gone"
grep -q 'TF_EIO' "$TMP/fk.err" || fail "the client's error: $(cat "$TMP/fk.err")"
grep -q 'cannot reach the S3 store' "$TMP/fk.err" ||
  fail "the client is not told why: $(cat "$TMP/fk.err")"
[[ -z $(s3_keys | grep -x big.bin) ]] || fail "big.bin is visible after the cut"
pass "store gone mid-upload: the client gets TF_EIO saying why; nothing under the name"

running "$SERVER_PID" || fail "the server died with the store"
t0=$(now_ms)
"$CLIENT" -q $H "$PORT" list >/dev/null 2>"$TMP/err" && fail "a list succeeded with the store gone"
grep -q 'cannot reach' "$TMP/err" || fail "list with the store gone: $(cat "$TMP/err")"
"$CLIENT" -q $H "$PORT" get small.txt --to "$TMP/x" >/dev/null 2>"$TMP/err" &&
  fail "a get succeeded with the store gone"
t1=$(now_ms)
((t1 - t0 < 5000)) || fail "the server took $((t1 - t0)) ms to answer with the store gone"
pass "the server stays up and answers other clients with an error in $((t1 - t0)) ms"

start_haproxy store "$PROXY" roundrobin "$STORE_PORT" # the store is back
expect 0 "$FAULTKIT" put $H "$PORT" "$TMP/B" big.bin --resume
first=$(awk '$1 == "first" { print $2 }' "$TMP/out")
((first >= (16 << 20))) || fail "the upload started again at byte $first, not from its parts"
expect 0 "$FAULTKIT" get $H "$PORT" big.bin "$TMP/got"
same "$TMP/B" "$TMP/got" || fail "the resumed upload is not whole"
[[ $(s3_keys | grep -vc '^\.tcpfile-tmp/') == 2 ]] || fail "objects: $(s3_keys)"
pass "the store back: the upload resumed from byte $first (its stored parts), whole"
