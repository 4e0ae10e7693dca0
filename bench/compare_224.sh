#!/usr/bin/env bash
# ImageNet-size CPU comparison: ResNet-18, ResNet-50 and ResNet-50-D at 3x224x224 (1000 classes),
# tricks against PyTorch (eager and frozen: bench/peers/torch_bench_224.py, the same hand-written
# definitions) and ONNX Runtime (npm's onnxruntime-node, its best CPU settings: graph optimisation
# "all", intra-op threads = THREADS; the network exported by examples/export with random weights).
# Inference at each batch of BATCHES, training (forward, loss, backward, SGD step) at each of
# TRAIN_BATCHES. Every runner is its own process, run once per repeat in turn (ORT, tricks, PyTorch),
# interleaved; the tables show medians, ratios and the peak resident memory (/usr/bin/time's maximum
# RSS) of each process. A benchmark, not a test; on a shared machine the numbers move.
#   bench/compare_224.sh [repeats=2] [threads=2]
# Environment: MODELS (default "resnet18 resnet50 resnet50d"), BATCHES ("1 16 64"), TRAIN_BATCHES ("16"),
# TRICKS_BUILD_DIR (default build), TRICKS_JOBS (parallel build jobs), TRICKS_ORT_MODULES.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-2}; threads=${2:-2}
models=${MODELS:-resnet18 resnet50 resnet50d}
batches=${BATCHES:-1 16 64}
train_batches=${TRAIN_BATCHES:-16}
build=${TRICKS_BUILD_DIR:-build}
modules=${TRICKS_ORT_MODULES:-$PWD/.deps/ort/node_modules}
python=/usr/bin/python3
if [[ ! -d $modules/onnxruntime-node ]]; then
  echo "onnxruntime-node is not in $modules: scripts/bootstrap.sh --peers installs it" >&2; exit 1
fi
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "PyTorch is not installed for $python: scripts/bootstrap.sh --peers installs it" >&2; exit 1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTRICKS_BUILD_BENCH=ON -DTRICKS_ONNX=ON >/dev/null
cmake --build "$build" -j "${TRICKS_JOBS:-$(nproc)}" --target export bench_infer >/dev/null
work=$build/compare_224
mkdir -p "$work"
for m in $models; do
  [[ -f $work/$m.onnx ]] || "$build/examples/export" --model "$m" --random 1 --out "$work/$m.onnx" >/dev/null
done
iters_for() { if (($1 <= 1)); then echo 10; elif (($1 <= 16)); then echo 4; else echo 2; fi; }
# run NAME KEY... -- COMMAND: runs COMMAND under /usr/bin/time, appends each KEY's value and the peak
# RSS (MB) to the result lists named NAME.KEY and NAME.rss
declare -A res
run() {
  local name=$1; shift
  local keys=()
  while [[ $1 != -- ]]; do keys+=("$1"); shift; done
  shift
  local out
  out=$(/usr/bin/time -f "maxrss_kb %M" "$@" 2>&1) || { echo "failed: $*" >&2; echo "$out" >&2; exit 1; }
  for k in "${keys[@]}"; do
    res[$name.$k]+="$(awk -v k="$k" '$1 == k || ($1 == "torch" && $2 == k) {print $NF}' <<<"$out" | tail -1) "
  done
  res[$name.rss]+="$(awk '$1 == "maxrss_kb" {printf "%.0f", $2 / 1024}' <<<"$out") "
}
for ((i = 0; i < reps; ++i)); do
  for m in $models; do
    for b in $batches; do
      it=$(iters_for "$b")
      run "ort.$m.$b" infer_images_per_s -- env TRICKS_ORT_MODULES="$modules" node bench/peers/ort_infer.js \
        "$work/$m.onnx" --batch "$b" --size 224 --channels 3 --threads "$threads" --iters "$it" --warmup 2
      run "tricks.$m.$b" infer_images_per_s -- env OMP_NUM_THREADS="$threads" "$build/bench/bench_infer" \
        --model "$m" --batch "$b" --threads "$threads" --iters "$it"
      run "torch.$m.$b" infer_images_per_s infer_frozen_images_per_s -- "$python" bench/peers/torch_bench_224.py \
        --model "$m" --batch "$b" --threads "$threads" --iters "$it"
    done
    for b in $train_batches; do
      run "tricks_train.$m.$b" train_images_per_s -- env OMP_NUM_THREADS="$threads" "$build/bench/bench_infer" \
        --model "$m" --batch "$b" --threads "$threads" --iters 3 --train
      run "torch_train.$m.$b" train_images_per_s -- "$python" bench/peers/torch_bench_224.py --model "$m" \
        --batch "$b" --threads "$threads" --iters 3 --mode train
    done
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ver=$(node -e "console.log(require('$modules/onnxruntime-node/package.json').version)")
tv=$("$python" -c "import torch; print(torch.__version__)")
echo "inference img/s at 3x224x224, $threads threads, medians of $reps interleaved repeats;" \
  "PyTorch $tv, onnxruntime-node $ver; peak RSS in MB"
printf '%-10s %5s %8s %8s %8s %8s %8s %8s   %s\n' model batch tricks ORT "torch" "frozen" "/ORT" "/frozen" \
  "peak MB (tricks ORT torch)"
for m in $models; do
  for b in $batches; do
    t=$(median "${res[tricks.$m.$b.infer_images_per_s]}"); o=$(median "${res[ort.$m.$b.infer_images_per_s]}")
    e=$(median "${res[torch.$m.$b.infer_images_per_s]}"); f=$(median "${res[torch.$m.$b.infer_frozen_images_per_s]}")
    printf '%-10s %5d %8.1f %8.1f %8.1f %8.1f %8s %8s   %s %s %s\n' "$m" "$b" "$t" "$o" "$e" "$f" "$(ratio "$t" "$o")" \
      "$(ratio "$t" "$f")" "$(median "${res[tricks.$m.$b.rss]}")" "$(median "${res[ort.$m.$b.rss]}")" \
      "$(median "${res[torch.$m.$b.rss]}")"
  done
done
echo
echo "training img/s (forward, loss, backward, SGD step), same settings"
printf '%-10s %5s %8s %8s %8s   %s\n' model batch tricks torch "/torch" "peak MB (tricks torch)"
for m in $models; do
  for b in $train_batches; do
    t=$(median "${res[tricks_train.$m.$b.train_images_per_s]}"); p=$(median "${res[torch_train.$m.$b.train_images_per_s]}")
    printf '%-10s %5d %8.2f %8.2f %8s   %s %s\n' "$m" "$b" "$t" "$p" "$(ratio "$t" "$p")" \
      "$(median "${res[tricks_train.$m.$b.rss]}")" "$(median "${res[torch_train.$m.$b.rss]}")"
  done
done
echo "(ratios: tricks / peer, above 1 favours tricks; runs per cell: $reps)"
