#!/usr/bin/env bash
# compare.sh - runs the same work on 127.0.0.1 with libtcpfile and with the
# tools people would use instead (nginx + curl, wrk, iperf3, rsync), several
# times, alternating them, and prints one table of medians with the ratio of
# libtcpfile to the best peer on each line (the targets of issue 3).
#
#   bench/compare.sh [-r REPS] [-n IDLE_CONNS] [-s SECONDS] [-d PARENT_DIR]
#                    [-b BUILD_DIR] [-p PORT_BASE] [-B BIG_BYTES] [-m SMALL_N]
#                    [-c TLS_CONNS] [--tls-only] [--no-install] [--keep]
#                    [--tree-only] [--tree-files N] [--list-entries N]
#                    [--s3-only]
#
# Debian 12, as root (or with sudo for the installs). It installs what is
# missing, builds libtcpfile (Release, TF_BUILD_BENCH=ON) into BUILD_DIR,
# writes the data into a new directory under PARENT_DIR (default /var/tmp:
# it must be a disk, not tmpfs, for the durable put to mean anything), and
# runs every server as its own process on 127.0.0.1, ports PORT_BASE to
# PORT_BASE+11, with its configuration in that directory. The TLS lines
# (issue 13) run tcpfile-server with TLS (its own identity, pinned by the
# client) against nginx `ssl` (TLS 1.3, TLS_AES_256_GCM_SHA384, kTLS allowed,
# session tickets) and curl https with that cipher suite; the other lines
# run both sides --plaintext, as nginx's http. Everything it
# started is stopped, and the directory removed, on exit.
#
# Timing: a single transfer (get, put, 10,000 small gets) is timed as the
# wall-clock time of the client command, from its start to its exit (bash
# `time`), for every tool alike. iperf3 and wrk report their own rates, and
# so does tcpfile-bench for its 64-connection and idle modes. See
# bench/RESULTS.md for what each line runs.
#
# Two kinds of line: the library, through tcpfile-bench (one process that
# times its own calls), and the programs users run, tcpfile-client beside
# curl, each timed as a whole process (start, connect, transfer, exit). The
# tools alternate within every repetition (the order rotates), and the
# table takes medians. nginx runs in three configurations (sendfile on;
# sendfile off; and tuned as its users tune it for large files: sendfile
# off, output_buffers 2 256k, tcp_nopush on); the best of them is the line
# to beat. The latency lines go through bench/relay (each direction delayed
# by RELAY_MS), both tools alike.
set -euo pipefail

REPS=3
IDLE_N=10000
WRK_SECONDS=10
SMALL_N=10000
PARENT=/var/tmp
PORT_BASE=27800
INSTALL=1
KEEP=0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
BUILD=$REPO/build-bench
BIG_BYTES=$((1 << 30))
IDLE_GETS=20
# The tree lines (issue 12): a tree of TREE_FILES x 4 KiB in TREE_DIRS
# directories pushed, pushed again after 1 % changed, and pulled, against
# an rsync daemon; then ls -r of LIST_ENTRIES entries with both sides' peak
# memory. --tree-only runs just these (the servers all start as usual).
TREE_ONLY=0
# Where the tree lines write: "image", a new ext4 file system with a journal
# (mkfs.ext4's default, as on users' machines) in a file, loop-mounted for
# the run; or "parent", the data directory's own file system. On an ext4
# without a journal every new inode's search skips those deleted in the
# last 30-180 s (ext4's recently_deleted), so each run there pays for the
# rm -rf before it, and the runs of every tool spread by up to 3x.
TREE_FS=image
TREE_FILES=10000
TREE_DIRS=100
LIST_ENTRIES=100000
RELAY_MS=10          # each direction: a 20 ms round trip
RELAY_N=200          # 4 KiB gets through the relay
MID_BYTES=$((10 << 20)) # the put and get through the relay
TLS_CONNS=2000
TLS_ONLY=0

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  cat <<EOF
Options:
  -r REPS        repetitions of every measurement (default $REPS)
  -n N           idle connections held (default $IDLE_N)
  -s SECONDS     duration of the 64-connection runs (default $WRK_SECONDS)
  -d DIR         where the temporary data directory goes (default $PARENT)
  -b DIR         build directory (default $BUILD)
  -p PORT        first of the 12 loopback ports used (default $PORT_BASE)
  -B BYTES       size of the big file (default $BIG_BYTES; the parallel gets
                 use a quarter of it each); small sizes prove the script runs
  -m N           number of 4 KiB files and gets (default $SMALL_N)
  -c N           new TLS connections timed per run (default $TLS_CONNS)
  --tls-only     run the TLS lines only
  --no-install   do not install packages; fail if a tool is missing
  --keep         keep the data directory (and its logs) at the end
  --tree-only    only the tree lines (push, push after 1 % changed, get -r
                 against an rsync daemon; ls -r memory)
  --tree-fs image|parent  where the tree lines write: a loop-mounted ext4
                 image with a journal, new for the run (default; falls back
                 to parent where it cannot be mounted), or the data
                 directory's own file system
  --tree-files N files of 4 KiB in the tree (default $TREE_FILES, in
                 $TREE_DIRS directories)
  --list-entries N  entries listed by ls -r (default $LIST_ENTRIES)
  --s3-only      only the S3 lines (bench/s3_compare.sh: tcpfile-server on
                 the Ceph of scripts/ceph.sh against curl --aws-sigv4; -r, -B,
                 -m, -d, -b apply; -B defaults to 1 GiB, -m there to 1000)
EOF
}

# --s3-only: its own script, with the options that apply there.
for a in "$@"; do
  if [ "$a" = --s3-only ]; then
    args=()
    for b in "$@"; do [ "$b" = --s3-only ] || args+=("$b"); done
    exec "$(dirname "${BASH_SOURCE[0]}")/s3_compare.sh" "${args[@]}"
  fi
done
while [ $# -gt 0 ]; do
  case $1 in
    -r) REPS=$2; shift 2 ;;
    -n) IDLE_N=$2; shift 2 ;;
    -s) WRK_SECONDS=$2; shift 2 ;;
    -d) PARENT=$2; shift 2 ;;
    -b) BUILD=$2; shift 2 ;;
    -p) PORT_BASE=$2; shift 2 ;;
    -B) BIG_BYTES=$2; shift 2 ;;
    -m) SMALL_N=$2; shift 2 ;;
    -c) TLS_CONNS=$2; shift 2 ;;
    --tls-only) TLS_ONLY=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --keep) KEEP=1; shift ;;
    --tree-only) TREE_ONLY=1; shift ;;
    --tree-files) TREE_FILES=$2; shift 2 ;;
    --tree-fs) TREE_FS=$2; shift 2 ;;
    --list-entries) LIST_ENTRIES=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $TREE_FS in image | parent) ;; *) echo "compare.sh: --tree-fs is image or parent" >&2; exit 2 ;; esac
for v in REPS IDLE_N WRK_SECONDS PORT_BASE BIG_BYTES SMALL_N TLS_CONNS TREE_FILES LIST_ENTRIES; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: $v must be a positive number" >&2; exit 2; }
done

P_TF=$PORT_BASE
P_ON=$((PORT_BASE + 1))
P_OFF=$((PORT_BASE + 2))
P_RSYNC=$((PORT_BASE + 3))
P_IPERF=$((PORT_BASE + 4))
P_TF_IDLE=$((PORT_BASE + 5))
P_NGX_IDLE=$((PORT_BASE + 6))
P_TUNED=$((PORT_BASE + 7))
P_RELAY_TF=$((PORT_BASE + 8))
P_RELAY_NGX=$((PORT_BASE + 9))
P_TF_TREE=$((PORT_BASE + 10))
P_TF_LIST=$((PORT_BASE + 11))
[ "$RELAY_N" -le "$SMALL_N" ] || RELAY_N=$SMALL_N
PAR_BYTES=$((BIG_BYTES / 4))
[ "$MID_BYTES" -le "$BIG_BYTES" ] || MID_BYTES=$BIG_BYTES
P_TF_TLS=$((PORT_BASE + 12))
P_NGX_TLS=$((PORT_BASE + 13))

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

# ---- cleanup: everything we start is listed here ----------------------------
PIDS=()
WORK=
TW=      # the tree lines' directory (on the image when TREE_FS=image)
TW_MOUNTED=0
POLICY_CREATED=0
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    # Bounded: a server that does not stop in 5 s is killed.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  [ "$POLICY_CREATED" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  if [ "$TW_MOUNTED" -eq 1 ]; then umount "$TW" && TW_MOUNTED=0; fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" -eq 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops one process we started and drops it from PIDS.
stop_pid() {
  local pid=$1 keep=() p
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# ---- install ------------------------------------------------------------------
install_missing() {
  local missing=() pkg sudo=()
  for pkg in "$@"; do
    # (Here-strings, not pipes into grep -q: with pipefail, grep's early exit
    # can fail the writer with SIGPIPE and so the whole test.)
    grep -q 'install ok installed' <<<"$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$INSTALL" -eq 1 ] || die "missing packages: ${missing[*]} (run without --no-install)"
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # The packages' own services (nginx on port 80) must not start: we run
  # our own instances. policy-rc.d is Debian's switch for that; ours is
  # removed again on exit, an existing one is left alone.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  say "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  if [ "$POLICY_CREATED" -eq 1 ]; then
    "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    POLICY_CREATED=0
  fi
}

# What building libtcpfile needs comes from the one list in scripts/deps.sh.
# shellcheck source=../scripts/deps.sh
. "$REPO/scripts/deps.sh"
PKGS=("${TF_BUILD_PACKAGES[@]}" curl wrk iperf3 rsync iproute2 procps coreutils time)
# nginx with the WebDAV module (PUT): Debian's nginx-light, -core and -full
# all have it built in; take nginx-light unless one is there already.
if ! command -v nginx >/dev/null; then PKGS+=(nginx-light); fi
install_missing "${PKGS[@]}"
grep -q -- --with-http_dav_module <<<"$(nginx -V 2>&1)" || die "this nginx has no WebDAV module"

# ---- limits -------------------------------------------------------------------
ulimit -Hn 1048576 2>/dev/null || ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ $((IDLE_N + 512)) -gt "$NOFILE" ]; then
  IDLE_N=$((NOFILE - 512))
  say "warning: open-file limit $NOFILE: holding $IDLE_N idle connections instead"
fi
NGX_CONNS=$((IDLE_N + 1024))

for p in $P_TF $P_ON $P_OFF $P_RSYNC $P_IPERF $P_TF_IDLE $P_NGX_IDLE $P_TUNED $P_RELAY_TF \
  $P_RELAY_NGX $P_TF_TLS $P_NGX_TLS $P_TF_TREE $P_TF_LIST; do
  if [ -n "$(ss -Hltn "sport = :$p")" ]; then die "port $p is in use (choose others with -p)"; fi
done

# ---- build --------------------------------------------------------------------
say "building libtcpfile (Release, TF_BUILD_BENCH=ON) in $BUILD"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTF_BUILD_BENCH=ON \
  -DTF_BUILD_TESTS=OFF -DTF_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
BENCH=$BUILD/bench/tcpfile-bench
HOLD=$BUILD/bench/holdconns
TFSERVER=$BUILD/examples/tcpfile-server
TFCLIENT=$BUILD/examples/tcpfile-client
CLIENT=$BUILD/examples/tcpfile-client
RELAY=$BUILD/bench/relay

# ---- data ---------------------------------------------------------------------
mkdir -p "$PARENT"
avail=$(df -Pk "$PARENT" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt $((5 * BIG_BYTES / 1024 + 65536)) ] ||
  die "need $((5 * BIG_BYTES >> 20)) MiB free in $PARENT"
WORK=$(mktemp -d "$PARENT/tcpfile-bench.XXXXXX")
D=$WORK/data
mkdir -p "$D" "$WORK/dst" "$WORK/dav/up" "$WORK/rsup"
say "data in $WORK ($(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || echo ?))"
TW=$WORK
if [ "$TREE_FS" = image ]; then
  mkdir -p "$WORK/treefs"
  if truncate -s 2G "$WORK/treefs.img" && mkfs.ext4 -q -F "$WORK/treefs.img" &&
    mount -o loop "$WORK/treefs.img" "$WORK/treefs" 2>"$WORK/treefs.err"; then
    TW=$WORK/treefs
    TW_MOUNTED=1
    say "tree lines on a new ext4 with a journal: $TW"
  else
    say "warning: cannot mount an ext4 image ($(cat "$WORK/treefs.err" 2>/dev/null));" \
      "the tree lines run in $WORK"
  fi
fi
mkdir -p "$TW/tftree" "$TW/rstree" "$TW/dst"
head -c "$BIG_BYTES" /dev/urandom >"$D/big.bin"
head -c $((1 << 20)) /dev/urandom >"$D/m1.bin"
head -c "$MID_BYTES" /dev/urandom >"$D/mid.bin"
head -c "$PAR_BYTES" /dev/urandom >"$D/par.bin"
head -c $((SMALL_N * 4096)) /dev/urandom >"$WORK/small.all"
split -b 4096 -a 5 -d "$WORK/small.all" "$D/s"
rm -f "$WORK/small.all"
sync
# Page-cache warm: every file read once before anything is timed. The large
# ones are first dropped from the cache (written by head, they sit in 4 KiB
# pages) and read back, as a served file is read from disk: in the large
# folios of readahead, which make every server's page lookups cheaper.
for f in "$D/big.bin" "$D/mid.bin" "$D/par.bin"; do
  dd if="$f" iflag=nocache count=0 status=none
done
cat "$D/big.bin" "$D/m1.bin" "$D/mid.bin" "$D/par.bin" >/dev/null
find "$D" -name 's*' -type f -exec cat {} + >/dev/null

# Helpers' inputs: curl's list of 10,000 URLs, wrk's rotation over them.
for p in $P_ON $P_OFF $P_TUNED $P_RELAY_NGX; do
  n=$SMALL_N
  [ "$p" = "$P_RELAY_NGX" ] && n=$RELAY_N
  awk -v n="$n" -v p="$p" 'BEGIN {
    print "write-out = \"%{num_connects} %{size_download}\\n\""
    for (i = 0; i < n; i++) {
      printf "url = \"http://127.0.0.1:%d/s%05d\"\noutput = \"/dev/null\"\n", p, i
    }
  }' >"$WORK/urls-$p.cfg"
done
cat >"$WORK/rotate.lua" <<EOF
local i = 0
request = function()
  i = (i + 1) % $SMALL_N
  return wrk.format("GET", string.format("/s%05d", i))
end
EOF

# ---- servers ------------------------------------------------------------------
wait_listen() { # PORT PID WHAT
  for _ in $(seq 100); do
    [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited at start (see $WORK)"
    sleep 0.05
  done
  die "$3 does not listen on port $1"
}

start_tcpfile() { # PORT [SERVER OPTIONS...] -> TF_PID
  local port=$1
  shift
  # Plaintext unless told otherwise: nginx's http lines are plaintext too.
  [ $# -gt 0 ] || set -- --plaintext
  # The small-file cache sized for the 10,000 small files (40 MB), as a
  # user serving many small files sizes it; nginx gets open_file_cache.
  "$TFSERVER" -q --small-cache 64M "$@" --bind 127.0.0.1 --max-connections "$NGX_CONNS" "$port" "$D" \
    >"$WORK/tcpfile-$port.log" 2>&1 &
  TF_PID=$!
  PIDS+=("$TF_PID")
  wait_listen "$port" "$TF_PID" tcpfile-server
}

# nginx: one instance per configuration (sendfile on / off / tuned), as a
# foreground master we own. Defaults otherwise, except what keeps the
# comparison fair: no access log, keep-alive connections never closed by
# request count. EXTRA: more http-level directives (the tuned one's).
# Every nginx keeps the small files' descriptors and stats open, as users
# serving many small files tune it (our server gets --small-cache).
NGX_FILE_CACHE="open_file_cache max=20000 inactive=300s; open_file_cache_valid 300s;"
start_nginx() { # NAME PORT SENDFILE [EXTRA] -> NGX_PID
  local dir=$WORK/nginx-$1
  mkdir -p "$dir/body"
  cat >"$dir/nginx.conf" <<EOF
daemon off;
user root root;
worker_processes auto;
worker_rlimit_nofile $NOFILE;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $NGX_CONNS; }
http {
  access_log off;
  types { application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile $3;
  tcp_nopush on;
  $NGX_FILE_CACHE
  ${4:-}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/body;
  server {
    listen 127.0.0.1:$2;
    root $D;
    location /up/ {
      root $WORK/dav;
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
    }
  }
}
EOF
  nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
  NGX_PID=$!
  PIDS+=("$NGX_PID")
  wait_listen "$2" "$NGX_PID" "nginx ($1)"
}

start_tcpfile "$P_TF"
TF_MAIN=$TF_PID
# The tree's server: its own root, so the flat tests' names stay alone.
"$TFSERVER" --plaintext -q --bind 127.0.0.1 "$P_TF_TREE" "$TW/tftree" >"$WORK/tcpfile-tree.log" 2>&1 &
TF_TREE=$!
PIDS+=("$TF_TREE")
wait_listen "$P_TF_TREE" "$TF_TREE" "tcpfile-server (tree)"
start_nginx on "$P_ON" on
NGX_ON=$NGX_PID
start_nginx off "$P_OFF" off
NGX_OFF=$NGX_PID
start_nginx tuned "$P_TUNED" off "output_buffers 2 256k;"
NGX_TUNED=$NGX_PID
# The three configurations, by index 1..3, for the program lines.
NGX_NAME=(- nginx-sendfile-on nginx-sendfile-off nginx-tuned)
NGX_PORT=(- "$P_ON" "$P_OFF" "$P_TUNED")
NGX_PIDOF=(- "$NGX_ON" "$NGX_OFF" "$NGX_TUNED")

# The delaying relays: one in front of tcpfile-server, one in front of the
# tuned nginx; the same program and delay for both.
start_relay() { # PORT TARGET_PORT
  "$RELAY" "$1" 127.0.0.1 "$2" "$RELAY_MS" >"$WORK/relay-$1.log" 2>&1 &
  PIDS+=("$!")
  wait_listen "$1" "$!" relay
}
start_relay "$P_RELAY_TF" "$P_TF"
start_relay "$P_RELAY_NGX" "$P_TUNED"

cat >"$WORK/rsyncd.conf" <<EOF
pid file = $WORK/rsyncd.pid
log file = $WORK/rsyncd.log
use chroot = no
uid = root
gid = root
[data]
  path = $D
  read only = yes
[up]
  path = $WORK/rsup
  read only = no
[tree]
  path = $TW/rstree
  read only = no
EOF
rsync --daemon --no-detach --config="$WORK/rsyncd.conf" --address=127.0.0.1 \
  --port="$P_RSYNC" &
RSYNCD=$!
PIDS+=("$RSYNCD")
wait_listen "$P_RSYNC" "$RSYNCD" rsyncd
RSYNC_FSYNC=--fsync
grep -q -- --fsync <<<"$(rsync --help)" || RSYNC_FSYNC=

iperf3 -s -B 127.0.0.1 -p "$P_IPERF" >"$WORK/iperf3.log" 2>&1 &
IPERF=$!
PIDS+=("$IPERF")
wait_listen "$P_IPERF" "$IPERF" "iperf3 -s"

# ---- TLS servers ----------------------------------------------------------------
# tcpfile-server with TLS: its identity made in a state directory of ours,
# its fingerprint (the banner's second line) pinned by the client.
start_tcpfile "$P_TF_TLS" --state-dir "$WORK/tf-state"
TF_TLS=$TF_PID
TF_PIN=
for _ in $(seq 50); do
  TF_PIN=$(sed -n '2s/.*\(SHA256:[A-Za-z0-9+/]\{43\}\).*/\1/p' "$WORK/tcpfile-$P_TF_TLS.log")
  [ -n "$TF_PIN" ] && break
  sleep 0.1
done
[ -n "$TF_PIN" ] || die "no fingerprint on the TLS tcpfile-server's banner"
# nginx ssl with the same kind of key (EC P-256), TLS 1.3 only, one cipher
# suite for both sides, kTLS where the kernel has it (as libtcpfile), and
# session tickets for the connection test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/ngx-tls.key" -out "$WORK/ngx-tls.pem" 2>/dev/null
NGX_TLS_DIR=$WORK/nginx-tls
mkdir -p "$NGX_TLS_DIR/body"
cat >"$NGX_TLS_DIR/nginx.conf" <<EOF
daemon off;
user root root;
worker_processes auto;
worker_rlimit_nofile $NOFILE;
pid $NGX_TLS_DIR/nginx.pid;
error_log $NGX_TLS_DIR/error.log warn;
events { worker_connections $NGX_CONNS; }
http {
  access_log off;
  types { application/octet-stream bin; }
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  $NGX_FILE_CACHE
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $NGX_TLS_DIR/body;
  server {
    listen 127.0.0.1:$P_NGX_TLS ssl;
    ssl_certificate $WORK/ngx-tls.pem;
    ssl_certificate_key $WORK/ngx-tls.key;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
    ssl_conf_command Options KTLS;
    ssl_session_tickets on;
    ssl_session_cache shared:TLS:10m;
    root $D;
  }
}
EOF
nginx -p "$NGX_TLS_DIR" -e "$NGX_TLS_DIR/error.log" -c "$NGX_TLS_DIR/nginx.conf" &
NGX_TLS=$!
PIDS+=("$NGX_TLS")
wait_listen "$P_NGX_TLS" "$NGX_TLS" "nginx (ssl)"
CURL_TLS=(curl -sS -f --tlsv1.3 --tls13-ciphers TLS_AES_256_GCM_SHA384
  --cacert "$WORK/ngx-tls.pem")
# curl's inputs: the small files over one connection, and one small file
# over a new connection each time (Connection: close; curl resumes the TLS
# session from its own cache).
awk -v n="$SMALL_N" -v p="$P_NGX_TLS" 'BEGIN {
  print "write-out = \"%{num_connects} %{size_download}\\n\""
  for (i = 0; i < n; i++)
    printf "url = \"https://127.0.0.1:%d/s%05d\"\noutput = \"/dev/null\"\n", p, i
}' >"$WORK/urls-tls.cfg"
awk -v n="$TLS_CONNS" -v p="$P_NGX_TLS" 'BEGIN {
  print "write-out = \"%{num_connects} %{size_download}\\n\""
  print "header = \"Connection: close\""
  for (i = 0; i < n; i++)
    printf "url = \"https://127.0.0.1:%d/s00000\"\noutput = \"/dev/null\"\n", p
}' >"$WORK/urls-tls-conns.cfg"

# ---- measuring ----------------------------------------------------------------
RES=$WORK/results.tsv
: >"$RES"
REP=0
CLK_TCK=$(getconf CLK_TCK)

# Clock ticks of CPU used so far by a process and all its descendants,
# live and reaped (rsyncd forks two processes per transfer).
tree_cpu() {
  local total=0 p t
  for p in $(descendants "$1"); do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat" 2>/dev/null) ||
      continue
    total=$((total + ${t:-0}))
  done
  echo "$total"
}
descendants() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do descendants "$c"; done
}

# Resident memory of nginx's workers (the master's children), KiB.
workers_rss() {
  local total=0 p r
  for p in $(pgrep -P "$1"); do
    r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
    total=$((total + ${r:-0}))
  done
  echo "$total"
}

# record TEST TOOL VALUE [CLIENT_CPU_S SERVER_CPU_S]
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$REP" "$3" "${4:--}" "${5:--}" >>"$RES"
  printf '    %-22s %-26s %12s   client CPU %s s, server CPU %s s\n' "$1" "$2" "$3" \
    "${4:--}" "${5:--}"
}

# timed SERVER_PID CMD...: runs CMD (bounded by timeout), its output to
# $WORK/out; sets WALL, CCPU (the client's user + sys) and SCPU (the
# server process tree's CPU during the run). Returns CMD's status.
timed() {
  local spid=$1 s0 s1 rc=0 TIMEFORMAT='%3R %3U %3S' u s
  shift
  sync
  s0=$(tree_cpu "$spid")
  { time timeout 300 "$@" >"$WORK/out" 2>&1; } 2>"$WORK/time" || rc=$?
  sleep 0.2 # lets the server's side of the transfer finish and be reaped
  s1=$(tree_cpu "$spid")
  read -r WALL u s <"$WORK/time"
  CCPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  SCPU=$(awk -v a="$s0" -v b="$s1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
  if [ "$rc" -ne 0 ]; then
    say "command failed ($rc): $*"
    sed 's/^/      | /' "$WORK/out" | tail -5
  fi
  return "$rc"
}

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }'; }
result_field() { grep '^RESULT' "$WORK/out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# Checks that a file received is the one sent (first repetition only).
check_same() {
  [ "$REP" -eq 1 ] || return 0
  cmp -s "$1" "$2" || die "$3: $2 differs from $1"
}

# timed_copy TEST TOOL BYTES SRC DST SERVER_PID CMD...: one program line of
# a transfer test: times CMD (timed), checks that DST holds SRC's bytes
# (check_same) and records BYTES over the time taken, in MB/s.
timed_copy() {
  local test=$1 tool=$2 bytes=$3 src=$4 dst=$5
  shift 5
  timed "$@" && check_same "$src" "$dst" "$tool" &&
    record "$test" "$tool" "$(mbps "$bytes" "$WALL")" "$CCPU" "$SCPU"
}

# rotate N: the order of N tools for this repetition, so that none is
# always first.
order() {
  local n=$1 i
  for ((i = 0; i < n; i++)); do echo $(((i + REP - 1) % n)); done
}

# --- the tests: each runs every tool once ------------------------------------

t_get_null() {
  local i
  for i in $(order 6); do
    case $i in
      4)
        # For information: without the end-to-end checksum (TF_OPT_CHECKSUM).
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          --checksum 0 get big.bin --out /dev/null &&
          record get_null libtcpfile-nocksum "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      0)
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          get big.bin --out /dev/null &&
          [ "$(result_field bytes)" = "$BIG_BYTES" ] &&
          record get_null libtcpfile "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU" &&
          # The rate it measures itself (connect and handshake included, the
          # program's start not), to set beside the rate iperf3 reports.
          record get_null_self libtcpfile "$(result_field mbps)" "$CCPU" "$SCPU"
        ;;
      1 | 2 | 5)
        local port=$P_ON pid=$NGX_ON name=nginx-sendfile-on+curl
        [ "$i" -eq 2 ] && port=$P_OFF pid=$NGX_OFF name=nginx-sendfile-off+curl
        [ "$i" -eq 5 ] && port=$P_TUNED pid=$NGX_TUNED name=nginx-tuned+curl
        timed "$pid" curl -sS -f -o /dev/null -w '%{size_download}\n' \
          "http://127.0.0.1:$port/big.bin" &&
          [ "$(tail -1 "$WORK/out")" = "$BIG_BYTES" ] &&
          record get_null "$name" "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      3)
        # iperf3 reports its own rate (receiver side), converted to bytes/s;
        # it leaves out its start and its connection set-up.
        local rate
        timed "$IPERF" iperf3 -c 127.0.0.1 -p "$P_IPERF" -Z -n 1G -J &&
          rate=$(awk '/"sum_received"/ { f = 1 }
            f && /"bits_per_second"/ { gsub(/[^0-9.eE+]/, "", $2); printf "%.1f", $2 / 8e6; exit }' \
            "$WORK/out") &&
          record get_null iperf3-Z "$rate" "$CCPU" "$SCPU" &&
          record get_null_self iperf3-Z "$rate" "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}

t_get_file() {
  local i dst=$WORK/dst/big.bin
  for i in $(order 6); do
    rm -f "$dst"
    case $i in
      4)
        timed_copy get_file libtcpfile-nocksum "$BIG_BYTES" "$D/big.bin" "$dst" \
          "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          --checksum 0 get big.bin --out "$dst"
        ;;
      0)
        timed_copy get_file libtcpfile "$BIG_BYTES" "$D/big.bin" "$dst" \
          "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          get big.bin --out "$dst"
        ;;
      1 | 2 | 5)
        local port=$P_ON pid=$NGX_ON name=nginx-sendfile-on+curl
        [ "$i" -eq 2 ] && port=$P_OFF pid=$NGX_OFF name=nginx-sendfile-off+curl
        [ "$i" -eq 5 ] && port=$P_TUNED pid=$NGX_TUNED name=nginx-tuned+curl
        timed_copy get_file "$name" "$BIG_BYTES" "$D/big.bin" "$dst" \
          "$pid" curl -sS -f -o "$dst" "http://127.0.0.1:$port/big.bin"
        ;;
      3)
        timed_copy get_file rsyncd+rsync "$BIG_BYTES" "$D/big.bin" "$dst" \
          "$RSYNCD" rsync --whole-file "rsync://127.0.0.1:$P_RSYNC/data/big.bin" "$dst"
        ;;
    esac
    rm -f "$dst"
  done
  return 0
}

t_put() {
  local i
  for i in $(order 6); do
    rm -f "$D/up.bin" "$WORK/dav/up/big.bin" "$WORK/rsup/big.bin"
    case $i in
      5)
        timed_copy put_durable libtcpfile-nocksum "$BIG_BYTES" "$D/big.bin" "$D/up.bin" \
          "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          --checksum 0 put "$D/big.bin" up.bin
        ;;
      0)
        timed_copy put_durable libtcpfile "$BIG_BYTES" "$D/big.bin" "$D/up.bin" \
          "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          put "$D/big.bin" up.bin
        ;;
      1)
        # nginx answers before the data is on disk, so the sync (fsync of
        # the file and its directory) is timed too, to match libtcpfile,
        # whose server fsyncs the file and the directory before it replies.
        timed_copy put_durable curl-T+nginx-dav+sync "$BIG_BYTES" "$D/big.bin" \
          "$WORK/dav/up/big.bin" \
          "$NGX_ON" bash -c "curl -sS -f -T '$D/big.bin' -o /dev/null \
          http://127.0.0.1:$P_ON/up/big.bin && sync '$WORK/dav/up/big.bin' '$WORK/dav/up'"
        ;;
      2)
        # --fsync: the receiving rsync fsyncs the file before renaming it.
        local name=rsync--fsync
        [ -n "$RSYNC_FSYNC" ] || name=rsync+sync
        if [ -n "$RSYNC_FSYNC" ]; then
          timed "$RSYNCD" rsync --whole-file --fsync "$D/big.bin" \
            "rsync://127.0.0.1:$P_RSYNC/up/big.bin"
        else
          timed "$RSYNCD" bash -c "rsync --whole-file '$D/big.bin' \
            rsync://127.0.0.1:$P_RSYNC/up/big.bin && sync '$WORK/rsup/big.bin' '$WORK/rsup'"
        fi &&
          check_same "$D/big.bin" "$WORK/rsup/big.bin" rsync &&
          record put_durable "$name" "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      3)
        # For information: the same uploads without waiting for the disk.
        timed "$NGX_ON" curl -sS -f -T "$D/big.bin" -o /dev/null \
          "http://127.0.0.1:$P_ON/up/big.bin" &&
          record put_not_durable curl-T+nginx-dav "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      4)
        timed "$RSYNCD" rsync --whole-file "$D/big.bin" "rsync://127.0.0.1:$P_RSYNC/up/big.bin" &&
          record put_not_durable rsync "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
    esac
    rm -f "$D/up.bin" "$WORK/dav/up/big.bin" "$WORK/rsup/big.bin"
  done
  return 0
}

t_small() {
  local i
  for i in $(order 5); do
    case $i in
      0)
        # tf_get_many: 32 requests in flight on the one connection.
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          small --count "$SMALL_N" --prefix s --files "$SMALL_N" --digits 5 --pipeline 32 &&
          [ "$(result_field requests)" = "$SMALL_N" ] &&
          record small_1conn libtcpfile "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      3)
        # tf_get_fd, one request at a time, as curl does: for information.
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          small --count "$SMALL_N" --prefix s --files "$SMALL_N" --digits 5 &&
          [ "$(result_field requests)" = "$SMALL_N" ] &&
          record small_1conn libtcpfile-sequential "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1 | 2 | 4)
        local port=$P_ON pid=$NGX_ON name=nginx-sendfile-on+curl
        [ "$i" -eq 2 ] && port=$P_OFF pid=$NGX_OFF name=nginx-sendfile-off+curl
        [ "$i" -eq 4 ] && port=$P_TUNED pid=$NGX_TUNED name=nginx-tuned+curl
        # One curl, 10,000 URLs: it reuses its one keep-alive connection.
        if timed "$pid" curl -sS -f --config "$WORK/urls-$port.cfg"; then
          local conns bytes
          read -r conns bytes < <(awk '{ c += $1; b += $2 } END { print c, b }' "$WORK/out")
          [ "$bytes" = $((SMALL_N * 4096)) ] || die "curl: $bytes bytes, $conns connections"
          record small_1conn "$name" "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
          [ "$conns" = 1 ] || say "note: curl opened $conns connections"
        fi
        ;;
    esac
  done
  return 0
}

t_conc() {
  local i
  for i in $(order 6); do
    case $i in
      5)
        # For information: the same client with one event loop per CPU, the
        # connections dealt out among them, as wrk -t $(nproc) deals them
        # among its threads (slower than one loop on 2 CPUs, 2026-12-08:
        # the loops and the server's workers take turns on the CPUs).
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          concurrent --async --threads "$(nproc)" --conns 64 --seconds "$WRK_SECONDS" \
          --prefix s --files "$SMALL_N" --digits 5 &&
          record conc_64 libtcpfile-async-threads "$(result_field reqps)" "$CCPU" "$SCPU"
        ;;
      3)
        # The same with tf_get_many, 8 requests in flight per connection:
        # for information (wrk has one in flight per connection).
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          concurrent --conns 64 --seconds "$WRK_SECONDS" --prefix s --files "$SMALL_N" \
          --digits 5 --pipeline 8 &&
          record conc_64 libtcpfile-pipelined "$(result_field reqps)" "$CCPU" "$SCPU"
        ;;
      0)
        # The event-driven client (tf_aclient): one thread, 64 connections
        # on one epoll set, one request in flight each, as wrk does.
        timed "$TF_MAIN" "$BENCH" --host 127.0.0.1 --port "$P_TF" --server-pid "$TF_MAIN" \
          concurrent --async --conns 64 --seconds "$WRK_SECONDS" --prefix s --files "$SMALL_N" \
          --digits 5 &&
          record conc_64 libtcpfile "$(result_field reqps)" "$CCPU" "$SCPU" &&
          grep -E 'latency|failures' "$WORK/out" | sed 's/^/      /'
        ;;
      1 | 2 | 4)
        local port=$P_ON pid=$NGX_ON name=wrk+nginx-sendfile-on
        [ "$i" -eq 2 ] && port=$P_OFF pid=$NGX_OFF name=wrk+nginx-sendfile-off
        [ "$i" -eq 4 ] && port=$P_TUNED pid=$NGX_TUNED name=wrk+nginx-tuned
        if timed "$pid" wrk -t "$(nproc)" -c 64 -d "${WRK_SECONDS}s" --latency \
          -s "$WORK/rotate.lua" "http://127.0.0.1:$port/"; then
          grep -q 'Non-2xx' "$WORK/out" && die "wrk: errors from nginx"
          record conc_64 "$name" "$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/out")" \
            "$CCPU" "$SCPU"
          grep -A4 'Latency Distribution' "$WORK/out" | tr -s ' ' | paste -sd' ' |
            sed 's/^/      /'
        fi
        ;;
    esac
  done
  return 0
}

t_idle() {
  local i
  for i in $(order 2); do
    case $i in
      0)
        # A fresh server each time: memory freed by an earlier run would
        # otherwise be reused and hide the growth.
        start_tcpfile "$P_TF_IDLE"
        if timed "$TF_PID" "$BENCH" --host 127.0.0.1 --port "$P_TF_IDLE" --server-pid "$TF_PID" \
          idle --conns "$IDLE_N" --name m1.bin --gets "$IDLE_GETS"; then
          record idle_bytes_per_conn libtcpfile "$(result_field bytes_per_conn)"
          record idle_get_1MiB_max_ms libtcpfile "$(result_field max_ms)"
          record idle_get_1MiB_p50_ms libtcpfile "$(result_field p50_ms)"
          grep -E '^  (held|server RSS|per conn|get alone)' "$WORK/out" | sed 's/^/      /'
        fi
        stop_pid "$TF_PID"
        ;;
      1)
        start_nginx idle "$P_NGX_IDLE" on
        local url=http://127.0.0.1:$P_NGX_IDLE/m1.bin r0 r1 hold
        curl -sS -f -o /dev/null "$url"
        sleep 1
        r0=$(workers_rss "$NGX_PID")
        timeout 300 "$HOLD" 127.0.0.1 "$P_NGX_IDLE" "$IDLE_N" --http /m1.bin --seconds 240 \
          >"$WORK/hold.out" 2>&1 &
        hold=$!
        PIDS+=("$hold")
        for _ in $(seq 1200); do
          grep -qs '^ready' "$WORK/hold.out" && break
          kill -0 "$hold" 2>/dev/null || break
          sleep 0.1
        done
        if [ "$(sed -n 's/^ready //p' "$WORK/hold.out")" = "$IDLE_N" ]; then
          sleep 1
          r1=$(workers_rss "$NGX_PID")
          : >"$WORK/lat"
          for _ in $(seq "$IDLE_GETS"); do
            curl -sS -f -o /dev/null -w '%{time_total}\n' "$url" >>"$WORK/lat"
          done
          record idle_bytes_per_conn nginx "$(((r1 - r0) * 1024 / IDLE_N))"
          record idle_get_1MiB_max_ms nginx+curl "$(sort -g "$WORK/lat" |
            awk 'END { printf "%.3f", $1 * 1000 }')"
          record idle_get_1MiB_p50_ms nginx+curl "$(sort -g "$WORK/lat" |
            awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] * 1000 }')"
          echo "      nginx workers RSS: before $r0 KiB, holding $IDLE_N: $r1 KiB"
        else
          say "holdconns failed: $(cat "$WORK/hold.out")"
        fi
        stop_pid "$hold"
        stop_pid "$NGX_PID"
        ;;
    esac
  done
  return 0
}

# --- the programs users run: tcpfile-client beside curl, whole processes ------

# Names s00000 .. s(N-1), for one tcpfile-client command line.
small_names() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "s%05d\n", i }'; }

t_prog_get_null() {
  local i
  for i in $(order 4); do
    case $i in
      0)
        timed "$TF_MAIN" "$CLIENT" --plaintext -q "127.0.0.1:$P_TF" get big.bin --to /dev/null &&
          record get_null_prog libtcpfile "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      *)
        timed "${NGX_PIDOF[$i]}" curl -sS -f -o /dev/null -w '%{size_download}\n' \
          "http://127.0.0.1:${NGX_PORT[$i]}/big.bin" &&
          [ "$(tail -1 "$WORK/out")" = "$BIG_BYTES" ] &&
          record get_null_prog "${NGX_NAME[$i]}+curl" "$(mbps "$BIG_BYTES" "$WALL")" \
            "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}

t_prog_get_file() {
  local i dst=$WORK/dst/big.bin
  for i in $(order 4); do
    rm -f "$dst"
    case $i in
      0)
        timed_copy get_file_prog libtcpfile "$BIG_BYTES" "$D/big.bin" "$dst" \
          "$TF_MAIN" "$CLIENT" --plaintext -q "127.0.0.1:$P_TF" get big.bin --to "$dst"
        ;;
      *)
        timed_copy get_file_prog "${NGX_NAME[$i]}+curl" "$BIG_BYTES" "$D/big.bin" "$dst" \
          "${NGX_PIDOF[$i]}" curl -sS -f -o "$dst" "http://127.0.0.1:${NGX_PORT[$i]}/big.bin"
        ;;
    esac
    rm -f "$dst"
  done
  return 0
}

t_prog_put() {
  local i
  for i in $(order 2); do
    rm -f "$D/up.bin" "$WORK/dav/up/big.bin"
    case $i in
      0)
        # The server fsyncs the file and its directory before it answers.
        timed_copy put_durable_prog libtcpfile "$BIG_BYTES" "$D/big.bin" "$D/up.bin" \
          "$TF_MAIN" "$CLIENT" --plaintext -q "127.0.0.1:$P_TF" put "$D/big.bin" --as up.bin
        ;;
      1)
        timed_copy put_durable_prog curl-T+nginx-dav+sync "$BIG_BYTES" "$D/big.bin" \
          "$WORK/dav/up/big.bin" \
          "$NGX_TUNED" bash -c "curl -sS -f -T '$D/big.bin' -o /dev/null \
          http://127.0.0.1:$P_TUNED/up/big.bin && sync '$WORK/dav/up/big.bin' '$WORK/dav/up'"
        ;;
    esac
    rm -f "$D/up.bin" "$WORK/dav/up/big.bin"
  done
  return 0
}

t_prog_small() {
  local i
  small_names "$SMALL_N" >"$WORK/names"
  for i in $(order 4); do
    case $i in
      0)
        # One invocation, every name on its command line, to standard output.
        timed "$TF_MAIN" bash -c "set -o pipefail; '$CLIENT' --plaintext -q 127.0.0.1:$P_TF get \
          \$(cat '$WORK/names') --to - | wc -c" &&
          [ "$(tail -1 "$WORK/out")" = $((SMALL_N * 4096)) ] &&
          record small_prog libtcpfile "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      *)
        local port=${NGX_PORT[$i]}
        timed "${NGX_PIDOF[$i]}" curl -sS -f --config "$WORK/urls-$port.cfg" &&
          record small_prog "${NGX_NAME[$i]}+curl" "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}

# Through the relays (a 20 ms round trip): RELAY_N small gets in one
# command, then a MID_BYTES get and a durable put.
t_relay() {
  local i
  small_names "$RELAY_N" >"$WORK/rnames"
  for i in $(order 6); do
    rm -f "$D/up-mid.bin" "$WORK/dav/up/mid.bin"
    case $i in
      0)
        timed "$TF_MAIN" bash -c "set -o pipefail; '$CLIENT' --plaintext -q 127.0.0.1:$P_RELAY_TF get \
          \$(cat '$WORK/rnames') --to - | wc -c" &&
          [ "$(tail -1 "$WORK/out")" = $((RELAY_N * 4096)) ] &&
          record relay_small libtcpfile "$(rate "$RELAY_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1)
        timed "$NGX_TUNED" curl -sS -f --config "$WORK/urls-$P_RELAY_NGX.cfg" &&
          record relay_small nginx-tuned+curl "$(rate "$RELAY_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      2)
        timed "$TF_MAIN" "$CLIENT" --plaintext -q "127.0.0.1:$P_RELAY_TF" get mid.bin --to /dev/null &&
          record relay_get_mid libtcpfile "$(mbps "$MID_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      3)
        timed "$NGX_TUNED" curl -sS -f -o /dev/null "http://127.0.0.1:$P_RELAY_NGX/mid.bin" &&
          record relay_get_mid nginx-tuned+curl "$(mbps "$MID_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      4)
        timed_copy relay_put_mid libtcpfile "$MID_BYTES" "$D/mid.bin" "$D/up-mid.bin" \
          "$TF_MAIN" "$CLIENT" --plaintext -q "127.0.0.1:$P_RELAY_TF" put "$D/mid.bin" --as up-mid.bin
        ;;
      5)
        timed_copy relay_put_mid curl-T+nginx-dav+sync "$MID_BYTES" "$D/mid.bin" \
          "$WORK/dav/up/mid.bin" \
          "$NGX_TUNED" bash -c "curl -sS -f -T '$D/mid.bin' -o /dev/null \
          http://127.0.0.1:$P_RELAY_NGX/up/mid.bin && sync '$WORK/dav/up/mid.bin' '$WORK/dav/up'"
        ;;
    esac
    rm -f "$D/up-mid.bin" "$WORK/dav/up/mid.bin"
  done
  return 0
}

# N programs at once, each getting par.bin to /dev/null; the aggregate rate.
t_parallel() { # N
  local n=$1 i
  for i in $(order 4); do
    case $i in
      0)
        timed "$TF_MAIN" bash -c "for k in \$(seq $n); do '$CLIENT' --plaintext -q 127.0.0.1:$P_TF get \
          par.bin --to /dev/null & done; wait" &&
          record "par_$n" libtcpfile "$(mbps $((n * PAR_BYTES)) "$WALL")" "$CCPU" "$SCPU"
        ;;
      *)
        timed "${NGX_PIDOF[$i]}" bash -c "for k in \$(seq $n); do curl -sS -f -o /dev/null \
          http://127.0.0.1:${NGX_PORT[$i]}/par.bin & done; wait" &&
          record "par_$n" "${NGX_NAME[$i]}+curl" "$(mbps $((n * PAR_BYTES)) "$WALL")" \
            "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}

# ---- the tree (issue 12) -------------------------------------------------------
TREE=$TW/tree
# make_tree DIR N DIRS: N files of 4 KiB of random bytes in DIRS directories.
make_tree() {
  local dir=$1 n=$2 dirs=$3 d per
  per=$(((n + dirs - 1) / dirs))
  for ((d = 0; d < dirs && d * per < n; d++)); do
    local k=$((n - d * per < per ? n - d * per : per)) sub
    sub=$(printf '%s/d%03d' "$dir" "$d")
    mkdir -p "$sub"
    head -c $((k * 4096)) /dev/urandom | split -b 4096 -a 4 -d - "$sub/f"
  done
}
# change_1pct: new bytes (same size) and a new mtime in every 100th file.
CHANGE_T=1700000000
change_1pct() {
  CHANGE_T=$((CHANGE_T + 10))
  find "$TREE" -type f | sort | awk 'NR % 100 == 1' | while read -r f; do
    head -c 4096 /dev/urandom >"$f"
    touch -d "@$CHANGE_T" "$f"
  done
}
same_tree() { # the first repetition checks what arrived
  [ "$REP" -eq 1 ] || return 0
  diff -r -q -x '.tcpfile-tmp*' "$1" "$2" >/dev/null || die "$3: $2 differs from $1"
}
# The push lines: each tool into an empty destination, then (untimed) in
# step, 1 % changed, pushed again (timed). rsync -a never syncs to disk;
# rsync -a --fsync does, each file, as tcpfile-server's acknowledged puts
# are (a group at a time): the like-for-like line.
tf_push() { timed "$TF_TREE" "$TFCLIENT" --plaintext -q 127.0.0.1 "$P_TF_TREE" sync "$TREE" ":$1"; }
rs_push() { # NAME DEST RSYNC-OPTIONS...
  local dest=$2
  shift 2
  timed "$RSYNCD" rsync "$@" "$TREE/" "rsync://127.0.0.1:$P_RSYNC/tree/$dest/"
}
t_tree_push() {
  local i files=$TREE_FILES changed=$(((TREE_FILES + 99) / 100))
  for i in $(order 4); do
    case $i in
      0)
        rm -rf "$TW/tftree/t"
        tf_push t && same_tree "$TREE" "$TW/tftree/t" libtcpfile &&
          record tree_push_first libtcpfile "$(rate "$files" "$WALL")" "$CCPU" "$SCPU"
        change_1pct
        tf_push t && same_tree "$TREE" "$TW/tftree/t" libtcpfile &&
          record tree_push_1pct libtcpfile "$(rate "$changed" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1 | 2 | 3)
        local name=rsync-a opts=(-a)
        [ "$i" -eq 2 ] && name=rsync-a-W-inplace opts=(-a -W --inplace)
        [ "$i" -eq 3 ] && name=rsync-a-fsync opts=(-a --fsync)
        rm -rf "$TW/rstree/$name"
        rs_push "$name" "$name" "${opts[@]}" && same_tree "$TREE" "$TW/rstree/$name" "$name" &&
          record tree_push_first "$name" "$(rate "$files" "$WALL")" "$CCPU" "$SCPU"
        change_1pct
        rs_push "$name" "$name" "${opts[@]}" && same_tree "$TREE" "$TW/rstree/$name" "$name" &&
          record tree_push_1pct "$name" "$(rate "$changed" "$WALL")" "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}
# get -r of the pushed tree against an rsync pull of the same tree.
t_tree_get() {
  local i dst=$TW/dst/tree
  for i in $(order 3); do
    rm -rf "$dst"
    case $i in
      0)
        timed "$TF_TREE" "$TFCLIENT" --plaintext -q 127.0.0.1 "$P_TF_TREE" get -r t "$dst" &&
          same_tree "$TW/tftree/t" "$dst" libtcpfile &&
          record tree_get libtcpfile "$(rate "$TREE_FILES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1 | 2)
        local name=rsync-a opts=(-a)
        [ "$i" -eq 2 ] && name=rsync-a-W-inplace opts=(-a -W --inplace)
        timed "$RSYNCD" rsync "${opts[@]}" "rsync://127.0.0.1:$P_RSYNC/tree/rsync-a/" "$dst/" &&
          same_tree "$TW/rstree/rsync-a" "$dst" "$name" &&
          record tree_get "$name" "$(rate "$TREE_FILES" "$WALL")" "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}
# ls -r of N entries (empty files, 100 per directory) from a fresh server:
# the client's maximum RSS (/usr/bin/time -v) and the server's peak RSS
# (VmHWM), for N and N / 10, to show they do not grow with N.
t_ls_r() {
  local n
  for n in $((LIST_ENTRIES / 10)) "$LIST_ENTRIES"; do
    local root=$WORK/lsroot-$n d pid c_kib s0 s1
    if [ ! -d "$root" ]; then
      for ((d = 0; d * 100 < n; d++)); do
        mkdir -p "$root/l/d$d"
        (cd "$root/l/d$d" && seq -f 'e%03g' 0 $((n - d * 100 < 100 ? n - d * 100 - 1 : 99)) |
          xargs touch)
      done
    fi
    "$TFSERVER" --plaintext -q --bind 127.0.0.1 "$P_TF_LIST" "$root" >"$WORK/tcpfile-list.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_listen "$P_TF_LIST" "$pid" "tcpfile-server (list)"
    s0=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    if timed "$pid" /usr/bin/time -v "$TFCLIENT" --plaintext -q 127.0.0.1 "$P_TF_LIST" ls -r l; then
      c_kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/out")
      s1=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
      local lines
      lines=$(grep -c $'^[fd]\t' "$WORK/out" || true)
      [ "$lines" -ge "$n" ] || say "ls -r listed $lines entries, expected $n and their directories"
      record "ls_r_${n}_client_maxrss_kib" libtcpfile "$c_kib"
      record "ls_r_${n}_server_peak_kib" libtcpfile "$s1"
      echo "      ls -r of $n files ($lines entries): $WALL s; client max RSS $c_kib KiB;" \
        "server peak RSS $s0 KiB at start, $s1 KiB after"
    fi
    stop_pid "$pid"
  done
  return 0
}

# ---- run ---------------------------------------------------------------------
say "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB," \
  "kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
say "tools: $(nginx -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2)," \
  "wrk $(dpkg-query -W -f='${Version}' wrk), $(iperf3 --version | head -1 | cut -d' ' -f1-2)," \
  "rsync $(rsync --version | head -1 | awk '{ print $3 }')," \
  "libtcpfile $("$BENCH" --version | sed 's/.*libtcpfile //; s/)//')" \
  "($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'not a git checkout'))"
say "$REPS repetitions; idle: $IDLE_N connections; 64 connections for $WRK_SECONDS s"
# Other work on the machine skews every figure: show how busy it is.
busy() {
  say "load average $(cut -d' ' -f1-3 /proc/loadavg); busiest other processes:" \
    "$(top -b -n 2 -d 0.5 -w 200 | awk '/^top -/ { n++ }
      n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 { printf "%s %s%%, ", $12, $9 }' |
      sed 's/, $//')"
}
# --- TLS (issue 13) ------------------------------------------------------------

t_tls_get() {
  local i
  for i in $(order 2); do
    case $i in
      0)
        timed "$TF_TLS" "$BENCH" --host 127.0.0.1 --port "$P_TF_TLS" --server-pid "$TF_TLS" \
          --tls-pin "$TF_PIN" get big.bin --out /dev/null &&
          record tls_get libtcpfile "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1)
        timed "$NGX_TLS" "${CURL_TLS[@]}" -o /dev/null "https://127.0.0.1:$P_NGX_TLS/big.bin" &&
          record tls_get nginx-ssl+curl "$(mbps "$BIG_BYTES" "$WALL")" "$CCPU" "$SCPU"
        ;;
    esac
  done
  return 0
}

t_tls_small() {
  local i conns bytes
  for i in $(order 2); do
    case $i in
      0)
        timed "$TF_TLS" "$BENCH" --host 127.0.0.1 --port "$P_TF_TLS" --server-pid "$TF_TLS" \
          --tls-pin "$TF_PIN" small --count "$SMALL_N" --prefix s --files "$SMALL_N" \
          --digits 5 --pipeline 32 &&
          [ "$(result_field requests)" = "$SMALL_N" ] &&
          record tls_small_1conn libtcpfile "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1)
        if timed "$NGX_TLS" "${CURL_TLS[@]}" --config "$WORK/urls-tls.cfg"; then
          read -r conns bytes < <(awk '{ c += $1; b += $2 } END { print c, b }' "$WORK/out")
          [ "$bytes" = $((SMALL_N * 4096)) ] || die "curl https: $bytes bytes, $conns connections"
          record tls_small_1conn nginx-ssl+curl "$(rate "$SMALL_N" "$WALL")" "$CCPU" "$SCPU"
          [ "$conns" = 1 ] || say "note: curl opened $conns connections"
        fi
        ;;
    esac
  done
  return 0
}

t_tls_conns() {
  local i conns bytes
  for i in $(order 2); do
    case $i in
      0)
        timed "$TF_TLS" "$BENCH" --host 127.0.0.1 --port "$P_TF_TLS" --server-pid "$TF_TLS" \
          --tls-pin "$TF_PIN" connections --count "$TLS_CONNS" --name s00000 &&
          [ "$(result_field requests)" = "$TLS_CONNS" ] &&
          record tls_conns libtcpfile "$(rate "$TLS_CONNS" "$WALL")" "$CCPU" "$SCPU"
        ;;
      1)
        if timed "$NGX_TLS" "${CURL_TLS[@]}" --config "$WORK/urls-tls-conns.cfg"; then
          read -r conns bytes < <(awk '{ c += $1; b += $2 } END { print c, b }' "$WORK/out")
          [ "$bytes" = $((TLS_CONNS * 4096)) ] ||
            die "curl https: $bytes bytes over $conns connections"
          [ "$conns" = "$TLS_CONNS" ] || say "note: curl opened $conns connections, not $TLS_CONNS"
          record tls_conns nginx-ssl+curl "$(rate "$TLS_CONNS" "$WALL")" "$CCPU" "$SCPU"
        fi
        ;;
    esac
  done
  return 0
}

START=$(date +%s)
say "making the tree: $TREE_FILES x 4 KiB in $TREE_DIRS directories"
make_tree "$TREE" "$TREE_FILES" "$TREE_DIRS"
find "$TREE" -type f -exec cat {} + >/dev/null
for ((REP = 1; REP <= REPS; REP++)); do
  say "repetition $REP of $REPS"
  busy
  if [ "$TLS_ONLY" -eq 0 ]; then
    say "  tree: push $TREE_FILES files, then again after 1 % changed (files/s)"; t_tree_push
    say "  tree: get -r of $TREE_FILES files (files/s)"; t_tree_get
    [ "$REP" -eq 1 ] && { say "  ls -r: memory (KiB)"; t_ls_r; }
  fi
  [ "$TREE_ONLY" -eq 1 ] && continue
  if [ "$TLS_ONLY" -eq 0 ]; then
    say "  get $BIG_BYTES bytes to /dev/null (MB/s)"; t_get_null
    say "  the same, programs: tcpfile-client and curl (MB/s)"; t_prog_get_null
    say "  get $BIG_BYTES bytes to a file (MB/s)"; t_get_file
    say "  the same, programs (MB/s)"; t_prog_get_file
    say "  put $BIG_BYTES bytes (MB/s)"; t_put
    say "  the same, programs, durable (MB/s)"; t_prog_put
    say "  $SMALL_N x 4 KiB gets, one connection (files/s)"; t_small
    say "  the same, programs: one tcpfile-client call, one curl (files/s)"; t_prog_small
    say "  through the relay, ${RELAY_MS} ms each way"; t_relay
    say "  4 and 16 programs at once, $PAR_BYTES bytes each (MB/s, all together)"
    t_parallel 4
    t_parallel 16
    say "  4 KiB gets, 64 connections, $WRK_SECONDS s (requests/s)"; t_conc
    say "  $IDLE_N idle connections"; t_idle
  fi
  say "  TLS: get the big file to /dev/null (MB/s)"; t_tls_get
  say "  TLS: $SMALL_N x 4 KiB gets, one connection (files/s)"; t_tls_small
  say "  TLS: $TLS_CONNS new connections, a 4 KiB get each (connections/s)"; t_tls_conns
done
busy
say "done in $(($(date +%s) - START)) s"

# ---- the table ----------------------------------------------------------------
# median TEST TOOL-REGEX: the median over repetitions, per tool; prints
# "value tool" for the best tool (highest, or lowest with "low").
medians() {
  awk -F'\t' '{ print $1 "\t" $2 "\t" $4 }' "$RES" | sort -t$'\t' -k1,1 -k2,2 -k3,3g |
    awk -F'\t' '
      { k = $1 "\t" $2; v[k, ++n[k]] = $3; if (!(k in seen)) { seen[k] = 1; keys[++nk] = k } }
      END {
        for (i = 1; i <= nk; i++) {
          k = keys[i]; c = n[k]
          m = c % 2 ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2
          printf "%s\t%s\t%d\t%s\t%s\n", k, m, c, v[k, 1], v[k, c]
        }
      }'
}
medians >"$WORK/medians.tsv"

med() { awk -F'\t' -v t="$1" -v o="$2" '$1 == t && $2 == o { print $3 }' "$WORK/medians.tsv"; }
best() { # TEST DIRECTION(hi|lo) TOOL-REGEX -> "value tool"
  awk -F'\t' -v t="$1" -v d="$2" -v re="$3" '
    $1 == t && $2 !~ /^libtcpfile/ && $2 ~ re {
      if (!f || (d == "hi" ? $3 > b : $3 < b)) { b = $3; w = $2; f = 1 }
    }
    END { if (f) print b, w }' "$WORK/medians.tsv"
}

row() { # WORK UNIT TEST PEER_REGEX DIRECTION TARGET_OP TARGET
  local ours peer pv pn ratio met
  ours=$(med "$3" libtcpfile)
  peer=$(best "$3" "$5" "$4")
  pv=${peer%% *}
  pn=${peer#* }
  if [ -z "$ours" ] || [ -z "$peer" ]; then
    printf '| %s | %s | %s | %s | – | %s %s | not measured |\n' "$1" "${ours:-–}" \
      "${pv:-–}" "${pn:-–}" "$6" "$7"
    return
  fi
  ratio=$(awk -v a="$ours" -v b="$pv" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  met=$(awk -v r="$ratio" -v o="$6" -v t="$7" \
    'BEGIN { print (((o == "≥" && r >= t) || (o == "≤" && r <= t)) ? "yes" : "**no**") }')
  printf '| %s (%s) | %s | %s | %s | %s× | %s %s× | %s |\n' "$1" "$2" "$ours" "$pv" "$pn" \
    "$ratio" "$6" "$7" "$met"
}

echo
echo "Medians of $REPS runs on 127.0.0.1 ($(date -u +%Y-%m-%d);" \
  "$(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r))."
echo
echo "| work | libtcpfile | best peer | peer | ratio | target | met |"
echo "|---|---|---|---|---|---|---|"
echo "| **the tree** (tcpfile-client vs rsync to an rsync daemon) | | | | | | |"
row "push, $TREE_FILES × 4 KiB in $TREE_DIRS dirs, first" files/s tree_push_first '^rsync' hi "≥" 2.0
row "the same push, 1 % changed" "changed files/s" tree_push_1pct '^rsync' hi "≥" 3.0
row "first push, both durable (peer: rsync -a --fsync)" files/s tree_push_first '^rsync-a-fsync$' hi "≥" 2.0
row "1 % changed, both durable (peer: rsync -a --fsync)" "changed files/s" tree_push_1pct '^rsync-a-fsync$' hi "≥" 3.0
row "get -r of that tree (rsync: pull)" files/s tree_get '^rsync' hi "≥" 2.0
for n in $((LIST_ENTRIES / 10)) "$LIST_ENTRIES"; do
  echo "| ls -r of $n entries: client max RSS / server peak RSS (KiB) |" \
    "$(med "ls_r_${n}_client_maxrss_kib" libtcpfile) / $(med "ls_r_${n}_server_peak_kib" libtcpfile)" \
    "| – | – | – | independent of the count | see both rows |"
done
echo "| **the programs** (tcpfile-client vs curl, whole processes) | | | | | | |"
row "get $BIG_BYTES B to /dev/null" MB/s get_null_prog '^nginx' hi "≥" 1.2
row "get $BIG_BYTES B to a file" MB/s get_file_prog '^nginx' hi "≥" 2.0
row "put $BIG_BYTES B, durable" MB/s put_durable_prog '.' hi "≥" 1.2
row "$SMALL_N × 4 KiB gets, one invocation" files/s small_prog '.' hi "≥" 5.0
row "$RELAY_N × 4 KiB gets, one invocation, relay ${RELAY_MS} ms each way" files/s relay_small '.' hi "≥" 20
row "get $MID_BYTES B through the relay" MB/s relay_get_mid '.' hi "≥" 1.0
row "put $MID_BYTES B durable through the relay" MB/s relay_put_mid '.' hi "≥" 1.0
row "4 programs at once, $PAR_BYTES B each" MB/s par_4 '.' hi "≥" 1.2
row "16 programs at once, $PAR_BYTES B each" MB/s par_16 '.' hi "≥" 1.2
echo "| **the library** (tcpfile-bench) | | | | | | |"
row "get $BIG_BYTES B to /dev/null" MB/s get_null '^nginx' hi "≥" 1.0
row "get $BIG_BYTES B to /dev/null, rate each reports itself" MB/s get_null_self '^iperf3' hi "≥" 1.0
row "get $BIG_BYTES B to a file" MB/s get_file '.' hi "≥" 1.0
row "put $BIG_BYTES B, durable" MB/s put_durable '.' hi "≥" 1.0
row "$SMALL_N × 4 KiB gets, one connection" files/s small_1conn '.' hi "≥" 3.0
row "4 KiB gets, 64 connections (event-driven client), $WRK_SECONDS s" req/s conc_64 '.' hi "≥" 1.2
row "$IDLE_N idle connections" bytes/conn idle_bytes_per_conn '.' lo "≤" 0.5
echo "| **TLS 1.3** (tcpfile-bench vs nginx ssl + curl https) | | | | | | |"
row "TLS: get $BIG_BYTES B to /dev/null" MB/s tls_get '^nginx-ssl' hi "≥" 1.0
row "TLS: $SMALL_N × 4 KiB gets, one connection" files/s tls_small_1conn '^nginx-ssl' hi "≥" 5.0
row "TLS: new connections (handshake, 4 KiB get, close)" conn/s tls_conns '^nginx-ssl' hi "≥" 1.0
ours=$(med idle_get_1MiB_max_ms libtcpfile)
peer=$(med idle_get_1MiB_max_ms nginx+curl)
met=$(awk -v a="${ours:-1e9}" 'BEGIN { print ((a < 100) ? "yes" : "**no**") }')
echo "| 1 MiB get while $IDLE_N are held (ms, slowest of $IDLE_GETS, new connection each) |" \
  "${ours:-–} | ${peer:-–} | nginx+curl | – | < 100 ms | $met |"
echo
echo "Every tool (median, runs, lowest, highest):"
echo
echo "| measurement | tool | median | runs | lowest | highest |"
echo "|---|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %d | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' \
  "$WORK/medians.tsv"
echo
echo "Client and server CPU seconds per run (median):"
echo
echo "| measurement | tool | client CPU s | server CPU s |"
echo "|---|---|---|---|"
awk -F'\t' '$5 != "-" { k = $1 "\t" $2; c[k] = c[k] " " $5; s[k] = s[k] " " $6;
    if (!(k in seen)) { seen[k] = 1; keys[++n] = k } }
  function md(str,   a, m, i, j, t) {
    m = split(substr(str, 2), a, " ")
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END { for (i = 1; i <= n; i++) { split(keys[i], kk, "\t");
    printf "| %s | %s | %s | %s |\n", kk[1], kk[2], md(c[keys[i]]), md(s[keys[i]]) } }' "$RES"
