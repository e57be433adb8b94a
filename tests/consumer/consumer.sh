#!/usr/bin/env bash
# consumer.sh BUILD_DIR SOURCE_DIR
#
# Checks the installed library the way its users see it: installs BUILD_DIR
# into a temporary prefix, builds consumer.c with the flags pkg-config gives
# (against the shared library, then statically against libtcpfile.a, then
# everything static with -static), runs them, builds the README's program (examples/send.c) the same way and runs
# it against the installed tcpfile-server, and checks that the shared
# library exports only tf_ symbols: every TF_API function of tcpfile.h and
# nothing else, under the SONAME libtcpfile.so.MAJOR. Prints what it
# checks; exits non-zero if any check fails. Leaves nothing behind.
# consumer_cmake.sh does the same through find_package.
set -u
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh" "$@"

# Our prefix first, so no other tcpfile is picked up; the system's own
# directories after it, for what tcpfile.pc requires (libxxhash).
sys_pc=$(pkg-config --variable pc_path pkg-config)
pkgconf() {
  PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_LIBDIR="$pcdir:$sys_pc" pkg-config "$@" tcpfile
}

# The .pc file must describe the prefix the files were installed into.
pc_libdir=$(pkgconf --variable=libdir)
pc_incdir=$(pkgconf --variable=includedir)
pc_defines=()
if [ "$(realpath -m -- "$pc_libdir")" != "$(realpath -m -- "$libdir")" ] ||
    [ "$(realpath -m -- "$pc_incdir")" != "$(realpath -m -- "$incdir")" ]; then
  fail "tcpfile.pc does not follow 'cmake --install --prefix': it says" \
    "libdir=$pc_libdir includedir=$pc_incdir, the files are in $libdir and $incdir"
  # Go on with the real locations, so that the other checks still run.
  pc_defines=(--define-variable=libdir="$libdir" --define-variable=includedir="$incdir")
fi
if ! pkgconf --exists; then
  echo "FAIL: pkg-config cannot read $pc" >&2
  exit 1
fi
version=$(pkgconf --modversion)
echo "   pkg-config: tcpfile $version"

read -r -a cflags <<<"$(pkgconf "${pc_defines[@]}" --cflags)"
read -r -a libs <<<"$(pkgconf "${pc_defines[@]}" --libs)"
read -r -a static_libs <<<"$(pkgconf "${pc_defines[@]}" --static --libs)"
echo "   --cflags: ${cflags[*]}"
echo "   --libs: ${libs[*]}"
echo "   --static --libs: ${static_libs[*]}"
case " ${static_libs[*]} " in
*" -pthread "* | *" -lpthread "*) ;;
*) fail "pkg-config --static --libs does not bring in threads" ;;
esac

warn=(-std=c11 -Wall -Wextra -Werror)

echo "== shared: $cc_cmd consumer.c \$(pkg-config --cflags --libs tcpfile)"
if "$cc_cmd" "${warn[@]}" "${extra_flags[@]}" -o "$tmp/consumer" "$src_dir/consumer.c" \
    "${cflags[@]}" "${libs[@]}"; then
  if out=$(LD_LIBRARY_PATH="$libdir" "$tmp/consumer"); then
    echo "   $out"
    [ "$out" = "consumer: libtcpfile $version works" ] ||
      fail "the shared consumer says \"$out\", the .pc says version $version"
  else
    fail "the consumer built against the shared library failed"
  fi
  resolved=$(LD_LIBRARY_PATH="$libdir" ldd "$tmp/consumer" | awk '/libtcpfile/ {print $3}')
  case "$resolved" in
  "$prefix"/*) echo "   loads $resolved" ;;
  *) fail "the consumer loads libtcpfile from '$resolved', not from $prefix" ;;
  esac
else
  fail "cannot build the consumer against the shared library"
fi

echo "== static: $cc_cmd consumer.c \$(pkg-config --static --cflags --libs tcpfile)"
# Both libtcpfile.so and libtcpfile.a are installed; ask the linker for the
# archive explicitly, keeping everything else pkg-config says.
static_args=()
for arg in "${static_libs[@]}"; do
  if [ "$arg" = "-ltcpfile" ]; then
    static_args+=(-Wl,-Bstatic -ltcpfile -Wl,-Bdynamic)
  else
    static_args+=("$arg")
  fi
done
if "$cc_cmd" "${warn[@]}" "${extra_flags[@]}" -o "$tmp/consumer-static" \
    "$src_dir/consumer.c" "${cflags[@]}" "${static_args[@]}"; then
  if readelf -d "$tmp/consumer-static" | grep -q 'NEEDED.*libtcpfile'; then
    fail "the static consumer still needs libtcpfile.so"
  fi
  if out=$(env -u LD_LIBRARY_PATH "$tmp/consumer-static"); then
    echo "   $out"
  else
    fail "the consumer linked statically failed"
  fi
else
  fail "cannot build the consumer against libtcpfile.a"
fi

# What a user of 'pkg-config --static' does: everything static (-static),
# with exactly the flags it prints, for the README's program, which moves a
# file and so pulls in the checksum's object and xxhash (consumer.c alone
# would not). The sanitizers' runtimes cannot be linked statically, so
# that build skips it.
if [ "${#extra_flags[@]}" -eq 0 ]; then
  echo "== all static: $cc_cmd -static send.c \$(pkg-config --static --cflags --libs tcpfile)"
  if "$cc_cmd" "${warn[@]}" -static -o "$tmp/send-static" "$repo_dir/examples/send.c" \
      "${cflags[@]}" "${static_libs[@]}" 2>"$tmp/static.err"; then
    if readelf -d "$tmp/send-static" 2>/dev/null | grep -q NEEDED; then
      fail "the -static program still needs shared libraries:" \
        "$(readelf -d "$tmp/send-static" | grep NEEDED | tr -s ' ' | tr '\n' ' ')"
    fi
    run_send "$tmp/send-static"
  else
    fail "cannot link send.c with -static and pkg-config --static --libs:" \
      "$(grep -v 'statically linked applications requires' "$tmp/static.err" | head -5)"
  fi
fi

echo "== the README's program: $cc_cmd send.c \$(pkg-config --cflags --libs tcpfile)"
if "$cc_cmd" "${warn[@]}" "${extra_flags[@]}" -o "$tmp/send" "$repo_dir/examples/send.c" \
    "${cflags[@]}" "${libs[@]}"; then
  LD_LIBRARY_PATH="$libdir" run_send "$tmp/send"
else
  fail "cannot build examples/send.c against the installed library"
fi

if [ -n "$so" ]; then
  echo "== exports of ${so#"$prefix"/}"
  nm -D --defined-only "$so" | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | sort -u \
    >"$tmp/exported"
  grep -v '^tf_[a-z0-9]' "$tmp/exported" >"$tmp/foreign"
  grep '^tf__' "$tmp/exported" >>"$tmp/foreign"
  if [ -s "$tmp/foreign" ]; then
    fail "libtcpfile.so exports symbols other than tf_*: $(tr '\n' ' ' <"$tmp/foreign")"
  fi
  # Every TF_API function declared in the public header is exported.
  grep -E '^TF_API ' "$incdir/tcpfile.h" | grep -o '^[^(]*(' |
    sed -E 's/.*[ *](tf_[a-z0-9_]+)\($/\1/' | sort -u >"$tmp/declared"
  missing=$(comm -23 "$tmp/declared" "$tmp/exported" | tr '\n' ' ')
  extra=$(comm -13 "$tmp/declared" "$tmp/exported" | tr '\n' ' ')
  [ -z "$missing" ] || fail "declared TF_API but not exported: $missing"
  [ -z "$extra" ] || fail "exported but not declared in tcpfile.h: $extra"
  echo "   $(wc -l <"$tmp/exported") symbols, all tf_*, $(wc -l <"$tmp/declared") declared"
  soname=$(readelf -d "$so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
  major=${version%%.*}
  [ "$soname" = "libtcpfile.so.$major" ] ||
    fail "SONAME is '$soname', expected libtcpfile.so.$major"
fi

finish "consumer check"
