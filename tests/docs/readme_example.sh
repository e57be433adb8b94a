#!/usr/bin/env bash
# readme_example.sh README.md examples/send.c
#
# The program README.md shows is the one the tests build and run: the
# ```c block after the marker line naming examples/send.c must be the file,
# byte for byte.
set -euo pipefail
readme=${1:?usage: readme_example.sh README.md examples/send.c}
source=${2:?usage: readme_example.sh README.md examples/send.c}
marker='<!-- examples/send.c'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tf-readme.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The lines strictly between the first ```c after the marker and the ```
# that closes it.
awk -v marker="$marker" '
  state == 0 && index($0, marker) == 1 { state = 1; next }
  state == 1 && $0 == "```c" { state = 2; next }
  state == 2 && $0 == "```" { state = 3; exit }
  state == 2 { print }
  END { exit state == 3 ? 0 : 1 }
' "$readme" >"$tmp/block" || {
  echo "FAIL: $readme has no \`\`\`c block after a line starting with \"$marker\"" >&2
  exit 1
}
if ! cmp -s "$tmp/block" "$source"; then
  echo "FAIL: the README's program and $source differ (README first):" >&2
  diff -u "$tmp/block" "$source" >&2 || true
  exit 1
fi
echo "ok - the README's program is $source, byte for byte ($(wc -l <"$source") lines)"
