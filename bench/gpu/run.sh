#!/usr/bin/env bash
# bench/gpu/run.sh — every GPU check of backend::cuda in one script (issues #6/#7), within a time budget:
#   1. environment (GPU, driver, nvcc, cuDNN, PyTorch, timm)
#   2. binaries: prebuilt ones (--prebuilt DIR, e.g. built on a CPU machine and carried) when they
#      load here, else a build (Release, sm_90) of tests/cuda, examples/train and bench/gpu
#   3. tests: tricks_cuda_tests — kernel parity with backend/cpu (FP32, FP16), whole-network parity
#      (device_model vs the CPU model), CUDA trainer vs CPU trainer, checkpoint GPU -> CPU
#   4. fmnist: the README main job on the GPU, `train --device cuda` (fp16_mixed), real Fashion-MNIST
#   5. resnet50d training throughput, 224x224, batch 256, fp16_mixed, synthetic data on the device:
#      tricks (train_bench) and PyTorch AMP (timm resnet50d, channels_last, cudnn.benchmark), alternating
#      tricks / torch, then (after the Fashion-MNIST run) tricks / torch again if time is left
#   6. conv micro-benchmark (ResNet-50-D conv shapes, tricks vs PyTorch), if time is left
#   7. summary: printed last; everything under $OUT as summary.txt + gpu_logs.tar.gz (2 files)
#
#   bench/gpu/run.sh [--dry-run] [--prebuilt DIR] [--data DIR] [--epochs N] [--batch N] [--iters N]
#     --dry-run     only what needs no GPU: environment, binaries, the test binary's host checks
#                   (it exits 77 = skipped without a device); prints the GPU commands.
#     --prebuilt    folder with tricks_cuda_tests, train, train_bench, conv_bench (built with
#                   TRICKS_NATIVE=OFF so they run on any x86-64 host; see bench/gpu/prebuild.sh).
#     --data        Fashion-MNIST IDX files (default: $TRICKS_FASHION_MNIST_DIR or the Debian path).
# cuDNN/cuBLAS/cudart: CUDNN_ROOT if set, else Python's nvidia.* packages, else the CUDA toolkit's.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-$ROOT/out/gpu}
WORK=$(mktemp -d /tmp/tricks-gpu.XXXXXX)
BUILD=${BUILD_DIR:-$ROOT/build/gpu}
DRY=0
PREBUILT=
DATA=${TRICKS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
EPOCHS=5
BATCH=256
ITERS=20
BUDGET=${BUDGET_S:-480}
ARCH=${CUDA_ARCHITECTURES:-90}
JOBS=$(nproc 2>/dev/null || echo 4)

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case $1 in
    --dry-run) DRY=1 ;;
    --prebuilt) PREBUILT=$2; shift ;;
    --data) DATA=$2; shift ;;
    --epochs) EPOCHS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --iters) ITERS=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1

declare -A STATUS
ORDER=()
# step NAME CAP CMD...: CMD's output -> $WORK/NAME.log (and the last lines to the console), under
# min(CAP, time left in the budget).
step() {
  local name=$1 cap=$2
  shift 2
  ORDER+=("$name")
  local left=$((BUDGET - SECONDS - 20))
  local t=$((cap < left ? cap : left))
  if ((t <= 5)); then
    echo "[$name] not run: out of time budget"
    STATUS[$name]="NOT RUN (time budget)"
    return 1
  fi
  echo "[$name] $* (timeout ${t}s)"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$t" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  local dt=$((SECONDS - t0))
  case $rc in
    0) STATUS[$name]="ok (${dt}s)" ;;
    77) STATUS[$name]="skipped: no CUDA device (${dt}s)" ;;
    124 | 137) STATUS[$name]="TIMEOUT after ${t}s" ;;
    *) STATUS[$name]="FAILED rc=$rc (${dt}s)" ;;
  esac
  echo "[$name] ${STATUS[$name]}"
  return $rc
}

# ---- 1. environment ------------------------------------------------------------------------------
PY=$(command -v python3 || true)
NVCC=${CUDACXX:-$(command -v nvcc || true)}
[[ -z $NVCC && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
LIBDIRS=()
if [[ -n ${CUDNN_ROOT:-} ]]; then
  LIBDIRS+=("$CUDNN_ROOT/lib")
elif [[ -n $PY ]]; then
  # nvidia.cudnn, nvidia.cublas, nvidia.cuda_runtime: where the GPU machines keep these libraries.
  while IFS= read -r d; do LIBDIRS+=("$d"); done < <("$PY" - <<'EOF' 2>/dev/null
import importlib, os
for m in ("nvidia.cudnn", "nvidia.cublas", "nvidia.cuda_runtime", "nvidia.cu13"):
    try:
        mod = importlib.import_module(m)
    except Exception:
        continue
    for p in list(mod.__path__):
        for sub in ("lib", "lib64"):
            if os.path.isdir(os.path.join(p, sub)):
                print(os.path.join(p, sub))
EOF
)
  CUDNN_ROOT=$("$PY" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
fi
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [[ -d $d ]] && LIBDIRS+=("$d"); done
LDP=$(IFS=:; echo "${LIBDIRS[*]}")
export LD_LIBRARY_PATH="$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  repo: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "--- nvidia-smi"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 \
    || echo "(no nvidia-smi)"
  echo "--- cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
  echo "--- nvcc: ${NVCC:-none} $([[ -n $NVCC ]] && "$NVCC" --version | tail -1)"
  echo "--- library path: $LD_LIBRARY_PATH"
  [[ -n $PY ]] && "$PY" -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "timm", timm.__version__, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1 | tail -1
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

# ---- 2. binaries ---------------------------------------------------------------------------------
BINS=(tricks_cuda_tests train train_bench conv_bench)
loads() {  # every binary exists and ldd resolves all its libraries
  local dir=$1 b
  for b in "${BINS[@]}"; do
    [[ -x $dir/$b ]] || { echo "missing $dir/$b"; return 1; }
    if ldd "$dir/$b" | grep -q "not found"; then echo "$b: $(ldd "$dir/$b" | grep 'not found' | tr -s ' \t' ' ')"; return 1; fi
  done
}
BIN=
if [[ -n $PREBUILT ]] && loads "$PREBUILT" >"$WORK/prebuilt.log" 2>&1; then
  BIN=$(cd "$PREBUILT" && pwd)
  ORDER+=(binaries); STATUS[binaries]="prebuilt ($BIN)"
else
  [[ -n $PREBUILT ]] && { echo "[binaries] prebuilt ones do not load here:"; cat "$WORK/prebuilt.log"; }
  if [[ -z $NVCC ]]; then
    ORDER+=(binaries); STATUS[binaries]="FAILED: no usable prebuilt binaries and no nvcc"
  else
    CFG=(cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTRICKS_CUDA=ON -DTRICKS_NATIVE=ON
         -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES="$ARCH")
    command -v ninja >/dev/null && CFG+=(-G Ninja)
    [[ -n ${CUDNN_ROOT:-} ]] && CFG+=(-DCUDNN_ROOT="$CUDNN_ROOT")
    if step configure 90 "${CFG[@]}" && step build 300 cmake --build "$BUILD" -j "$JOBS" --target "${BINS[@]}"; then
      mkdir -p "$WORK/bin"
      for b in tests/cuda/tricks_cuda_tests examples/train bench/gpu/train_bench bench/gpu/conv_bench; do
        cp "$BUILD/$b" "$WORK/bin/"
      done
      BIN=$WORK/bin
    fi
  fi
fi
echo "[binaries] ${STATUS[binaries]:-${STATUS[build]:-?}}"

# ---- 3-6. tests, training, benchmarks -------------------------------------------------------------
FMNIST=(env TRICKS_GPU_PROFILE=1 "$BIN/train" --device cuda --epochs "$EPOCHS" --data "$DATA" --out "$WORK/fmnist")
TB=("$BIN/train_bench" --batch "$BATCH" --iters "$ITERS" --reps 3 --warmup 3)
TT=("${PY:-python3}" "$ROOT/bench/gpu/torch_train.py" --batch "$BATCH" --iters "$ITERS" --reps 3)
if [[ -n $BIN ]]; then
  if ((DRY)); then
    step tests 60 "$BIN/tricks_cuda_tests"
    echo "[dry-run] on a GPU this would run:"
    printf '   %s\n' "${FMNIST[*]}" "${TB[*]} --json tricks_1.json" "${TT[*]} --json torch_1.json" \
      "(tricks and torch once more, alternating)" "$BIN/conv_bench --batch $BATCH --json conv_tricks.json + torch_conv.py"
  else
    step tests 60 "$BIN/tricks_cuda_tests"
    step train_tricks_1 60 "${TB[@]}" --json "$WORK/train_tricks_1.json"
    step train_torch_1 45 "${TT[@]}" --json "$WORK/train_torch_1.json"
    step fmnist 90 "${FMNIST[@]}"
    step train_tricks_2 50 "${TB[@]}" --json "$WORK/train_tricks_2.json"
    step train_torch_2 40 "${TT[@]}" --json "$WORK/train_torch_2.json"
    if "$BIN/conv_bench" --list >"$WORK/shapes.txt" 2>/dev/null; then
      step conv_tricks 60 "$BIN/conv_bench" --batch "$BATCH" --iters 10 --json "$WORK/conv_tricks.json"
      step conv_torch 60 "${PY:-python3}" "$ROOT/bench/gpu/torch_conv.py" --shapes "$WORK/shapes.txt" --batch "$BATCH" \
        --iters 10 --json "$WORK/conv_torch.json"
    fi
  fi
fi

# ---- 7. summary -----------------------------------------------------------------------------------
{
  echo
  echo "================ tricks GPU check: summary ================"
  grep -E "^name|^NVIDIA|H100|H200|^torch |^--- cpu" "$WORK/env.txt" | head -4 | sed 's/^/  /'
  for s in "${ORDER[@]}"; do printf '  %-16s %s\n' "$s" "${STATUS[$s]}"; done
  if [[ -f $WORK/tests.log ]]; then
    grep -E "^tricks cuda tests:|^  ok .*(rel err|cifar|trainer|distill)|fp16 cuda trainer|same checkpoint" "$WORK/tests.log" | sed 's/^/  /'
    grep -E "FAIL|what\(\)|terminate|cuda_error|call failed" "$WORK/tests.log" | head -30 | sed 's/^/  /'
  fi
  if [[ -f $WORK/fmnist.log ]]; then
    grep -E "^tricks:|^epoch|test top-1:|^\| [0-9]+ \||images/s|train:" "$WORK/fmnist.log" | tail -14 | sed 's/^/  fmnist: /'
    sed -n '/GPU profile/,$p' "$WORK/fmnist.log" | head -24 | sed 's/^/  fmnist: /'
  fi
  for f in train_tricks_1 train_torch_1 train_tricks_2 train_torch_2; do
    [[ -f $WORK/$f.log ]] && grep -E "images/s|^device|^setup|^model|rror|train_bench:|^variant|^rep " "$WORK/$f.log" | sed "s/^/  $f: /"
    [[ -f $WORK/$f.log ]] && sed -n '/GPU time per kind/,$p' "$WORK/$f.log" | grep -v "^variant" | head -40 | sed "s/^/  $f: /"
  done
  if [[ -n $PY ]] && ls "$WORK"/train_tricks_*.json "$WORK"/train_torch_*.json >/dev/null 2>&1; then
    "$PY" - "$WORK" <<'EOF'
import glob, json, os, statistics, sys
w = sys.argv[1]
def load(kind):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(w, f"train_{kind}_*.json")))]
t, p = load("tricks"), load("torch")
if t and p:
    ti = statistics.median(r["images_per_s"] for r in t)
    pi = statistics.median(r["images_per_s"] for r in p)
    print(f"  resnet50d training, batch {t[0]['batch']}, {t[0]['size']}x{t[0]['size']}, fp16 mixed, {t[0]['device']}:")
    runs = lambda rs: ", ".join("%.0f" % r["images_per_s"] for r in rs)
    print(f"    tricks {ti:.0f} images/s (runs: {runs(t)}), PyTorch AMP {pi:.0f} images/s (runs: {runs(p)}) "
          f"-> ratio {ti / pi:.3f}")
    print(f"    forward {statistics.median(r['fwd_ms'] for r in t):.1f} vs {statistics.median(r['fwd_ms'] for r in p):.1f} ms; "
          f"backward+update {statistics.median(r['step_ms'] - r['fwd_ms'] for r in t):.1f} vs "
          f"{statistics.median(r['step_ms'] - r['fwd_ms'] for r in p):.1f} ms")
    print(f"    device memory used: tricks {max(r['memory_used_gib'] for r in t):.1f} GiB, PyTorch "
          f"{max(r['memory_used_gib'] for r in p):.1f} GiB (allocator peak {max(r['allocator_peak_gib'] for r in p):.1f} GiB); "
          f"parameters {t[0]['parameters']} vs {p[0]['parameters']}")
EOF
  fi
  if [[ -n $PY && -f $WORK/conv_tricks.json && -f $WORK/conv_torch.json ]]; then
    "$PY" - "$WORK/conv_tricks.json" "$WORK/conv_torch.json" <<'EOF'
import json, sys
t, p = (json.load(open(f)) for f in sys.argv[1:3])
print(f"  convs only (ResNet-50-D shapes, fwd+bwd, batch {t['batch']}): tricks {t['step_ms']:.2f} ms, "
      f"PyTorch {p['step_ms']:.2f} ms -> ratio {p['step_ms'] / t['step_ms']:.3f}")
EOF
  fi
  echo "  total ${SECONDS}s of ${BUDGET}s; logs: $OUT/gpu_logs.tar.gz"
} | tee "$WORK/summary.txt"
cp "$WORK/summary.txt" "$OUT/summary.txt"
rm -rf "$WORK/bin"
tar -C "$WORK" -czf "$OUT/gpu_logs.tar.gz" . 2>/dev/null

for s in "${ORDER[@]}"; do
  case ${STATUS[$s]} in FAILED* | TIMEOUT*) exit 1 ;; esac
done
exit 0
