#!/usr/bin/env bash
# Fails when the README's quickstart has drifted from examples/quickstart: the code block after
# the marker "<!-- quickstart.cpp -->" must equal the source file, and the text block after
# "<!-- quickstart output -->" must equal what the built program prints.
#   check_readme.sh README.md examples/quickstart/quickstart.cpp path/to/quickstart
set -euo pipefail
readme=$1 source=$2 program=$3

# The fenced block that follows a marker line, without its fences.
block_after() {
  awk -v marker="$1" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }
  ' "$readme"
}

status=0
if ! diff -u <(block_after "<!-- quickstart.cpp -->") "$source"; then
  echo "README.md: the quickstart code differs from $source" >&2
  status=1
fi
if ! diff -u <(block_after "<!-- quickstart output -->") <("$program"); then
  echo "README.md: the quickstart output differs from what $program prints" >&2
  status=1
fi
[ $status -eq 0 ] && echo "README quickstart matches $source and its output"
exit $status
