#!/usr/bin/env bash
# tls.sh SERVER CLIENT - the programs' TLS, as users meet it: the banner's
# fingerprint, --pin, trust on first use with --accept-new and the
# known-hosts file, a changed server key refused loudly (exit 13), and
# plaintext against TLS both ways: exit 1, one clear line, no hang.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"
H=127.0.0.1
KH=$TMP/kh

start_server root
FP=$(cat "$PIN_FILE")
[[ $(sed -n 2p "$TMP/root.out") == "server identity: $FP"* ]] ||
  fail "the banner's second line does not show the fingerprint: $(sed -n 2p "$TMP/root.out")"
echo hello >"$TMP/root/hello.txt"

# Pinned: works, also through the URL form.
expect 0 "$REAL_CLIENT" --pin "$FP" --known-hosts "$KH" $H "$PORT" get hello.txt --to "$TMP/a"
cmp -s "$TMP/a" "$TMP/root/hello.txt" || fail "pinned get differs"
(cd "$TMP" && expect 0 "$REAL_CLIENT" --pin "$FP" --known-hosts "$KH" "tcpfile://$H:$PORT/hello.txt")
cmp -s "$TMP/hello.txt" "$TMP/root/hello.txt" || fail "URL get differs"
pass "the banner shows SHA256:...; --pin with it works, URL form too"

# Unknown, not on a terminal: refused, saying how to accept; nothing recorded.
expect 13 "$REAL_CLIENT" --known-hosts "$KH" $H "$PORT" list </dev/null
stderr_one_line_with "not a known server" "$FP" "--accept-new" "--pin"
[[ ! -e $KH ]] || fail "a refused server was recorded"
expect 0 "$REAL_CLIENT" --accept-new --known-hosts "$KH" $H "$PORT" list
grep -qF "$H:$PORT $FP" "$KH" || fail "--accept-new did not record the server: $(cat "$KH")"
expect 0 "$REAL_CLIENT" --known-hosts "$KH" $H "$PORT" list
pass "unknown server refused (13) off a terminal; --accept-new records it; then known"

# Another key at that address (a man in the middle, or a new key): refused
# loudly, even with --accept-new, and the record stays.
stop_server "$SERVER_PID"
start_server other --state-dir "$TMP/other-state"
sed -i "s/^$H:[0-9]* /$H:$PORT /" "$KH"
expect 13 "$REAL_CLIENT" --accept-new --known-hosts "$KH" $H "$PORT" list
line=$(grep -nF "$FP" "$KH" | cut -d: -f1)
stderr_one_line_with "WARNING: THE SERVER'S IDENTITY HAS CHANGED" "eavesdropping" \
  "Expected $FP, got SHA256:" "remove line $line of $KH"
grep -qF "$FP" "$KH" || fail "the known key was replaced"
expect 13 "$REAL_CLIENT" --pin "$FP" --known-hosts "$KH" $H "$PORT" list
pass "a changed server key is refused with ssh's warning (13), also by --pin"

# Plaintext against TLS, both ways.
t0=$SECONDS
expect 1 "$REAL_CLIENT" --plaintext $H "$PORT" list
stderr_one_line_with "this server requires TLS (the client has --plaintext)"
grep -qF "this server requires TLS (the client has --plaintext)" "$TMP/other.out" ||
  fail "the TLS server did not log the plaintext client"
stop_server "$SERVER_PID"
start_server plain --plaintext
expect 1 "$REAL_CLIENT" --pin "$FP" --known-hosts "$KH" $H "$PORT" list
stderr_one_line_with "the server does not speak TLS (it runs with --plaintext)"
sleep 0.2
grep -qF "a TLS client; this server runs --plaintext" "$TMP/plain.out" ||
  fail "the plaintext server did not log the TLS client: $(cat "$TMP/plain.out")"
((SECONDS - t0 < 10)) || fail "the mismatches took $((SECONDS - t0)) s"
stop_server "$SERVER_PID"
pass "plaintext against TLS both ways: exit 1, one line each side, no hang"

# Out of descriptors, a TLS server has none for a handshake: it refuses in
# plaintext, and the TLS client reports that refusal, not "does not speak
# TLS". (A server limited to 24 descriptors, filled by idle connections.)
printf '#!/bin/bash\nulimit -n 24\nexec %q "$@"\n' "$SERVER" >"$TMP/.server-24"
chmod +x "$TMP/.server-24"
REAL_SERVER=$SERVER
SERVER=$TMP/.server-24 start_server fdless --workers 1
SERVER=$REAL_SERVER
held=()
for ((i = 0; i < 24; i++)); do
  exec {fd}<>"/dev/tcp/$H/$PORT"
  held+=("$fd")
done
sleep 0.3
expect 5 "$CLIENT" $H "$PORT" list
stderr_one_line_with "the server refused: the server is out of file descriptors; try again later"
for fd in "${held[@]}"; do exec {fd}>&-; done
stop_server "$SERVER_PID"
pass "a TLS server out of descriptors: the TLS client says so (exit 5), not \"not TLS\""

echo "all $CHECKS checks passed"
