#!/usr/bin/env bash
# Compiles every ```cpp block of docs/tricks/*.md on its own (-fsyntax-only: templates are
# instantiated and static_asserts checked, nothing is linked or run), so the docs' examples cannot
# drift from the library. Exit status: the number of blocks that failed (0: all compile). The
# blocks compile side by side, one per core.
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
# One compile per core at a time; failures are printed at the end, whole.
jobs=$(nproc)
for src in "$work"/*.cpp; do
  [[ -e "$src" ]] || continue
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n; done
  {
    if "$cxx" -std=c++20 -fopenmp -fsyntax-only -I"$root/include" -isystem "$eigen" "$src" 2> "$src.log"; then
      echo "ok    $(basename "$src")"
    else
      touch "$src.failed"
    fi
  } &
done
wait
for src in "$work"/*.cpp; do
  [[ -e "$src.failed" ]] || continue
  echo "FAIL  $(basename "$src")"; sed 's/^/      /' "$src.log" | head -20
  failed=$((failed + 1))
done
exit "$failed"
