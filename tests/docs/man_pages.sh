#!/usr/bin/env bash
# man_pages.sh render MAN_DIR
# man_pages.sh options MAN_DIR PROGRAM...
#
# render: the pages render without a single groff warning; exits 77
# (skipped) when groff is not installed, as nothing else needs it.
# options: each PROGRAM's page documents every long option its --help lists.
set -euo pipefail
usage="usage: man_pages.sh render|options MAN_DIR [PROGRAM...]"
mode=${1:?$usage}
man_dir=${2:?$usage}
shift 2
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

case $mode in
render)
  if ! command -v groff >/dev/null; then
    echo "skipped: groff is not installed"
    exit 77
  fi
  for page in "$man_dir"/tcpfile-server.1 "$man_dir"/tcpfile-client.1; do
    # -ww: every warning; -z: no output, only the diagnostics.
    warnings=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1) ||
      fail "groff failed on $page"
    [[ -z $warnings ]] || fail "groff warns about $page:
$warnings"
    lines=$(LC_ALL=C.UTF-8 groff -man -Tutf8 "$page" 2>/dev/null | wc -l)
    ((lines > 40)) || fail "$page renders to only $lines lines"
    echo "ok - $(basename "$page") renders to $lines lines, no warnings"
  done
  ;;
options)
  for prog in "$@"; do
    page="$man_dir/$(basename "$prog").1"
    [[ -f $page ]] || {
      fail "no page $page for $prog"
      continue
    }
    opts=$("$prog" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
    [[ -n $opts ]] || fail "$prog --help lists no long option"
    for opt in $opts; do
      # roff writes each hyphen as \-
      grep -qF -- "${opt//-/\\-}" "$page" || fail "$page does not document $opt"
    done
    echo "ok - $(basename "$page") documents all $(wc -w <<<"$opts") long options of --help"
  done
  ;;
*)
  echo "$usage" >&2
  exit 2
  ;;
esac
((failures == 0))
