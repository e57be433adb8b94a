#!/usr/bin/env bash
# server.sh - tcpfile-server as a process: the banner, ROOT defaulting to
# the current directory, SIGTERM and SIGINT (also with a client connected),
# --quiet, --max-connections, --workers, --idle-timeout, --min-rate,
# --max-partials, and log lines from concurrent clients.
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

# held_put NAME: a client putting NAME from its standard input, a FIFO this
# script holds open as fd 4 until release_held: a connected client that
# sends nothing meanwhile. Sets HELD_PID; its stderr goes to $TMP/NAME.err.
held_put() {
  mkfifo "$TMP/$1.in"
  timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - --as "$1" <"$TMP/$1.in" \
    >/dev/null 2>"$TMP/$1.err" &
  HELD_PID=$!
  exec 4>"$TMP/$1.in"
}
# release_held TEXT: the held client's input is TEXT, then its end. (A
# subshell writes: the client may be gone, and SIGPIPE must not end the
# script.)
release_held() {
  (echo "$1" >&4) 2>/dev/null || true
  exec 4>&-
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

# ---- the banner says what is served, how, and where ---------------------------------
grep -qxF "serving \"$TMP/cwdroot\": get, list and put; a put replaces a file of the same name" \
  "$TMP/cwd.out" || fail "no serving line: $(cat "$TMP/cwd.out")"
mkdir -p "$TMP/all"
"$SERVER" 0 "$TMP/all" --no-overwrite >"$TMP/all.out" 2>"$TMP/all.err" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
wait_banner "$TMP/all.out" "$SERVER_PID"
grep -qxF "server up and running on IP: 0.0.0.0 port $PORT" "$TMP/all.out" ||
  fail "banner: $(head -1 "$TMP/all.out")"
if have_ipv6_loopback; then
  grep -qxF "also listening on IP: :: port $PORT" "$TMP/all.out" ||
    fail "the banner does not name :: too: $(cat "$TMP/all.out")"
fi
grep -qF "serving \"$TMP/all\": get, list and put; a put never replaces a file (--no-overwrite)" \
  "$TMP/all.out" || fail "no serving line for --no-overwrite: $(cat "$TMP/all.out")"
grep -qF "warning: anyone who can reach port $PORT may upload files in \"$TMP/all\"" \
  "$TMP/all.err" || fail "no warning for a server open to all: $(cat "$TMP/all.err")"
stop_server "$SERVER_PID"
start_server ro --read-only
grep -qxF "serving \"$TMP/ro\": get and list only (--read-only)" "$TMP/ro.out" ||
  fail "no read-only serving line: $(cat "$TMP/ro.out")"
[[ ! -s $TMP/ro.err ]] || fail "a read-only loopback server warned: $(cat "$TMP/ro.err")"
stop_server "$SERVER_PID"
printf 'x\n' >"$TMP/root-file"
expect 1 "$SERVER" -b $H 0 "$TMP/root-file"
stderr_one_line_with "serve \"$TMP/root-file\": it is not a directory"
mkdir -p "$TMP/unwritable"
chmod 555 "$TMP/unwritable"
if [[ ! -w $TMP/unwritable ]]; then # root may write anyway: then skip
  start_server unwritable
  grep -qF "warning: uploads will fail: \"$TMP/unwritable\" is not writable" \
    "$TMP/unwritable.err" || fail "no warning for an unwritable root: $(cat "$TMP/unwritable.err")"
  stop_server "$SERVER_PID"
else
  echo "ok - skipped the unwritable-root check: this user writes to a 555 directory"
fi
chmod 755 "$TMP/unwritable"
pass "the banner names every address, the root and its mode; warnings for open or unwritable roots"

# ---- a stop with a client connected but idle -------------------------------------
start_server idle
# The client connects, then waits for its standard input before sending
# anything: an idle connection, which a stop closes at once. Its input
# comes once the server has stopped.
held_put late.txt
LATE_PID=$HELD_PID
wait_connected "$PORT"
# Connected is not yet through the TLS handshake: a stop during it is a
# failed connect (exit 4), not a cut-off (11). Slow builds (TSan) need time.
sleep 1
start=$SECONDS
stop_server "$SERVER_PID" TERM
((SECONDS - start <= 5)) || fail "stopping with an idle client took $((SECONDS - start)) s"
[[ $STOP_STATUS == 0 ]] || fail "exit status $STOP_STATUS after SIGTERM with a client"
grep -qx 'server stopped' "$TMP/idle.out" || fail "no \"server stopped\""
release_held late
late_status=0
wait "$LATE_PID" || late_status=$?
[[ $late_status == 11 ]] || fail "the cut-off client exited $late_status, not 11"
[[ $(wc -l <"$TMP/late.txt.err") == 1 ]] || fail "the cut-off client printed:
$(cat "$TMP/late.txt.err")"
[[ ! -e $TMP/idle/late.txt ]] || fail "an upload after the stop was stored"
pass "SIGTERM with an idle client connected exits 0 promptly; the client fails:
  $(cat "$TMP/late.txt.err")"

# ---- --quiet ------------------------------------------------------------------------
start_server quiet -q
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/p.txt" get p.txt --to "$TMP/q.txt" list
expect 6 "$CLIENT" -q $H "$PORT" get nope --to "$TMP/x"
stop_server "$SERVER_PID"
[[ $(grep -cvE '^(also listening on IP|serving|server identity:|no users file:|users:) ' "$TMP/quiet.out") == 2 &&
  $(tail -n 1 "$TMP/quiet.out") == "server stopped" ]] ||
  fail "--quiet server printed more than the banner and \"server stopped\":
$(cat "$TMP/quiet.out")"
pass "--quiet prints no request lines"

# ---- --max-connections ------------------------------------------------------------------
start_server busy --max-connections 1
# The admitted client waits for its input until the second has been refused.
held_put slow.txt
SLOW_PID=$HELD_PID
wait_connected "$PORT"
expect 5 "$CLIENT" $H "$PORT" list
stderr_one_line_with "connect to $H port $PORT" 'server busy' 'try again later'
release_held slow
slow_status=0
wait "$SLOW_PID" || slow_status=$?
[[ $slow_status == 0 ]] || fail "the admitted client failed: $(cat "$TMP/slow.txt.err")"
[[ $(cat "$TMP/busy/slow.txt") == slow ]] || fail "the admitted client's upload is wrong"
grep -qE '^\S+ 127\.0\.0\.1:[0-9]+ busy - failed ' "$TMP/busy.out" ||
  fail "the refusal is not logged: $(cat "$TMP/busy.out")"
expect 0 "$CLIENT" -q $H "$PORT" list
stop_server "$SERVER_PID"
pass "--max-connections 1 refuses a second client (exit 5, server busy), then admits again"

# ---- --workers, --idle-timeout, --min-rate: help and usage errors -------------------
expect 0 "$SERVER" --help
for opt in '--workers N' '--idle-timeout SECONDS' '--min-rate BYTES' '--max-partials N'; do
  grep -qE -- "^ +$opt( |\$)" "$TMP/out" || fail "--help does not list $opt"
done
# -b $H: should a bad value be taken, the server listens on loopback only
# (and the check fails on its timeout).
for bad in '--workers 1025' '--workers -1' '--workers 2K' \
  '--idle-timeout abc' '--idle-timeout -1' '--idle-timeout 1e3' '--idle-timeout .5' \
  '--idle-timeout 1.' '--idle-timeout 99999999999999999999' \
  '--min-rate 5X' '--min-rate -1' '--min-rate 2T' \
  '--max-partials -1' '--max-partials 1000001' '--max-partials x'; do
  read -r opt value <<<"$bad"
  expect 2 "$SERVER" "$opt" "$value" -b $H 0 "$TMP" </dev/null
  stderr_one_line_with "$opt" "\"$value\"" "see tcpfile-server --help"
done
pass "--workers, --idle-timeout, --min-rate, --max-partials are in --help; bad values exit 2 with one line"

# ---- --workers ----------------------------------------------------------------------
# threads_of PID: the number of threads of process PID (empty without /proc).
threads_of() {
  sed -n 's/^Threads:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null || true
}
start_server w1 --workers 1 --min-rate 64K --max-partials 3
head -c 300000 /dev/urandom >"$TMP/w1/w.bin"
expect 0 "$CLIENT" -q $H "$PORT" get w.bin --to "$TMP/w1.back" list
cmp "$TMP/w1/w.bin" "$TMP/w1.back" || fail "--workers 1: the get differs"
grep -qF 'w.bin' "$TMP/out" || fail "--workers 1: the listing lacks w.bin: $(cat "$TMP/out")"
w1_threads=$(threads_of "$SERVER_PID")
stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "--workers 1: exit status $STOP_STATUS after SIGTERM"
declare -A wn_threads
for n in 2 4; do
  start_server "w$n" --workers "$n"
  expect 0 "$CLIENT" -q $H "$PORT" list
  wn_threads[$n]=$(threads_of "$SERVER_PID")
  stop_server "$SERVER_PID"
done
# Having served a request, tf_server_run has started every worker. 2 and 4
# are compared rather than 1 and 4: a sanitizer (TSan) adds a thread of its
# own once the program starts its first one, which --workers 1 never does.
if [[ -n $w1_threads && -n ${wn_threads[2]} && -n ${wn_threads[4]} ]]; then
  ((wn_threads[4] - wn_threads[2] == 2 && wn_threads[2] > w1_threads)) ||
    fail "--workers 4 runs ${wn_threads[4]} threads, 2 runs ${wn_threads[2]}, 1 runs $w1_threads"
fi
pass "--workers 1 (with --min-rate 64K) serves a get and a list; --workers 4 has 2 more threads than 2"

# ---- --idle-timeout -------------------------------------------------------------------
# idle_connection LIMIT: opens a raw connection to $PORT, sends a client
# hello (16 bytes: "TCPF", versions 1..1, no features) and then nothing,
# and reads until the server closes it or LIMIT seconds pass. Sets IDLE_RC
# (0: closed by the server, 124: still open), IDLE_MS (how long it took)
# and IDLE_BYTES (what the server sent: its 28-byte hello). A connection
# that has not sent its hello is under the I/O timeout instead, hence the
# hello. (Raw plaintext bytes: these servers run --plaintext.)
idle_connection() {
  local t0 t1
  { exec 3<>"/dev/tcp/$H/$PORT"; } 2>/dev/null || fail "cannot connect to $H port $PORT"
  printf 'TCPF\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00' >&3
  t0=${EPOCHREALTIME//[.,]/}
  IDLE_RC=0
  timeout "$1" cat <&3 >"$TMP/idle.bin" || IDLE_RC=$?
  t1=${EPOCHREALTIME//[.,]/}
  exec 3<&-
  IDLE_MS=$(((t1 - t0) / 1000))
  IDLE_BYTES=$(wc -c <"$TMP/idle.bin")
}
start_server it --plaintext --idle-timeout 0.3
idle_connection 5
[[ $IDLE_BYTES == 28 ]] || fail "--idle-timeout 0.3: the server sent $IDLE_BYTES bytes, not a hello"
[[ $IDLE_RC == 0 ]] || fail "--idle-timeout 0.3: an idle connection still open after 5 s"
((IDLE_MS >= 250 && IDLE_MS <= 2000)) ||
  fail "--idle-timeout 0.3: an idle connection was closed after $IDLE_MS ms"
idle_ms=$IDLE_MS
expect 0 "$REAL_CLIENT" --plaintext -q $H "$PORT" list
stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "--idle-timeout 0.3: exit status $STOP_STATUS after SIGTERM"
start_server it0 --plaintext --idle-timeout 0
idle_connection 1.5
[[ $IDLE_RC == 124 && $IDLE_BYTES == 28 ]] ||
  fail "--idle-timeout 0: an idle connection was closed after $IDLE_MS ms"
stop_server "$SERVER_PID"
pass "--idle-timeout 0.3 closes an idle connection after $idle_ms ms; 0 keeps it open"

# ---- concurrent clients: one whole line per request ---------------------------------
start_server many
CLIENT_PIDS=()
for i in 1 2 3 4 5 6 7 8; do
  head -c $((i * 100000)) /dev/urandom >"$TMP/c$i.bin"
  timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put "$TMP/c$i.bin" list \
    get "c$i.bin" --to "$TMP/c$i.back" list get nope --to "$TMP/c$i.nope" >/dev/null 2>&1 &
  CLIENT_PIDS+=($!)
done
for pid in "${CLIENT_PIDS[@]}"; do
  st=0
  wait "$pid" || st=$?
  [[ $st == 6 ]] || fail "a concurrent client exited $st, expected 6 (its last get fails)"
done
for i in 1 2 3 4 5 6 7 8; do
  cmp "$TMP/c$i.bin" "$TMP/c$i.back" || fail "concurrent round trip $i differs"
done
stop_server "$SERVER_PID"
requests=$(sed -e '1d' -e '$d' "$TMP/many.out" |
  grep -vE '^(also listening on IP|serving|server identity:|no users file:|users:) ')
[[ $(wc -l <<<"$requests") == 40 ]] || fail "expected 40 request lines:
$requests"
grep -vE "$LOG_LINE_RE" <<<"$requests" && fail "malformed (interleaved?) log lines above"
[[ $(grep -c ' get "nope" failed 0 bytes .*: no such file' <<<"$requests") == 8 ]] ||
  fail "failed requests are not logged with their reason"
pass "8 concurrent clients: 40 whole, well-formed log lines"

echo "all $CHECKS checks passed"
