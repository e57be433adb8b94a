#!/usr/bin/env bash
# server_kill_mv.sh - the server killed with SIGKILL while a client renames
# (feature TREE: a file between two directories, a directory with its
# files), then started again on the same root.
#
# Each run starts a client renaming as fast as it can (faultkit mvloop:
# "d1/x" <-> "d2/x" and "a" <-> "b", NOREPLACE), waits until a random number
# of renames has been answered, and kills the server. Then:
#  - the file is under exactly one of its two names, whole;
#  - the directory is under exactly one of its two names, with every file
#    in it whole;
#  - the restarted server serves the tree (a get of d1/x, compared).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

RUNS=${FAULT_RUNS:-6}
H=127.0.0.1
ROOT=$TMP/root

start_server root
mkdir -p "$ROOT/d1" "$ROOT/d2" "$ROOT/a"
"$FAULTKIT" fill "$ROOT/d1/x" $((1 << 20)) 21
"$FAULTKIT" fill "$TMP/x.want" $((1 << 20)) 21
for i in 1 2 3; do
  "$FAULTKIT" fill "$ROOT/a/f$i" $((64 << 10)) $((30 + i))
  "$FAULTKIT" fill "$TMP/f$i.want" $((64 << 10)) $((30 + i))
done

# whole WANT FILE: FILE exists and holds exactly WANT's bytes.
whole() { [[ -f $2 ]] && cmp -s "$1" "$2"; }

total=0
for ((run = 1; run <= RUNS; run++)); do
  target=$((1 + $(random_below 200)))
  rm -f "$TMP/mv.out"
  "$FAULTKIT" mvloop $H "$PORT" >"$TMP/mv.out" 2>"$TMP/mv.err" &
  pid=$!
  BG_PIDS+=("$pid")
  for ((i = 0; i < 2000; i++)); do
    done_n=$(grep -c '^renamed ' "$TMP/mv.out" 2>/dev/null || true)
    ((done_n >= target)) && break
    running "$pid" || fail "the renames stopped early: $(cat "$TMP/mv.err")"
    sleep 0.005
  done
  kill_server "$SERVER_PID"
  reap_bg "$pid"
  ((BG_STATUS == 0)) || fail "mvloop did not end with a network error: $(cat "$TMP/mv.err")"
  n=$(grep -c '^renamed ' "$TMP/mv.out" || true)
  total=$((total + n))

  # The file: under one name, whole.
  if [[ -e $ROOT/d1/x && -e $ROOT/d2/x ]]; then fail "run $run: x under both names"; fi
  if whole "$TMP/x.want" "$ROOT/d1/x"; then x=d1/x
  elif whole "$TMP/x.want" "$ROOT/d2/x"; then x=d2/x
  else fail "run $run: the file is lost or not whole after $n renames"; fi
  # The directory: under one name, every file in it whole.
  if [[ -e $ROOT/a && -e $ROOT/b ]]; then fail "run $run: the directory under both names"; fi
  if [[ -d $ROOT/a ]]; then dir=a; elif [[ -d $ROOT/b ]]; then dir=b
  else fail "run $run: the directory is lost after $n renames"; fi
  for i in 1 2 3; do
    whole "$TMP/f$i.want" "$ROOT/$dir/f$i" || fail "run $run: $dir/f$i not whole"
  done
  # Put things back where the loop starts, then serve again.
  [[ $x == d1/x ]] || mv "$ROOT/d2/x" "$ROOT/d1/x"
  [[ $dir == a ]] || mv "$ROOT/b" "$ROOT/a"
  restart_server root
  "$FAULTKIT" get $H "$PORT" d1/x "$TMP/x.got" >/dev/null 2>"$TMP/get.err" ||
    fail "run $run: get d1/x from the restarted server: $(cat "$TMP/get.err")"
  cmp -s "$TMP/x.want" "$TMP/x.got" || fail "run $run: the restarted server sent another x"
  echo "ok $run - killed after $n renames (target $target): x at $x, the directory at $dir, whole"
done
stop_server "$SERVER_PID"
echo "server_kill_mv: $RUNS runs, $total renames, nothing lost or torn"
