#!/usr/bin/env bash
# bench/gpu/run.sh — the GPU check of backend::cuda in one script (issue #6), within 8 minutes:
#   1. environment report (GPU, driver, nvcc, cuDNN, PyTorch)                      -> $OUT/env.txt
#   2. configure + build, Release, sm_90: tests/cuda and bench/gpu                  -> $OUT/build.log
#   3. the CUDA tests: host checks + kernel parity with backend/cpu, FP32 and FP16  -> $OUT/tests.log
#   4. conv micro-benchmark: ResNet-50-D convs, batch 256, FP16 NHWC, tricks' cuDNN path
#                                                                                  -> $OUT/conv_tricks.{log,json}
#   5. the same shapes through PyTorch (channels_last, AMP, cudnn.benchmark)       -> $OUT/conv_torch.{log,json}
#   6. summary (printed last, and $OUT/summary.txt)
# Logs go under $OUT (./out/gpu when OUT is unset). Every step has a timeout inside the overall
# budget (BUDGET_S, default 480 s); a step that would start without time left is reported as not run.
#
#   bench/gpu/run.sh [--dry-run] [--skip-build] [--build-dir DIR] [--jobs N] [--batch N] [--iters N]
#     --dry-run     only what needs no GPU: environment, configure, build, the test binary's host
#                   checks (it exits 77 = skipped without a device), the shape table; prints the
#                   commands the GPU steps would run.
#     --skip-build  use an existing build in --build-dir (e.g. one carried to the GPU machine).
#
# The build is standalone: a generated top-level CMakeLists adds only include/, cmake/tricks_cuda.cmake,
# tests/cuda and bench/gpu, so the GPU machine needs nvcc, CMake, cuDNN and Eigen's headers but none of
# the CPU library's other dependencies (Boost, zlib). Eigen: a system install, or EIGEN3_INCLUDE_DIR,
# or a copy at <repo>/.deps/eigen3 (carry it: `mkdir -p .deps && cp -r /usr/include/eigen3 .deps/`,
# ignored through .git/info/exclude, named in the device tool's carry list).
# cuDNN: CUDNN_ROOT if set, else Python's nvidia.cudnn package (where the GPU machines have it), else
# next to the CUDA toolkit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-./out/gpu}
BUILD=${BUILD_DIR:-$ROOT/build/gpu}
DRY=0
SKIP_BUILD=0
JOBS=$(nproc 2>/dev/null || echo 4)
BATCH=256
ITERS=10
BUDGET=${BUDGET_S:-480}
ARCH=${CUDA_ARCHITECTURES:-90}

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case $1 in
    --dry-run) DRY=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --build-dir) BUILD=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --iters) ITERS=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done

mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
export PYTHONUNBUFFERED=1

declare -A STATUS
ORDER=()

# step NAME CAP_SECONDS CMD...: runs CMD with its output in $OUT/NAME.log, under min(CAP, time left).
step() {
  local name=$1 cap=$2
  shift 2
  ORDER+=("$name")
  local left=$((BUDGET - SECONDS - 15))  # keep 15 s for the summary
  local t=$((cap < left ? cap : left))
  if ((t <= 5)); then
    echo "[$name] not run: out of time budget"
    STATUS[$name]="NOT RUN (time budget)"
    return 1
  fi
  echo "[$name] $* (timeout ${t}s)"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$t" "$@" >"$OUT/$name.log" 2>&1
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
if [[ -z ${CUDNN_ROOT:-} && -n $PY ]]; then
  CUDNN_ROOT=$("$PY" -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  [[ -n $CUDNN_ROOT && ! -e $CUDNN_ROOT/include/cudnn.h ]] && CUDNN_ROOT=
fi
CUDNN_ROOT=${CUDNN_ROOT:-}
# cuDNN 9 loads its engine libraries at run time from the loader path.
[[ -n $CUDNN_ROOT && -d $CUDNN_ROOT/lib ]] && export LD_LIBRARY_PATH="$CUDNN_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
EIGEN_DIR=${EIGEN3_INCLUDE_DIR:-}
[[ -z $EIGEN_DIR && -e $ROOT/.deps/eigen3/Eigen/Core ]] && EIGEN_DIR=$ROOT/.deps/eigen3

{
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  repo: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "--- nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  else
    echo "(no nvidia-smi)"
  fi
  echo "--- nvcc: ${NVCC:-none}"
  [[ -n $NVCC ]] && "$NVCC" --version | tail -2
  echo "--- cmake: $(cmake --version 2>/dev/null | head -1)  ninja: $(ninja --version 2>/dev/null || echo none)  g++: $(g++ -dumpversion 2>/dev/null)"
  echo "--- cuDNN root: ${CUDNN_ROOT:-(toolkit default)}  Eigen: ${EIGEN_DIR:-(system)}"
  echo "--- python: ${PY:-none}"
  [[ -n $PY ]] && "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' 2>&1 | tail -1
} >"$OUT/env.txt" 2>&1
echo "== tricks GPU check: $(sed -n '3p' "$OUT/env.txt")"
echo "   OUT=$OUT  BUILD=$BUILD  budget ${BUDGET}s  $([[ $DRY == 1 ]] && echo '(dry run)')"

# ---- 2. configure + build --------------------------------------------------------------------------
TOP=$BUILD/top
mkdir -p "$TOP"
cat >"$TOP/CMakeLists.txt" <<EOF
# Generated by bench/gpu/run.sh: the CUDA backend, its tests and benchmarks, without the CPU
# library's other dependencies.
cmake_minimum_required(VERSION 3.25)
project(tricks_gpu_check LANGUAGES CXX)
list(APPEND CMAKE_MODULE_PATH "$ROOT/cmake")
find_package(Eigen3 3.4 NO_MODULE QUIET)
if(NOT TARGET Eigen3::Eigen)
  if(NOT EIGEN3_INCLUDE_DIR OR NOT EXISTS "\${EIGEN3_INCLUDE_DIR}/Eigen/Core")
    message(FATAL_ERROR "Eigen 3.4 headers not found: install them, set EIGEN3_INCLUDE_DIR, or carry <repo>/.deps/eigen3")
  endif()
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "\${EIGEN3_INCLUDE_DIR}")
endif()
find_package(OpenMP COMPONENTS CXX)
add_library(tricks INTERFACE)
add_library(tricks::tricks ALIAS tricks)
target_include_directories(tricks INTERFACE "$ROOT/include")
target_compile_features(tricks INTERFACE cxx_std_20)
target_link_libraries(tricks INTERFACE Eigen3::Eigen \$<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)
set(TRICKS_CUDA ON)
include("$ROOT/cmake/tricks_cuda.cmake")
enable_testing()
add_subdirectory("$ROOT/tests/cuda" tests_cuda)
add_subdirectory("$ROOT/bench/gpu" bench_gpu)
EOF

TESTS_BIN=$BUILD/tests_cuda/tricks_cuda_tests
BENCH_BIN=$BUILD/bench_gpu/conv_bench
if ((SKIP_BUILD)); then
  echo "[build] skipped (--skip-build): using $BUILD"
  ORDER+=(build)
  STATUS[build]="skipped (--skip-build)"
elif [[ -z $NVCC ]]; then
  echo "[build] no nvcc found (set CUDACXX); build elsewhere, carry $BUILD and pass --skip-build"
  ORDER+=(build)
  STATUS[build]="FAILED: no nvcc"
else
  GEN=()
  command -v ninja >/dev/null && GEN=(-G Ninja)
  CFG=(cmake -S "$TOP" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC"
       -DCMAKE_CUDA_ARCHITECTURES="$ARCH")
  [[ -n $CUDNN_ROOT ]] && CFG+=(-DCUDNN_ROOT="$CUDNN_ROOT")
  [[ -n $EIGEN_DIR ]] && CFG+=(-DEIGEN3_INCLUDE_DIR="$EIGEN_DIR")
  if step configure 120 "${CFG[@]}"; then
    step build 300 cmake --build "$BUILD" -j "$JOBS" --target tricks_cuda_tests conv_bench
  fi
  grep -E "error|warning:|CUDA backend|Found CUDNN|Could NOT" "$OUT/configure.log" "$OUT/build.log" 2>/dev/null | head -20
fi
if [[ -x $TESTS_BIN ]]; then
  { echo "--- ldd $TESTS_BIN"; ldd "$TESTS_BIN" | grep -E "cud|cublas|gomp|not found"; } >>"$OUT/env.txt" 2>&1
fi

# ---- 3-5. tests and benchmarks ------------------------------------------------------------------------
SHAPES=$OUT/shapes.txt
if [[ -x $BENCH_BIN ]]; then
  "$BENCH_BIN" --list >"$SHAPES" 2>"$OUT/shapes.err" || { echo "[shapes] conv_bench --list failed:"; cat "$OUT/shapes.err"; }
fi
TEST_CMD=("$TESTS_BIN")
TRICKS_CMD=("$BENCH_BIN" --batch "$BATCH" --iters "$ITERS" --json "$OUT/conv_tricks.json")
TORCH_CMD=("${PY:-python3}" "$ROOT/bench/gpu/torch_conv.py" --shapes "$SHAPES" --batch "$BATCH" --iters "$ITERS"
           --json "$OUT/conv_torch.json")

if ((DRY)); then
  if [[ -x $TESTS_BIN ]]; then step tests 60 "${TEST_CMD[@]}"; fi
  echo "[dry-run] shape table: $(head -1 "$SHAPES" 2>/dev/null || echo '(none)')"
  echo "[dry-run] on the GPU this would run:"
  echo "   ${TEST_CMD[*]}                                   > $OUT/tests.log"
  echo "   ${TRICKS_CMD[*]}  > $OUT/conv_tricks.log"
  echo "   ${TORCH_CMD[*]}  > $OUT/conv_torch.log"
else
  [[ -x $TESTS_BIN ]] && step tests 150 "${TEST_CMD[@]}"
  [[ -x $BENCH_BIN ]] && step conv_tricks 120 "${TRICKS_CMD[@]}"
  [[ -s $SHAPES ]] && step conv_torch 120 "${TORCH_CMD[@]}"
fi

# ---- 6. summary ------------------------------------------------------------------------------------------
{
  echo
  echo "================ tricks GPU check: summary ================"
  grep -E "^NVIDIA|release [0-9]|^torch |^--- cuDNN" "$OUT/env.txt" | sed 's/^/  /'
  for s in "${ORDER[@]}"; do printf '  %-12s %s\n' "$s" "${STATUS[$s]}"; done
  if [[ -f $OUT/tests.log ]]; then
    grep -E "^device 0:|^tricks cuda tests:" "$OUT/tests.log" | sed 's/^/  /'
    grep -E "FAIL" "$OUT/tests.log" | head -25 | sed 's/^/  /'
  fi
  for f in conv_tricks conv_torch; do
    [[ -f $OUT/$f.log ]] && grep -E "^total conv time" "$OUT/$f.log" | sed "s/^/  $f: /"
  done
  if [[ -f $OUT/conv_tricks.json && -f $OUT/conv_torch.json && -n $PY ]]; then
    "$PY" - "$OUT/conv_tricks.json" "$OUT/conv_torch.json" <<'EOF'
import json, sys
t, p = (json.load(open(f)) for f in sys.argv[1:3])
print(f"  conv step time (ResNet-50-D convs, fwd+bwd, batch {t['batch']}): tricks {t['step_ms']:.2f} ms, "
      f"PyTorch AMP {p['step_ms']:.2f} ms -> ratio (torch time / tricks time) {p['step_ms'] / t['step_ms']:.3f}")
print(f"  images/s if convs were all: tricks {t['images_per_s']:.0f}, PyTorch {p['images_per_s']:.0f}")
print("  slowest shapes relative to PyTorch (ratio < 1 = tricks slower):")
rows = []
for a, b in zip(t["shapes"], p["shapes"]):
    ta = a["fwd_ms"] + a["dgrad_ms"] + a["wgrad_ms"]
    tb = b["fwd_ms"] + b["bwd_ms"]
    rows.append((tb / ta if ta else 0.0, a, ta, tb))
for r, a, ta, tb in sorted(rows, key=lambda x: x[0])[:6]:
    print(f"    {r:6.3f}  {a['h']}x{a['h']}x{a['cin']}->{a['cout']} k{a['k']}/{a['stride']} x{a['count']}: "
          f"tricks {ta:.3f} ms (fwd {a['fwd_ms']:.3f} dgrad {a['dgrad_ms']:.3f} wgrad {a['wgrad_ms']:.3f}), torch {tb:.3f} ms")
EOF
  fi
  echo "  logs: $OUT   total ${SECONDS}s of ${BUDGET}s"
} | tee "$OUT/summary.txt"

for s in "${ORDER[@]}"; do
  case ${STATUS[$s]} in FAILED* | TIMEOUT*) exit 1 ;; esac
done
exit 0
