#!/usr/bin/env bash
# systemd_unit.sh UNIT tcpfile-server tcpfile-client
#
# Checks examples/tcpfile-server.service with systemd's own tools, against
# the built server: `systemd-analyze verify` finds nothing to say,
# `systemd-analyze security --offline` rates its exposure 2.0 or better, and
# (when strace works here) every system call the server makes while it
# serves requests is allowed by the unit's SystemCallFilter, so that the
# filter cannot kill the real service. Exits 77 (skipped) without
# systemd-analyze: nothing else needs systemd.
set -euo pipefail
unit=${1:?usage: systemd_unit.sh UNIT SERVER CLIENT}
server=${2:?usage: systemd_unit.sh UNIT SERVER CLIENT}
client=${3:?usage: systemd_unit.sh UNIT SERVER CLIENT}

if ! command -v systemd-analyze >/dev/null; then
  echo "skipped: systemd-analyze is not installed"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tf-unit.XXXXXX")
server_pid='' tracer_pid=''
cleanup() {
  [[ -n $server_pid || -z $tracer_pid ]] || server_pid=$(cat "$tmp/pid" 2>/dev/null || true)
  [[ -z $server_pid ]] || kill -KILL "$server_pid" 2>/dev/null || true
  [[ -z $tracer_pid ]] || kill -KILL "$tracer_pid" 2>/dev/null || true
  [[ -z $tracer_pid ]] || wait "$tracer_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# verify insists that ExecStart= names an executable that exists.
name=$(basename "$unit")
sed "s#^ExecStart=/usr/local/bin/tcpfile-server #ExecStart=$server #" "$unit" >"$tmp/$name"
grep -q "^ExecStart=$server " "$tmp/$name" || fail "no ExecStart=/usr/local/bin/tcpfile-server"

out=$(systemd-analyze verify --man=no "$tmp/$name" 2>&1) || fail "systemd-analyze verify:
$out"
[[ -z $out ]] || fail "systemd-analyze verify has remarks:
$out"
echo "ok - systemd-analyze verify: no remarks"

# Exposure is 0 (locked down) to 10 (unprotected); --threshold is in tenths.
systemd-analyze security --offline=yes --threshold=20 "$tmp/$name" >"$tmp/security" 2>&1 ||
  fail "systemd-analyze security rates the unit worse than 2.0:
$(grep -v '✓' "$tmp/security")"
echo "ok - systemd-analyze security: $(grep -o 'exposure level.*' "$tmp/security")"

for directive in DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes \
  'RestrictAddressFamilies=AF_INET AF_INET6' CapabilityBoundingSet= \
  SystemCallFilter=@system-service; do
  grep -qx -- "$directive" "$unit" || fail "the unit lacks $directive"
done
echo "ok - the unit has the hardening directives expected of it"

# ---- the system calls the server really makes -----------------------------------
if ! command -v strace >/dev/null ||
  ! strace -f -qq -o /dev/null true 2>/dev/null; then
  echo "ok - system call check skipped: strace is not installed or not permitted here"
  exit 0
fi

# The names of the calls in a filter, its @groups expanded.
expand() {
  systemd-analyze syscall-filter "$1" | sed -e 1d -e 's/^ *//' -e '/^#/d' -e '/^$/d' |
    while read -r call; do
      case $call in
      @*) expand "$call" ;;
      *) echo "$call" ;;
      esac
    done
}
# A value starting with "~" denies every call and @group on it; other
# values allow theirs.
allow=() deny=()
while IFS= read -r value; do
  if [[ $value == ~* ]]; then
    read -r -a words <<<"${value#\~}"
    deny+=("${words[@]}")
  else
    read -r -a words <<<"$value"
    allow+=("${words[@]}")
  fi
done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
calls() {
  local w
  for w in "$@"; do
    if [[ $w == @* ]]; then expand "$w"; else echo "$w"; fi
  done | sort -u
}
calls "${allow[@]}" >"$tmp/allowed"
calls "${deny[@]}" >"$tmp/denied"

mkdir "$tmp/root"
: >"$tmp/log"
head -c 3000000 /dev/zero >"$tmp/big"
# sh writes its process id, which the server keeps as it replaces sh, so
# that the server itself gets the signal (strace does not pass it on).
# shellcheck disable=SC2016 # $$ and $1..$3 are sh's, not expanded here
# Over TLS, as the unit runs it, with its identity made in a state
# directory of the test's own.
strace -f -qq -o "$tmp/trace" sh -c 'echo $$ >"$1" && exec "$2" --state-dir "$4" -b 127.0.0.1 0 "$3"' \
  sh "$tmp/pid" "$server" "$tmp/root" "$tmp/state" >"$tmp/log" 2>&1 &
tracer_pid=$!
server_pid=
for ((i = 0; i < 100; i++)); do
  [[ -n $server_pid ]] || server_pid=$(cat "$tmp/pid" 2>/dev/null || true)
  port=$(sed -n 's/^server up and running on IP: .* port \([0-9]*\)$/\1/p' "$tmp/log" || true)
  # Both: sh may have created the pid file and not yet written it.
  [[ -n $port && -n $server_pid ]] && break
  sleep 0.1
done
[[ -n $port && -n $server_pid ]] || fail "the server under strace did not start: $(cat "$tmp/log")"
for ((i = 0; i < 50; i++)); do
  pin=$(sed -n '2s/.*\(SHA256:[A-Za-z0-9+\/]\{43\}\).*/\1/p' "$tmp/log")
  [[ -n $pin ]] && break
  sleep 0.1
done
[[ -n $pin ]] || fail "no fingerprint on the traced server's banner: $(cat "$tmp/log")"
timeout 20 "$client" --pin "$pin" -q 127.0.0.1 "$port" put "$tmp/big" get big --to "$tmp/big.copy" list \
  >/dev/null || fail "the client failed against the traced server"
timeout 20 "$client" --pin "$pin" -q 127.0.0.1 "$port" put "$tmp/big" --as big get nope --to "$tmp/nope" \
  >/dev/null 2>&1 || true
kill -TERM "$server_pid"
wait "$tracer_pid" || true
server_pid='' tracer_pid=''
grep -q '^server stopped$' "$tmp/log" || fail "the traced server did not stop cleanly"

# Only what the server does from its execve on, when systemd's filter
# would be in force; sh's few calls before it do not count.
pid=$(cat "$tmp/pid")
awk -v pid="$pid" '$1 == pid && /execve\(/ { on = 1; next } on' "$tmp/trace" |
  sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' | sort -u >"$tmp/used.after"
[[ -s $tmp/used.after ]] || fail "strace recorded no system call of the server"
missing=$(comm -23 "$tmp/used.after" "$tmp/allowed" | tr '\n' ' ')
denied=$(comm -12 "$tmp/used.after" "$tmp/denied" | tr '\n' ' ')
[[ -z $missing ]] || fail "the server calls what SystemCallFilter does not allow: $missing"
[[ -z $denied ]] || fail "the server calls what SystemCallFilter denies: $denied"
echo "ok - the $(wc -l <"$tmp/used.after") system calls the server made are all allowed"
