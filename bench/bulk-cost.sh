#!/usr/bin/env bash
# bulk-cost.sh - what one large plain-TCP get costs each side, in counts that
# survive a shared machine better than wall time: the client's CPU time
# (user + system, from GNU time), the server's (the sum of its
# threads' run time in /proc/PID/task/*/schedstat, nanoseconds) and both
# sides' context switches, per run of `tcpfile-client get FILE --to
# /dev/null`. Two variants A and B run in alternating pairs (A B A B ...),
# each against its own server, so that load drifts hit both alike; the
# summary gives the medians. Wall time is printed too: trust it only on an
# idle machine (say so when quoting it).
#
#   bench/bulk-cost.sh [-n PAIRS] [-B BYTES] [-c A|B|AB] BUILD_A [BUILD_B]
#
#   -n PAIRS   alternating pairs (default 7)
#   -B BYTES   size of the file served (default 1 GiB); each variant serves
#              its own copy
#   -c WHICH   the variants (A, B or AB) whose copy is dropped from the page
#              cache and read back before the runs: cached as a file read
#              from disk is (in large folios where the kernel makes them),
#              not as written (small ones). The server's sendfile and the
#              client's copy work per folio, so this alone moves the counts
# BUILD_B defaults to BUILD_A. Needs -DTF_BUILD_EXAMPLES=ON builds.
set -euo pipefail
PAIRS=7 BYTES=1073741824 COLD=""
while getopts n:B:c: o; do
  case $o in
    n) PAIRS=$OPTARG ;;
    B) BYTES=$OPTARG ;;
    c) COLD=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 [-n PAIRS] [-B BYTES] [-c A|B|AB] BUILD_A [BUILD_B]" >&2; exit 2; }
A=$(cd "$1" && pwd) B=$(cd "${2:-$1}" && pwd)
for d in "$A" "$B"; do
  for p in tcpfile-server tcpfile-client; do
    [ -x "$d/examples/$p" ] || { echo "missing $d/examples/$p" >&2; exit 1; }
  done
done

WORK=$(mktemp -d)
SPIDS=()
trap 'for p in "${SPIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
for v in A B; do
  mkdir "$WORK/root$v"
  head -c "$BYTES" /dev/urandom >"$WORK/root$v/f.bin"
  if [[ $COLD == *$v* ]]; then
    sync "$WORK/root$v/f.bin"
    dd if="$WORK/root$v/f.bin" iflag=nocache count=0 status=none # POSIX_FADV_DONTNEED
  fi
  cat "$WORK/root$v/f.bin" >/dev/null
done

# start NAME BUILD: a server on a free port; sets PORT_<NAME>, SPID_<NAME>.
start() {
  "$2/examples/tcpfile-server" --plaintext --bind 127.0.0.1 0 "$WORK/root$1" \
    >"$WORK/$1.log" 2>&1 &
  SPIDS+=($!)
  printf -v "SPID_$1" %s $!
  local i port=""
  for i in $(seq 50); do
    port=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$WORK/$1.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "server $1 did not start" >&2; cat "$WORK/$1.log" >&2; exit 1; }
  printf -v "PORT_$1" %s "$port"
}

# Run time (ns) and context switches of every thread of PID.
server_counts() {
  local ns=0 cs=0 t a v n
  for t in /proc/"$1"/task/*; do
    read -r a _ <"$t/schedstat"
    ns=$((ns + a))
    while read -r n v; do
      case $n in *ctxt_switches:) cs=$((cs + v)) ;; esac
    done <"$t/status"
  done
  echo "$ns $cs"
}

# one NAME BUILD: one get; prints "wall_ms client_ms client_cs server_ms server_cs".
one() {
  local spid port s0 c0 s1 c1 t0 t1
  spid=SPID_$1 port=PORT_$1
  read -r s0 c0 < <(server_counts "${!spid}")
  t0=$(date +%s%N)
  /usr/bin/time -f '%e %U %S %c %w' -o "$WORK/time" \
    "$2/examples/tcpfile-client" --plaintext -q "127.0.0.1:${!port}" get f.bin --to /dev/null
  t1=$(date +%s%N)
  read -r s1 c1 < <(server_counts "${!spid}")
  awk -v w=$(((t1 - t0) / 1000000)) -v s=$(((s1 - s0) / 1000000)) -v sc=$((c1 - c0)) \
    '{ printf "%d %d %d %d %d\n", w, ($2 + $3) * 1000, $4 + $5, s, sc }' "$WORK/time"
}

start A "$A"
start B "$B"
one A "$A" >/dev/null # the first get of a file hashes it on the server
one B "$B" >/dev/null
printf '%-4s %8s %10s %10s %10s %10s   (per run of %d bytes; load %s)\n' run wall_ms \
  client_ms client_cs server_ms server_cs "$BYTES" "$(cut -d' ' -f1 /proc/loadavg)"
for i in $(seq "$PAIRS"); do
  for v in A B; do
    if [ $v = A ]; then r=$(one A "$A"); else r=$(one B "$B"); fi
    echo "$v $r" >>"$WORK/runs"
    printf '%-4s %8s %10s %10s %10s %10s\n' "$v$i" $r
  done
done
echo "medians (load at the end $(cut -d' ' -f1 /proc/loadavg)):"
for v in A B; do
  printf '%-4s' "$v"
  for col in 2 3 4 5 6; do
    awk -v v=$v -v c=$col '$1 == v { print $c }' "$WORK/runs" | sort -n |
      awk '{ a[NR] = $1 } END { printf " %10s", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
  done
  echo
done
