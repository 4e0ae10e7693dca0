#!/usr/bin/env python3
"""PyTorch peer for bench/compare.sh: training and inference throughput of the main job's network
(cifar_resnet 20, deep stem + avg-down, 1x28x28, 10 classes) on the CPU, same batch and threads.

Run with Debian's PyTorch: /usr/bin/python3 bench/peers/torch_bench.py --threads 2 --batch 128
Prints one line per measurement: `torch params <n>`, `torch train_images_per_s <median>`,
`torch infer_images_per_s ...` (eager, eval mode) and `torch infer_frozen_images_per_s ...`
(torch.jit.trace + freeze + optimize_for_inference).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch_resnet import cifar_resnet, params  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # Debian's build defaults to 1 thread here
    torch.manual_seed(1)
    model = cifar_resnet(20, width=args.width, c=True, d=True).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-5)
    x = torch.randn(args.batch, 1, 28, 28).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    print(f"torch params {params(model)}")
    model.train()
    times = []
    for i in range(args.iters + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    print(f"torch train_images_per_s {args.batch / statistics.median(times):.1f}")
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(args.iters + 2):
            t0 = time.perf_counter()
            model(x)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    print(f"torch infer_images_per_s {args.batch / statistics.median(times):.1f}")
    # Frozen inference: traced (the model's forward loops over its stages by name, which
    # torch.jit.script does not compile), frozen (parameters become constants, BN folds into the
    # convs) and optimised for inference (oneDNN convs on the CPU). The profiling executor
    # specialises the graph during the first runs, hence one more warm-up than above.
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        ref = model(x)
        diff = (frozen(x) - ref).abs().max().item()
        print(f"torch frozen_max_abs_diff {diff:.3g} (logits up to {ref.abs().max().item():.3g})")
        if not diff <= 1e-3 * max(1.0, ref.abs().max().item()):
            sys.exit("torch_bench.py: the frozen model's logits differ from the eager model's")
        warm = 3
        times = []
        for i in range(args.iters + warm):
            t0 = time.perf_counter()
            frozen(x)
            if i >= warm:
                times.append(time.perf_counter() - t0)
    print(f"torch infer_frozen_images_per_s {args.batch / statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
