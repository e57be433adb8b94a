#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds, and serves the
# directory ./share (created if needed) on port 7878 over TLS until Ctrl-C.
# The server's second line is its identity (SHA256:...), made on the first
# start and kept in ~/.local/state/tcpfile: clients check it with --pin.
#   scripts/serve.sh [PORT [DIR]]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
tf_install_missing "${TF_BUILD_PACKAGES[@]}"

port=${1:-7878}
dir=${2:-share}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTF_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
mkdir -p "$dir"
[ -n "$(ls -A "$dir")" ] || echo "Hello from libtcpfile." > "$dir/hello.txt"
echo "try: build/examples/tcpfile-client --pin SHA256:... 127.0.0.1 $port list"
echo "     (with the SHA256:... the server prints below as its identity)"
exec build/examples/tcpfile-server "$port" "$dir"
