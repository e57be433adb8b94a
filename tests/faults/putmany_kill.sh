#!/usr/bin/env bash
# putmany_kill.sh - the server killed with SIGKILL in the middle of a
# pipelined batch of puts (tf_put_many, NO_GOAHEAD), then started again.
#
# COUNT files are put in one batch over an earlier version of each. In odd
# runs the client holds (faultkit --hold-after) once a random item's payload
# has gone out, with earlier puts in flight and later ones not sent, and
# the server is killed meanwhile; in even runs the server is killed at a
# random moment of the flowing batch (during the group commit of some
# puts, the receiving of others, or the answers). Then:
#  - every name holds a whole version, the old or the new, never a mix or
#    a part (the payloads of the puts in flight were being written when the
#    server died);
#  - every item the client saw stored ("ok") holds the new version;
#  - nothing else is in the root (no temporary under a name of its own);
#  - the client got TF_ENET for the batch, never a false success;
#  - a restarted server has swept the stale temporaries, and the same batch
#    run again stores every new version.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

COUNT=${FAULT_PUTMANY_COUNT:-80}
RUNS=${FAULT_RUNS:-2}
H=127.0.0.1
ROOT=$TMP/root

# Two versions of each file, of other sizes (1 byte to 96 KiB, some over
# the server's small-file path), written by one faultkit. The checks below
# compare MD5 digests taken by one md5sum per directory, not a cmp per
# file: the script's cost was its thousand processes.
mkdir -p "$TMP/v0" "$TMP/v1"
fills=()
for ((i = 0; i < COUNT; i++)); do
  printf -v f 'f%04d' "$i"
  fills+=("$TMP/v0/$f" $((1 + (i * 7919) % 98304)) "$i")
  fills+=("$TMP/v1/$f" $((1 + (i * 104729) % 98304)) $((i + 100000)))
done
"$FAULTKIT" fill "${fills[@]}"

# digests ARRAY DIR: ARRAY[fNNNN] = the MD5 of DIR/fNNNN, for every such file.
# (SC2034: the arrays are filled and read through namerefs.)
# shellcheck disable=SC2034
digests() {
  local -n into=$1
  local sum path
  into=()
  while read -r sum path; do
    into[${path##*/}]=$sum
  done < <(md5sum -- "$2"/f[0-9][0-9][0-9][0-9])
}
# shellcheck disable=SC2034
declare -A V0 V1 NOW
digests V0 "$TMP/v0"
digests V1 "$TMP/v1"

start_server root
expect 0 "$FAULTKIT" putmany $H "$PORT" "$TMP/v0" "$COUNT"
cur=v0

for ((run = 1; run <= RUNS; run++)); do
  if [[ $cur == v0 ]]; then new=v1; else new=v0; fi
  hold=$((COUNT / 4 + $(random_below $((COUNT / 2)))))
  rm -f "$TMP/fk.out"
  if ((run % 2)); then
    "$FAULTKIT" putmany $H "$PORT" "$TMP/$new" "$COUNT" --hold-after "$hold" \
      >"$TMP/fk.out" 2>"$TMP/fk.err" &
    pid=$!
    BG_PIDS+=("$pid")
    wait_for_line "$pid" '^held ' "its hold point"
    how="SIGKILL with item $hold sent"
  else
    "$FAULTKIT" putmany $H "$PORT" "$TMP/$new" "$COUNT" >"$TMP/fk.out" 2>"$TMP/fk.err" &
    pid=$!
    BG_PIDS+=("$pid")
    wait_for_line "$pid" '^connected$' "its connection"
    delay=$((10 + $(random_below 250)))
    sleep_ms "$delay"
    hold=$COUNT
    how="SIGKILL ${delay} ms into the batch"
  fi
  kill_server "$SERVER_PID"
  # Only a held batch waits for SIGUSR1; a flowing one has no handler, and
  # the signal would kill it (exit 138) instead of the dead server ending it.
  if ((run % 2)); then kill -USR1 "$pid" 2>/dev/null || true; fi
  reap_bg "$pid"
  if ((run % 2)) || [[ $BG_STATUS != 0 ]]; then
    [[ $BG_STATUS == 1 ]] ||
      fail "run $run: the batch exited with $BG_STATUS when the server died: $(cat "$TMP/fk.err")"
    grep -q 'TF_ENET' "$TMP/fk.err" || fail "run $run: no TF_ENET: $(cat "$TMP/fk.err")"
  fi

  declare -n NEW=V${new#v} CUR=V${cur#v} # the digests of the new and the current version
  stored=0 old=0 fresh=0
  digests NOW "$ROOT"
  for ((i = 0; i < COUNT; i++)); do
    printf -v f 'f%04d' "$i"
    if [[ ${NOW[$f]-} == "${NEW[$f]}" ]]; then
      fresh=$((fresh + 1))
    elif [[ ${NOW[$f]-} == "${CUR[$f]}" ]]; then
      old=$((old + 1))
    else
      fail "run $run: $f holds neither version whole ($(stat -c %s "$ROOT/$f") bytes)"
    fi
  done
  while read -r word i; do
    [[ $word == ok ]] || continue
    printf -v f 'f%04d' "$i"
    [[ ${NOW[$f]-} == "${NEW[$f]}" ]] || fail "run $run: $f was reported stored but is not new"
    stored=$((stored + 1))
  done <"$TMP/fk.out"
  ((stored <= hold + 1)) || fail "run $run: $stored stored, past the hold at item $hold"
  # Nothing but the files (and the staging directory): an upload staged in
  # place (O_TMPFILE) has no name until it is published.
  extra=$(find "$ROOT" -mindepth 1 -maxdepth 1 ! -name 'f[0-9][0-9][0-9][0-9]' ! -name .tcpfile-tmp)
  [[ -z $extra ]] || fail "run $run: more than the files in the root: $extra"

  restart_server root
  [[ $(temps "$ROOT" up-) == 0 ]] || fail "run $run: stale temporaries survived a restart"
  expect 0 "$FAULTKIT" putmany $H "$PORT" "$TMP/$new" "$COUNT"
  digests NOW "$ROOT"
  for ((i = 0; i < COUNT; i++)); do
    printf -v f 'f%04d' "$i"
    [[ ${NOW[$f]-} == "${NEW[$f]}" ]] || fail "run $run: $f is not new after the batch again"
  done
  unset -n NEW CUR
  cur=$new
  pass "run $run ($how): $fresh new and $old old, all whole" \
    "($stored answered as stored); the batch again stores all $COUNT"
done
stop_server "$SERVER_PID"
echo "faults: putmany-kill: $RUNS runs, every name whole after each kill"
