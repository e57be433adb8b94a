#!/usr/bin/env bash
# stream.sh - `put -` from a pipe streams (feature STREAM): `tar c DIR |
# tcpfile-client HOST PORT put - --as d.tar` stores the archive whole with
# no local temporary file (TMPDIR points nowhere writable, so spooling would
# fail), and over the server's --max-upload it is refused mid-stream and
# nothing is stored.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

start_server root
ROOT=$TMP/root
H=127.0.0.1

mkdir -p "$TMP/dir/sub"
head -c 5000000 /dev/urandom >"$TMP/dir/big.bin"
printf 'hello\n' >"$TMP/dir/sub/a.txt"
tar -C "$TMP" -cf "$TMP/want.tar" dir

# A pipe, and no place to spool: only streaming can store it.
tar -C "$TMP" -cf - dir |
  TMPDIR=$TMP/no-such-dir timeout "$CALL_TIMEOUT" "$CLIENT" -q $H "$PORT" put - --as d.tar ||
  fail "tar c dir | put - --as d.tar failed"
cmp "$TMP/want.tar" "$ROOT/d.tar" || fail "the streamed archive differs"
mkdir -p "$TMP/x"
tar -C "$TMP/x" -xf "$ROOT/d.tar"
cmp "$TMP/dir/big.bin" "$TMP/x/dir/big.bin" || fail "the archive's file differs"
pass "tar c dir | put - --as d.tar streams, without a local temporary"

# Over the server's limit: refused mid-stream (exit 5, as any refusal of
# the server), nothing stored, nothing left in its staging directory.
start_server small --max-upload 1M
got=0
head -c 8000000 /dev/urandom |
  TMPDIR=$TMP/no-such-dir timeout "$CALL_TIMEOUT" "$CLIENT" $H "$PORT" put - --as huge.bin \
    2>"$TMP/err" || got=$?
[[ $got == 5 ]] || fail "an 8 MB stream over a 1 MiB limit: exit $got, not 5: $(cat "$TMP/err")"
grep -q 'limit' "$TMP/err" || fail "the refusal does not mention the limit: $(cat "$TMP/err")"
[[ ! -e $TMP/small/huge.bin ]] || fail "a stream over the limit was stored"
[[ -z $(ls -A "$TMP/small/.tcpfile-tmp" 2>/dev/null) ]] ||
  fail "the staging directory kept: $(ls -A "$TMP/small/.tcpfile-tmp")"
pass "a stream over --max-upload is refused (exit $got), nothing stored"

echo "all $CHECKS checks passed"
