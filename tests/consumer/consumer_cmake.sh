#!/usr/bin/env bash
# consumer_cmake.sh BUILD_DIR SOURCE_DIR
#
# The CMake half of the consumer check (consumer.sh is the pkg-config
# half): installs BUILD_DIR into a temporary prefix, configures the tiny
# project in cmake/ with -DCMAKE_PREFIX_PATH=<prefix>, which does
# find_package(tcpfile CONFIG REQUIRED) and links tcpfile::tcpfile (and
# tcpfile::tcpfile_static), builds it, runs consumer.c both ways, and runs
# the README's program against the installed tcpfile-server. Leaves nothing
# behind.
set -u
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

app="$tmp/app"
flags="${extra_flags[*]}"
echo "== cmake -S cmake -B app -DCMAKE_PREFIX_PATH=$prefix"
# The package registry is off, so that only the prefix can provide tcpfile.
if ! cmake -S "$src_dir/cmake" -B "$app" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc_cmd" -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DTF_SEND_SOURCE="$repo_dir/examples/send.c" \
    >"$tmp/configure.log" 2>&1; then
  cat "$tmp/configure.log" >&2
  fail "configuring a project with find_package(tcpfile CONFIG REQUIRED) failed"
  finish "CMake consumer check"
fi
sed -n 's/^-- \(found tcpfile .*\)/   \1/p' "$tmp/configure.log"
found_dir=$(sed -n 's/^tcpfile_DIR:PATH=//p' "$app/CMakeCache.txt")
case "$found_dir" in
"$prefix"/*) ;;
*) fail "find_package found tcpfile in '$found_dir', not under $prefix" ;;
esac

echo "== cmake --build app"
if ! cmake --build "$app" >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  fail "building against tcpfile::tcpfile failed"
  finish "CMake consumer check"
fi

# CMake gives the build-tree executables an RPATH to the imported library:
# they run as they are, no LD_LIBRARY_PATH.
if out=$(env -u LD_LIBRARY_PATH "$app/consumer"); then
  echo "   consumer (tcpfile::tcpfile): $out"
else
  fail "the consumer linked with tcpfile::tcpfile failed"
fi
if [ "$(cache_value BUILD_SHARED_LIBS)" = "OFF" ]; then
  echo "   (a static-only build: tcpfile::tcpfile is the static library)"
else
  resolved=$(env -u LD_LIBRARY_PATH ldd "$app/consumer" | awk '/libtcpfile/ {print $3}')
  case "$resolved" in
  "$prefix"/*) echo "   loads $resolved" ;;
  *) fail "the consumer loads libtcpfile from '$resolved', not from $prefix" ;;
  esac
fi

if [ "$(cache_value BUILD_SHARED_LIBS)" = "OFF" ]; then
  :
elif [ -x "$app/consumer_static" ]; then
  if readelf -d "$app/consumer_static" | grep -q 'NEEDED.*libtcpfile'; then
    fail "consumer_static (tcpfile::tcpfile_static) still needs libtcpfile.so"
  fi
  if out=$(env -u LD_LIBRARY_PATH "$app/consumer_static"); then
    echo "   consumer_static (tcpfile::tcpfile_static): $out"
  else
    fail "the consumer linked with tcpfile::tcpfile_static failed"
  fi
else
  fail "the package has no tcpfile::tcpfile_static target"
fi

echo "== the README's program, linked with tcpfile::tcpfile"
run_send "$app/send"

finish "CMake consumer check"
