#!/usr/bin/env bash
# Builds (does not run) everything, tests included, with warnings as errors
# in each way packagers build it: CMake's four build types, and Debian's
# dpkg-buildflags with -D_FORTIFY_SOURCE=3, under gcc and clang. Slow (ten
# builds), so not part of scripts/test.sh; run it after touching the build
# or on a new compiler. Usage: scripts/build-matrix.sh [BUILD_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-build-matrix}
jobs=${TF_MATRIX_JOBS:-$(nproc)}
failed=()
build() {
  local dir=$root/$1; shift
  echo "== $dir: $*"
  if cmake -S . -B "$dir" -DTF_WERROR=ON "$@" >"$root/$(basename "$dir").log" 2>&1 &&
     cmake --build "$dir" -j"$jobs" >>"$root/$(basename "$dir").log" 2>&1; then
    echo "   ok"
  else
    echo "   FAILED: see $root/$(basename "$dir").log"
    failed+=("$dir")
  fi
}
mkdir -p "$root"
for cc in gcc clang; do
  for type in Debug Release RelWithDebInfo MinSizeRel; do
    build "$cc-$type" -DCMAKE_C_COMPILER=$cc -DCMAKE_BUILD_TYPE=$type
  done
  if command -v dpkg-buildflags >/dev/null; then
    # Debian's CFLAGS and LDFLAGS with _FORTIFY_SOURCE=3, build type None
    # as dh_auto_configure passes it.
    cflags="$(dpkg-buildflags --get CFLAGS) -D_FORTIFY_SOURCE=3"
    build "$cc-dpkg" -DCMAKE_C_COMPILER=$cc -DCMAKE_BUILD_TYPE=None \
      -DCMAKE_C_FLAGS="$cflags" \
      -DCMAKE_EXE_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)" \
      -DCMAKE_SHARED_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)"
  else
    echo "== $cc-dpkg: skipped (no dpkg-buildflags: apt-get install dpkg-dev)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
echo "all builds warning-free"
