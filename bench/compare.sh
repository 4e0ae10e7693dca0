#!/usr/bin/env bash
# Interleaved A/B throughput: tricks (bench_throughput) vs PyTorch (bench/peers/torch_bench.py) on
# the same net, batch and threads, repeated; prints medians and the ratio. A benchmark, not a test.
#   bench/compare.sh [repeats=5] [threads=2] [batch=128] [width=16]
# Also prints each side's peak resident memory and tricks' training GFLOP/s against the machine's
# FP32 peak (computed from the thread count, clock and vector width /proc/cpuinfo reports).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}; threads=${2:-2}; batch=${3:-128}; width=${4:-16}
scripts/bootstrap.sh --peers
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target bench_throughput >/dev/null
ours_train=(); ours_infer=(); torch_train=(); torch_infer=(); ours_rss=(); torch_rss=(); ours_gflops=()
# Peak resident memory of each whole process (GNU time's %M, kB), as the benchmark runs it.
peak() { awk '/^maxrss_kb/ {print $2}' <<<"$1"; }
for ((i = 0; i < reps; ++i)); do
  o=$( { OMP_NUM_THREADS=$threads /usr/bin/time -f 'maxrss_kb %M' build/bench/bench_throughput --batch "$batch" \
         --threads "$threads" --width "$width" --iters 8; } 2>&1)
  ours_train+=("$(awk '/train images\/s/ {print $3}' <<<"$o")")
  ours_infer+=("$(awk '/infer images\/s/ {print $3}' <<<"$o")")
  ours_gflops+=("$(awk '/train GFLOP\/s/ {print $3}' <<<"$o")")
  ours_rss+=("$(peak "$o")")
  p=$( { /usr/bin/time -f 'maxrss_kb %M' /usr/bin/python3 bench/peers/torch_bench.py --threads "$threads" --batch "$batch" \
         --width "$width" --iters 8; } 2>&1)
  torch_train+=("$(awk '/train_images_per_s/ {print $3}' <<<"$p")")
  torch_infer+=("$(awk '/infer_images_per_s/ {print $3}' <<<"$p")")
  torch_rss+=("$(peak "$p")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ot=$(median "${ours_train[@]}"); oi=$(median "${ours_infer[@]}"); tt=$(median "${torch_train[@]}"); ti=$(median "${torch_infer[@]}")
echo "cifar_resnet20-D width $width, batch $batch, $threads threads, $reps interleaved repeats (medians)"
printf '%-10s %14s %14s\n' "" "train img/s" "infer img/s"
printf '%-10s %14.0f %14.0f\n' tricks "$ot" "$oi" torch "$tt" "$ti"
awk -v a="$ot" -v b="$tt" -v c="$oi" -v d="$ti" 'BEGIN {printf "%-10s %14.2f %14.2f\n", "ratio", a / b, c / d}'
orss=$(median "${ours_rss[@]}"); trss=$(median "${torch_rss[@]}"); og=$(median "${ours_gflops[@]}")
echo "peak resident memory (whole process, median): tricks $((orss / 1024)) MB, torch $((trss / 1024)) MB"
# The machine's FP32 peak from what it reports: threads x clock x vector width x 2 FMA units x 2 FLOP.
mhz=$(awk -F: '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)
lanes=8; grep -qw avx512f /proc/cpuinfo && lanes=16
awk -v g="$og" -v t="$threads" -v m="$mhz" -v l="$lanes" 'BEGIN {
  p = t * m / 1000 * l * 2 * 2
  printf "tricks training: %.1f GFLOP/s = %.0f%% of the FP32 peak %.0f GFLOP/s (%d threads x %.2f GHz x %d lanes x 2 FMA units x 2)\n", g, 100 * g / p, p, t, m / 1000, l }'
