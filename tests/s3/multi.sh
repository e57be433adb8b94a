#!/usr/bin/env bash
# multi.sh - two tcpfile-servers over one bucket behind HAProxy (TCP mode,
# loopback, started here on ports picked here):
#  - a file put through one server is got through the other;
#  - a server starting over the bucket leaves another's upload alone;
#  - a resumable upload cut off on one (its server killed) resumes on the
#    other, from the parts the first left in the bucket;
#  - through the balancer, the server carrying a put and then one carrying
#    a get are killed mid-transfer: the client connects again through the
#    balancer, lands on the survivor, and finishes (resuming);
#  - both list the same.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
SIZE=$((40 << 20)) # five parts
"$FAULTKIT" fill "$TMP/A" "$SIZE" 21
"$FAULTKIT" fill "$TMP/B" "$SIZE" 22

start_s3 one
P1=$PORT S1=$SERVER_PID
start_s3 two
P2=$PORT S2=$SERVER_PID

# ---- one bucket, two servers ---------------------------------------------------------
expect 0 "$FAULTKIT" put $H "$P1" "$TMP/A" a.bin
expect 0 "$FAULTKIT" get $H "$P2" a.bin "$TMP/a.got"
same "$TMP/A" "$TMP/a.got" || fail "got through two: not what was put through one"
pass "put through one server, got whole through the other"

# ---- a server starting while another uploads --------------------------------------
# Its start sweeps staged uploads left by crashes, but not one that another
# server is sending now.
hold_transfer put $H "$P1" "$TMP/B" plain.bin --hold-at $((20 << 20))
sleep 0.5 # its first parts are in the bucket, staged
start_s3 three
stop_server "$SERVER_PID"
kill -USR1 "$FK_PID" 2>/dev/null || true
reap_bg "$FK_PID"
[[ $BG_STATUS == 0 ]] || fail "an upload failed when another server started: $(cat "$TMP/fk.err")"
expect 0 "$FAULTKIT" get $H "$P2" plain.bin "$TMP/plain.got"
same "$TMP/B" "$TMP/plain.got" || fail "plain.bin is not whole"
pass "a server starting over the bucket leaves another server's upload in progress alone"

# ---- an upload cut off on one, resumed on the other ----------------------------------
hold_transfer put $H "$P1" "$TMP/B" b.bin --resume --hold-at $((30 << 20))
pid=$FK_PID
wait_state # the server sends its first part (16 MiB) to the store
kill_server "$S1"
kill -USR1 "$pid" 2>/dev/null || true
reap_bg "$pid"
[[ $BG_STATUS != 0 ]] || fail "the cut upload reported success"
[[ -z $(s3_keys | grep -x b.bin) ]] || fail "b.bin is visible after a cut upload"
expect 0 "$FAULTKIT" put $H "$P2" "$TMP/B" b.bin --resume
first=$(awk '$1 == "first" { print $2 }' "$TMP/out")
((first >= (16 << 20))) || fail "the upload started again at byte $first on the other server"
expect 0 "$FAULTKIT" get $H "$P2" b.bin "$TMP/b.got"
same "$TMP/B" "$TMP/b.got" || fail "the resumed upload is not whole"
pass "an upload cut off on one server resumed on the other from byte $first, whole"

# ---- behind the balancer -------------------------------------------------------------
start_s3 one
P1=$PORT S1=$SERVER_PID
LB=$(free_port)
start_haproxy lb "$LB" first "$P1" "$P2"

# The put: every client goes to the first server while it is up.
hold_transfer put $H "$LB" "$TMP/A" c.bin --resume --hold-at $((30 << 20))
pid=$FK_PID
wait_state
kill_server "$S1"
kill -USR1 "$pid" 2>/dev/null || true
reap_bg "$pid"
[[ $BG_STATUS != 0 ]] || fail "the put through the balancer survived its server's death"
expect 0 "$FAULTKIT" put $H "$LB" "$TMP/A" c.bin --resume
first=$(awk '$1 == "first" { print $2 }' "$TMP/out")
((first > 0)) || fail "the put through the balancer started again from 0"
grep -q 'put "c.bin" ok' "$TMP/two.out" || fail "the retry did not land on the other server"
pass "put through the balancer: its server killed, the client again through the balancer," \
  "resumed from byte $first on the survivor"

# The get: the first server back, carrying a get, killed in the middle.
start_s3 one
S1=$SERVER_PID
# (on a new port: the balancer is started again with it)
kill_bg "$HAPROXY_PID"
start_haproxy lb "$LB" first "$PORT" "$P2"
hold_transfer get $H "$LB" c.bin "$TMP/c.got" --resume --hold-at $((20 << 20))
pid=$FK_PID
kill_server "$S1"
kill -USR1 "$pid" 2>/dev/null || true
reap_bg "$pid"
[[ $BG_STATUS != 0 ]] || fail "the get through the balancer survived its server's death"
expect 0 "$FAULTKIT" get $H "$LB" c.bin "$TMP/c.got" --resume
first=$(awk '$1 == "first" { print $2 }' "$TMP/out")
((first > 0)) || fail "the get through the balancer started again from 0"
same "$TMP/A" "$TMP/c.got" || fail "the resumed get is not whole"
pass "get through the balancer: its server killed, resumed from byte $first on the survivor"

# ---- the same listing from both ------------------------------------------------------
start_s3 one
P1=$PORT
expect 0 "$CLIENT" -q $H "$P1" ls -r
sort "$TMP/out" >"$TMP/ls1"
expect 0 "$CLIENT" -q $H "$P2" ls -r
sort "$TMP/out" >"$TMP/ls2"
diff "$TMP/ls1" "$TMP/ls2" || fail "the two servers list differently"
[[ $(awk '{print $NF}' "$TMP/ls1" | sort | tr '\n' ' ') == "a.bin b.bin c.bin plain.bin " ]] ||
  fail "the listing: $(cat "$TMP/ls1")"
pass "both servers list the same four files"
