#!/usr/bin/env bash
# errors.sh - failures and usage errors: exit statuses (one per cause,
# 2 for a usage error) and the one clear line each prints on stderr; --help and --version; server policies (--read-only,
# --no-overwrite, --max-upload, --max-name) as seen from the client.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

H=127.0.0.1

# ---- --help and --version ---------------------------------------------------
for prog in "$SERVER" "$CLIENT"; do
  expect 0 "$prog" --help
  grep -q '^Usage: ' "$TMP/out" || fail "$prog --help prints no usage"
  [[ ! -s $TMP/err ]] || fail "$prog --help wrote to stderr"
  expect 0 "$prog" --version
  grep -qE '^tcpfile-(server|client) [0-9]+\.[0-9]+\.[0-9]+$' "$TMP/out" ||
    fail "$prog --version printed: $(cat "$TMP/out")"
done
pass "--help and --version exit 0 and print to stdout"

# ---- usage errors: exit 2, one line naming the problem -----------------------
usage_case() { # usage_case TEXT-EXPECTED-ON-STDERR PROGRAM ARGS...
  local text=$1
  shift
  expect 2 "$@" </dev/null
  stderr_one_line_with "$text"
}
usage_case 'missing HOST' "$CLIENT"
usage_case 'missing operation' "$CLIENT" $H
usage_case 'missing operation' "$CLIENT" $H 1
usage_case '"frob"' "$CLIENT" $H 1 frob
usage_case 'at most one DIR, not also "frob"' "$CLIENT" $H 1 list a frob
usage_case 'unknown option "--bogus"' "$CLIENT" --bogus $H 1 list
usage_case 'unknown option "--bogus"' "$CLIENT" $H 1 list --bogus
usage_case 'unknown option "-z"' "$CLIENT" -z $H 1 list
usage_case 'missing value for option "--timeout"' "$CLIENT" --timeout
usage_case '--timeout' "$CLIENT" --timeout abc $H 1 list
usage_case '--timeout' "$CLIENT" --timeout -1 $H 1 list
usage_case 'get needs a NAME' "$CLIENT" $H 1 get
usage_case 'put needs a LOCAL' "$CLIENT" $H 1 list put
usage_case 'needs --as NAME' "$CLIENT" $H 1 put -
usage_case 'only once' "$CLIENT" $H 1 put - --as a put - --as b
usage_case '"http"' "$CLIENT" $H http list
usage_case '"70000"' "$CLIENT" $H 70000 list
usage_case 'missing PORT' "$SERVER"
usage_case 'unknown option "--bogus"' "$SERVER" --bogus 0
usage_case 'too many arguments' "$SERVER" 0 "$TMP" extra
usage_case '"x1"' "$SERVER" x1
usage_case '--max-name' "$SERVER" --max-name 0 0
usage_case '--max-name' "$SERVER" --max-name 5000 0
usage_case '--max-connections' "$SERVER" --max-connections -3 0
usage_case '--max-upload' "$SERVER" --max-upload 10Q 0
usage_case 'missing value for option "--bind"' "$SERVER" --bind
pass "usage errors exit 2 with one line on stderr"

# Names no server could accept are refused before anything is sent.
# (a/b is a path, which a server with the tree takes; a//b and a/./b are not.)
for bad in ../x a//b a/./b .. . /etc/passwd; do
  expect 2 "$CLIENT" $H 1 get "$bad"
  stderr_one_line_with "get \"$bad\"" 'bad name'
  expect 2 "$CLIENT" $H 1 put /etc/hostname --as "$bad"
  stderr_one_line_with "\"$bad\"" 'bad name'
done
expect 2 "$CLIENT" $H 1 put "$TMP/"
stderr_one_line_with 'bad remote name ""'
pass "bad names (../x, a//b, a/./b, .., ., absolute) exit 2 naming the name"

# ---- server start-up failures -------------------------------------------------
expect 1 "$SERVER" -b $H 0 "$TMP/no-such-dir"
stderr_one_line_with 'no-such-dir'
start_server root
ROOT=$TMP/root
expect 1 "$SERVER" -b $H "$PORT" "$ROOT"
stderr_one_line_with "port $PORT" 'another program is using that port'
pass "a missing root or a port in use exits 1 with one line saying what to do"

# ---- operation failures: exit 1, one line naming operation, name, reason -------
expect 6 "$CLIENT" $H "$PORT" get nope.txt --to "$TMP/nope.txt"
stderr_one_line_with 'get "nope.txt"' 'server: no such file' 'no file named "nope.txt"' \
  "; see the names it has with: tcpfile-client $H $PORT list"
[[ ! -e $TMP/nope.txt ]] || fail "a failed get left a local file"
(cd "$TMP" && expect 6 "$CLIENT" $H "$PORT" get nope.txt)
stderr_one_line_with 'tcpfile-client: get "nope.txt": server: no such file'
[[ ! -e $TMP/nope.txt ]] || fail "a failed get left ./nope.txt"
pass "a missing remote file exits 6: $(cat "$TMP/err")"

printf 'x\n' >"$ROOT/x.txt"
expect 6 "$CLIENT" $H "$PORT" put "$TMP/missing-local.txt"
stderr_one_line_with 'put "' 'missing-local.txt' 'no such local file'
expect 6 "$CLIENT" $H "$PORT" get x.txt --to "$TMP/no/such/dir/x.txt"
stderr_one_line_with 'get "x.txt"' 'local: no such file' "$TMP/no/such/dir"
grep -q 'names it has' "$TMP/err" && fail "a missing local directory got the remote hint"
pass "local failures (missing upload, missing destination) exit 6, said to be local"

# Longer than the server allows (255 by default) yet a valid name.
long=$(printf 'n%.0s' {1..300})
expect 5 "$CLIENT" $H "$PORT" get "$long"
stderr_one_line_with "get \"$long\"" 'invalid argument or name'
printf 'x\n' >"$TMP/short.txt"
expect 5 "$CLIENT" $H "$PORT" put "$TMP/short.txt" --as "$long"
stderr_one_line_with "as \"$long\"" 'at most 255 bytes' 'upload it under a shorter name: put LOCAL --as NAME'
pass "a name over the server's limit exits 5, refused (put: with a hint)"

# A server that accepts connections but never answers: the kernel completes
# the TCP handshake for a stopped process, the tcpfile handshake never comes.
kill -STOP "$SERVER_PID"
expect 9 "$CLIENT" --timeout 0.3 $H "$PORT" list
kill -CONT "$SERVER_PID"
stderr_one_line_with "connect to $H port $PORT" 'timed out' '--timeout SECONDS waits longer'
pass "a connect that times out exits 9 with a hint: $(cat "$TMP/err")"

# Connection refused: the port of a server that has stopped.
stop_server "$SERVER_PID"
expect 4 "$CLIENT" $H "$PORT" list
stderr_one_line_with "connect to $H port $PORT" 'connection refused' \
  "is tcpfile-server running on $H port $PORT?"
pass "connection refused exits 4 with a hint: $(cat "$TMP/err")"

# A host that does not resolve: its own status and hint.
expect 3 "$CLIENT" no-such-host.invalid list
stderr_one_line_with 'connect to no-such-host.invalid port 7878' 'cannot resolve the host name' \
  'check the host name'
pass "a host that does not resolve exits 3 with a hint"

# ---- server policies -------------------------------------------------------------
printf 'data\n' >"$TMP/up.txt"
start_server ro --read-only
printf 'keep\n' >"$TMP/ro/keep.txt"
expect 5 "$CLIENT" $H "$PORT" put "$TMP/up.txt"
stderr_one_line_with 'put "' 'up.txt' 'server: permission denied' 'read-only' \
  'a read-only server only serves get and list'
[[ ! -e $TMP/ro/up.txt ]] || fail "a read-only server stored an upload"
expect 0 "$CLIENT" -q $H "$PORT" get keep.txt --to "$TMP/keep.txt" list
cmp "$TMP/ro/keep.txt" "$TMP/keep.txt" || fail "get from a read-only server differs"
grep -qE ' put "up\.txt" failed 0 bytes .*permission denied' "$TMP/ro.out" ||
  fail "the read-only refusal is not logged: $(cat "$TMP/ro.out")"
stop_server "$SERVER_PID"
pass "--read-only refuses put (exit 5, logged) and still serves get and list"

start_server noow --no-overwrite
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/up.txt" --as once.txt
expect 12 "$CLIENT" -q $H "$PORT" put /etc/hostname --as once.txt
stderr_one_line_with '"once.txt"' 'server: file already exists' 'choose another name with --as NAME'
cmp "$TMP/up.txt" "$TMP/noow/once.txt" || fail "--no-overwrite let the file change"
stop_server "$SERVER_PID"
pass "--no-overwrite refuses a second put of the same name"

head -c 1024 /dev/zero >"$TMP/1k"
head -c 1025 /dev/zero >"$TMP/1k1"
start_server lim --max-upload 1K --max-name 8
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/1k"
expect 5 "$CLIENT" -q $H "$PORT" put "$TMP/1k1"
stderr_one_line_with 'put "' '1k1' 'over a size or count limit'
[[ ! -e $TMP/lim/1k1 ]] || fail "an upload over --max-upload was stored"
expect 5 "$CLIENT" -q $H "$PORT" put "$TMP/1k" --as 123456789
stderr_one_line_with '"123456789"' 'bad name'
expect 0 "$CLIENT" -q $H "$PORT" put "$TMP/1k" --as 12345678
stop_server "$SERVER_PID"
pass "--max-upload 1K and --max-name 8 are enforced"

echo "all $CHECKS checks passed"
