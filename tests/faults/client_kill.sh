#!/usr/bin/env bash
# client_kill.sh - a client killed with SIGKILL in the middle of a put.
#
# A 200 MiB file is uploaded over an existing name eight times, and the
# client is killed at a random moment of each upload: every other run it is
# the CLI at full speed, otherwise faultkit throttled to 256 MiB/s, so the
# kills spread over the whole transfer (connect, payload, trailer, commit).
# After each kill the name must hold one whole version - the old content or,
# if the kill came after the server had everything, the new one - never a
# mix or a prefix; the server must remove the cut upload's temporary, list
# nothing but the real files, and go on serving.
#
# (The CLI spools a pipe on standard input to learn its size before it
# sends anything, so a slow pipe would throttle nothing: hence faultkit.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

SIZE=${FAULT_PUT_SIZE:-$((200 << 20))}
RUNS=${FAULT_RUNS:-8}
RATE=256 # MiB/s for the throttled runs
H=127.0.0.1

"$FAULTKIT" fill "$TMP/A" "$SIZE" 1
"$FAULTKIT" fill "$TMP/B" "$SIZE" 2
printf 'small and steady\n' >"$TMP/small"

start_server root
ROOT=$TMP/root
LOG=$TMP/root.out

t0=$(now_ms)
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/A" --as data.bin
full_ms=$(($(now_ms) - t0))
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/small" --as small.txt
same "$TMP/A" "$ROOT/data.bin" || fail "the first upload is not whole"
pass "a full put of $((SIZE >> 20)) MiB takes $full_ms ms"

cur=A
cut=0 completed=0 before_request=0
min_bytes=-1 max_bytes=0
for ((run = 1; run <= RUNS; run++)); do
  if [[ $cur == A ]]; then new=B; else new=A; fi
  log_lines=$(wc -l <"$LOG")
  if ((run % 2)); then
    how=cli
    window=$((full_ms * 12 / 10 + 20))
    "$CLIENT" -q $H "$PORT" put "$TMP/$new" --as data.bin >/dev/null 2>&1 &
  else
    how=throttled
    window=$((SIZE * 1000 / (RATE << 20) + 50))
    "$FAULTKIT" put $H "$PORT" "$TMP/$new" data.bin --rate $RATE >/dev/null 2>&1 &
  fi
  pid=$!
  BG_PIDS+=("$pid")
  delay=$(random_below "$window")
  sleep_ms "$delay"
  kill_bg "$pid"
  # The server notices the closed connection and drops the temporary.
  wait_no_temps "$ROOT"

  if same "$TMP/$cur" "$ROOT/data.bin"; then
    outcome="old content intact"
  elif same "$TMP/$new" "$ROOT/data.bin"; then
    outcome="new content whole (the kill came after the upload completed)"
    completed=$((completed + 1))
    cur=$new
  else
    fail "run $run ($how, killed after $delay ms): data.bin is neither version whole:" \
      "$(stat -c %s "$ROOT/data.bin") bytes"
  fi
  # What the server saw of the upload: its log line for this put (written
  # just after the reply, so give a completed one a moment).
  for ((i = 0; i < 20; i++)); do
    line=$(tail -n +$((log_lines + 1)) "$LOG" | grep ' put "data.bin" ' || true)
    [[ -n $line || $outcome == "old content intact" ]] && break
    sleep 0.1
  done
  if [[ -z $line ]]; then
    before_request=$((before_request + 1))
    seen="killed before its request reached the server"
  elif [[ $line == *' failed '* ]]; then
    [[ $line =~ \ failed\ ([0-9]+)\ bytes ]] || fail "unexpected log line: $line"
    got=${BASH_REMATCH[1]}
    cut=$((cut + 1))
    ((min_bytes < 0 || got < min_bytes)) && min_bytes=$got
    ((got > max_bytes)) && max_bytes=$got
    seen="cut after $got of $SIZE bytes"
    [[ $outcome == "old content intact" ]] || fail "run $run: a failed put changed data.bin"
  else
    seen="the server stored it"
  fi

  # Still serving: the listing shows only the real files, a get works.
  names=$(listed "$PORT" | tr '\n' ' ')
  [[ $names == "data.bin small.txt " ]] || fail "run $run: the listing is \"$names\""
  expect 0 "$CLIENT" -q $H "$PORT" get small.txt --to "$TMP/small.got"
  same "$TMP/small" "$TMP/small.got" || fail "run $run: small.txt came back different"
  rm -f "$TMP/small.got"
  pass "run $run ($how, SIGKILL after $delay ms, $seen): $outcome"
done

# The surviving version, fetched whole through the server.
expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/final"
same "$TMP/final" "$TMP/$cur" ||
  fail "data.bin does not come back as its last whole version"
pass "the last whole version comes back intact"
stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "the server exited with $STOP_STATUS"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
range="none"
((cut > 0)) && range="$(mib "$min_bytes")-$(mib "$max_bytes") MiB"
echo "faults: client-kill: $RUNS runs survived ($cut cut mid-upload after $range of" \
  "$((SIZE >> 20)) MiB, $completed completed before the kill, $before_request killed" \
  "before the request), bytes lost 0"
