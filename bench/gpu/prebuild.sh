#!/usr/bin/env bash
# bench/gpu/prebuild.sh — builds the GPU check's binaries on a machine without a GPU (nvcc and cuDNN
# present) and stages them with the Fashion-MNIST files in <repo>/.deps/gpu (ignored by git), to be
# carried to a GPU machine and run there with `bench/gpu/run.sh --prebuilt .deps/gpu/bin --data
# .deps/gpu/fashion-mnist`. TRICKS_NATIVE=OFF: the binaries must run on the GPU machine's CPU too.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=$ROOT/build/gpu-prebuilt
S=$ROOT/.deps/gpu
DATA=${TRICKS_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DTRICKS_NATIVE=OFF -DTRICKS_CUDA=ON -DTRICKS_BUILD_BENCH=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-90}" >/dev/null
cmake --build "$B" -j "$(nproc)" --target tricks_cuda_tests train train_bench conv_bench
mkdir -p "$S/bin" "$S/fashion-mnist"
cp "$B/tests/cuda/tricks_cuda_tests" "$B/examples/train" "$B/bench/gpu/train_bench" "$B/bench/gpu/conv_bench" "$S/bin/"
strip "$S"/bin/*
cp "$DATA"/*-ubyte.gz "$S/fashion-mnist/"
du -sh "$S"/bin/* "$S/fashion-mnist"
