#!/usr/bin/env bash
# tree_put_kill.sh - the server killed with SIGKILL while the CLI pushes a
# tree (feature TREE: sync DIR :DST, and put -r), then started again.
#
# The tree has sub-directories, small files (sent pipelined, tf_put_many)
# and a large one (sent first, on its own, resumable). Each run writes a new
# version of every file (other sizes, other bytes, another mtime) plus a
# new sub-directory, pushes it throttled, and kills the server at a random
# moment. Then, with the server dead:
#  - every file under DST is the previous version or the new one of its
#    path, whole (compared byte for byte), never a mix or a part;
#  - nothing else is under DST: each name there is a file or directory of
#    one of the two versions;
# and, with the server started again:
#  - the same command completes the tree (DST equals the source), and
#    sync continues where it stopped: it sends exactly the files not yet
#    new (a file stored before the kill carries its new mtime, and is
#    not sent again).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

RUNS=${FAULT_RUNS:-3}
SMALL=${FAULT_TREE_SMALL:-24}
H=127.0.0.1
ROOT=$TMP/root
DST=$ROOT/dst
RATE=5M # bytes per second: a whole push takes about 1.3 s
cd "$TMP"

# version DIR V: the tree's version V in DIR (random bytes, other sizes than
# V-1's), every mtime V days after 2001.
version() {
  local dir=$1 v=$2 i d
  rm -rf "$dir"
  for ((i = 0; i < SMALL; i++)); do
    d=$dir/d$((i % 3))/e$((i % 2))
    mkdir -p "$d"
    head -c $((1 + (i * 7919 + v * 3331) % 100000)) /dev/urandom >"$d/s$i"
  done
  mkdir -p "$dir/big" "$dir/new$v/x"
  head -c $(((4 << 20) + v * 4096)) /dev/urandom >"$dir/big/b1"
  head -c $((100 + v)) /dev/urandom >"$dir/new$v/x/n"
  find "$dir" -type f -exec touch -d "@$((978307200 + v * 86400))" {} +
}

# names DIR: every path below DIR, files and directories, one per line.
names() {
  (cd "$1" && find . -mindepth 1 ! -path './.tcpfile-tmp*' | sort)
}

# digests DIR: "MD5 ./PATH" for every file below DIR (one md5sum for all).
digests() {
  (cd "$1" && find . -type f ! -path './.tcpfile-tmp*' -print0 | xargs -0r md5sum)
}

# check_whole RUN OLD NEW: every name under DST is in OLD or NEW, and every
# file holds one of its versions whole (by digest); sets fresh to how many
# hold NEW's.
fresh=0
check_whole() {
  local run=$1 old=$2 new=$3 p sum
  local -A olds=() news=()
  while read -r sum p; do olds[$p]=$sum; done < <(digests "$old")
  while read -r sum p; do news[$p]=$sum; done < <(digests "$new")
  fresh=0
  while read -r p; do
    [[ -e $old/$p || -e $new/$p ]] || fail "run $run: $p is under DST but in neither version"
  done < <(names "$DST")
  while read -r sum p; do
    if [[ ${news[$p]:-} == "$sum" ]]; then
      fresh=$((fresh + 1))
    elif [[ ${olds[$p]:-} != "$sum" ]]; then
      fail "run $run: $p holds neither version whole ($(stat -c %s "$DST/$p") bytes)"
    fi
  done < <(digests "$DST")
}

# big_stored: how many puts of the large file the server logged as stored.
big_stored() { grep -c ' put "dst/big/b1" ok ' "$TMP/root.out" || true; }

start_server root
version v0 0
t0=$(now_ms)
expect 0 "$CLIENT" -q --limit-rate $RATE $H "$PORT" sync v0 :dst
push_ms=$(($(now_ms) - t0))
diff -r -x '.tcpfile-tmp*' v0 "$DST" >/dev/null || fail "the first push differs"
cp -a v0 prev
total_files=$((SMALL + 2))
resumed=0

for ((run = 1; run <= RUNS; run++)); do
  version cur "$run"
  # Runs 3, 6, ... put -r (which sends every file), the others sync.
  if ((run % 3)); then cmd=(sync cur :dst); else cmd=(put -r cur dst); fi
  big_before=$(big_stored)
  "$CLIENT" --limit-rate $RATE $H "$PORT" "${cmd[@]}" >"$TMP/run.out" 2>"$TMP/run.err" &
  pid=$!
  BG_PIDS+=("$pid")
  # Killed at a random moment (scaled to how long the first push took on
  # this machine): runs 1, 3, ... while the large file goes (it goes
  # first), runs 2, 4, ... once the server logged it, among the small ones.
  if ((run % 2)); then
    for ((i = 0; i < 1000; i++)); do # the large file's upload has begun
      (($(temps "$ROOT" up-) + $(temps "$ROOT" resume-) > 0)) && break
      running "$pid" || break
      sleep 0.01
    done
    at=$(random_below $((push_ms / 2)))
  else
    for ((i = 0; i < 1000; i++)); do
      (($(big_stored) > big_before)) && break
      running "$pid" || break
      sleep 0.01
    done
    at=$(random_below 30)
  fi
  sleep_ms "$at"
  kill_server "$SERVER_PID"
  reap_bg "$pid"
  check_whole "$run" prev cur
  was_fresh=$fresh
  ((BG_STATUS != 0 || fresh == total_files)) ||
    fail "run $run: the client said success with $fresh of $total_files files new"

  restart_server root
  [[ $(temps "$ROOT" up-) == 0 ]] || fail "run $run: stale temporaries survived a restart"
  expect 0 "$CLIENT" $H "$PORT" "${cmd[@]}"
  # The tree holds the new version; the old versions' own names remain
  # (neither command deletes).
  { diff -rq -x '.tcpfile-tmp*' cur "$DST" || true; } | { grep -v "^Only in $DST" || true; } >"$TMP/diff"
  [[ ! -s $TMP/diff ]] || fail "run $run: the rerun did not complete the tree: $(cat "$TMP/diff")"
  if [[ ${cmd[0]} == sync ]]; then
    want=$((total_files - was_fresh))
    grep -q ": $want files\\? sent " "$TMP/err" ||
      fail "run $run: $was_fresh files were new before the rerun, so $want should be sent: $(cat "$TMP/err")"
  fi
  # A large file cut in the middle continues: the rerun moved less of it.
  grep -qE " put \"dst/big/b1\" ok [0-9]+ bytes" "$TMP/root.out" &&
    ! grep -q " put \"dst/big/b1\" ok $(stat -c %s cur/big/b1) bytes" "$TMP/root.out" &&
    resumed=$((resumed + 1))
  echo "ok $run - ${cmd[0]} killed $at ms in (client exit $BG_STATUS): $was_fresh of $total_files new," \
    "the rest old, all whole; the rerun completed"
  # The next run's old version: this one over the earlier versions' names.
  cp -a cur/. prev/
done
stop_server "$SERVER_PID"
echo "faults: tree-put-kill: $RUNS runs, every name whole after each kill; $resumed reruns resumed a large file"
