#!/usr/bin/env bash
# careful.sh - what must never lose or expose data (issue 11): several
# sources are several files (globs), renaming is explicit (--as, --to);
# a replaced file keeps its mode; --no-clobber and read-only files.
# (interrupt.sh has the rest: signals and the server's cut-off log.)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
start_server root
ROOT=$TMP/root
LOG=$TMP/root.out
ROOT_PID=$SERVER_PID
mkdir -p "$TMP/w"
cd "$TMP/w"

# ---- 1. several sources are several files ------------------------------------
printf 'AAA\n' >a.jpg
printf 'BBBB\n' >b.jpg
printf 'CCCCC\n' >c.jpg
printf 'old b on the server\n' >"$ROOT/b.jpg"
expect 0 "$CLIENT" -q $H "$PORT" put ./*.jpg
cmp a.jpg "$ROOT/a.jpg" || fail "put *.jpg: a.jpg not uploaded"
cmp b.jpg "$ROOT/b.jpg" || fail "put *.jpg: b.jpg not uploaded as itself (a.jpg over it?)"
cmp c.jpg "$ROOT/c.jpg" || fail "put *.jpg: the third file was not uploaded"
pass "put with a glob of three files uploads each under its own name"

mkdir -p down
printf 'local b, about to be replaced by the remote b\n' >down/b.jpg
(cd down && expect 0 "$CLIENT" -q $H "$PORT" get a.jpg b.jpg)
cmp "$ROOT/a.jpg" down/a.jpg || fail "get a.jpg b.jpg: a.jpg not downloaded"
cmp "$ROOT/b.jpg" down/b.jpg || fail "get a.jpg b.jpg: local b.jpg is not the remote b.jpg"
mkdir -p into
expect 0 "$CLIENT" -q $H "$PORT" get a.jpg b.jpg c.jpg --to into/
for f in a b c; do cmp "$ROOT/$f.jpg" "into/$f.jpg" || fail "get ... --to into/: $f.jpg"; done
expect 2 "$CLIENT" -q $H "$PORT" get a.jpg b.jpg --to not-a-dir
stderr_one_line_with 'several NAMEs needs --to DIRECTORY/'
pass "get of several names saves each under its own name (./, --to DIR/)"

expect 0 "$CLIENT" -q $H "$PORT" put a.jpg --as renamed.jpg get renamed.jpg --to r.jpg
cmp a.jpg "$ROOT/renamed.jpg" || fail "put LOCAL --as NAME"
cmp a.jpg r.jpg || fail "get NAME --to PATH"
expect 0 "$CLIENT" -q $H "$PORT" get a.jpg --to -
cmp a.jpg "$TMP/out" || fail "get NAME --to - did not write to stdout"
pass "renaming is explicit: put LOCAL --as NAME, get NAME --to PATH, --to -"

# The old positional rename is never taken as one: the second word is a
# source, and a missing one stops everything before a byte is sent.
before=$(wc -l <"$LOG")
expect 6 "$CLIENT" $H "$PORT" put a.jpg new-name.jpg
stderr_one_line_with 'put "new-name.jpg": no such local file' 'put a.jpg --as new-name.jpg'
[[ $(wc -l <"$LOG") == "$before" ]] || fail "a put with a missing source sent something"
expect 2 "$CLIENT" $H "$PORT" get a.jpg "$TMP/elsewhere.jpg"
stderr_one_line_with 'get NAME --to PATH'
expect 2 "$CLIENT" $H "$PORT" put a.jpg b.jpg --as x.jpg
stderr_one_line_with '--as NAME renames a single LOCAL'
expect 2 "$CLIENT" $H "$PORT" put -
stderr_one_line_with 'needs --as NAME'
pass "no positional rename: a missing second source exits 6 with the --as form"

# ---- 2. modes, --no-clobber, read-only files, hard links -----------------------
printf 'secret v1\n' >"$ROOT/secret.txt"
printf 'private local\n' >secret.txt
chmod 600 secret.txt
expect 0 "$CLIENT" -q $H "$PORT" get secret.txt
cmp "$ROOT/secret.txt" secret.txt || fail "get over a 600 file did not replace it"
[[ $(stat -c %a secret.txt) == 600 ]] || fail "get widened a 600 file to $(stat -c %a secret.txt)"
printf 'shared\n' >"$ROOT/group.txt"
chmod 640 "$ROOT/group.txt"
printf 'new content\n' >group.txt
chmod 644 group.txt
expect 0 "$CLIENT" -q $H "$PORT" put group.txt
cmp group.txt "$ROOT/group.txt" || fail "put over a 640 file did not replace it"
[[ $(stat -c %a "$ROOT/group.txt") == 640 ]] ||
  fail "the server's put changed 640 to $(stat -c %a "$ROOT/group.txt")"
(umask 077 && expect 0 "$CLIENT" -q $H "$PORT" get a.jpg --to fresh.jpg)
[[ $(stat -c %a fresh.jpg) == 600 ]] || fail "a new file ignored the umask: $(stat -c %a fresh.jpg)"
pass "replacing keeps the mode (get 600, put 640); a new file gets the umask's"

printf 'keep me\n' >kept.jpg
expect 12 "$CLIENT" $H "$PORT" get a.jpg --to kept.jpg --no-clobber
stderr_one_line_with 'exists; not replaced (--no-clobber)' 'local'
[[ $(cat kept.jpg) == 'keep me' ]] || fail "--no-clobber replaced the file"
expect 12 "$CLIENT" --no-clobber $H "$PORT" put a.jpg
stderr_one_line_with 'the server has "a.jpg" already'
printf 'ro\n' >ro.jpg
chmod 444 ro.jpg
expect 12 "$CLIENT" $H "$PORT" get a.jpg --to ro.jpg
stderr_one_line_with 'is read-only' '--force'
[[ $(cat ro.jpg) == ro ]] || fail "a read-only file was replaced without --force"
expect 0 "$CLIENT" -q $H "$PORT" get a.jpg --to ro.jpg -f
cmp a.jpg ro.jpg || fail "--force did not replace the read-only file"
[[ $(stat -c %a ro.jpg) == 444 ]] || fail "--force lost the mode 444: $(stat -c %a ro.jpg)"
printf 'linked\n' >linked.jpg
ln linked.jpg other-link.jpg
expect 0 "$CLIENT" $H "$PORT" get a.jpg --to linked.jpg
grep -qF 'had 1 other hard link' "$TMP/err" || fail "no note about the hard link: $(cat "$TMP/err")"
[[ $(cat other-link.jpg) == linked ]] || fail "the other hard link changed"
pass "--no-clobber refuses (exit 12); a 444 file needs --force and stays 444; links noted"

# ---- which side failed --------------------------------------------------------------
# A source that shrinks while it is uploaded is a local failure (exit 7),
# not the server's; nothing is stored.
head -c 16000000 /dev/zero >shrinking.bin
"$CLIENT" --limit-rate 8M $H "$PORT" put shrinking.bin 2>"$TMP/shrink.err" &
pid=$!
wait_bytes "$ROOT/.tcpfile-tmp" # the upload is under way
truncate -s 1000000 shrinking.bin
st=0
wait "$pid" || st=$?
[[ $st == 7 ]] || fail "a shrinking source: exit $st, not 7: $(cat "$TMP/shrink.err")"
grep -qF 'put "shrinking.bin": local: file input/output error' "$TMP/shrink.err" ||
  fail "a shrinking source is not said to be local: $(cat "$TMP/shrink.err")"
[[ ! -e $ROOT/shrinking.bin ]] || fail "a put whose source shrank was stored"
pass "a source that shrinks mid-put is a local I/O failure (exit 7)"

stop_server "$ROOT_PID"
echo "all $CHECKS checks passed"
