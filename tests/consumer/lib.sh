# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source it.)
#
# lib.sh - shared by consumer.sh and consumer_cmake.sh:
#   source lib.sh BUILD_DIR SOURCE_DIR
#
# Installs BUILD_DIR into a temporary prefix (removed on exit, with any
# server started here) and sets: prefix, libdir, incdir, pcdir, so (the
# shared library), repo_dir (the source tree), cc_cmd and extra_flags (the
# compiler and sanitizer flags the library was built with), tmp. Provides
# fail (counts failures; the script ends with `finish`), and run_send,
# which runs the README's program against the installed tcpfile-server.

build_dir=${1:?usage: $0 BUILD_DIR SOURCE_DIR}
src_dir=${2:?usage: $0 BUILD_DIR SOURCE_DIR}
repo_dir=$(cd "$src_dir/../.." && pwd)
cache="$build_dir/CMakeCache.txt"

tmp=$(mktemp -d /tmp/tf-consumer-XXXXXX) || exit 1
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
prefix="$tmp/prefix"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$1: $failures failure(s)" >&2
    exit 1
  fi
  echo "$1: ok"
  exit 0
}

cache_value() {
  sed -n "s/^$1:[A-Z]*=//p" "$cache" 2>/dev/null | head -n 1
}

# The compiler the library was built with (so that a clang or sanitizer
# build links with the matching runtime); CC overrides, cc is the fallback.
cc_cmd=${CC:-$(cache_value CMAKE_C_COMPILER)}
cc_cmd=${cc_cmd:-cc}
extra_flags=()
if [ "$(cache_value TF_SANITIZE)" = "ON" ]; then
  extra_flags+=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi

echo "== install $build_dir into $prefix"
if ! cmake --install "$build_dir" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log" >&2
  echo "FAIL: cmake --install failed" >&2
  exit 1
fi

# GNUInstallDirs may choose lib, lib64 or lib/<multiarch>: look for the file.
pc=$(find "$prefix" -name tcpfile.pc -path '*/pkgconfig/*' | head -n 1)
if [ -z "$pc" ]; then
  echo "FAIL: no tcpfile.pc under $prefix" >&2
  exit 1
fi
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
incdir="$prefix/include"
echo "   tcpfile.pc: ${pc#"$prefix"/}"
[ -f "$incdir/tcpfile.h" ] || fail "tcpfile.h is not in $incdir"
[ -f "$incdir/tcpfile_version.h" ] || fail "tcpfile_version.h is not in $incdir"
[ -f "$libdir/libtcpfile.a" ] || fail "libtcpfile.a is not in $libdir"
so=$(find "$libdir" -maxdepth 1 -name 'libtcpfile.so.*' -type f | head -n 1)
[ -n "$so" ] || fail "no libtcpfile.so.* in $libdir"

# run_send PROGRAM: runs PROGRAM (built from examples/send.c) as the README
# says, `PROGRAM HOST PORT FILE`, against the *installed* tcpfile-server on
# 127.0.0.1 port 0, started without LD_LIBRARY_PATH (its RPATH finds the
# library), and checks that the message and the file arrived.
run_send() {
  local prog=$1 server="$prefix/bin/tcpfile-server" root="$tmp/served" port='' i out
  if [ ! -x "$server" ]; then
    echo "   (the programs are not installed: TF_BUILD_EXAMPLES=OFF; not run)"
    return 0
  fi
  rm -rf "$root" && mkdir -p "$root"
  printf 'a file from the five-minute path\n' >"$tmp/notes.txt"
  # The README program passes NULL options: plaintext, so the server too.
  env -u LD_LIBRARY_PATH "$server" --plaintext -q -b 127.0.0.1 0 "$root" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^server up and running on IP: .* port \([0-9]*\)$/\1/p' "$tmp/server.log")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    fail "the installed tcpfile-server did not start: $(cat "$tmp/server.log")"
    return 0
  fi
  echo "   \$ $(basename "$prog") 127.0.0.1 $port notes.txt   # installed tcpfile-server"
  if out=$(timeout 20 "$prog" 127.0.0.1 "$port" "$tmp/notes.txt" 2>&1); then
    [ "$(cat "$root/message.txt" 2>/dev/null)" = "hello over TCP" ] ||
      fail "$prog: message.txt did not arrive"
    cmp -s "$tmp/notes.txt" "$root/notes.txt" || fail "$prog: notes.txt did not arrive whole"
    echo "   the server received: $(cd "$root" && printf "%s " *)"
  else
    fail "$prog failed against the installed server: $out"
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || fail "the installed tcpfile-server did not stop cleanly"
  server_pid=
}
