#!/usr/bin/env bash
# cli.sh - tcpfile-client end to end against a tcpfile-server serving a
# bucket (--store s3://BUCKET/PREFIX): put (small, and multipart), get,
# list, stat (with the digest kept as object metadata), mkdir, rm, mv (and
# mv --no-overwrite), sync (mtimes carried as metadata: a second sync
# sends nothing), and a user confined to a key prefix (--users). What the server
# says it did is checked against the objects in the store.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
start_s3 srv
grep -q "^serving \"s3://$TF_S3_BUCKET/$S3_PREFIX\"" "$TMP/srv.out" ||
  fail "the banner does not say what is served: $(cat "$TMP/srv.out")"
pass "the banner names the bucket and prefix served"
mkdir -p "$TMP/work"
cd "$TMP/work"

printf 'hello s3\n' >small.txt
"$FAULTKIT" fill big.bin $((20 << 20)) 7 # two parts of a multipart upload (16 MiB)
expect 0 "$CLIENT" -q $H "$PORT" put small.txt big.bin
# (big.bin, over 8 MiB, is completed in place: its digest is kept beside)
[[ $(s3_keys) == $'.tcpfile-tmp/d/big.bin\nbig.bin\nsmall.txt' ]] ||
  fail "objects after put: $(s3_keys)"
pass "put stores one object per file (and a large one's digest beside it), nothing else"

expect 0 "$CLIENT" -q $H "$PORT" list
[[ $(cut -f1,3 "$TMP/out" | sort) == $'20971520\tbig.bin\n9\tsmall.txt' ]] ||
  fail "list: $(cat "$TMP/out")"
pass "list shows both with their sizes"

mkdir got
expect 0 "$CLIENT" -q $H "$PORT" get big.bin small.txt --to got/
same big.bin got/big.bin && same small.txt got/small.txt || fail "get: not the same bytes"
pass "get returns the same bytes (end-to-end digest checked)"

# Pipelined gets, opened ahead on the store (TF_OPT_GET_AHEAD): a missing
# object and a large one among small ones, each answered in its turn.
names=()
for i in 01 02 03 04 05 06 07 08 09 10; do printf 'piece %s\n' $i >"p$i.txt"; names+=("p$i.txt"); done
expect 0 "$CLIENT" -q $H "$PORT" put "${names[@]}"
mkdir got2
expect 6 "$CLIENT" -q $H "$PORT" get p01.txt p02.txt p03.txt gone.txt p04.txt big.bin \
  p05.txt p06.txt p07.txt p08.txt p09.txt p10.txt --to got2/
grep -q 'gone.txt' "$TMP/err" || fail "the missing object is not named: $(cat "$TMP/err")"
[[ ! -e got2/gone.txt ]] || fail "a missing object was written"
for f in "${names[@]}" big.bin; do same "$f" "got2/$f" || fail "pipelined get: $f differs"; done
expect 0 "$CLIENT" -q $H "$PORT" rm "${names[@]}"
pass "pipelined gets: each answered in order, a missing one with its error, a large one whole"

expect 0 "$CLIENT" -q $H "$PORT" stat big.bin
read -r type size _ digest name <"$TMP/out"
[[ $type == f && $size == 20971520 && $name == big.bin && $digest =~ ^[0-9a-f]{32}$ ]] ||
  fail "stat: $(cat "$TMP/out")"
pass "stat: a file, its size and its digest ($digest)"

expect 0 "$CLIENT" -q $H "$PORT" mkdir -p a/b
expect 0 "$CLIENT" -q $H "$PORT" put -p small.txt --as a/b/c.txt
expect 0 "$CLIENT" -q $H "$PORT" mv big.bin a/big.bin
expect 0 "$CLIENT" -q $H "$PORT" ls -r
[[ $(awk '{print $1, $NF}' "$TMP/out" | sort) == \
  $'d a\nd a/b\nf a/b/c.txt\nf a/big.bin\nf small.txt' ]] || fail "ls -r: $(cat "$TMP/out")"
[[ $(s3_keys) == $'.tcpfile-tmp/d/a/big.bin\na/\na/b/\na/b/c.txt\na/big.bin\nsmall.txt' ]] ||
  fail "objects after mkdir and mv: $(s3_keys)"
expect 0 "$CLIENT" -q $H "$PORT" get a/big.bin --to got/moved.bin
same big.bin got/moved.bin || fail "the moved file changed"
pass "mkdir -p, put -p, mv (copy + delete): the tree and the objects agree"

"$CLIENT" -q $H "$PORT" rm a/b >/dev/null 2>"$TMP/err" && fail "rm removed a directory that is not empty"
grep -q 'not empty' "$TMP/err" || fail "rm of a non-empty directory: $(cat "$TMP/err")"
expect 0 "$CLIENT" -q $H "$PORT" rm -r a
[[ $(s3_keys) == small.txt ]] || fail "objects after rm -r: $(s3_keys)"
pass "rm refuses a directory that is not empty; rm -r removes the tree"

printf 'other\n' >other.txt
expect 0 "$CLIENT" -q $H "$PORT" put other.txt
"$CLIENT" -q $H "$PORT" mv other.txt small.txt --no-overwrite >/dev/null 2>"$TMP/err" &&
  fail "mv --no-overwrite replaced an existing object"
grep -q 'exists' "$TMP/err" || fail "mv --no-overwrite: $(cat "$TMP/err")"
expect 0 "$CLIENT" -q $H "$PORT" get small.txt --to got/again.txt
same small.txt got/again.txt || fail "mv --no-overwrite changed the object"
expect 0 "$CLIENT" -q $H "$PORT" rm other.txt
pass "mv --no-overwrite leaves an existing object alone"

mkdir -p tree/d1 tree/d2
for i in 1 2 3; do printf 'file %s\n' $i >"tree/d1/f$i"; done
printf 'x\n' >tree/d2/x
touch -d '2001-02-03 04:05:06 UTC' tree/d1/f2
expect 0 "$CLIENT" $H "$PORT" sync tree :backup
grep -q ': 4 files sent ' "$TMP/err" || fail "first sync: $(cat "$TMP/err")"
expect 0 "$CLIENT" -q $H "$PORT" stat backup/d1/f2
[[ $(awk '{print $3}' "$TMP/out") == 2001-02-03T04:05:06Z ]] ||
  fail "the mtime was not kept: $(cat "$TMP/out")"
expect 0 "$CLIENT" $H "$PORT" sync tree :backup
grep -q ': 0 files sent ' "$TMP/err" || fail "second sync sent again: $(cat "$TMP/err")"
rm tree/d2/x
expect 0 "$CLIENT" $H "$PORT" sync tree :backup --delete
expect 0 "$CLIENT" $H "$PORT" sync :backup pulled
diff -r tree pulled || fail "pull: the trees differ"
pass "sync: push keeps mtimes (object metadata), a second push sends nothing, --delete, pull"

# A user confined to team/bob: a key prefix, made at its first login.
expect 0 "$SERVER" --users "$TMP/users" --add-user bob --access write --dir team/bob
BOB=$(cat "$TMP/out")
stop_server "$SERVER_PID"
start_s3 users --users "$TMP/users"
TCPFILE_TOKEN=$BOB expect 0 "$CLIENT" -q --user bob $H "$PORT" put small.txt --as mine.txt
TCPFILE_TOKEN=$BOB expect 0 "$CLIENT" -q --user bob $H "$PORT" list
[[ $(cut -f3 "$TMP/out") == mine.txt ]] || fail "bob sees more than his part: $(cat "$TMP/out")"
s3_keys | grep -qx 'team/bob/mine.txt' || fail "bob's file is not under team/bob/: $(s3_keys)"
pass "a user confined to a directory is a key prefix on S3, and sees only it"

stop_server "$SERVER_PID"
[[ $(s3_keys | grep -c '^\.tcpfile-tmp/') == 0 ]] ||
  fail "staging objects left behind: $(s3_keys)"
[[ -z $("$S3TOOL" uploads "$S3_PREFIX/") ]] || fail "multipart uploads left behind"
pass "nothing of the server's staging is left in the bucket"
