#!/usr/bin/env python3
"""PyTorch peer of bench/gpu/conv_bench.cu: the same convolution shapes (ResNet-50-D at 224x224,
read from `conv_bench --list`), timed the way PyTorch trains with AMP: channels_last, FP32 weights
under torch.autocast(float16), cudnn.benchmark=True, forward then backward.

Per shape: median of --iters timed iterations after --warmup untimed ones (CUDA events).
  fwd_ms:  y = conv(x) alone;
  bwd_ms:  y.backward(dy) (backward-data when the input needs a gradient, backward-filter, and
           AMP's casts of the weight gradient), measured as (forward + backward) - forward.
The weight gradient is reset to None every iteration (zero_grad(set_to_none=True)), as in training.

  python3 torch_conv.py --shapes shapes.txt [--batch 256] [--iters 10] [--warmup 3] [--json out.json]
"""

import argparse
import json
import statistics
import sys


def read_shapes(path):
    shapes = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ", 10)
            h, w, cin, cout, k, stride, pad, count, dgrad, macs = (int(p) for p in parts[:10])
            shapes.append(dict(h=h, w=w, cin=cin, cout=cout, k=k, stride=stride, pad=pad, count=count,
                               dgrad=bool(dgrad), macs=macs, name=parts[10] if len(parts) > 10 else ""))
    return shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", required=True, help="output of `conv_bench --list`")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    shapes = read_shapes(args.shapes)
    import torch  # after argument parsing: --help works without torch

    if not torch.cuda.is_available():
        print("torch_conv: no CUDA device", file=sys.stderr)
        return 77
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    print(f"torch_conv: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}, batch {args.batch}, AMP fp16 channels_last, "
          f"{args.iters} timed iterations (median)")
    print(f"{'shape (n=batch)':44s} {'count':>5s} {'fwd ms':>9s} {'bwd ms':>9s} {'TFLOP/s':>8s}")

    results = []
    step_ms = 0.0
    step_flops = 0.0
    for s in shapes:
        conv = torch.nn.Conv2d(s["cin"], s["cout"], s["k"], stride=s["stride"], padding=s["pad"], bias=False)
        conv = conv.to(dev).to(memory_format=torch.channels_last)
        x = torch.randn(args.batch, s["cin"], s["h"], s["w"], device=dev).to(memory_format=torch.channels_last)
        x.requires_grad_(s["dgrad"])
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            y0 = conv(x)
        dy = torch.randn_like(y0, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        del y0

        ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        fwd, both = [], []
        for it in range(args.warmup + args.iters):
            conv.weight.grad = None
            if x.grad is not None:
                x.grad = None
            ev[0].record()
            with torch.autocast("cuda", dtype=torch.float16):
                y = conv(x)
            ev[1].record()
            y.backward(dy)
            ev[2].record()
            torch.cuda.synchronize()
            if it >= args.warmup:
                fwd.append(ev[0].elapsed_time(ev[1]))
                both.append(ev[0].elapsed_time(ev[2]))
            del y
        fwd_ms = statistics.median(fwd)
        bwd_ms = statistics.median(both) - fwd_ms
        ms = fwd_ms + bwd_ms
        flops = 2.0 * s["macs"] * args.batch * (3 if s["dgrad"] else 2)
        shape = f"{s['h']}x{s['w']}x{s['cin']} -> {s['cout']} k{s['k']}/{s['stride']}"
        print(f"{shape:44s} {s['count']:5d} {fwd_ms:9.3f} {bwd_ms:9.3f} {flops / (ms * 1e-3) / 1e12:8.1f}", flush=True)
        step_ms += ms * s["count"]
        step_flops += flops * s["count"]
        results.append(dict(name=s["name"], h=s["h"], cin=s["cin"], cout=s["cout"], k=s["k"], stride=s["stride"],
                            count=s["count"], fwd_ms=fwd_ms, bwd_ms=bwd_ms))
        del conv, x, dy
        torch.cuda.empty_cache()

    img_s = args.batch / (step_ms * 1e-3)
    tflops = step_flops / (step_ms * 1e-3) / 1e12
    print(f"total conv time per training step: {step_ms:.2f} ms  ({img_s:.0f} images/s if convolutions were all, "
          f"{tflops:.1f} TFLOP/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(impl="torch", device=name, torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
                           batch=args.batch, dtype="amp-fp16", step_ms=step_ms, images_per_s=img_s, tflops=tflops,
                           shapes=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
