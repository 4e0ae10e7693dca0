#!/usr/bin/env bash
# Compiles every ```cpp block of docs/tricks/*.md on its own (-fsyntax-only: templates are
# instantiated and static_asserts checked, nothing is linked or run), so the docs' examples cannot
# drift from the library. Exit status: the number of blocks that failed (0: all compile).
#
#   tests/docs/check_doc_snippets.sh        # from anywhere; CXX overrides the compiler
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cxx="${CXX:-g++}"
eigen="${EIGEN_INCLUDE:-/usr/include/eigen3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
for md in "$root"/docs/tricks/*.md; do
  awk -v out="$work/$(basename "$md" .md)" '
    /^```cpp[[:space:]]*$/ { n++; f = out "_" n ".cpp"; inside = 1; next }
    /^```[[:space:]]*$/    { inside = 0; next }
    inside                 { print > f }' "$md"
done
for src in "$work"/*.cpp; do
  [[ -e "$src" ]] || continue
  if "$cxx" -std=c++20 -fopenmp -fsyntax-only -I"$root/include" -isystem "$eigen" "$src" 2> "$src.log"; then
    echo "ok    $(basename "$src")"
  else
    echo "FAIL  $(basename "$src")"; sed 's/^/      /' "$src.log" | head -20
    failed=$((failed + 1))
  fi
done
exit "$failed"
