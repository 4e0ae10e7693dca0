#!/usr/bin/env bash
# The whole test suite: install what is missing, configure, build, run ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
build=${TRICKS_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 1500
