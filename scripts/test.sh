#!/usr/bin/env bash
# The whole test suite: install what is missing, configure, build, run ctest; then the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, then every fuzz target for a while.
#   scripts/test.sh              all three parts (what .ci/run runs)
#   scripts/test.sh --fast       the normal build's ctest only
#   scripts/test.sh --sanitize   the sanitizer unit tests only (build dir: ${TRICKS_BUILD_DIR:-build}-asan)
#   scripts/test.sh --fuzz       the fuzz targets only (scripts/fuzz.sh all, build dir ${TRICKS_BUILD_DIR:-build}-fuzz)
# TRICKS_FUZZ_SECONDS: seconds per fuzz target (default 60; 0 skips fuzzing); the targets run side by
# side, one per core. TRICKS_SANITIZE_CXX: the sanitizer build's compiler (default clang++-14).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
case "$mode" in
  all | --fast | --sanitize | --fuzz) ;;
  *) echo "usage: scripts/test.sh [--fast | --sanitize | --fuzz]" >&2; exit 2 ;;
esac
scripts/bootstrap.sh
build=${TRICKS_BUILD_DIR:-build}

normal_suite() {
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j "$(nproc)"
  (cd "$build" && ctest --output-on-failure -j "$(nproc)" --timeout 1500)
}

# The unit tests built with -fsanitize=address,undefined; any report (LeakSanitizer's too: the
# OpenMP runtime's thread pools needed no suppression) fails the test. clang++-14 -O1 (with its
# libomp), not GCC: GCC's sanitizer instrumentation made the build several times slower and the
# tests slower too (docs/design.md, "Measurements"); -g1 (line tables) is all a report needs.
# -Wno-pass-failed: clang cannot vectorise the `omp simd` loops at -O1 and says so for each.
sanitize_suite() {
  local asan="$build-asan"
  local flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  local cxx=${TRICKS_SANITIZE_CXX:-clang++-14}
  # a build dir that another compiler configured (GCC did, before) starts afresh
  if [[ -f "$asan/CMakeCache.txt" ]] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=\(.*/\)\?$cxx\$" "$asan/CMakeCache.txt"; then
    rm -rf "$asan"
  fi
  cmake -S . -B "$asan" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS="$flags -Wno-pass-failed" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" -DTRICKS_BUILD_EXAMPLES=OFF -DTRICKS_BUILD_BENCH=OFF -DTRICKS_CUDA=OFF \
    -DTRICKS_ONNX=OFF -DTRICKS_MPI=OFF >/dev/null
  cmake --build "$asan" -j "$(nproc)" --target tricks_tests
  (cd "$asan" &&
    ASAN_OPTIONS="detect_leaks=1:${ASAN_OPTIONS:-}" \
    UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}" \
    ctest -L unit --output-on-failure -j "$(nproc)" --timeout 3000)
}

# Every fuzz target for TRICKS_FUZZ_SECONDS (built in ${TRICKS_BUILD_DIR:-build}-fuzz).
fuzz_targets() {
  TRICKS_FUZZ_DIR="$build-fuzz" scripts/fuzz.sh all "${TRICKS_FUZZ_SECONDS:-60}"
}

case "$mode" in
  all)
    normal_suite
    sanitize_suite
    if ((${TRICKS_FUZZ_SECONDS:-60} > 0)); then fuzz_targets; fi
    ;;
  --fast) normal_suite ;;
  --sanitize) sanitize_suite ;;
  --fuzz) fuzz_targets ;;
esac
