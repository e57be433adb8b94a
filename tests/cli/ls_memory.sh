#!/usr/bin/env bash
# ls_memory.sh - ls -r of 100,000 entries costs the client and the server
# no more memory than ls -r of 10,000: neither side holds the listing.
#
# One server (a process of its own) serves big/ (1,000 directories of 100
# files, 101,000 entries, about 9 MB of listing) and small/ (100 of 100,
# 10,100 entries), on tmpfs where there is one. tcpfile-client ls -r of
# each runs under /usr/bin/time: its maximum RSS for big/ must be within
# 1 MiB of small/'s, and the server's peak RSS (VmHWM) after listing big/
# within 1 MiB of its peak after small/.
set -euo pipefail
PLAINTEXT=1
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

[[ -x /usr/bin/time ]] || { echo "SKIP: no /usr/bin/time"; exit 77; }
# Under AddressSanitizer freed memory waits in a quarantine (256 MiB by
# default) and would read as growth: keep it small (ignored otherwise).
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1
H=127.0.0.1
# The files on tmpfs (a tree of 110,000 empty files on a busy disk takes
# long to make and to remove); the root is a link to it, so that lib.sh's
# cleanup of TMP removes it too.
SHM=
if [[ -d /dev/shm && -w /dev/shm ]]; then
  SHM=$(mktemp -d /dev/shm/tcpfile-ls.XXXXXX)
  trap 'rm -rf "$SHM"; cleanup' EXIT
fi
ROOT=${SHM:-$TMP}/root
mkdir -p "$ROOT"
# Names of 60 bytes: a client or server that kept the listing would grow
# by several MiB.
pad=entry-with-a-name-long-enough-to-make-the-listing-weigh
make_tree() { # DIR DIRS: DIRS directories of 100 files under ROOT/DIR
  awk -v top="$ROOT/$1" -v n="$2" 'BEGIN { for (d = 0; d < n; d++) print top "/d" d }' |
    xargs mkdir -p
  awk -v top="$ROOT/$1" -v n="$2" -v pad="$pad" \
    'BEGIN { for (d = 0; d < n; d++) for (i = 0; i < 100; i++) printf "%s/d%d/%s-%05d\n", top, d, pad, i }' |
    xargs touch
}
make_tree small 100
make_tree big 1000

# One disk thread: the listing's pages are read on the disk pool, and each
# pool thread's first use grows the server by its allocator's cache (under
# ASan by up to 2 MiB): with four, the peak after the small listing
# depended on how many threads it happened to use.
"$SERVER" --plaintext -q --disk-threads 1 -b $H 0 "$ROOT" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
SERVER_PIDS+=("$SERVER_PID")
wait_banner "$TMP/server.out" "$SERVER_PID"
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status"; }

# ls_r DIR: lists DIR; sets ENTRIES and CLIENT_KIB (the client's max RSS).
ls_r() {
  timeout "$CALL_TIMEOUT" /usr/bin/time -f '%M' -o "$TMP/rss" \
    "$REAL_CLIENT" --plaintext -q $H "$PORT" ls -r "$1" >"$TMP/out" 2>"$TMP/err" ||
    fail "ls -r $1: $(cat "$TMP/err")"
  ENTRIES=$(wc -l <"$TMP/out")
  CLIENT_KIB=$(tail -1 "$TMP/rss")
}

ls_r small
[[ $ENTRIES == 10100 ]] || fail "ls -r small listed $ENTRIES entries, not 10100"
c_small=$CLIENT_KIB s_small=$(hwm)
ls_r big
[[ $ENTRIES == 101000 ]] || fail "ls -r big listed $ENTRIES entries, not 101000"
c_big=$CLIENT_KIB s_big=$(hwm)
echo "# ls -r: client max RSS $c_small KiB for 10,100 entries, $c_big KiB for 101,000;" \
  "server peak RSS $s_small KiB after the first, $s_big KiB after the second"
((c_big - c_small < 1024)) || fail "the client grew by $((c_big - c_small)) KiB with 10x the entries"
((s_big - s_small < 1024)) || fail "the server grew by $((s_big - s_small)) KiB with 10x the entries"
pass "ls -r of 101,000 entries: client $c_big KiB (10,100: $c_small), server peak $s_big KiB (after 10,100: $s_small)"
stop_server "$SERVER_PID"
