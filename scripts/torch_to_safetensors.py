#!/usr/bin/env python3
"""PyTorch weights -> a .safetensors file that tricks loads (io::load_torch_weights, train --init).

  scripts/torch_to_safetensors.py --torchvision resnet50 OUT.safetensors   # torchvision's pretrained
                                                                            # weights (weights="DEFAULT")
  scripts/torch_to_safetensors.py --timm resnet50d OUT.safetensors         # timm's (pip install timm)
  scripts/torch_to_safetensors.py --state-dict FILE.pth OUT.safetensors    # any saved state dict

The first two download through torch.hub on first use (they need the network once, then the
cache). A checkpoint dict holding the state dict under "state_dict" or "model" is unwrapped.
Which tricks type matches: torchvision's resnet18/34 -> resnet18/34; resnet50/101/152 ("v1.5",
stride on the 3x3) -> resnet50b/101b/152b; timm's resnet50d/101d/152d -> resnet50d/101d/152d.
Written with json + struct (u64 header length, JSON header, raw little-endian tensors), so the
safetensors package is not needed.
"""
import argparse
import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.float64: "F64"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in DTYPES:
            raise SystemExit(f"torch_to_safetensors: tensor '{name}' has dtype {t.dtype}, not one of {list(DTYPES)}")
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    torch_of = {v: k for k, v in DTYPES.items()}
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dtype = torch_of[info["dtype"]]
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=dtype) if e > b else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--torchvision", metavar="NAME")
    src.add_argument("--timm", metavar="NAME")
    src.add_argument("--state-dict", metavar="FILE")
    ap.add_argument("out")
    a = ap.parse_args()
    if a.torchvision:
        import torchvision
        state = getattr(torchvision.models, a.torchvision)(weights="DEFAULT").state_dict()
    elif a.timm:
        import timm
        state = timm.create_model(a.timm, pretrained=True).state_dict()
    else:
        state = torch.load(a.state_dict, map_location="cpu")
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel's prefix
    write_safetensors(a.out, state, {"format": "pt"})
    print(f"wrote {a.out}: {len(state)} tensors")


if __name__ == "__main__":
    main()
