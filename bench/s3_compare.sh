#!/usr/bin/env bash
# s3_compare.sh - the S3 lines of issue 15, side by side, one table:
#
#   bench/compare.sh --s3-only [-r REPS] [-B BIG_BYTES] [-m SMALL_N]
#                    [-d PARENT_DIR] [-b BUILD_DIR] [-p PORT] [-t SECONDS]
#
# (compare.sh passes its options on; this file can be run the same way.)
# Against the single-node Ceph of scripts/ceph.sh, which must be up
# (`scripts/ceph.sh up`): its radosgw is the store both tools talk to.
#   - put and get of BIG_BYTES (default 1 GiB): tcpfile-client through a
#     tcpfile-server serving the bucket (--store s3://), against
#     `curl --aws-sigv4` straight to radosgw (one PUT, one GET). Target:
#     tcpfile >= 0.9x curl.
#   - SMALL_N (default 1,000) 4 KiB gets on one connection: tcpfile-client
#     get of every name (pipelined), against one curl process fetching the
#     same objects over one kept-alive connection. Target: >= 3x curl.
#   - the server's peak memory (VmHWM) while 100 clients get a file of
#     MID_BYTES (16 MiB) from S3 at once: stated.
# Each transfer is timed as the wall-clock time of the client process;
# the table shows medians of REPS runs and tcpfile's ratio to curl. Each
# line is cut off after SECONDS (default 120, and 10 s more per 100 MiB
# moved): a line cut off is shown as such and the run goes on.
# Everything put in the bucket (under bench-PID/) is deleted on exit.
set -euo pipefail

REPS=3
BIG_BYTES=$((1 << 30))
SMALL_N=1000
MID_BYTES=$((16 << 20))
CONC=100
PARENT=/var/tmp
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BUILD=$REPO/build-bench
PORT=0
LIMIT=120
while [ $# -gt 0 ]; do
  case $1 in
    -r) REPS=$2; shift 2 ;;
    -B) BIG_BYTES=$2; shift 2 ;;
    -m) SMALL_N=$2; shift 2 ;;
    -d) PARENT=$2; shift 2 ;;
    -b) BUILD=$2; shift 2 ;;
    -p) PORT=$2; shift 2 ;;
    -t) LIMIT=$2; shift 2 ;;
    --no-install | --keep) shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "s3_compare.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ "$MID_BYTES" -le "$BIG_BYTES" ] || MID_BYTES=$BIG_BYTES

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

eval "$("$REPO/scripts/ceph.sh" env 2>/dev/null)" ||
  die "no Ceph: run scripts/ceph.sh up first"
[ -n "${TF_S3_ENDPOINT:-}" ] || die "no Ceph: run scripts/ceph.sh up first"
command -v curl >/dev/null || die "curl is missing"
# Room in the store: every run puts the big file twice (tcpfile's, curl's),
# and radosgw frees what is overwritten or deleted only at its garbage
# collection (2 h by default). scripts/ceph.sh's OSD is a 4 GiB file:
# filled, it stops taking writes for everyone, and at ENOSPC the OSD dies
# (it did, with -B 1 GiB -r 3). Needed: at most half of it.
need=$((2 * REPS * BIG_BYTES + MID_BYTES + SMALL_N * 4096))
osd=$(awk -F' *= *' '$1 == "bluestore block size" { print $2 }' \
  "${TF_CEPH_DIR:-/tmp/tcpfile-ceph}/ceph.conf" 2>/dev/null || true)
if [ -n "$osd" ] && [ "$need" -gt $((osd / 2)) ]; then
  die "$((need >> 20)) MiB to put, over half of the store's $((osd >> 20)) MiB OSD:" \
    "-B $((osd / 4 / REPS)) (bytes) at most, or a larger store"
fi
SIGV4="aws:amz:${TF_S3_REGION:-us-east-1}:s3"
B=$TF_S3_ENDPOINT/$TF_S3_BUCKET
PFX=bench-$$
# curl straight to the store: SigV4 by curl itself, the same unsigned
# payload as libtcpfile's requests. The keys go in a config file of mode
# 600 (-K), never on curl's command line, where ps shows them; S3CURL is
# set once WORK exists. (An array, not a function: timeout runs it.)
S3CURL=()
s3curl() { "${S3CURL[@]}" "$@"; }

PIDS=()
WORK=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$WORK" ]; then
    # Every key this run made: one curl process, one connection.
    { echo "tf/big.bin"; echo "tf/mid.bin"; echo "curl/big.bin"
      echo "tf/.tcpfile-tmp/d/big.bin"; echo "tf/.tcpfile-tmp/d/mid.bin"
      awk -v n="$SMALL_N" 'BEGIN { for (i = 0; i < n; i++) printf "tf/s%05d\n", i }'
    } | awk -v b="$B" -v p="$PFX" '{ printf "url = \"%s/%s/%s\"\nrequest = \"DELETE\"\noutput = \"/dev/null\"\n", b, p, $0 }' \
      >"$WORK/delete.cfg"
    s3curl -K "$WORK/delete.cfg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building libtcpfile (Release) in $BUILD"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTF_BUILD_TESTS=OFF \
  -DTF_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
SERVER=$BUILD/examples/tcpfile-server
CLIENT=$BUILD/examples/tcpfile-client

WORK=$(mktemp -d "$PARENT/tcpfile-s3bench.XXXXXX")
(umask 077 && printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" \
  >"$WORK/keys.cfg")
S3CURL=(curl -sSf -K "$WORK/keys.cfg" --aws-sigv4 "$SIGV4"
  -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
D=$WORK/data
mkdir -p "$D" "$WORK/got"
head -c "$BIG_BYTES" /dev/urandom >"$D/big.bin"
head -c "$MID_BYTES" /dev/urandom >"$D/mid.bin"
head -c $((SMALL_N * 4096)) /dev/urandom >"$WORK/small.all"
(cd "$D" && split -b 4096 -a 5 -d "$WORK/small.all" s)
rm -f "$WORK/small.all"
cat "$D"/* >/dev/null

"$SERVER" --plaintext -q --store "s3://$TF_S3_BUCKET/$PFX/tf" --s3-endpoint "$TF_S3_ENDPOINT" \
  --s3-region "${TF_S3_REGION:-us-east-1}" -b 127.0.0.1 "$PORT" >"$WORK/server.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
for _ in $(seq 100); do
  grep -q '^server up' "$WORK/server.log" && break
  kill -0 "$SPID" 2>/dev/null || die "tcpfile-server: $(cat "$WORK/server.log")"
  sleep 0.05
done
TPORT=$(awk '/^server up/ { print $NF; exit }' "$WORK/server.log")
TF=("$CLIENT" --plaintext -q 127.0.0.1 "$TPORT")
say "tcpfile-server on port $TPORT serving s3://$TF_S3_BUCKET/$PFX/tf at $TF_S3_ENDPOINT"

RES=$WORK/results
: >"$RES"
# wall CMD...: the wall-clock seconds of CMD (its output in $WORK/out), or
# "cut" when it ran past the line's limit ($CUT seconds).
BIG_CUT=$((LIMIT + (BIG_BYTES >> 20) / 10))
CUT=$LIMIT
wall() {
  local TIMEFORMAT='%3R' rc=0
  { time timeout -k 5 "$CUT" "$@" >"$WORK/out" 2>&1; } 2>"$WORK/time" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "cut off after $CUT s: $*" >&2
    echo cut
    return
  fi
  [ "$rc" -eq 0 ] || die "failed ($rc): $* -- $(tail -3 "$WORK/out")"
  cat "$WORK/time"
}
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; printf '    %-24s %-8s %8s s\n' "$@"; }
# same FILE_A FILE_B: dies unless both hold the same bytes (a line cut off
# leaves nothing to compare).
same() { [ "$1" = cut ] || cmp -s "$2" "$3" || die "$4's get differs"; }

# The small objects, put once through tcpfile (so both tools read the
# same keys): one pipelined put.
(cd "$D" && "${TF[@]}" put s0*) >/dev/null
"${TF[@]}" put "$D/mid.bin" >/dev/null
# Each run of either tool writes its small files into a directory of its
# own, new, and nothing is deleted before the end: both create new files
# (curl over an existing file truncates it in place; tcpfile-client
# replaces it whole with a new inode), and neither meets the inodes the
# last run freed (ext4 without a journal skips those freed in the last
# 30-180 s on every create: on this host it tripled our client's CPU).
small_cfg() { # DIR
  awk -v b="$B" -v p="$PFX" -v n="$SMALL_N" -v o="$1" 'BEGIN {
    for (i = 0; i < n; i++) printf "url = \"%s/%s/tf/s%05d\"\noutput = \"%s/c%05d\"\n", b, p, i, o, i
  }' >"$WORK/small.cfg"
}
NAMES=()
for ((i = 0; i < SMALL_N; i++)); do NAMES+=("$(printf 's%05d' "$i")"); done

for ((REP = 1; REP <= REPS; REP++)); do
  say "repetition $REP of $REPS"
  # Alternate which tool goes first.
  for tool in $( ((REP % 2)) && echo "tcpfile curl" || echo "curl tcpfile"); do
    CUT=$BIG_CUT
    if [ "$tool" = tcpfile ]; then
      t=$(wall "${TF[@]}" put "$D/big.bin")
      record "put $((BIG_BYTES >> 20)) MiB" tcpfile "$t"
      rm -f "$WORK/got/big.bin"
      t=$(wall "${TF[@]}" get big.bin --to "$WORK/got/big.bin")
      record "get $((BIG_BYTES >> 20)) MiB" tcpfile "$t"
      same "$t" "$D/big.bin" "$WORK/got/big.bin" tcpfile
      CUT=$LIMIT
      mkdir "$WORK/got/tf$REP"
      t=$(cd "$WORK/got/tf$REP" && wall "${TF[@]}" get "${NAMES[@]}")
      record "$SMALL_N x 4 KiB gets" tcpfile "$t"
    else
      t=$(wall "${S3CURL[@]}" -T "$D/big.bin" "$B/$PFX/curl/big.bin")
      record "put $((BIG_BYTES >> 20)) MiB" curl "$t"
      t=$(wall "${S3CURL[@]}" -o "$WORK/got/curl.bin" "$B/$PFX/curl/big.bin")
      record "get $((BIG_BYTES >> 20)) MiB" curl "$t"
      same "$t" "$D/big.bin" "$WORK/got/curl.bin" curl
      CUT=$LIMIT
      mkdir "$WORK/got/curl$REP"
      small_cfg "$WORK/got/curl$REP"
      t=$(wall "${S3CURL[@]}" -K "$WORK/small.cfg")
      record "$SMALL_N x 4 KiB gets" curl "$t"
    fi
  done
done

# Memory: CONC clients getting mid.bin at once; the server's peak RSS.
say "$CONC clients get $((MID_BYTES >> 20)) MiB each at once"
base=$(awk '/^VmRSS/ { print $2 }' "/proc/$SPID/status")
cpids=()
for ((i = 0; i < CONC; i++)); do
  "${TF[@]}" get mid.bin --to "$WORK/got/m$i" >/dev/null 2>&1 &
  cpids+=($!)
done
fails=0
# (a client still running after the limit is ended, and counted as failed)
( sleep "$BIG_CUT"; kill "${cpids[@]}" 2>/dev/null ) &
watchdog=$!
for p in "${cpids[@]}"; do wait "$p" || fails=$((fails + 1)); done
kill "$watchdog" 2>/dev/null || true
peak=$(awk '/^VmHWM/ { print $2 }' "/proc/$SPID/status")
rm -f "$WORK"/got/m*

echo
echo "S3 lines (medians of $REPS; wall-clock seconds of the client process; store: radosgw"
echo "at $TF_S3_ENDPOINT; this machine: $(nproc) CPUs, $(uptime | sed 's/.*load/load/'))"
printf '%-24s %10s %10s %8s   %s\n' line tcpfile curl ratio target
# The median of a line's runs, a run cut off counting as the longest.
median() {
  awk -F'\t' -v l="$1" -v w="$2" '$1 == l && $2 == w { print ($3 == "cut" ? 1e9 : $3) }' "$RES" |
    sort -g | awk '{ a[NR] = $1 } END { m = a[int((NR + 1) / 2)]; print (m == 1e9 ? "cut" : m) }'
}
for line in "put $((BIG_BYTES >> 20)) MiB" "get $((BIG_BYTES >> 20)) MiB" "$SMALL_N x 4 KiB gets"; do
  t=$(median "$line" tcpfile)
  c=$(median "$line" curl)
  target=">= 0.9x"
  [[ $line == *gets ]] && target=">= 3x"
  ratio=$(awk -v t="$t" -v c="$c" 'BEGIN {
    if (t == "cut" || c == "cut") print "-"; else printf "%.2f", c / t }')
  printf '%-24s %9ss %9ss %7sx   %s (curl time / tcpfile time)\n' "$line" "$t" "$c" \
    "$ratio" "$target"
done
echo "server memory, $CONC clients getting $((MID_BYTES >> 20)) MiB from S3 at once: peak RSS" \
  "$((peak / 1024)) MiB (idle $((base / 1024)) MiB); $fails clients failed"
