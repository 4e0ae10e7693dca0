#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz/ (clang++-14, ASan + UBSan).
#   scripts/fuzz.sh TARGET SECONDS   fuzz one target (fuzz_idx, fuzz_checkpoint, fuzz_image, fuzz_image_list,
#                                    fuzz_safetensors)
#   scripts/fuzz.sh all SECONDS      every target, SECONDS each (0: build only); TRICKS_FUZZ_JOBS targets
#                                    (default: the number of cores) build and fuzz side by side
#   scripts/fuzz.sh --make-corpus    rewrite the committed seeds (tests/fuzz/corpus) with make_corpus
# Each run starts from a fresh copy of tests/fuzz/corpus/TARGET in $TRICKS_FUZZ_DIR/run/TARGET
# (default build-fuzz/run/TARGET; the committed corpus never grows). A finding (crash, sanitizer
# report, exception other than tricks::error, timeout over 10 s, over 2 GB of memory) stops the run,
# prints the path of the input that caused it, and makes this script exit non-zero; rerun it with
#   build-fuzz/TARGET CRASH_INPUT
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(fuzz_idx fuzz_checkpoint fuzz_image fuzz_image_list fuzz_safetensors)
out=${TRICKS_FUZZ_DIR:-build-fuzz}
cxx=${TRICKS_FUZZ_CXX:-clang++-14}
common=(-std=c++20 -g -O1 -march=native -Wall -Wextra -Wno-unknown-pragmas -fopenmp
        -Iinclude -Itests/fuzz -isystem /usr/include/eigen3)
libs=(-ljpeg -lpng -lz)
mkdir -p "$out"
out=$(cd "$out" && pwd)  # absolute: TMPDIR below, and TRICKS_FUZZ_DIR may be either

# Rebuilds $out/$1 when it is missing or older than a header or a fuzz source.
build() {
  local bin="$out/$1"
  if [[ -x "$bin" && -z "$(find include tests/fuzz -newer "$bin" -name '*.[ch]pp' -print -quit)" ]]; then
    return 0
  fi
  echo "fuzz: building $bin" >&2
  nice -n 10 "$cxx" "${common[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer "tests/fuzz/$1.cpp" -o "$bin.tmp" "${libs[@]}" || return 1
  mv "$bin.tmp" "$bin"
}

# Fuzzes $1 for $2 seconds; returns libFuzzer's status (0: no finding). Lines start with the
# target's name: several targets may run at once.
run() {
  local target=$1 seconds=$2 dir="$out/run/$1"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/findings" "$dir/tmp"
  cp tests/fuzz/corpus/"$target"/* "$dir/corpus/" || return 1
  echo "fuzz: $target for ${seconds}s (corpus copy and findings in $dir)" >&2
  local status=0
  OMP_NUM_THREADS=1 TMPDIR="$dir/tmp" UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}" \
    "$out/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/findings/" "$dir/corpus" >"$dir/log" 2>&1 || status=$?
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+[[:space:]]+DONE' "$dir/log" | sed "s/^/fuzz: $target: /" >&2 || true
  return "$status"
}

# What a finding left: the end of the log, the input, how to reproduce.
report_finding() {
  local target=$1 dir="$out/run/$1"
  tail -n 60 "$dir/log" >&2
  echo "fuzz: FINDING in $target; input: $(ls -d "$dir"/findings/* 2>/dev/null | tr '\n' ' ')" >&2
  echo "fuzz: reproduce with $out/$target <input>; full log: $dir/log" >&2
}

# Runs `$1 TARGET ARGS...` for every selected target, at most $jobs at a time; each one's exit
# status lands in $out/status/TARGET (a job's status, unlike wait -n's, cannot be lost).
side_by_side() {
  local fn=$1
  shift
  rm -rf "$out/status"
  mkdir -p "$out/status"
  for t in "${selected[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
    { "$fn" "$t" "$@" && echo 0 >"$out/status/$t" || echo $? >"$out/status/$t"; } &
  done
  wait
}

case "${1:-}" in
  --make-corpus)
    "$cxx" "${common[@]}" -O1 tests/fuzz/make_corpus.cpp -o "$out/make_corpus" "${libs[@]}"
    "$out/make_corpus" tests/fuzz/corpus
    exit 0
    ;;
  all) selected=("${targets[@]}") ;;
  fuzz_idx | fuzz_checkpoint | fuzz_image | fuzz_image_list | fuzz_safetensors) selected=("$1") ;;
  *) echo "usage: scripts/fuzz.sh {all|fuzz_idx|fuzz_checkpoint|fuzz_image|fuzz_image_list|fuzz_safetensors} SECONDS | --make-corpus" >&2
     exit 2 ;;
esac
seconds=${2:?"scripts/fuzz.sh: SECONDS missing"}
jobs=${TRICKS_FUZZ_JOBS:-$(nproc)}
failed=()
side_by_side build
for t in "${selected[@]}"; do
  [[ "$(cat "$out/status/$t")" == 0 ]] || { echo "fuzz: building $t failed" >&2; exit 1; }
done
if ((seconds > 0)); then
  side_by_side run "$seconds"
  for t in "${selected[@]}"; do
    [[ "$(cat "$out/status/$t")" == 0 ]] || { report_finding "$t"; failed+=("$t"); }
  done
fi
if ((${#failed[@]} > 0)); then
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
