#!/usr/bin/env bash
# sync.sh - sync SRC :DST (push) and sync :SRC DST (pull): the first run
# sends everything, a second sends nothing (by size and mtime, no hashing),
# 1 % changed sends that 1 %, a touched but unchanged file is compared by
# digest and not sent, --checksum finds a change that kept size and mtime,
# --delete removes what the source lacks and nothing outside DST,
# --dry-run changes nothing, and an interrupted sync run again completes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
LOG=$TMP/root.out
H=127.0.0.1
mkdir -p "$TMP/work"
cd "$TMP/work"

if ! timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" ls >/dev/null 2>"$TMP/probe"; then
  if grep -q 'feature TREE' "$TMP/probe"; then
    echo "SKIP: the server does not offer the tree yet: $(cat "$TMP/probe")"
    exit 77
  fi
fi

# sent N: the last sync's summary says N files were sent.
sent() {
  grep -q ": $1 files\\? sent " "$TMP/err" || fail "expected $1 files sent: $(cat "$TMP/err")"
}
puts_logged() { grep -c ' put "' "$LOG" || true; }
# The server's staging directories and a get's part files are no content.
same_tree() { diff -r -x '.tcpfile-tmp*' -x '*.tcpfile-part' -x '.tcpfile-part-*' "$1" "$2"; }

# 200 files in 10 directories, and one outside the synced directory.
for d in $(seq -w 0 9); do
  mkdir -p "photos/d$d"
  for f in $(seq -w 0 19); do
    printf 'photo %s/%s\n' "$d" "$f" >"photos/d$d/p$f.txt"
  done
done
printf 'keep me\n' >"$ROOT/keep.txt"

# ---- push ----------------------------------------------------------------------------
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos
sent 200
same_tree photos "$ROOT/backup/photos" || fail "first push: trees differ"
[[ $(stat -c %Y photos/d3/p07.txt) == $(stat -c %Y "$ROOT/backup/photos/d3/p07.txt") ]] ||
  fail "first push: mtime not kept"
pass "first push sends all 200 files, with their mtimes"

before=$(puts_logged)
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos
sent 0
grep -q ' 200 unchanged' "$TMP/err" || fail "second push: $(cat "$TMP/err")"
[[ $(puts_logged) == "$before" ]] || fail "second push: the server logged puts"
pass "second push sends nothing (server log: no put)"

printf 'changed, longer\n' >>photos/d1/p03.txt
printf 'PHOTO 2/11\n' >photos/d2/p11.txt # same size, new content and mtime
touch -d '2002-02-02 UTC' photos/d2/p11.txt
touch -d '2001-01-01 UTC' photos/d4/p00.txt # same bytes, only the mtime differs
before=$(puts_logged)
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos
sent 2
same_tree photos "$ROOT/backup/photos" || fail "1 % push: trees differ"
[[ $(stat -c %Y "$ROOT/backup/photos/d4/p00.txt") == $(stat -c %Y photos/d4/p00.txt) ]] ||
  fail "a touched file's mtime was not carried over"
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos
sent 0
pass "1 % changed: only those sent; a touched file compared by digest, not sent"

# --checksum: same size and mtime, different bytes.
m=$(stat -c %Y photos/d5/p05.txt)
printf 'photo 5/0X\n' >photos/d5/p05.txt
touch -d "@$m" photos/d5/p05.txt
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos
sent 0
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos --checksum
sent 1
cmp photos/d5/p05.txt "$ROOT/backup/photos/d5/p05.txt" || fail "--checksum did not send"
pass "--checksum finds what size and mtime miss"

# --dry-run: says, changes nothing.
rm -r photos/d9
printf 'new\n' >photos/new.txt
cp -a "$ROOT" "$TMP/root-before"
expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos --delete --dry-run
grep -qx $'send\t4\tnew.txt' "$TMP/out" || fail "--dry-run: no send line: $(cat "$TMP/out")"
grep -qx $'delete\t0\td9/' "$TMP/out" || fail "--dry-run: no delete line: $(cat "$TMP/out")"
same_tree "$TMP/root-before" "$ROOT" || fail "--dry-run changed the server"
pass "--dry-run prints what would change and changes nothing"

expect 0 "$CLIENT" $H "$PORT" sync photos :backup/photos --delete
same_tree photos "$ROOT/backup/photos" || fail "--delete: trees differ"
[[ -f $ROOT/keep.txt ]] || fail "--delete removed a file outside DST"
pass "--delete removes what the source lacks, inside DST only"

# ---- pull -------------------------------------------------------------------------------
expect 0 "$CLIENT" $H "$PORT" sync :backup/photos copy
sent 181
same_tree photos copy || fail "pull: trees differ"
[[ $(stat -c %Y copy/d3/p07.txt) == $(stat -c %Y "$ROOT/backup/photos/d3/p07.txt") ]] ||
  fail "pull: mtime not kept"
expect 0 "$CLIENT" $H "$PORT" sync :backup/photos copy
sent 0
printf 'local only\n' >copy/extra.txt
mkdir copy/extra.d && : >copy/extra.d/x
expect 0 "$CLIENT" $H "$PORT" sync :backup/photos copy --delete
[[ ! -e copy/extra.txt && ! -e copy/extra.d ]] || fail "pull --delete left the extras"
same_tree photos copy || fail "pull --delete: trees differ"
pass "pull: everything, then nothing; --delete removes local extras"

# Pull, 1 % changed: a file with new bytes of the same size replaces the
# local one (its mode kept); one only touched is compared, not replaced.
printf 'PHOTO 2/12\n' >"$ROOT/backup/photos/d2/p12.txt"
touch -d '2003-03-03 UTC' "$ROOT/backup/photos/d2/p12.txt" "$ROOT/backup/photos/d3/p03.txt"
chmod 600 copy/d2/p12.txt
ino=$(stat -c %i copy/d3/p03.txt)
expect 0 "$CLIENT" $H "$PORT" sync :backup/photos copy
sent 1
cmp "$ROOT/backup/photos/d2/p12.txt" copy/d2/p12.txt || fail "1 % pull: the changed file"
[[ $(stat -c %a copy/d2/p12.txt) == 600 ]] || fail "1 % pull: the replaced file lost its mode"
[[ $(stat -c %i copy/d3/p03.txt) == "$ino" ]] || fail "1 % pull: the touched file was replaced"
for f in d2/p12.txt d3/p03.txt; do
  [[ $(stat -c %Y "copy/$f") == $(stat -c %Y "$ROOT/backup/photos/$f") ]] || fail "mtime of $f"
done
same_tree "$ROOT/backup/photos" copy || fail "1 % pull: trees differ"
[[ -z $(find copy -name '.tcpfile-part*') ]] || fail "1 % pull left a temporary"
pass "1 % pull: the changed file replaced (mode kept), the touched one compared, not replaced"

# ---- interrupted, then run again ---------------------------------------------------------
# Small files go pipelined, each stored whole or not at all: a push killed
# mid-way, run again, skips those done and completes.
mkdir -p slow
for i in $(seq -w 1 40); do head -c 20000 /dev/urandom >"slow/f$i.bin"; done
"$CLIENT" -q --limit-rate 200K $H "$PORT" sync slow :slow >/dev/null 2>&1 &
pid=$!
# Killed once two files are stored (of 40, at 200K/s: 4 s in all), rather
# than after a fixed time, which a slow machine's start could outlast.
for ((i = 0; i < 200; i++)); do
  n=0
  for f in "$ROOT"/slow/f*.bin; do [[ -e $f ]] && n=$((n + 1)); done
  ((n >= 2)) && break
  sleep 0.05
done
((n >= 2 && n < 40)) || fail "the slow push had $n of 40 files stored when it was to be killed"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
expect 0 "$CLIENT" $H "$PORT" sync slow :slow
same_tree slow "$ROOT/slow" || fail "the rerun of an interrupted push did not complete it"
grep -qE ': [0-9]+ files? sent .* [1-9][0-9]* unchanged' "$TMP/err" ||
  fail "the rerun sent everything again: $(cat "$TMP/err")"
pass "an interrupted push, run again, completes and skips what was done"

# A get -r names its small files a batch at a time (256 files at most):
# killed once the first batch (256 small files) is named, while the
# second (one 3 MB file) comes, run again, it fetches only that one.
mkdir -p "$ROOT/many"
head -c $((256 * 4000)) /dev/urandom | split -b 4000 -a 3 -d - "$ROOT/many/f"
head -c 3000000 /dev/urandom >"$ROOT/many/g"
"$CLIENT" -q --limit-rate 1M $H "$PORT" get -r many manycopy >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 400; i++)); do
  n=$( (ls -A manycopy 2>/dev/null || true) | wc -l)
  ((n >= 1)) && break
  sleep 0.05
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
n=$( (ls -A manycopy 2>/dev/null || true) | wc -l) # (it may have been naming them)
((n >= 1 && n <= 256)) && [[ ! -e manycopy/g ]] ||
  fail "the slow get -r had $n files (g among them?) when killed: $(ls -A manycopy | tail -3)"
expect 0 "$CLIENT" $H "$PORT" get -r many manycopy
same_tree "$ROOT/many" manycopy || fail "the rerun of an interrupted get -r did not complete it"
grep -qE ": $((257 - n)) files? sent .* $n unchanged" "$TMP/err" ||
  fail "the rerun of get -r did not skip the $n files it had: $(cat "$TMP/err")"
pass "an interrupted get -r, run again, fetches only what it lacked"

# A big file goes on its own and resumable: a pull killed in its middle
# keeps the part, and the rerun continues it.
head -c 5000000 /dev/urandom >"$ROOT/slow/big.bin"
"$CLIENT" -q --limit-rate 1M $H "$PORT" sync :slow slowcopy >/dev/null 2>&1 &
pid=$!
# Killed once its part of big.bin holds 100 KB (of 5 MB, at 1M/s).
for ((i = 0; i < 200; i++)); do
  (($(stat -c %s slowcopy/.big.bin.tcpfile-part 2>/dev/null || echo 0) >= 100000)) && break
  sleep 0.05
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
[[ -s slowcopy/.big.bin.tcpfile-part ]] || fail "the interrupted pull kept no part of big.bin"
expect 0 "$CLIENT" $H "$PORT" sync :slow slowcopy
cmp "$ROOT/slow/big.bin" slowcopy/big.bin || fail "the resumed big.bin differs"
[[ ! -e slowcopy/.big.bin.tcpfile-part ]] || fail "the part file was left behind"
same_tree "$ROOT/slow" slowcopy || fail "the rerun of an interrupted pull did not complete it"
pass "an interrupted pull, run again, resumes the big file and completes"

# ---- usage -----------------------------------------------------------------------------
expect 2 "$CLIENT" $H "$PORT" sync photos backup
grep -q "leading ':'" "$TMP/err" || fail "sync without :: $(cat "$TMP/err")"
expect 2 "$CLIENT" $H "$PORT" sync :a :b
expect 2 "$CLIENT" $H "$PORT" sync photos :../x
pass "sync needs exactly one :REMOTE side, and a good path"

stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "server exit status $STOP_STATUS"
echo "all $CHECKS checks passed"
