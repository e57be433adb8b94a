#!/usr/bin/env bash
# put-stall.sh - how long a large durable upload holds up the other
# connections of its worker. A tcpfile-server with one worker serves DIR (on
# a disk, not tmpfs, so that fsync means something); one client gets small
# files one at a time while another uploads a big file; the figure that
# matters is the slowest small get (max_ms), which includes any time the
# worker spent waiting for the disk.
#
#   bench/put-stall.sh [-b BUILD_DIR] [-n REPS] DIR BIG_FILE
#
# DIR must hold files s00000..s00099 (any small content); BIG_FILE is
# uploaded as DIR/up.bin, which is removed afterwards. Build with
# -DTF_BUILD_BENCH=ON first (bench/compare.sh does, into build-bench).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(dirname "$HERE")/build-bench
REPS=3
PORT=27990
while getopts b:n:p: o; do
  case $o in
    b) BUILD=$OPTARG ;;
    n) REPS=$OPTARG ;;
    p) PORT=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { echo "usage: $0 [-b BUILD_DIR] [-n REPS] [-p PORT] DIR BIG_FILE" >&2; exit 2; }
DIR=$1 BIG=$2
SERVER=$BUILD/examples/tcpfile-server BENCH=$BUILD/bench/tcpfile-bench
for f in "$SERVER" "$BENCH"; do [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }; done

"$SERVER" -q --workers 1 --bind 127.0.0.1 "$PORT" "$DIR" >/dev/null 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null; rm -f "$DIR/up.bin"' EXIT
sleep 0.5
out=$(mktemp)
for ((i = 1; i <= REPS; i++)); do
  sync
  "$BENCH" --host 127.0.0.1 --port "$PORT" small --count 50000 --files 100 >"$out" 2>&1 &
  GP=$!
  sleep 0.3
  put=$("$BENCH" --host 127.0.0.1 --port "$PORT" put "$BIG" up.bin | sed -n 's/.* mbps=\([0-9.]*\).*/\1/p')
  wait "$GP"
  echo "run $i: put ${put} MB/s; small gets meanwhile:" \
    "$(grep -o 'p99_ms=[0-9.]*\|max_ms=[0-9.]*' "$out" | tr '\n' ' ')"
  rm -f "$DIR/up.bin"
done
rm -f "$out"
