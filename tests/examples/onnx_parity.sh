#!/usr/bin/env bash
# ONNX export against ONNX Runtime: onnx_parity (tests/tools/onnx_parity.cpp) writes, for ResNet-18
# (A), ResNet-50-B/C/D at 64x64 (and -D at 72x72, where ResNet-D's ceil-mode average pools meet odd
# sizes), a CIFAR ResNet-20 with deep stem + avg-down at 32x32 and the main job's net at 28x28 and
# 30x30 (batch 3, random batch-norm statistics), tricks' logits and the exports with and without
# batch-norm folding; ONNX Runtime (npm's onnxruntime-node, tests/tools/ort_run.js) runs every
# export; tests/tools/onnx_check.py runs onnx.checker (full check) on each file and compares:
# max |tricks - ort| / max |ort| <= 1e-4 per model.
#   onnx_parity.sh ONNX_PARITY_BINARY WORK_DIR
# Exits 77 (ctest: skipped) when node, onnxruntime-node (.deps/ort or $TRICKS_ORT_MODULES) or
# Debian's python3-onnx is missing.
set -euo pipefail
bin=$1 work=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3
modules=${TRICKS_ORT_MODULES:-$here/.deps/ort/node_modules}
if ! command -v node >/dev/null; then
  echo "SKIP: node is not installed (Debian: nodejs)"; exit 77
fi
if [[ ! -d $modules/onnxruntime-node ]]; then
  echo "SKIP: onnxruntime-node is not in $modules (scripts/bootstrap.sh --peers installs it)"; exit 77
fi
if ! "$py" -c "import onnx, numpy" 2>/dev/null; then
  echo "SKIP: python3-onnx is not installed (scripts/bootstrap.sh)"; exit 77
fi
rm -rf "$work" && mkdir -p "$work"
OMP_NUM_THREADS=1 "$bin" "$work"
jobs=()
while IFS=$'\t' read -r name n c h w k _; do
  for variant in fold keep; do
    jobs+=("$work/$name.$variant.onnx:$work/$name.input.f32:$n,$c,$h,$w:$work/$name.$variant.ort.f32")
  done
done < "$work/manifest.tsv"
TRICKS_ORT_MODULES=$modules node "$here/tests/tools/ort_run.js" --threads 1 "${jobs[@]}"
"$py" "$here/tests/tools/onnx_check.py" "$work"
