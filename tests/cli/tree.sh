#!/usr/bin/env bash
# tree.sh - the tree commands against a real server: mkdir [-p], put into a
# directory (and -p), stat, ls [-r], mv [--no-overwrite], rm [-r], a tree
# round trip (put -r then get -r: same bytes, same mtimes), and the hostile
# cases: a symbolic link in a local source, a destination that is a file,
# a local destination whose directory is a link out of it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
H=127.0.0.1
mkdir -p "$TMP/work"
cd "$TMP/work"

# A server without the tree (the library's server side still to come)
# answers every tree command with a protocol error: skip, visibly.
if ! timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" ls >/dev/null 2>"$TMP/probe"; then
  if grep -q 'feature TREE' "$TMP/probe"; then
    echo "SKIP: the server does not offer the tree yet: $(cat "$TMP/probe")"
    exit 77
  fi
fi

iso() { date -u -d "@$(stat -c %Y "$1")" +%Y-%m-%dT%H:%M:%SZ; }

# ---- mkdir, put into a directory, stat, ls ------------------------------------------
expect 0 "$CLIENT" -q $H "$PORT" mkdir -p a/b/c
[[ -d $ROOT/a/b/c ]] || fail "mkdir -p a/b/c made no directories"
expect 12 "$CLIENT" -q $H "$PORT" mkdir a
expect 0 "$CLIENT" -q $H "$PORT" mkdir -p a/b
pass "mkdir -p makes parents and takes an existing directory; mkdir of one that exists: 12"

printf 'hello tree\n' >x.txt
expect 0 "$CLIENT" -q $H "$PORT" put x.txt --as a/b/x.txt
cmp x.txt "$ROOT/a/b/x.txt" || fail "put --as a/b/x.txt"
expect 6 "$CLIENT" $H "$PORT" put x.txt --as nodir/x.txt
grep -q 'server: no such file.*put -p makes the missing directories' "$TMP/err" ||
  fail "put into a missing directory: $(cat "$TMP/err")"
[[ ! -e $ROOT/nodir ]] || fail "put without -p made the directory"
expect 0 "$CLIENT" -q $H "$PORT" put -p x.txt --as nodir/deep/x.txt
cmp x.txt "$ROOT/nodir/deep/x.txt" || fail "put -p did not store nodir/deep/x.txt"
pass "put into a directory; a missing one is 6 (no such file) unless -p"

expect 0 "$CLIENT" $H "$PORT" stat a/b/x.txt
[[ $(cut -f1,2,3,5 "$TMP/out") == "f	11	$(iso "$ROOT/a/b/x.txt")	a/b/x.txt" ]] ||
  fail "stat of a file: $(cat "$TMP/out")"
expect 0 "$CLIENT" $H "$PORT" stat a
[[ $(cut -f1,2,5 "$TMP/out") == "d	0	a" ]] || fail "stat of a directory: $(cat "$TMP/out")"
expect 6 "$CLIENT" $H "$PORT" stat nope
pass "stat: TYPE SIZE MTIME DIGEST PATH; a missing path is 6"

# ---- conditional puts ------------------------------------------------------------------
expect 0 "$CLIENT" -q $H "$PORT" put -p x.txt --as cond/x.txt
expect 0 "$CLIENT" $H "$PORT" stat cond/x.txt
digest=$(cut -f4 "$TMP/out")
[[ $digest =~ ^[0-9a-f]{32}$ ]] || fail "stat printed no digest: $(cat "$TMP/out")"
printf 'second\n' >y.txt
expect 12 "$CLIENT" $H "$PORT" put y.txt --as cond/x.txt --if-absent
cmp x.txt "$ROOT/cond/x.txt" || fail "put --if-absent replaced a file"
expect 0 "$CLIENT" -q $H "$PORT" put y.txt --as cond/fresh.txt --if-absent
cmp y.txt "$ROOT/cond/fresh.txt" || fail "put --if-absent of a new name"
expect 0 "$CLIENT" -q $H "$PORT" put y.txt --as cond/x.txt --if-match "$digest"
cmp y.txt "$ROOT/cond/x.txt" || fail "put --if-match with the right digest did not replace"
expect 12 "$CLIENT" $H "$PORT" put x.txt --as cond/x.txt --if-match "$digest"
grep -q 'stat cond/x.txt' "$TMP/err" || fail "put --if-match conflict: $(cat "$TMP/err")"
cmp y.txt "$ROOT/cond/x.txt" || fail "put --if-match with a stale digest replaced the file"
expect 2 "$CLIENT" $H "$PORT" put y.txt --if-match 12345
expect 2 "$CLIENT" $H "$PORT" get y.txt --if-absent
expect 2 "$CLIENT" $H "$PORT" put -r src dst --if-absent
expect 0 "$CLIENT" -q $H "$PORT" rm -r cond
pass "put --if-absent and --if-match DIGEST (from stat): exit 12 and nothing replaced when they fail"

expect 0 "$CLIENT" $H "$PORT" ls
[[ $(cut -f1,4 "$TMP/out" | tr '\n' ' ') == "d	a d	nodir " ]] ||
  fail "ls of the root: $(cat "$TMP/out")"
expect 0 "$CLIENT" $H "$PORT" ls a -r
# (Cut before sorting: the mtimes may differ by a second between entries.)
cut -f1,2,4 "$TMP/out" | LC_ALL=C sort >"$TMP/ls-r"
printf 'd\t0\tb\nd\t0\tb/c\nf\t11\tb/x.txt\n' | cmp - "$TMP/ls-r" || fail "ls a -r: $(cat "$TMP/out")"
expect 0 "$CLIENT" -H $H "$PORT" ls a/b
grep -q 'x\.txt$' "$TMP/out" && grep -q 'c/$' "$TMP/out" || fail "ls -H: $(cat "$TMP/out")"
expect 0 "$CLIENT" $H "$PORT" list a -r # the issue's spelling: list [DIR] [-r]
cut -f1,2,4 "$TMP/out" | LC_ALL=C sort | cmp - "$TMP/ls-r" || fail "list a -r: $(cat "$TMP/out")"
pass "ls [DIR] [-r] (and list DIR, list -r): TYPE SIZE MTIME PATH, -H for people"

# ---- mv, rm ---------------------------------------------------------------------------
expect 0 "$CLIENT" -q $H "$PORT" get a/b/x.txt --to got.txt
cmp x.txt got.txt || fail "get a/b/x.txt --to got.txt"
expect 0 "$CLIENT" -q $H "$PORT" mv a/b/x.txt a/moved.txt
[[ -f $ROOT/a/moved.txt && ! -e $ROOT/a/b/x.txt ]] || fail "mv a/b/x.txt a/moved.txt"
printf 'other\n' >o.txt
expect 0 "$CLIENT" -q $H "$PORT" put o.txt --as a/other.txt
expect 12 "$CLIENT" $H "$PORT" mv a/moved.txt a/other.txt --no-overwrite
grep -q 'not replaced (--no-overwrite)' "$TMP/err" || fail "mv --no-overwrite: $(cat "$TMP/err")"
cmp x.txt "$ROOT/a/moved.txt" && cmp o.txt "$ROOT/a/other.txt" ||
  fail "mv --no-overwrite changed a file"
expect 0 "$CLIENT" -q $H "$PORT" mv a/moved.txt a/other.txt
cmp x.txt "$ROOT/a/other.txt" && [[ ! -e $ROOT/a/moved.txt ]] || fail "mv over a file"
# The server's log names both paths of a rename (the refused one too).
grep -q ' rename "a/b/x.txt" -> "a/moved.txt" ok ' "$TMP/root.out" &&
  grep -q ' rename "a/moved.txt" -> "a/other.txt" failed ' "$TMP/root.out" ||
  fail "the server's log lacks both names of a rename: $(grep rename "$TMP/root.out")"
pass "mv FROM TO; --no-overwrite keeps both and exits 12"

expect 0 "$CLIENT" -q $H "$PORT" rm a/other.txt
[[ ! -e $ROOT/a/other.txt ]] || fail "rm a/other.txt"
expect 1 "$CLIENT" $H "$PORT" rm a
grep -q 'rm -r removes it' "$TMP/err" || fail "rm of a full directory: $(cat "$TMP/err")"
[[ -d $ROOT/a/b/c ]] || fail "rm of a full directory removed something"
expect 0 "$CLIENT" $H "$PORT" rm -r a
[[ ! -e $ROOT/a ]] || fail "rm -r a left $(find "$ROOT/a")"
grep -q 'rm -r "a": 3 removed' "$TMP/err" || fail "rm -r summary: $(cat "$TMP/err")"
pass "rm PATH; rm of a full directory says rm -r; rm -r removes bottom up"

# ---- a tree round trip: same bytes, same mtimes --------------------------------------------
mkdir -p src/d1/d2 src/empty src/d3
for i in 1 2 3; do
  head -c $((i * 1000)) /dev/urandom >"src/f$i.bin"
  printf 'n%s\n' "$i" >"src/d1/n$i.txt"
done
head -c 5000000 /dev/urandom >src/d1/d2/big.bin # a big one goes on its own
: >src/d3/empty.txt
touch -d '2001-02-03 04:05:06 UTC' src/f1.bin src/d1/n2.txt src/d1/d2/big.bin
ln -s /etc/passwd src/d1/link
expect 0 "$CLIENT" $H "$PORT" put -r src tree/src
grep -qF 'skipped "d1/link": a symbolic link' "$TMP/err" ||
  fail "put -r: no warning for the link: $(cat "$TMP/err")"
[[ ! -e $ROOT/tree/src/d1/link ]] || fail "put -r sent a symbolic link"
rm src/d1/link
diff -r -x '.tcpfile-tmp*' src "$ROOT/tree/src" || fail "put -r: the server's tree differs"
for f in f1.bin f2.bin d1/n2.txt d1/d2/big.bin d3/empty.txt; do
  [[ $(stat -c %Y "src/$f") == $(stat -c %Y "$ROOT/tree/src/$f") ]] || fail "put -r: mtime of $f"
done
[[ -d $ROOT/tree/src/empty ]] || fail "put -r: the empty directory"
expect 0 "$CLIENT" $H "$PORT" get -r tree/src back
diff -r src back || fail "get -r: the local tree differs"
for f in f1.bin f2.bin d1/n2.txt d1/d2/big.bin; do
  [[ $(stat -c %Y "src/$f") == $(stat -c %Y "back/$f") ]] || fail "get -r: mtime of $f"
done
pass "put -r then get -r: byte-identical, mtimes kept, empty directories too, links skipped"

# ---- hostile destinations --------------------------------------------------------------------
printf 'mine\n' >afile
expect 1 "$CLIENT" $H "$PORT" get -r tree/src afile
grep -q 'a file here, not a directory' "$TMP/err" || fail "get -r into a file: $(cat "$TMP/err")"
[[ $(cat afile) == mine ]] || fail "get -r changed the file it was given as a directory"
expect 0 "$CLIENT" -q $H "$PORT" put x.txt --as plain.txt
expect 1 "$CLIENT" $H "$PORT" put -r src plain.txt
grep -q 'a file on the server, not a directory' "$TMP/err" ||
  fail "put -r onto a file: $(cat "$TMP/err")"
cmp x.txt "$ROOT/plain.txt" || fail "put -r changed the file it was given as a directory"
# A directory of the local destination that is a link out of it: refused.
mkdir -p outside dst
ln -s ../outside dst/d1
status=0
timeout "$CALL_TIMEOUT" "$CLIENT" $H "$PORT" get -r tree/src dst >"$TMP/out" 2>"$TMP/err" ||
  status=$?
((status != 0)) || fail "get -r through a linked directory succeeded"
grep -q 'symbolic link' "$TMP/err" || fail "get -r through a link: $(cat "$TMP/err")"
[[ -z $(ls -A outside) ]] || fail "get -r wrote through the link: $(ls -A outside)"
cmp src/f1.bin dst/f1.bin || fail "get -r: the files beside the link were not fetched"
pass "a destination that is a file, on either side, and a linked directory are refused"

# A link planted as a file of the destination, where the tree has a new
# file: that file is refused (never written through, the link kept), the
# others arrive, with their mtimes.
mkdir -p dst2
ln -s ../outside/planted dst2/f2.bin
status=0
timeout "$CALL_TIMEOUT" "$CLIENT" $H "$PORT" get -r tree/src dst2 >"$TMP/out" 2>"$TMP/err" ||
  status=$?
((status != 0)) || fail "get -r over a planted link succeeded"
grep -q 'f2.bin.*symbolic link' "$TMP/err" || fail "get -r over a planted link: $(cat "$TMP/err")"
[[ ! -e outside/planted && -L dst2/f2.bin ]] || fail "get -r wrote through or replaced the link"
cmp src/f1.bin dst2/f1.bin && cmp src/d1/n1.txt dst2/d1/n1.txt ||
  fail "get -r: the files beside the planted link were not fetched"
[[ $(stat -c %Y src/f1.bin) == $(stat -c %Y dst2/f1.bin) ]] || fail "get -r: mtime of f1.bin"
pass "a link planted as a file of the destination is refused, the rest fetched"

stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "server exit status $STOP_STATUS"

# ---- the server's path limits ---------------------------------------------------------------
start_server limits --max-depth 2 --max-path 12
expect 5 "$CLIENT" $H "$PORT" put -p x.txt --as a/b/c
grep -q 'more than 2 levels' "$TMP/err" || fail "--max-depth 2: $(cat "$TMP/err")"
expect 5 "$CLIENT" $H "$PORT" put -p x.txt --as a/bbbbbbbbbbbb
grep -q 'at most 12 bytes' "$TMP/err" || fail "--max-path 12: $(cat "$TMP/err")"
expect 0 "$CLIENT" -q $H "$PORT" put -p x.txt --as a/b
cmp x.txt "$TMP/limits/a/b" || fail "a path within the limits"
expect 2 "$SERVER" --max-depth 0 "$TMP/limits"
expect 2 "$SERVER" --max-path 4097 "$TMP/limits"
stop_server "$SERVER_PID"
pass "--max-depth and --max-path: deeper or longer paths refused (5), 0 and 4097 are usage errors"
echo "all $CHECKS checks passed"
