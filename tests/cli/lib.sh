# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source it.)
#
# lib.sh - shared by the CLI test scripts: `source lib.sh "$@"`.
#
# Sets SERVER and CLIENT (the programs under test, from the arguments),
# makes a temporary directory TMP that is removed on exit together with
# every server started here, and provides helpers that fail the test with
# a message saying what was expected and what happened.

if [[ $# -ne 2 || ! -x $1 || ! -x $2 ]]; then
  echo "usage: $0 PATH/TO/tcpfile-server PATH/TO/tcpfile-client" >&2
  exit 2
fi
SERVER=$1
REAL_CLIENT=$2
# Every client call is bounded, so a hang fails one check instead of
# running into ctest's timeout with a server left behind.
CALL_TIMEOUT=20

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tcpfile-cli.XXXXXX")
SERVER_PIDS=()

# TLS, as the programs default to: every server of a script keeps its
# identity in one state directory under TMP (so they share one key), and
# CLIENT is a wrapper that pins that key (read from the first banner) and
# keeps known_hosts under TMP. PLAINTEXT=1 (set before sourcing) runs the
# script without TLS on both sides instead.
# (The defaults point there too, so a server started without
# start_server shares that identity, and nothing lands in HOME.)
export XDG_STATE_HOME=$TMP/.xdg-state XDG_CONFIG_HOME=$TMP/.xdg-config
STATE_DIR=$XDG_STATE_HOME/tcpfile
PIN_FILE=$TMP/.pin
CLIENT=$TMP/.tcpfile-client
if [[ ${PLAINTEXT:-0} == 1 ]]; then
  SERVER_TLS_ARGS=(--plaintext)
  printf '#!/bin/bash\nexec %q --plaintext "$@"\n' "$REAL_CLIENT" >"$CLIENT"
else
  SERVER_TLS_ARGS=(--state-dir "$STATE_DIR")
  # (No pin before the first banner: --help and usage checks need none.)
  printf '#!/bin/bash\npin=()\n[[ -s %q ]] && pin=(--pin "$(cat %q)")\nexec %q --known-hosts %q "${pin[@]}" "$@"\n' \
    "$PIN_FILE" "$PIN_FILE" "$REAL_CLIENT" "$TMP/.known_hosts" >"$CLIENT"
fi
chmod +x "$CLIENT"

# Only servers not yet reaped are in SERVER_PIDS (stop_server removes
# them), so a recycled process id is never signalled.
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

CHECKS=0
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() {
  CHECKS=$((CHECKS + 1))
  echo "ok $CHECKS - $*"
}

# expect STATUS COMMAND...: runs COMMAND (bounded by CALL_TIMEOUT) with
# stdout in $TMP/out and stderr in $TMP/err, and fails unless it exits with
# STATUS. Standard input is the caller's, so `expect 0 ... < file` works.
expect() {
  local want=$1 got=0
  shift
  timeout "$CALL_TIMEOUT" "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
  if [[ $got != "$want" ]]; then
    fail "expected exit $want, got $got from: $*
--- stderr:
$(cat "$TMP/err")"
  fi
}

# The last command's stderr must be exactly one line containing each of the
# given fixed strings. (Bash alone, no grep nor wc: scripts call this often,
# and their time goes to starting processes.)
stderr_one_line_with() {
  local lines=() s
  mapfile lines <"$TMP/err"
  [[ ${#lines[@]} == 1 && ${lines[0]} == *$'\n' ]] ||
    fail "expected one line on stderr, got ${#lines[@]}:
$(cat "$TMP/err")"
  for s in "$@"; do
    [[ ${lines[0]} == *"$s"* ]] || fail "stderr lacks \"$s\": $(cat "$TMP/err")"
  done
}

# start_server NAME [OPTIONS...]: starts the server in the background on
# $BIND (default 127.0.0.1) port 0, serving $TMP/NAME (created), with stdout
# in $TMP/NAME.out and stderr in $TMP/NAME.err. Waits up to 10 s for the
# banner and sets PORT and SERVER_PID.
start_server() {
  local name=$1
  shift
  mkdir -p "$TMP/$name"
  # Emptied here, not only by the redirection below: that happens in the
  # background child, and wait_banner could read a restarted server's old
  # banner first.
  : >"$TMP/$name.out"
  "$SERVER" "${SERVER_TLS_ARGS[@]}" "$@" -b "${BIND:-127.0.0.1}" 0 "$TMP/$name" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  wait_banner "$TMP/$name.out" "$SERVER_PID"
}

# wait_banner FILE PID: waits up to 10 s for the banner in FILE and sets
# PORT from it; fails early if PID exits first. (Looks every 20 ms, with
# bash's read: a server is up in less, and scripts start many.)
wait_banner() {
  local file=$1 pid=$2 line l i
  for ((i = 0; i < 500; i++)); do
    line=
    { while IFS= read -r l; do
        [[ $l == 'server up and running on IP: '* ]] && line=$l && break
      done <"$file"; } 2>/dev/null || true
    if [[ -n $line ]]; then
      [[ $line =~ ^server\ up\ and\ running\ on\ IP:\ [^\ ]+\ port\ ([0-9]+)$ ]] ||
        fail "malformed banner: $line"
      PORT=${BASH_REMATCH[1]}
      ((PORT > 0)) || fail "banner shows port 0 instead of the real port: $line"
      wait_fingerprint "$file"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail "the server exited before its banner:
$(cat "${file%.out}.err" 2>/dev/null)"
    sleep 0.02
  done
  fail "no banner within 10 s in $file"
}

# wait_fingerprint FILE: a TLS server's second banner line carries its key's
# fingerprint; it becomes the pin CLIENT passes.
wait_fingerprint() {
  local file=$1 line i
  [[ ${PLAINTEXT:-0} == 1 ]] && return 0
  for ((i = 0; i < 50; i++)); do
    line=$(sed -n 2p "$file")
    if [[ $line =~ (SHA256:[A-Za-z0-9+/]{43}) ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}" >"$PIN_FILE"
      return 0
    fi
    [[ $line == "no TLS"* ]] && return 0 # a server given --plaintext

    sleep 0.1
  done
  fail "no SHA256: fingerprint on the banner's second line in $file"
}

# stop_server PID [SIGNAL]: sends SIGNAL (default TERM) and waits up to 5 s
# for the server to exit (looking every 20 ms); sets STOP_STATUS to its
# exit status.
stop_server() {
  local pid=$1 sig=${2:-TERM} i
  kill -"$sig" "$pid"
  for ((i = 0; i < 250; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  kill -0 "$pid" 2>/dev/null && fail "the server did not stop within 5 s of SIG$sig"
  STOP_STATUS=0
  wait "$pid" || STOP_STATUS=$?
  local p rest=()
  for p in "${SERVER_PIDS[@]}"; do
    [[ $p == "$pid" ]] || rest+=("$p")
  done
  SERVER_PIDS=("${rest[@]}")
}

# wait_bytes DIR [MIN]: waits up to 10 s for a file in DIR (hidden ones
# too) to hold at least MIN bytes (default 1): a transfer under way, before
# a script interrupts it. A fixed sleep instead lets a loaded machine's
# client not even start in time.
# A server's staging directory (ROOT/.tcpfile-tmp) counts the unnamed
# uploads (O_TMPFILE) its servers hold open beneath ROOT too.
wait_bytes() {
  local dir=$1 min=${2:-1} f i size pid
  local root=${dir%/.tcpfile-tmp}
  for ((i = 0; i < 500; i++)); do
    for f in "$dir"/* "$dir"/.[!.]*; do
      [[ -f $f && -s $f ]] || continue
      size=$(stat -c %s "$f" 2>/dev/null) || continue # committed meanwhile
      ((min <= 1 || size >= min)) && return 0
    done
    if [[ $root != "$dir" ]]; then
      for pid in "${SERVER_PIDS[@]}"; do
        for f in /proc/"$pid"/fd/*; do
          [[ $(readlink "$f" 2>/dev/null) == "$root"/*"#"*" (deleted)" ]] || continue
          size=$(stat -L -c %s "$f" 2>/dev/null) || continue
          ((size > 0 && (min <= 1 || size >= min))) && return 0
        done
      done
    fi
    sleep 0.02
  done
  fail "no file in $dir reached $min bytes within 10 s: $(ls -la "$dir" 2>&1)"
}

# have_ipv6_loopback: whether ::1 is configured, so IPv6 checks can run.
have_ipv6_loopback() {
  command -v ip >/dev/null && [[ $(ip -6 addr show lo 2>/dev/null) == *'inet6 ::1/'* ]]
}

# A log line for one request: time, peer, operation, name, result, bytes,
# duration, then the reason on failure.
LOG_LINE_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z [^ ]+:[0-9]+ [a-z-]+ '
LOG_LINE_RE+='("([^"\\]|\\.)*"|-) (ok|failed) [0-9]+ bytes [0-9]+\.[0-9]{3} s(: .+)?$'
