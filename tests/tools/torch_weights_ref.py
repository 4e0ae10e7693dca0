"""Weight-import parity, PyTorch's side (the C++ side is tests/tools/torch_parity.cpp).

  torch_weights_ref.py write MODEL DIR [--size S] [--batch N]
      builds MODEL (bench/peers/torchvision_resnet.py: torchvision / timm names) with random weights and
      random BN statistics, runs it in eval mode on a random NCHW input and writes
      DIR/MODEL.weights.safetensors (the state dict) and DIR/MODEL.ref.safetensors (input, logits)
  torch_weights_ref.py check MODEL DIR
      loads DIR/MODEL.saved.safetensors (written by tricks' save_torch_weights) strictly into a
      fresh MODEL and checks that every tensor equals the original state dict's, bit for bit

safetensors are written and read with scripts/torch_to_safetensors.py's json + struct code (the
safetensors package is not in Debian).
"""
import os
import sys

import torch

_root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(_root, "bench", "peers"))
sys.path.insert(0, os.path.join(_root, "scripts"))
import torchvision_resnet  # noqa: E402
from torch_to_safetensors import read_safetensors, write_safetensors  # noqa: E402


def main():
    mode, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
    size = int(sys.argv[sys.argv.index("--size") + 1]) if "--size" in sys.argv else 96
    batch = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 2
    torch.manual_seed(1234)
    g = torch.Generator().manual_seed(5678)
    net = torchvision_resnet.build(model)
    torchvision_resnet.randomize_batch_norms(net, g)
    net.eval()
    if mode == "write":
        x = torch.randn(batch, 3, size, size, generator=g)
        with torch.no_grad():
            logits = net(x)
        write_safetensors(os.path.join(out, model + ".weights.safetensors"), net.state_dict())
        write_safetensors(os.path.join(out, model + ".ref.safetensors"), {"input": x, "logits": logits})
        print(f"{model}: wrote {len(net.state_dict())} tensors, logits {tuple(logits.shape)}")
    elif mode == "check":
        saved = read_safetensors(os.path.join(out, model + ".saved.safetensors"))
        fresh = torchvision_resnet.build(model)
        fresh.load_state_dict(saved, strict=True)  # missing/unexpected keys or shapes raise
        ours, theirs = fresh.state_dict(), net.state_dict()
        bad = [k for k in theirs if k.endswith("num_batches_tracked") is False and not torch.equal(ours[k], theirs[k])]
        if bad:
            raise SystemExit(f"{model}: {len(bad)} tensors differ after the round trip, first {bad[0]}")
        print(f"{model}: save_torch_weights -> strict load_state_dict: {len(theirs)} tensors equal bit for bit")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
