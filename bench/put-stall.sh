#!/usr/bin/env bash
# put-stall.sh - how long a worker's slow storage work holds up its other
# connections. A tcpfile-server with one worker serves DIR (on a disk, not
# tmpfs, so that fsync means something); one client gets small files one
# at a time while another connection makes the worker do slow work:
#   put   a durable upload of BIG_FILE (as DIR/up.bin, removed afterwards);
#   hash  a resumed get of BIG_FILE copied to DIR/cold.bin, at its end (the
#         client holds the whole file as its partial), so that the server
#         hashes all of it and sends nothing; dropped from the page cache
#         first (posix_fadvise DONTNEED, by dd), so that the hash reads the
#         disk.
# The figures that matter are the small gets' p99 and max (ms), which
# include any time the worker spent waiting for the disk.
#
#   bench/put-stall.sh [-b BUILD_DIR] [-n REPS] [-p PORT] [-m put|hash|both] DIR BIG_FILE
#
# DIR must hold files s00000..s00099 (any small content). Build with
# -DTF_BUILD_BENCH=ON first (bench/compare.sh does, into build-bench).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(dirname "$HERE")/build-bench
REPS=3
PORT=27990
MODE=both
while getopts b:n:p:m: o; do
  case $o in
    b) BUILD=$OPTARG ;;
    n) REPS=$OPTARG ;;
    p) PORT=$OPTARG ;;
    m) MODE=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: $0 [-b BUILD_DIR] [-n REPS] [-p PORT] [-m put|hash|both] DIR BIG_FILE" >&2; exit 2; }
DIR=$1 BIG=$2
BUILD=$(cd "$BUILD" && pwd) # the hash mode runs the client from another directory
SERVER=$BUILD/examples/tcpfile-server BENCH=$BUILD/bench/tcpfile-bench
CLIENT=$BUILD/examples/tcpfile-client
for f in "$SERVER" "$BENCH" "$CLIENT"; do [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }; done

"$SERVER" -q --plaintext --workers 1 --bind 127.0.0.1 "$PORT" "$DIR" >/dev/null 2>&1 &
SP=$!
out=$(mktemp)
trap 'kill $SP 2>/dev/null; rm -f "$DIR/up.bin" "$DIR/cold.bin" "$out"' EXIT
sleep 0.5

# Small gets in the background while "$@" runs; prints their p99 and max.
during() {
  "$BENCH" --host 127.0.0.1 --port "$PORT" small --count 50000 --files 100 >"$out" 2>&1 &
  local gp=$!
  sleep 0.3
  "$@"
  wait "$gp"
  grep -o 'p99_ms=[0-9.]*\|max_ms=[0-9.]*' "$out" | tr '\n' ' '
}

put_once() {
  "$BENCH" --host 127.0.0.1 --port "$PORT" put "$BIG" up.bin |
    sed -n 's/.* mbps=\([0-9.]*\).*/put \1 MB\/s;/p' >"$out.what"
}

hash_once() {
  local t0 t1 tmp
  tmp=$(mktemp -d)
  cp "$BIG" "$tmp/.cold.bin.tcpfile-part" # the client's partial: all of it
  t0=$(date +%s.%N)
  (cd "$tmp" && "$CLIENT" -q --plaintext --resume 127.0.0.1 "$PORT" get cold.bin)
  t1=$(date +%s.%N)
  rm -rf "$tmp"
  echo "hash of a cold file $(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }") s;" >"$out.what"
}

for ((i = 1; i <= REPS; i++)); do
  if [ "$MODE" = put ] || [ "$MODE" = both ]; then
    sync
    r=$(during put_once)
    echo "run $i: $(cat "$out.what") small gets meanwhile: $r"
    rm -f "$DIR/up.bin"
  fi
  if [ "$MODE" = hash ] || [ "$MODE" = both ]; then
    # A new file each time (a remembered digest would skip the hash), out
    # of the page cache.
    rm -f "$DIR/cold.bin"
    cp "$BIG" "$DIR/cold.bin"
    sync "$DIR/cold.bin"
    dd if="$DIR/cold.bin" iflag=nocache count=0 status=none
    r=$(during hash_once)
    echo "run $i: $(cat "$out.what") small gets meanwhile: $r"
  fi
done
rm -f "$out.what"
