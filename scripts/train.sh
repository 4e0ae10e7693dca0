#!/usr/bin/env bash
# The main job: install what is missing, build, train ResNet-20-D on Fashion-MNIST with the tricks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
build=${TRICKS_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target train
exec "$build/examples/train" "$@"
