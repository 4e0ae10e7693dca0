#!/usr/bin/env bash
# Inference throughput, tricks against ONNX Runtime on the same network: the main job's net
# (cifar_resnet20d, 1x28x28, 10 classes; batch 16 and its usual 128) and ResNet-50-D (3x224x224,
# 1000 classes; batch 16), exported by examples/export (--random 1, batch norms folded) and run by
# onnxruntime-node (bench/peers/ort_infer.js: intra-op threads = THREADS, sequential, graph
# optimisation "all"); tricks runs models::inference_pool with the weights loaded once (bench_infer).
# Each pair runs once per repeat, ORT then tricks, interleaved; the table shows medians and the
# ratio tricks / ORT. A benchmark, not a test; on a shared machine the numbers move.
#   bench/onnx_compare.sh [repeats=3] [threads=2]
# TRICKS_BUILD_DIR names the build folder (default build); it is configured with the benchmarks
# and the ONNX exporter, and only the two programs are built (TRICKS_JOBS parallel jobs, default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}; threads=${2:-2}
build=${TRICKS_BUILD_DIR:-build}
modules=${TRICKS_ORT_MODULES:-$PWD/.deps/ort/node_modules}
if [[ ! -d $modules/onnxruntime-node ]]; then
  echo "onnxruntime-node is not in $modules: scripts/bootstrap.sh --peers installs it" >&2; exit 1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTRICKS_BUILD_BENCH=ON -DTRICKS_ONNX=ON >/dev/null
cmake --build "$build" -j "${TRICKS_JOBS:-$(nproc)}" --target export bench_infer >/dev/null
work=$build/onnx_compare
mkdir -p "$work"
"$build/examples/export" --model cifar_resnet20d --random 1 --out "$work/main.onnx" >/dev/null
"$build/examples/export" --model resnet50d --random 1 --out "$work/resnet50d.onnx" >/dev/null
# name, bench_infer model, onnx file, channels, size, batch, timed iterations
cases=("main_b16 main main.onnx 1 28 16 50" "main_b128 main main.onnx 1 28 128 20" "resnet50d_b16 resnet50d resnet50d.onnx 3 224 16 5")
declare -A ort ours
for ((i = 0; i < reps; ++i)); do
  for c in "${cases[@]}"; do
    read -r name model file ch size batch iters <<<"$c"
    o=$(TRICKS_ORT_MODULES=$modules node bench/peers/ort_infer.js "$work/$file" --batch "$batch" --size "$size" \
          --channels "$ch" --threads "$threads" --iters "$iters" --warmup 2)
    ort[$name]+="$(awk '$1 == "infer_images_per_s" {print $2}' <<<"$o") "
    o=$(OMP_NUM_THREADS=$threads "$build/bench/bench_infer" --model "$model" --batch "$batch" --size "$size" \
          --threads "$threads" --iters "$iters")
    ours[$name]+="$(awk '$1 == "infer_images_per_s" {print $2}' <<<"$o") "
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ver=$(node -e "console.log(require('$modules/onnxruntime-node/package.json').version)")
echo "inference img/s, $threads threads, $reps interleaved repeats (medians; per repeat: ORT, then tricks); onnxruntime-node $ver"
printf '%-16s %-26s %6s %12s %12s %8s   %s\n' case input batch "ORT" "tricks" "ratio" "runs (ORT | tricks)"
for c in "${cases[@]}"; do
  read -r name model file ch size batch iters <<<"$c"
  o=$(median "${ort[$name]}"); t=$(median "${ours[$name]}")
  printf '%-16s %-26s %6d %12.0f %12.0f %8.2f   %s| %s\n' "$name" "${ch}x${size}x${size} ($model)" "$batch" "$o" "$t" \
    "$(awk -v a="$t" -v b="$o" 'BEGIN {print a / b}')" "${ort[$name]}" "${ours[$name]}"
done
echo "(ratio = tricks / ORT: above 1 favours tricks)"
