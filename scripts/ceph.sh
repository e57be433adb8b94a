#!/usr/bin/env bash
# ceph.sh up | down | env - a single-node Ceph for the S3 tests (issue 15),
# from Debian 12's own packages (ceph 16.2): one monitor, one OSD with
# bluestore on a sparse file (memstore reports itself full), and a RADOS
# Gateway, cephx off, everything under one directory ($TF_CEPH_DIR, default
# /tmp/tcpfile-ceph) and on free loopback ports. No manager daemon: the
# gateway does not need one (health shows a warning nobody reads).
#
#   up    starts it (nothing when it already answers), creates an S3 user and
#         a bucket, and writes $TF_CEPH_DIR/s3.env for the tests to source:
#         TF_S3_ENDPOINT TF_S3_BUCKET TF_S3_REGION AWS_ACCESS_KEY_ID
#         AWS_SECRET_ACCESS_KEY
#   down  stops every daemon it started and removes the directory
#   env   prints the env file (fails when Ceph is not up)
# TF_CEPH_OSD_BYTES sets the OSD's size (default 4 GiB).
#
# The packages: scripts/deps.sh's TF_S3_PACKAGES.
set -euo pipefail

DIR=${TF_CEPH_DIR:-/tmp/tcpfile-ceph}
# The OSD's size (a sparse file: only what is written takes room). 4 GiB
# does for the tests; bench/s3_compare.sh's 1 GiB lines need 16 GiB
# (radosgw frees overwritten data only at its garbage collection, 2 h).
OSD_BYTES=${TF_CEPH_OSD_BYTES:-4294967296}
ENVFILE=$DIR/s3.env
BUCKET=${TF_S3_BUCKET:-tcpfile-test}
REGION=default # the gateway's zonegroup: what SigV4's scope names

die() {
  echo "ceph.sh: $*" >&2
  for log in "$DIR"/log/*.log; do
    [ -f "$log" ] || continue
    echo "---- last lines of $log" >&2
    tail -n 25 "$log" >&2
  done
  exit 1
}

# A port nothing listens on (a connect that is refused), below the range
# the kernel hands out to outgoing connections (the daemons' own among
# them), so that nothing takes it before the daemon binds it.
free_port() {
  local p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 12000 ] || lo=32768
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# Waits up to $2 tenths of a second for the command $1 (eval'd) to succeed.
wait_for() {
  local i
  for ((i = 0; i < $2; i++)); do
    eval "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

running() {
  local f
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && return 0
  done
  return 1
}

# The gateway answers an anonymous request (any HTTP status will do).
rgw_answers() {
  [ -f "$ENVFILE" ] || return 1
  # shellcheck disable=SC1090
  (. "$ENVFILE" && curl -s -o /dev/null -m 2 "$TF_S3_ENDPOINT/")
}

cmd_down() {
  local f pid
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
  done
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

cmd_up() {
  local start=$SECONDS
  if rgw_answers; then
    echo "ceph.sh: already up ($ENVFILE)"
    return 0
  fi
  # Half started, or left from a dead run: start over.
  cmd_down
  for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
    command -v "$bin" >/dev/null || die "$bin is missing: install scripts/deps.sh's TF_S3_PACKAGES"
  done
  mkdir -p "$DIR"/{run,log,mon,osd,rgw}
  local mon_port rgw_port fsid
  mon_port=$(free_port) || die "no free port"
  rgw_port=$(free_port) || die "no free port"
  [ "$mon_port" != "$rgw_port" ] || rgw_port=$(free_port)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
# Without cephx there is no session key: the "secure" wire mode, which
# the gateway asks of the monitor by default, would refuse to connect.
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
ms bind ipv4 = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
[mon]
mon data = $DIR/mon/\$name
mon cluster log file = $DIR/log/cluster.log
[osd]
osd data = $DIR/osd/\$name
osd objectstore = bluestore
bluestore block create = true
bluestore block size = $OSD_BYTES
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 536870912
# RocksDB's write buffers, 4 x 256 MiB by default, are most of what the OSD
# would grow to: 4 x 16 MiB does for tests.
bluestore rocksdb options = compression=kNoCompression,max_write_buffer_number=4,min_write_buffer_number_to_merge=1,recycle_log_file_num=4,write_buffer_size=16777216,writable_file_max_buffer_size=0,compaction_readahead_size=2097152,max_background_compactions=2,max_total_wal_size=268435456
osd crush update on start = true
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.tf]
rgw data = $DIR/rgw
# tcp_nodelay=1: beast writes an answer's headers and its body in two
# writes; without it Nagle holds the body until the client's delayed ACK
# (40 ms or more a small GET, for curl straight to the gateway).
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw thread pool size = 32
rgw enable usage log = false
# Overwritten and deleted objects' data is freed by the gateway's garbage
# collector, by default two hours later: benchmarks that put 1 GiB again
# and again filled a 16 GiB OSD in 25 minutes, and a full OSD hangs every
# write. Tests and benchmarks want the space back within a minute or two.
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw gc processor max time = 60
EOF
  local conf=(-c "$DIR/ceph.conf")
  : >"$DIR/keyring"
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$DIR/monmap" \
    >/dev/null 2>&1 || die "monmaptool failed"
  ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' \
    >/dev/null || die "ceph-authtool failed"
  ceph-mon "${conf[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring" \
    >"$DIR/log/mkfs-mon.out" 2>&1 || die "ceph-mon --mkfs failed: $(cat "$DIR/log/mkfs-mon.out")"
  ceph-mon "${conf[@]}" -i a 2>>"$DIR/log/start.err" || die "ceph-mon did not start"
  local osd_uuid
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  ceph "${conf[@]}" --connect-timeout 20 osd new "$osd_uuid" >/dev/null ||
    die "the monitor does not answer"
  mkdir -p "$DIR/osd/osd.0"
  ceph-osd "${conf[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -5 "$DIR/log/mkfs-osd.out")"
  ceph-osd "${conf[@]}" -i 0 2>>"$DIR/log/start.err" || die "ceph-osd did not start"
  # The gateway, on another port if its own was taken meanwhile.
  local try
  for try in 1 2 3; do
    radosgw "${conf[@]}" -n client.rgw.tf 2>>"$DIR/log/start.err" || die "radosgw did not start"
    wait_for "curl -s -o /dev/null -m 1 http://127.0.0.1:$rgw_port/ ||
              grep -q 'failed to bind' '$DIR/log/client.rgw.tf.log'" 300
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$rgw_port/" && break
    grep -q 'failed to bind' "$DIR/log/client.rgw.tf.log" 2>/dev/null && [ "$try" -lt 3 ] ||
      die "the gateway does not answer on 127.0.0.1:$rgw_port"
    kill "$(cat "$DIR/run/client.rgw.tf.pid" 2>/dev/null)" 2>/dev/null || true
    sleep 0.5
    : >"$DIR/log/client.rgw.tf.log"
    rgw_port=$(free_port) || die "no free port"
    sed -i "s/^rgw frontends = .*/rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1/" \
      "$DIR/ceph.conf"
  done
  local ak sk
  ak=TF$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  sk=$(head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n')
  radosgw-admin "${conf[@]}" user create --uid=tcpfile --display-name=tcpfile \
    --access-key="$ak" --secret-key="$sk" >/dev/null 2>"$DIR/log/user.out" ||
    die "radosgw-admin user create failed: $(cat "$DIR/log/user.out")"
  # The bucket through S3 itself, signed by curl (SigV4; the gateway wants
  # the payload's hash header, which curl 7.88 only sends when given).
  local code
  code=$(curl -s -o "$DIR/log/bucket.out" -w '%{http_code}' -X PUT -m 20 \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ak:$sk" "http://127.0.0.1:$rgw_port/$BUCKET")
  [ "$code" = 200 ] || die "creating the bucket: HTTP $code $(cat "$DIR/log/bucket.out")"
  umask 077
  cat >"$ENVFILE.tmp" <<EOF
TF_S3_ENDPOINT=http://127.0.0.1:$rgw_port
TF_S3_BUCKET=$BUCKET
TF_S3_REGION=$REGION
AWS_ACCESS_KEY_ID=$ak
AWS_SECRET_ACCESS_KEY=$sk
export TF_S3_ENDPOINT TF_S3_BUCKET TF_S3_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
EOF
  mv "$ENVFILE.tmp" "$ENVFILE"
  local rss=0 f pid
  for f in "$DIR"/run/*.pid; do
    pid=$(cat "$f" 2>/dev/null) || continue
    rss=$((rss + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "ceph.sh: up in $((SECONDS - start)) s, RSS $((rss / 1024)) MiB; S3 at http://127.0.0.1:$rgw_port, bucket $BUCKET; env: $ENVFILE"
}

cmd_env() {
  rgw_answers || die "Ceph is not up: run scripts/ceph.sh up"
  cat "$ENVFILE"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
*)
  echo "usage: $0 up | down | env" >&2
  exit 2
  ;;
esac
