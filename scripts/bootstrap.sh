#!/usr/bin/env bash
# Installs what tricks needs from Debian's packages, and nothing when it is all present.
#   scripts/bootstrap.sh            build + test dependencies and the Fashion-MNIST data
#   scripts/bootstrap.sh --peers    also the benchmark peers (PyTorch, torchvision, PIL, dlib; scikit-image
#                                   for its sample photographs; ONNX Runtime from npm into .deps/ort)
set -euo pipefail
need=(cmake g++ make libeigen3-dev libboost-dev doctest-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev
      nlohmann-json3-dev dataset-fashion-mnist
      clang-14 libclang-rt-14-dev libomp-14-dev  # scripts/fuzz.sh: libFuzzer (libclang_rt.fuzzer), OpenMP for clang
      libprotobuf-dev protobuf-compiler python3-onnx  # the ONNX exporter (tricks::onnx) and onnx.checker
      libopenmpi-dev openmpi-bin)  # data-parallel training over MPI (tricks::distributed, mpirun)
if [[ "${1:-}" == "--peers" ]]; then
  need+=(python3-torch python3-torchvision python3-pil python3-skimage libdlib-dev libopenblas-dev)
  command -v node >/dev/null || need+=(nodejs npm)
fi
# --peers: ONNX Runtime for node into .deps/ort (npm's onnxruntime-node ships its CPU library; no
# install script runs), for tests/examples/onnx_parity.sh and bench/onnx_compare.sh.
ort_peer() {
  [[ "${1:-}" == "--peers" ]] || return 0
  local deps
  deps="$(cd "$(dirname "$0")/.." && pwd)/.deps/ort"
  [[ -d $deps/node_modules/onnxruntime-node ]] && return 0
  echo "tricks: npm install onnxruntime-node into $deps" >&2
  npm install --ignore-scripts --prefix "$deps" onnxruntime-node >&2
}
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  ort_peer "${1:-}"
  exit 0
fi
echo "tricks: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
ort_peer "${1:-}"
