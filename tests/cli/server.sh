#!/usr/bin/env bash
# server.sh - tcpfile-server as a process: the banner, ROOT defaulting to
# the current directory, SIGTERM and SIGINT (also with a client connected),
# --quiet, --max-connections, and log lines from concurrent clients.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
printf 'payload\n' >"$TMP/p.txt"

# wait_connected PORT: waits up to 5 s for a client connection to PORT to be
# established (ss), so that what follows really meets a connected client.
wait_connected() {
  local i
  if ! command -v ss >/dev/null; then
    sleep 1
    return 0
  fi
  for ((i = 0; i < 50; i++)); do
    [[ -n $(ss -Htn state established "( dport = :$1 )" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  fail "no client connected to port $1 within 5 s"
}

# ---- ROOT defaults to the current directory -------------------------------------
mkdir -p "$TMP/cwdroot"
(cd "$TMP/cwdroot" && exec "$SERVER" -b $H 0) >"$TMP/cwd.out" 2>"$TMP/cwd.err" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
wait_banner "$TMP/cwd.out" "$SERVER_PID"
grep -qxF "server up and running on IP: $H port $PORT" "$TMP/cwd.out" ||
  fail "banner: $(head -1 "$TMP/cwd.out")"
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/p.txt"
cmp "$TMP/p.txt" "$TMP/cwdroot/p.txt" || fail "without ROOT the server did not serve its cwd"
stop_server "$SERVER_PID" INT
[[ $STOP_STATUS == 0 ]] || fail "exit status $STOP_STATUS after SIGINT"
[[ $(tail -n 1 "$TMP/cwd.out") == "server stopped" ]] || fail "no \"server stopped\" after SIGINT"
[[ ! -s $TMP/cwd.err ]] || fail "the server wrote to stderr: $(cat "$TMP/cwd.err")"
pass "banner with the real port; ROOT defaults to cwd; SIGINT stops with status 0"

# ---- a stop with a client connected but idle -------------------------------------
start_server idle
# The client connects, then waits for its standard input before sending
# anything: an idle connection, which a stop closes at once.
(sleep 4; echo late) | timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - late.txt \
  >/dev/null 2>"$TMP/late.err" &
LATE_PID=$!
wait_connected "$PORT"
start=$SECONDS
stop_server "$SERVER_PID" TERM
((SECONDS - start <= 5)) || fail "stopping with an idle client took $((SECONDS - start)) s"
[[ $STOP_STATUS == 0 ]] || fail "exit status $STOP_STATUS after SIGTERM with a client"
grep -qx 'server stopped' "$TMP/idle.out" || fail "no \"server stopped\""
late_status=0
wait "$LATE_PID" || late_status=$?
[[ $late_status == 1 ]] || fail "the cut-off client exited $late_status, not 1"
[[ $(wc -l <"$TMP/late.err") == 1 ]] || fail "the cut-off client printed:
$(cat "$TMP/late.err")"
[[ ! -e $TMP/idle/late.txt ]] || fail "an upload after the stop was stored"
pass "SIGTERM with an idle client connected exits 0 promptly; the client fails:
  $(cat "$TMP/late.err")"

# ---- --quiet ------------------------------------------------------------------------
start_server quiet -q
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/p.txt" get p.txt "$TMP/q.txt" list
expect 1 "$CLIENT" -q $H "$PORT" get nope "$TMP/x"
stop_server "$SERVER_PID"
[[ $(wc -l <"$TMP/quiet.out") == 2 && $(tail -n 1 "$TMP/quiet.out") == "server stopped" ]] ||
  fail "--quiet server printed more than the banner and \"server stopped\":
$(cat "$TMP/quiet.out")"
pass "--quiet prints no request lines"

# ---- --max-connections ------------------------------------------------------------------
start_server busy --max-connections 1
(sleep 3; echo slow) | timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - slow.txt \
  >/dev/null 2>"$TMP/slow.err" &
SLOW_PID=$!
wait_connected "$PORT"
expect 1 "$CLIENT" $H "$PORT" list
stderr_one_line_with "connect to $H port $PORT" 'server busy' 'try again later'
slow_status=0
wait "$SLOW_PID" || slow_status=$?
[[ $slow_status == 0 ]] || fail "the admitted client failed: $(cat "$TMP/slow.err")"
[[ $(cat "$TMP/busy/slow.txt") == slow ]] || fail "the admitted client's upload is wrong"
grep -qE '^\S+ 127\.0\.0\.1:[0-9]+ busy - failed ' "$TMP/busy.out" ||
  fail "the refusal is not logged: $(cat "$TMP/busy.out")"
expect 0 "$CLIENT" -q $H "$PORT" list
stop_server "$SERVER_PID"
pass "--max-connections 1 refuses a second client (exit 1, server busy), then admits again"

# ---- concurrent clients: one whole line per request ---------------------------------
start_server many
CLIENT_PIDS=()
for i in 1 2 3 4 5 6 7 8; do
  head -c $((i * 100000)) /dev/urandom >"$TMP/c$i.bin"
  timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put "$TMP/c$i.bin" list \
    get "c$i.bin" "$TMP/c$i.back" list get nope "$TMP/c$i.nope" >/dev/null 2>&1 &
  CLIENT_PIDS+=($!)
done
for pid in "${CLIENT_PIDS[@]}"; do
  st=0
  wait "$pid" || st=$?
  [[ $st == 1 ]] || fail "a concurrent client exited $st, expected 1 (its last get fails)"
done
for i in 1 2 3 4 5 6 7 8; do
  cmp "$TMP/c$i.bin" "$TMP/c$i.back" || fail "concurrent round trip $i differs"
done
stop_server "$SERVER_PID"
requests=$(sed -e '1d' -e '$d' "$TMP/many.out")
[[ $(wc -l <<<"$requests") == 40 ]] || fail "expected 40 request lines:
$requests"
grep -vE "$LOG_LINE_RE" <<<"$requests" && fail "malformed (interleaved?) log lines above"
[[ $(grep -c ' get "nope" failed 0 bytes .*: no such file' <<<"$requests") == 8 ]] ||
  fail "failed requests are not logged with their reason"
pass "8 concurrent clients: 40 whole, well-formed log lines"

echo "all $CHECKS checks passed"
