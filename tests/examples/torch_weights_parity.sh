#!/usr/bin/env bash
# PyTorch weights into tricks and back: for each model, tests/tools/torch_weights_ref.py builds it in
# PyTorch (torchvision / timm names, random weights and BN statistics) and writes its weights and
# logits; torch_parity loads them into tricks' model, compares logits (1e-4 relative) and saves them
# back; PyTorch loads that file strictly and checks every tensor bit for bit.
#   torch_weights_parity.sh TORCH_PARITY_BINARY WORK_DIR
# Exits 77 (ctest: skipped) when Debian's python3-torch / python3-torchvision are missing.
set -euo pipefail
bin=$1 work=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
py=/usr/bin/python3
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "SKIP: python3-torch and python3-torchvision are not installed (scripts/bootstrap.sh --peers)"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
models=(resnet18 resnet34d resnet50 resnet50b resnet50c resnet50d)
for m in "${models[@]}"; do
  size=96
  [[ $m == resnet50d ]] && size=224   # one at the paper's size
  OMP_NUM_THREADS=1 "$py" "$here/tests/tools/torch_weights_ref.py" write "$m" "$work" --size "$size" --batch 2
  OMP_NUM_THREADS=1 "$bin" "$m" "$work"
  OMP_NUM_THREADS=1 "$py" "$here/tests/tools/torch_weights_ref.py" check "$m" "$work"
done
echo "PASS: ${#models[@]} models"
