#!/usr/bin/env bash
# users.sh SERVER CLIENT - users through the programs (issue 13):
# tcpfile-server --add-user prints a token alone on one line; a server with
# users says how many and serves only them; tcpfile-client --user NAME logs
# in with TCPFILE_TOKEN or --token-file (refused when others may read it);
# a failed login exits 5 with one line; each log line names the user;
# SIGHUP reads the users file again; a machine added with --client-cert
# gets in with tcpfile-client --cert/--key, without a token.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"
H=127.0.0.1
# The default users file lives in the state directory: a private one here.
# The server's TLS identity goes there too (lib.sh's --state-dir would put
# the default users file elsewhere).
export XDG_STATE_HOME=$TMP/state
SERVER_TLS_ARGS=()
unset TCPFILE_TOKEN

expect 0 "$SERVER" --add-user alice --access read
[[ $(wc -l <"$TMP/out") == 1 && $(cat "$TMP/out") =~ ^[A-Za-z0-9_-]{32}$ ]] ||
  fail "--add-user should print the token alone on one line: $(cat "$TMP/out")"
ALICE=$(cat "$TMP/out")
[[ -f $TMP/state/tcpfile/users ]] || fail "no users file in the state directory"
[[ $(stat -c %a "$TMP/state/tcpfile/users") == 600 ]] || fail "the users file is not 0600"
grep -qF -- "$ALICE" "$TMP/state/tcpfile/users" && fail "the users file holds the token"
expect 0 "$SERVER" --add-user bob --access write --dir bob
BOB=$(cat "$TMP/out")
pass "--add-user prints a token alone on one line and stores only its hash"

expect 2 "$SERVER" --add-user carol
stderr_one_line_with '--access'
expect 2 "$SERVER" --add-user carol --access admin
stderr_one_line_with '--access is read or write'
expect 2 "$SERVER" --add-user ../x --access read
pass "--add-user refuses a missing or bad access, and a bad name (exit 2)"

# With no users file the banner says everyone is served.
XDG_STATE_HOME=$TMP/nostate start_server open
grep -qF 'no users file: anyone who can connect may read and write' "$TMP/open.out" ||
  fail "the banner does not say everyone is served: $(cat "$TMP/open.out")"
stop_server "$SERVER_PID"

# The default users file is used when it exists.
start_server root
grep -qF 'users: 2 in ' "$TMP/root.out" || fail "the banner does not count the users"
echo hello >"$TMP/hello.txt"
echo top >"$TMP/root/top.txt"

expect 5 "$CLIENT" $H "$PORT" list
stderr_one_line_with 'authentication required' '--user'
TCPFILE_TOKEN=$ALICE expect 0 "$CLIENT" --user alice $H "$PORT" list
grep -qF 'top.txt' "$TMP/out" || fail "alice's list lacks top.txt"
TCPFILE_TOKEN=$ALICE expect 5 "$CLIENT" --user alice $H "$PORT" put "$TMP/hello.txt"
stderr_one_line_with 'user alice has read access only: put needs write'
pass "a read user lists, and is refused a put (exit 5, the missing right named)"

printf '%s\n' "$BOB" >"$TMP/bob.token"
chmod 600 "$TMP/bob.token"
expect 0 "$CLIENT" --user bob --token-file "$TMP/bob.token" $H "$PORT" put "$TMP/hello.txt"
[[ -f $TMP/root/bob/hello.txt && ! -e $TMP/root/hello.txt ]] ||
  fail "bob's put did not land in bob/"
expect 0 "$CLIENT" --user bob --token-file "$TMP/bob.token" $H "$PORT" list
grep -qF 'hello.txt' "$TMP/out" && ! grep -qF 'top.txt' "$TMP/out" ||
  fail "bob's list is not his directory's: $(cat "$TMP/out")"
pass "--token-file logs in; a user with --dir sees and writes only there"

chmod 644 "$TMP/bob.token"
expect 1 "$CLIENT" --user bob --token-file "$TMP/bob.token" $H "$PORT" list
stderr_one_line_with 'readable by others' 'chmod 600'
chmod 600 "$TMP/bob.token"
TCPFILE_TOKEN=$ALICE expect 5 "$CLIENT" --user bob $H "$PORT" list
stderr_one_line_with 'authentication failed'
TCPFILE_TOKEN=$ALICE expect 5 "$CLIENT" --user nobody $H "$PORT" list
stderr_one_line_with 'authentication failed'
expect 2 "$CLIENT" --user bob $H "$PORT" list
stderr_one_line_with 'TCPFILE_TOKEN' '--token-file'
pass "a readable token file is refused; a wrong token or user exits 5 alike"

grep -qE ' user bob put "hello\.txt" ok ' "$TMP/root.out" || fail "no log line naming bob"
grep -qE ' auth "nobody" failed .*authentication failed' "$TMP/root.out" ||
  fail "no log line for the failed login"
grep -qF -- "$BOB" "$TMP/root.out" "$TMP/root.err" && fail "a token is in the log"
grep -qF -- "$ALICE" "$TMP/root.out" "$TMP/root.err" && fail "a token is in the log"
pass "each request's log line names the user; logins are logged, tokens never"

# A new token for alice: the old one stops working after SIGHUP.
expect 0 "$SERVER" --add-user alice --access read
ALICE2=$(cat "$TMP/out")
kill -HUP "$SERVER_PID"
for ((i = 0; i < 50; i++)); do
  grep -qF 'users file read again' "$TMP/root.out" && break
  sleep 0.1
done
grep -qF 'users file read again: 2 users' "$TMP/root.out" || fail "SIGHUP did not reload"
TCPFILE_TOKEN=$ALICE expect 5 "$CLIENT" --user alice $H "$PORT" list
TCPFILE_TOKEN=$ALICE2 expect 0 "$CLIENT" --user alice $H "$PORT" list
stop_server "$SERVER_PID"
[[ $STOP_STATUS == 0 ]] || fail "the server exited $STOP_STATUS"
pass "SIGHUP reads the users file again: the replaced token stops working"

# Machines: a user with a client certificate instead of a token.
for m in m1 m2; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$m" -keyout "$TMP/$m.key" -out "$TMP/$m.pem" 2>/dev/null ||
    fail "openssl could not make a certificate"
  chmod 600 "$TMP/$m.key"
done
expect 0 "$SERVER" --add-user m1 --access write --dir m1 --client-cert "$TMP/m1.pem"
[[ $(cat "$TMP/out") =~ ^SHA256:[A-Za-z0-9+/]{43}$ ]] ||
  fail "--client-cert should print the fingerprint alone: $(cat "$TMP/out")"
M1FP=$(cat "$TMP/out")
grep -qF -- "$M1FP" "$TMP/state/tcpfile/users" || fail "the fingerprint is not in the users file"
expect 2 "$SERVER" --client-cert "$TMP/m1.pem" 0 "$TMP/root"
stderr_one_line_with '--client-cert goes with --add-user'
pass "--add-user --client-cert records the certificate's fingerprint, prints it"

start_server root
echo reading >"$TMP/reading.txt"
expect 0 "$CLIENT" --cert "$TMP/m1.pem" --key "$TMP/m1.key" $H "$PORT" put "$TMP/reading.txt"
[[ -f $TMP/root/m1/reading.txt ]] || fail "m1's put did not land in m1/"
grep -qE ' user m1 put "reading\.txt" ok ' "$TMP/root.out" || fail "no log line naming m1"
expect 5 "$CLIENT" --cert "$TMP/m2.pem" --key "$TMP/m2.key" $H "$PORT" list
stderr_one_line_with 'authentication required'
TCPFILE_TOKEN=$ALICE2 expect 0 "$CLIENT" --cert "$TMP/m2.pem" --key "$TMP/m2.key" --user alice \
  $H "$PORT" list
pass "a machine with its certificate is its user without a token; another certificate is nobody"

chmod 644 "$TMP/m1.key"
expect 1 "$CLIENT" --cert "$TMP/m1.pem" --key "$TMP/m1.key" $H "$PORT" list
stderr_one_line_with '--key' 'readable by others' 'chmod 600'
chmod 600 "$TMP/m1.key"
expect 2 "$CLIENT" --cert "$TMP/m1.pem" $H "$PORT" list
stderr_one_line_with '--cert FILE needs --key FILE'
expect 1 "$CLIENT" --cert "$TMP/m1.pem" --key "$TMP/m2.key" $H "$PORT" list
[[ $(wc -l <"$TMP/err") == 1 ]] || fail "a key that does not match: $(cat "$TMP/err")"
stop_server "$SERVER_PID"
pass "the key must be private, come with its certificate, and match it"

echo "all $CHECKS checks passed"
