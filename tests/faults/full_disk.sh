#!/usr/bin/env bash
# full_disk.sh - a full disk on either side, as an 8 MiB tmpfs mounted by
# the test (root only; anything else skips with exit 77, which ctest shows
# as skipped).
#
# Server side (the served root is the tmpfs): a 16 MiB upload over an
# existing name, of a new name, and resumable, each fails with TF_ENOSPC
# (the CLI: exit 1, "no space" in its message); the temporary is gone and
# the space free again; the old file keeps its content; the server goes on
# serving (a small put and a get work). With the disk filled by another
# file, even a small upload gets TF_ENOSPC while gets still work.
# Client side (the download directory is the tmpfs): a 16 MiB get fails
# with TF_ENOSPC, leaves no partial file, and an existing file is untouched.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1
DISK_KIB=8192
BIG=$((16 << 20))

skip() {
  echo "faults: full-disk: SKIPPED: $*"
  exit 77
}
[[ $(id -u) == 0 ]] || skip "mounting a tmpfs needs root (uid $(id -u))"

# mount_tmpfs DIR: an 8 MiB tmpfs at DIR, unmounted on exit.
mount_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o size=${DISK_KIB}k,mode=0755 tmpfs "$1" 2>"$TMP/mount.err" ||
    skip "cannot mount a tmpfs: $(cat "$TMP/mount.err")"
  MOUNTS+=("$1")
}

# used_kib DIR: what the file system under DIR has in use.
used_kib() {
  df -k --output=used "$1" | tail -n 1 | tr -d ' '
}

# expect_no_space KIND COMMAND...: the command fails, saying so.
expect_no_space() {
  local kind=$1
  shift
  expect "${NO_SPACE_STATUS:-1}" "$@"
  if [[ $kind == cli ]]; then
    grep -q 'no space' "$TMP/err" || fail "no \"no space\" in: $(cat "$TMP/err")"
  else
    grep -q 'TF_ENOSPC' "$TMP/err" || fail "not TF_ENOSPC: $(cat "$TMP/err")"
  fi
}

"$FAULTKIT" fill "$TMP/big" $BIG 21
"$FAULTKIT" fill "$TMP/old" $((1 << 20)) 22
printf 'a small file\n' >"$TMP/small"

# ---- server side ---------------------------------------------------------
SDISK=$TMP/sdisk
mount_tmpfs "$SDISK"
start_server sdisk
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/old" --as keep.bin
base=$(used_kib "$SDISK")
enospc=0

NO_SPACE_STATUS=8 expect_no_space cli "$CLIENT" -q $H "$PORT" put "$TMP/big" --as keep.bin
enospc=$((enospc + 1))
wait_no_temps "$SDISK"
same "$TMP/old" "$SDISK/keep.bin" || fail "keep.bin lost its old content"
pass "CLI put of 16 MiB over keep.bin: exit 1, no space; keep.bin intact, temporary gone"

expect_no_space kit "$FAULTKIT" put $H "$PORT" "$TMP/big" keep.bin
expect_no_space kit "$FAULTKIT" put $H "$PORT" "$TMP/big" new.bin
expect_no_space kit "$FAULTKIT" put $H "$PORT" "$TMP/big" resumable.bin --resume
enospc=$((enospc + 3))
wait_no_temps "$SDISK"
[[ $(temps "$SDISK" resume-) == 0 ]] ||
  fail "a resumable upload that ran out of space kept its temporary (the disk stays full)"
[[ ! -e $SDISK/new.bin && ! -e $SDISK/resumable.bin ]] || fail "a failed upload left a file"
same "$TMP/old" "$SDISK/keep.bin" || fail "keep.bin lost its old content"
now=$(used_kib "$SDISK")
((now <= base + 64)) || fail "the space is not free again: $now KiB used, $base before"
pass "TF_ENOSPC for an overwrite, a new name and a resumable upload;" \
  "$now KiB in use as before ($base)"

# Still serving: a small put and gets.
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/small" --as small.txt get small.txt --to "$TMP/small.got" \
  get keep.bin --to "$TMP/keep.got"
if ! same "$TMP/small" "$TMP/small.got" || ! same "$TMP/old" "$TMP/keep.got"; then
  fail "the server does not serve correctly after the full disk"
fi
names=$(listed "$PORT" | tr '\n' ' ')
[[ $names == "keep.bin small.txt " ]] || fail "the listing is \"$names\""
pass "after the failures a small put, two gets and a list work"

# A disk filled to the last byte by something else.
dd if=/dev/zero of="$SDISK/.filler" bs=64k 2>/dev/null || true
expect_no_space kit "$FAULTKIT" put $H "$PORT" "$TMP/small" tiny.txt
enospc=$((enospc + 1))
wait_no_temps "$SDISK"
expect 0 "$CLIENT" -q $H "$PORT" get keep.bin --to "$TMP/keep2.got"
same "$TMP/old" "$TMP/keep2.got" ||
  fail "keep.bin does not come back whole from the full disk"
rm -f "$SDISK/.filler"
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/small" --as tiny.txt
same "$TMP/small" "$SDISK/tiny.txt" || fail "tiny.txt is not whole"
pass "a disk full to the last byte: a 13-byte put gets TF_ENOSPC, gets work;" \
  "once freed, puts work"
stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "the server exited with $STOP_STATUS"

# ---- client side ---------------------------------------------------------
CDISK=$TMP/cdisk
mount_tmpfs "$CDISK"
start_server src
cp "$TMP/big" "$TMP/src/big.bin"
cp "$TMP/small" "$TMP/src/small.txt"
cp "$TMP/old" "$CDISK/big.bin"
cbase=$(used_kib "$CDISK")

NO_SPACE_STATUS=7 expect_no_space cli "$CLIENT" -q $H "$PORT" get big.bin --to "$CDISK/big.bin"
expect_no_space kit "$FAULTKIT" get $H "$PORT" big.bin "$CDISK/big.bin"
expect_no_space kit "$FAULTKIT" get $H "$PORT" big.bin "$CDISK/other.bin"
NO_SPACE_STATUS=7 expect_no_space cli "$CLIENT" -q $H "$PORT" get big.bin --to "$CDISK/"
enospc=$((enospc + 4))
same "$TMP/old" "$CDISK/big.bin" || fail "the existing big.bin was changed by failed gets"
[[ ! -e $CDISK/other.bin ]] || fail "a failed get left other.bin"
leftovers=$(find "$CDISK" -mindepth 1 ! -name big.bin | wc -l)
[[ $leftovers == 0 ]] || fail "failed gets left files behind: $(ls -la "$CDISK")"
(($(used_kib "$CDISK") <= cbase + 64)) || fail "the client's space is not free again"
pass "gets of 16 MiB into 8 MiB: TF_ENOSPC, no partial file, big.bin untouched"

# A resumable get keeps what it has under its hidden part name, by design
# (that is what a later --resume continues from); the target is untouched.
expect_no_space kit "$FAULTKIT" get $H "$PORT" big.bin "$CDISK/big.bin" --resume
enospc=$((enospc + 1))
same "$TMP/old" "$CDISK/big.bin" || fail "a resumable get changed the existing big.bin"
[[ -e $CDISK/.big.bin.tcpfile-part ]] || fail "the resumable get kept no part file"
rm -f "$CDISK/.big.bin.tcpfile-part"
pass "a resumable get keeps its part file (hidden), big.bin untouched"

# Room again: the same connection-less client works.
expect 0 "$CLIENT" -q $H "$PORT" get small.txt --to "$CDISK/small.txt"
same "$TMP/small" "$CDISK/small.txt" || fail "small.txt is not whole"
pass "a small get into the tmpfs works"
stop_server "$SERVER_PID"

echo "faults: full-disk: $enospc transfers ran out of space, each TF_ENOSPC with the old" \
  "file intact and no temporary left, bytes lost 0"
