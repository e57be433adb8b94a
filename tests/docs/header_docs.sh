#!/usr/bin/env bash
# header_docs.sh include/tcpfile.h
#
# Every public function has its comment: each TF_API declaration follows a
# comment (what it does, returns, who frees what), directly or after the
# declarations of the same group (tf_server_open, then tf_server_open_ex).
set -euo pipefail
header=${1:?usage: header_docs.sh include/tcpfile.h}

awk '
  # A declaration may span lines: it ends at the line with ");".
  /^TF_API / {
    n++
    if (!documented) { print FILENAME ":" FNR ": no comment before: " $0; bad++ }
    in_decl = ($0 !~ /\);/)
    next
  }
  in_decl { if ($0 ~ /\);/) in_decl = 0; next }
  /\*\/[ \t]*$/ { documented = 1; next }   # the end of a comment
  /^typedef / { next }                      # a callback type between them
  /^[ \t]*$/ { documented = 0; next }       # a blank line ends a group
  { documented = 0 }
  END {
    if (bad) exit 1
    if (n < 30) { print "only " n " TF_API declarations found"; exit 1 }
    print "ok - all " n " TF_API functions in " FILENAME " have a comment"
  }
' "$header"
