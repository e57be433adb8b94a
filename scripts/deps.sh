# deps.sh - sourced by serve.sh and test.sh: installs the Debian packages
# named in its arguments that are missing, with sudo when not root.
tf_install_missing() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# What building the library and the programs needs.
# libcurl (HTTP and SigV4 signing) and expat (XML) for the S3 client.
TF_BUILD_PACKAGES=(gcc libc6-dev make cmake pkg-config libxxhash-dev libssl-dev
  libcurl4-openssl-dev libexpat1-dev)
# What the test suite adds: cmocka, clang (the second compiler) with its
# sanitizer runtime, g++ to check that the header compiles as C++, and
# groff-base (a few MB) to check that the man pages render without warnings,
# and the openssl command line: a TLS stack we did not write (s_client), and
# the reference for certificates and fingerprints in the TLS tests.
TF_TEST_PACKAGES=("${TF_BUILD_PACKAGES[@]}" libcmocka-dev clang libclang-rt-14-dev g++
  groff-base openssl)
# The S3 tests' single-node Ceph (scripts/ceph.sh): a monitor, an OSD and
# the RADOS Gateway from Debian 12 (ceph 16.2), plus the ceph command line
# and curl; HAProxy for the multi-server and store-down tests (tests/s3/).
# Installed by .ci/run, not by the quick start: about a minute of apt and
# 300 MB on disk.
TF_S3_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common curl haproxy)
