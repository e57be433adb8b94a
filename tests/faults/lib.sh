# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source it.)
#
# lib.sh - shared by the fault scripts: `source lib.sh "$@"`, where the
# arguments are tcpfile-server, tcpfile-client and faultkit.
#
# Builds on tests/cli/lib.sh (SERVER, CLIENT, TMP, start_server,
# stop_server, expect, fail, pass) and adds FAULTKIT, background clients
# and tmpfs mounts that are killed and unmounted on exit, a seeded random
# source, and checks on the server's temporaries.

if [[ $# -ne 3 || ! -x $3 ]]; then
  echo "usage: $0 PATH/TO/tcpfile-server PATH/TO/tcpfile-client PATH/TO/faultkit" >&2
  exit 2
fi
FAULTKIT=$3
# Plaintext on both sides: faultkit is a library client with the default
# (plaintext) options, and the faults are about files and processes.
PLAINTEXT=1
# shellcheck source-path=SCRIPTDIR source=../cli/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.sh" "$1" "$2"

BG_PIDS=()
MOUNTS=()
fault_cleanup() {
  local pid m
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # Unmount before cli/lib.sh's cleanup removes $TMP, which holds the mounts.
  for m in "${MOUNTS[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  cleanup
}
trap fault_cleanup EXIT

# A reproducible run: FAULT_SEED=N replays the same kill times.
FAULT_SEED=${FAULT_SEED:-$(($(date +%s%N) % 1000000007))}
RANDOM=$FAULT_SEED
echo "# seed $FAULT_SEED (FAULT_SEED=$FAULT_SEED replays this run)"

# random_below N: a number in [0, N).
random_below() {
  echo $(((RANDOM * 32768 + RANDOM) % $1))
}

# sleep_ms N
sleep_ms() {
  sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"
}

# now_ms: a monotonic-enough wall clock in milliseconds.
now_ms() {
  echo $(($(date +%s%N) / 1000000))
}

# temps ROOT PREFIX: how many of the server's temporaries with PREFIX
# ("up-" plain uploads, "resume-" resumable ones) are in ROOT/.tcpfile-tmp.
temps() {
  local n=0 f
  for f in "$1"/.tcpfile-tmp/"$2"*; do
    [[ -e $f ]] && n=$((n + 1))
  done
  echo "$n"
}

# wait_no_temps ROOT: the server removes a cut upload's temporary once it
# sees the connection end; waits up to 10 s for that.
wait_no_temps() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(temps "$1" up-) == 0 ]] && return 0
    sleep 0.1
  done
  fail "a plain upload temporary is still in $1/.tcpfile-tmp after 10 s:
$(ls -la "$1/.tcpfile-tmp")"
}

# listed PORT: the names the server lists, one per line (the CLI prints
# SIZE<TAB>MTIME<TAB>NAME).
listed() {
  expect 0 "$CLIENT" -q 127.0.0.1 "$1" list
  cut -f3 "$TMP/out"
}

# same A B: whether two files have the same bytes.
same() {
  cmp -s -- "$1" "$2"
}

# kill_bg PID: SIGKILLs a background process started here and reaps it.
kill_bg() {
  local pid=$1 p rest=()
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${BG_PIDS[@]}"; do
    [[ $p == "$pid" ]] || rest+=("$p")
  done
  BG_PIDS=("${rest[@]}")
}

# reap_bg PID: waits for a background process started here; sets BG_STATUS.
reap_bg() {
  local pid=$1 p rest=()
  BG_STATUS=0
  wait "$pid" || BG_STATUS=$?
  for p in "${BG_PIDS[@]}"; do
    [[ $p == "$pid" ]] || rest+=("$p")
  done
  BG_PIDS=("${rest[@]}")
}

# kill_server PID: SIGKILLs a server started with start_server and reaps it
# (quietly: the shell would report the kill).
kill_server() {
  local pid=$1 p rest=()
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${SERVER_PIDS[@]}"; do
    [[ $p == "$pid" ]] || rest+=("$p")
  done
  SERVER_PIDS=("${rest[@]}")
}

# restart_server NAME [OPTIONS...]: start_server again for the same root.
# Its banner file is emptied first: start_server's child truncates it only
# once it runs, and until then the old banner would pass for the new one.
restart_server() {
  : >"$TMP/$1.out"
  start_server "$@"
}

# running PID: whether it has not exited yet.
running() {
  kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]
}

# wait_for_line PID PATTERN WHAT: until faultkit (PID, its stdout in
# $TMP/fk.out, its stderr in $TMP/fk.err) prints a line matching PATTERN:
# its hold point, or "connected" (a kill before the connection is made
# would test nothing). Fails if it ends first or takes over 20 s.
wait_for_line() {
  local i
  for ((i = 0; i < 2000; i++)); do
    grep -q "$2" "$TMP/fk.out" && return 0
    running "$1" || fail "faultkit ended before $3: $(cat "$TMP/fk.err")"
    sleep 0.01
  done
  fail "faultkit did not reach $3 within 20 s"
}
