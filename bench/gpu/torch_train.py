#!/usr/bin/env python3
"""The PyTorch peer of train_bench.cu: timm's resnet50d trained with AMP (FP16 autocast + GradScaler),
channels_last, cudnn.benchmark=True, SGD(momentum 0.9, weight decay 1e-4), on synthetic data already on
the GPU. Same batch, size, iterations and repetitions; prints images/s (median), the forward-only time
and the device memory in use (total - free, as for tricks; plus PyTorch's own allocator peak).

    torch_train.py [--batch 256] [--size 224] [--iters 20] [--reps 3] [--warmup 5] [--json FILE]
"""
import argparse
import json
import statistics
import sys
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_train: no CUDA device, skipping")
        return 77
    import timm

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = timm.create_model("resnet50d", num_classes=1000).to(dev).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda")
    g = torch.Generator(device="cpu").manual_seed(42)
    x = (torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1).to(dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (a.batch,), generator=g).to(dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def forward():
        with torch.autocast("cuda", dtype=torch.float16):
            model(x)

    def time_ms(fn, n):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(n):
            fn()
        e.record()
        torch.cuda.synchronize()
        return s.elapsed_time(e)

    model.train()
    t0 = time.time()
    time_ms(step, max(a.warmup, 1))
    setup = time.time() - t0
    step_ms, fwd_ms = [], []
    for _ in range(a.reps):
        step_ms.append(time_ms(step, a.iters) / a.iters)
        fwd_ms.append(time_ms(forward, a.iters) / a.iters)
    ms, fwd = statistics.median(step_ms), statistics.median(fwd_ms)
    free, total = torch.cuda.mem_get_info()
    used = (total - free) / 2**30
    peak_alloc = torch.cuda.max_memory_allocated() / 2**30
    ips = a.batch * 1000.0 / ms
    print(f"device: {torch.cuda.get_device_name(0)}  torch {torch.__version__}  timm {timm.__version__}  "
          f"cudnn {torch.backends.cudnn.version()}")
    print(f"model: timm resnet50d, {params} parameters; warm-up incl. cudnn.benchmark search {setup:.1f} s")
    print("step times (ms):", " ".join(f"{v:.2f}" for v in step_ms))
    print("forward-only times (ms):", " ".join(f"{v:.2f}" for v in fwd_ms))
    print(f"torch resnet50d AMP batch {a.batch}: {ms:.1f} ms/step, {ips:.0f} images/s; forward {fwd:.1f} ms, "
          f"backward+loss+update {ms - fwd:.1f} ms; device memory used {used:.2f} GiB "
          f"(allocator peak {peak_alloc:.2f} GiB)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"impl": "torch", "device": torch.cuda.get_device_name(0), "batch": a.batch, "size": a.size,
                       "step_ms": ms, "fwd_ms": fwd, "images_per_s": ips, "memory_used_gib": used,
                       "allocator_peak_gib": peak_alloc, "parameters": params}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
