#!/usr/bin/env bash
# server_kill.sh - the server killed with SIGKILL in the middle of a put,
# then started again on the same root.
#
# Three kinds of run take turns: a plain upload over an existing name, a
# plain upload of a new name, and a resumable upload (TF_OPT_RESUME) over an
# existing name. Each upload is held (faultkit --hold-at) at a random byte
# between 1 MiB and three quarters of the payload; the server is killed while
# the client waits there, so the kill lands mid-payload however loaded the
# machine is (a timed kill could come after a slow machine's upload ended).
# Then:
#  - the name holds its old content whole, or does not exist - never part;
#  - the client got TF_ENET, not a false success;
#  - a plain upload left no temporary (staged unnamed, O_TMPFILE, it died
#    with the server), and a restarted server has none (up-*) but kept the
#    resumable one, and the same upload continues from the bytes
#    the dead server had written (faultkit prints where it started) and
#    ends with the whole new content, verified by the end-to-end checksum.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

SIZE=${FAULT_PUT_SIZE:-$((100 << 20))}
RUNS=${FAULT_RUNS:-6}
RATE=256 # MiB/s: the hold point comes within 0.3 s
H=127.0.0.1
ROOT=$TMP/root

"$FAULTKIT" fill "$TMP/A" "$SIZE" 11
"$FAULTKIT" fill "$TMP/B" "$SIZE" 12

start_server root
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/A" --as data.bin
cur=A

swept=0 resumed=0 min_kept=-1 max_kept=0
for ((run = 1; run <= RUNS; run++)); do
  if [[ $cur == A ]]; then new=B; else new=A; fi
  kind=$((run % 3))
  case $kind in
  1) name=data.bin prefix=up- args=() what="plain put over data.bin" ;;
  2) name=fresh-$run.bin prefix=up- args=() what="plain put of a new name" ;;
  0) name=data.bin prefix=resume- args=(--resume) what="resumable put over data.bin" ;;
  esac
  rm -f "$TMP/fk.out" # the background shell truncates it only when it gets to run
  hold_at=$(((1 << 20) + $(random_below $((SIZE * 3 / 4 - (1 << 20))))))
  "$FAULTKIT" put $H "$PORT" "$TMP/$new" "$name" --rate $RATE --hold-at "$hold_at" \
    "${args[@]}" >"$TMP/fk.out" 2>"$TMP/fk.err" &
  pid=$!
  BG_PIDS+=("$pid")
  wait_for_line "$pid" '^held ' "its hold point (mid-payload)"
  kill_server "$SERVER_PID"
  kill -USR1 "$pid" 2>/dev/null || true
  reap_bg "$pid"
  [[ $BG_STATUS == 1 ]] ||
    fail "run $run: the client exited with $BG_STATUS when the server died:
$(cat "$TMP/fk.err")"
  grep -q 'TF_ENET' "$TMP/fk.err" ||
    fail "run $run: no TF_ENET for the client: $(cat "$TMP/fk.err")"

  # Dead server, files on disk: the name is untouched, the debris is there.
  if [[ $name == data.bin ]]; then
    same "$TMP/$cur" "$ROOT/data.bin" || fail "run $run: data.bin lost its old content"
  else
    [[ ! -e $ROOT/$name ]] || fail "run $run: $name exists after a cut upload"
  fi
  # A plain upload is staged in place, unnamed (O_TMPFILE): it died with
  # the server. A resumable one is kept in the staging directory.
  stale=$(temps "$ROOT" "$prefix") want=1
  [[ $prefix == up- ]] && want=0
  [[ $stale == "$want" ]] || fail "run $run: expected $want $prefix temporary, found $stale"
  kept=0
  if [[ $prefix == resume- ]]; then
    kept=$(stat -c %s "$ROOT"/.tcpfile-tmp/resume-*)
  fi

  restart_server root
  [[ $(temps "$ROOT" up-) == 0 ]] ||
    fail "run $run: stale up-* temporaries survived a restart"
  if [[ $prefix == up- ]]; then
    swept=$((swept + 1))
    detail="no temporary left"
  else
    [[ $(temps "$ROOT" resume-) == 1 ]] || fail "run $run: the resumable temporary is gone"
    # The same upload again, unthrottled: it must continue where it stopped.
    expect 0 "$FAULTKIT" put $H "$PORT" "$TMP/$new" "$name" --resume
    first=$(awk '$1 == "first" { print $2 }' "$TMP/out")
    [[ $first == "$kept" ]] ||
      fail "run $run: the resumed upload started at $first, not at the $kept bytes kept"
    ((first > 0)) || fail "run $run: nothing was kept to resume from"
    same "$TMP/$new" "$ROOT/data.bin" || fail "run $run: the resumed upload is not whole"
    [[ $(temps "$ROOT" resume-) == 0 ]] ||
      fail "run $run: the resumable temporary outlived it"
    cur=$new
    resumed=$((resumed + 1))
    ((min_kept < 0 || kept < min_kept)) && min_kept=$kept
    ((kept > max_kept)) && max_kept=$kept
    detail="resumed from byte $kept, whole"
  fi
  names=$(listed "$PORT" | tr '\n' ' ')
  [[ $names == "data.bin " ]] || fail "run $run: the listing is \"$names\""
  pass "run $run ($what, SIGKILL after $((hold_at >> 10)) KiB of the payload): $detail"
done

expect 0 "$CLIENT" -q $H "$PORT" get data.bin --to "$TMP/final"
same "$TMP/final" "$TMP/$cur" || fail "data.bin does not come back whole"
pass "data.bin comes back as its last whole version"
stop_server "$SERVER_PID"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "faults: server-kill: $RUNS runs survived ($swept left no temporary," \
  "$resumed uploads resumed from $(mib "$min_kept")-$(mib "$max_kept") MiB of" \
  "$((SIZE >> 20)) MiB), bytes lost 0"
