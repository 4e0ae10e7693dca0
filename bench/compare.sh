#!/usr/bin/env bash
# Interleaved A/B throughput: tricks (bench_throughput) vs PyTorch (bench/peers/torch_bench.py) on
# the same net, batch and threads, repeated; prints medians and the ratio. A benchmark, not a test.
#   bench/compare.sh [repeats=5] [threads=2] [batch=128] [width=16]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}; threads=${2:-2}; batch=${3:-128}; width=${4:-16}
scripts/bootstrap.sh --peers
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target bench_throughput >/dev/null
ours_train=(); ours_infer=(); torch_train=(); torch_infer=()
for ((i = 0; i < reps; ++i)); do
  o=$(OMP_NUM_THREADS=$threads build/bench/bench_throughput --batch "$batch" --threads "$threads" --width "$width" --iters 8)
  ours_train+=("$(awk '/train images\/s/ {print $3}' <<<"$o")")
  ours_infer+=("$(awk '/infer images\/s/ {print $3}' <<<"$o")")
  p=$(/usr/bin/python3 bench/peers/torch_bench.py --threads "$threads" --batch "$batch" --width "$width" --iters 8)
  torch_train+=("$(awk '/train_images_per_s/ {print $3}' <<<"$p")")
  torch_infer+=("$(awk '/infer_images_per_s/ {print $3}' <<<"$p")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ot=$(median "${ours_train[@]}"); oi=$(median "${ours_infer[@]}"); tt=$(median "${torch_train[@]}"); ti=$(median "${torch_infer[@]}")
echo "cifar_resnet20-D width $width, batch $batch, $threads threads, $reps interleaved repeats (medians)"
printf '%-10s %14s %14s\n' "" "train img/s" "infer img/s"
printf '%-10s %14.0f %14.0f\n' tricks "$ot" "$oi" torch "$tt" "$ti"
awk -v a="$ot" -v b="$tt" -v c="$oi" -v d="$ti" 'BEGIN {printf "%-10s %14.2f %14.2f\n", "ratio", a / b, c / d}'
