#!/usr/bin/env bash
# interrupt.sh - issue 11: Ctrl-C or SIGTERM during a transfer leaves no
# hidden partial (and --resume keeps one it names); the server's log never
# says "ok" for a transfer it cut off.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
start_server root
ROOT=$TMP/root
ROOT_PID=$SERVER_PID
mkdir -p "$TMP/w"
cd "$TMP/w"

# ---- Ctrl-C and SIGTERM clean up, or keep for --resume -----------------------
truncate -s 64M "$ROOT/big.bin" # sparse: quick to read, and --limit-rate paces it
mkdir -p sig
# wait_exit PID: sets EXIT to PID's status; fails if it takes over 10 s.
wait_exit() {
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && fail "the client did not stop within 10 s of the signal"
  EXIT=0
  wait "$1" || EXIT=$?
}
# interrupt SIGNAL DIR ARGS...: starts the client with ARGS in sig/, lets it
# move some data (until a file in DIR, where it lands, holds some), sends
# SIGNAL, and sets EXIT. Job control (set -m) gives the background client
# SIGINT as a terminal would, instead of ignoring it.
interrupt() {
  local sig=$1 dir=$2 pid
  shift 2
  set -m
  (cd sig && exec "$CLIENT" "$@" 2>"$TMP/sig.err") &
  pid=$!
  set +m
  wait_bytes "$dir"
  kill -"$sig" "$pid"
  wait_exit "$pid"
}
interrupt INT sig $H "$PORT" --limit-rate 8M get big.bin
[[ $EXIT == 130 ]] || fail "Ctrl-C: exit $EXIT, not 130: $(cat "$TMP/sig.err")"
grep -qF 'interrupted; the partial download was removed' "$TMP/sig.err" ||
  fail "Ctrl-C: $(cat "$TMP/sig.err")"
[[ -z $(ls -A sig) ]] || fail "Ctrl-C left files behind: $(ls -A sig)"
interrupt TERM sig $H "$PORT" --limit-rate 8M get big.bin
[[ $EXIT == 143 ]] || fail "SIGTERM: exit $EXIT, not 143"
[[ -z $(ls -A sig) ]] || fail "SIGTERM left files behind: $(ls -A sig)"
pass "Ctrl-C (130) and SIGTERM (143) during a get leave no partial file"

interrupt INT sig $H "$PORT" --resume --limit-rate 8M get big.bin
[[ $EXIT == 130 ]] || fail "Ctrl-C with --resume: exit $EXIT"
grep -qE 'interrupted; [0-9]+ bytes kept in "\.big\.bin\.tcpfile-part": the same get with --resume' \
  "$TMP/sig.err" || fail "Ctrl-C with --resume: $(cat "$TMP/sig.err")"
[[ -s sig/.big.bin.tcpfile-part ]] || fail "--resume did not keep its part file"
(cd sig && expect 0 "$CLIENT" -q --resume $H "$PORT" get big.bin)
cmp "$ROOT/big.bin" sig/big.bin || fail "the resumed get differs"
[[ $(ls -A sig) == big.bin ]] || fail "the resumed get left: $(ls -A sig)"
pass "Ctrl-C with --resume keeps the part file it names; --resume finishes it"

# A put cut short without --resume stores nothing and leaves no temporary.
head -c 16000000 /dev/zero >sig-up.bin
interrupt INT "$ROOT/.tcpfile-tmp" $H "$PORT" --limit-rate 8M put ../sig-up.bin
[[ $EXIT == 130 ]] || fail "Ctrl-C during a put: exit $EXIT"
grep -qE 'interrupted after [0-9]+ bytes; nothing was stored' "$TMP/sig.err" ||
  fail "Ctrl-C during a put: $(cat "$TMP/sig.err")"
sleep 0.2 # the server notices the closed connection
[[ ! -e $ROOT/sig-up.bin ]] || fail "an interrupted put was stored"
[[ -z $(ls -A "$ROOT/.tcpfile-tmp" 2>/dev/null) ]] ||
  fail "an interrupted put left: $(ls -A "$ROOT/.tcpfile-tmp")"
pass "Ctrl-C during a put stores nothing and says so"

# ---- the server's log says when it cut a transfer off ---------------------------
start_server stopping --stop-grace 0.2
truncate -s 64M "$TMP/stopping/big.bin"
mkdir -p "$TMP/cut"
"$CLIENT" -q $H "$PORT" --limit-rate 4M get big.bin --to "$TMP/cut/big.bin" 2>"$TMP/cut.err" &
cpid=$!
wait_bytes "$TMP/cut" # the get is under way
stop_server "$SERVER_PID" TERM
wait "$cpid" || true
grep -q ' get "big.bin" ok ' "$TMP/stopping.out" && fail "a cut-off get was logged ok:
$(cat "$TMP/stopping.out")"
grep -qE ' get "big\.bin" failed [0-9]+ bytes .*cut off after [0-9]+ of 67108864 bytes: server stopping' \
  "$TMP/stopping.out" || fail "no cut-off line: $(cat "$TMP/stopping.out")"
pass "a get cut off by the stop is logged: $(grep big.bin "$TMP/stopping.out" | cut -d' ' -f3-)"

stop_server "$ROOT_PID"
echo "all $CHECKS checks passed"
