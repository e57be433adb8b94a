# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source it.)
#
# lib.sh - shared by the S3 test scripts: `source lib.sh "$@"`, where the
# arguments are tcpfile-server, tcpfile-client, faultkit and s3tool.
#
# Builds on tests/faults/lib.sh (SERVER, CLIENT, FAULTKIT, TMP, expect,
# fail, pass, background processes) and adds the store: the single-node
# Ceph of scripts/ceph.sh, found through TF_S3_ENDPOINT and friends or its
# env file ($TF_CEPH_DIR/s3.env). Without a store the script FAILS, saying
# so, unless TF_S3_TESTS=0 (then it exits 77: skipped). Each script works
# under its own key prefix S3_PREFIX, purged on exit, and servers started
# here serve s3://BUCKET/S3_PREFIX; HAProxy instances it starts (TCP mode,
# loopback, configs in TMP) are killed on exit.

if [[ $# -ne 4 || ! -x $4 ]]; then
  echo "usage: $0 PATH/TO/tcpfile-server PATH/TO/tcpfile-client PATH/TO/faultkit PATH/TO/s3tool" >&2
  exit 2
fi
S3TOOL=$4
if [[ ${TF_S3_TESTS:-1} == 0 ]]; then
  echo "TF_S3_TESTS=0: skipped"
  exit 77
fi
if [[ -z ${TF_S3_ENDPOINT:-} ]]; then
  env_file=${TF_CEPH_DIR:-/tmp/tcpfile-ceph}/s3.env
  # shellcheck disable=SC1090
  [[ -r $env_file ]] && source "$env_file"
fi
if [[ -z ${TF_S3_ENDPOINT:-} || -z ${TF_S3_BUCKET:-} ]]; then
  echo "FAIL: no S3 store: run scripts/ceph.sh up (or set TF_S3_ENDPOINT and TF_S3_BUCKET;" \
    "TF_S3_TESTS=0 skips these tests)" >&2
  exit 1
fi
export TF_S3_ENDPOINT TF_S3_BUCKET TF_S3_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
S3_REGION=${TF_S3_REGION:-us-east-1}

# shellcheck source-path=SCRIPTDIR source=../faults/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../faults/lib.sh" "$1" "$2" "$3"

S3_PREFIX="t-sh-$$-$RANDOM"
s3_cleanup() {
  "$S3TOOL" purge "$S3_PREFIX/" >/dev/null 2>&1 || true
  fault_cleanup
}
trap s3_cleanup EXIT

# start_s3 NAME [OPTIONS...]: a server on 127.0.0.1 port 0 serving
# s3://BUCKET/S3_PREFIX through S3_ENDPOINT (default: the store itself),
# stdout in $TMP/NAME.out; sets PORT and SERVER_PID, as start_server.
start_s3() {
  local name=$1
  shift
  : >"$TMP/$name.out"
  "$SERVER" "${SERVER_TLS_ARGS[@]}" --store "s3://$TF_S3_BUCKET/$S3_PREFIX" \
    --s3-endpoint "${S3_ENDPOINT:-$TF_S3_ENDPOINT}" --s3-region "$S3_REGION" "$@" \
    -b 127.0.0.1 0 >"$TMP/$name.out" 2>"$TMP/$name.err" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  wait_banner "$TMP/$name.out" "$SERVER_PID"
}

# s3_keys: the objects under the prefix (without it), sorted.
s3_keys() {
  "$S3TOOL" keys "$S3_PREFIX/" | sed "s|^$S3_PREFIX/||" | sort
}

# wait_state: until a resumable upload's state (saved as each of its parts
# lands) is in the bucket, 10 s at most: its first part is stored.
wait_state() {
  local i
  for ((i = 0; i < 200; i++)); do
    s3_keys | grep -q '\.state$' && return 0
    sleep 0.05
  done
  fail "no part of the upload reached the store within 10 s"
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (5 s).
wait_port() {
  local i
  for ((i = 0; i < 50; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listens on port $1 after 5 s"
}

# start_haproxy NAME PORT MODE SERVER_PORT...: HAProxy in TCP mode on
# 127.0.0.1:PORT in front of the given loopback ports, config in
# $TMP/NAME.cfg; MODE "first" sends every client to the first server that
# is up (health-checked every 200 ms), "roundrobin" alternates. Sets
# HAPROXY_PID.
start_haproxy() {
  local name=$1 port=$2 mode=$3 i=0 p
  shift 3
  {
    echo "global"
    echo "  maxconn 256"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 2s"
    echo "  timeout client 60s"
    echo "  timeout server 60s"
    echo "  retries 3"
    echo "  option redispatch"
    echo "listen $name"
    echo "  bind 127.0.0.1:$port"
    echo "  balance $mode"
    for p in "$@"; do
      i=$((i + 1))
      echo "  server s$i 127.0.0.1:$p check inter 200ms fall 1 rise 1"
    done
  } >"$TMP/$name.cfg"
  haproxy -db -f "$TMP/$name.cfg" >"$TMP/$name.log" 2>&1 &
  HAPROXY_PID=$!
  BG_PIDS+=("$HAPROXY_PID")
  wait_port "$port"
}

# hold_transfer FAULTKIT_ARGS...: starts faultkit in the background (its
# output in $TMP/fk.out and .err) with --hold-at among its arguments, and
# waits (20 s at most) until the transfer waits at its hold point,
# mid-payload; sets FK_PID. Release it with kill -USR1.
hold_transfer() {
  local i
  rm -f "$TMP/fk.out" # the background shell truncates it only when it gets to run
  "$FAULTKIT" "$@" >"$TMP/fk.out" 2>"$TMP/fk.err" &
  FK_PID=$!
  BG_PIDS+=("$FK_PID")
  for ((i = 0; i < 2000; i++)); do
    grep -q '^held ' "$TMP/fk.out" 2>/dev/null && return 0
    running "$FK_PID" || fail "the transfer ended before its hold point: $(cat "$TMP/fk.err")"
    sleep 0.01
  done
  fail "the transfer did not reach its hold point within 20 s"
}

# free_port: a loopback port that is free now.
free_port() {
  "$S3TOOL" freeport
}

command -v haproxy >/dev/null || fail "haproxy is not installed (scripts/deps.sh installs it)"
