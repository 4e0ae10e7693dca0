#!/usr/bin/env python3
"""PyTorch peer for bench/compare_224.sh: ResNet-18, -50 and -50-D at 224x224 (1000 classes) on the
CPU, the networks of torch_resnet.py (written out by hand, the same definitions tricks' models follow).

  /usr/bin/python3 bench/peers/torch_bench_224.py --model resnet50d --batch 16 --threads 2 \
      [--iters 5] [--mode infer|train]

--mode infer prints `torch infer_images_per_s` (eager, eval mode, no_grad) and
`torch infer_frozen_images_per_s` (torch.jit.trace + freeze + optimize_for_inference: BN folded,
oneDNN convolutions); --mode train prints `torch train_images_per_s` (forward, cross-entropy,
backward, Nesterov SGD step). Both print `torch peak_rss_mb` (the process's peak resident memory).
Channels-last tensors throughout (PyTorch's faster CPU layout for these nets).
"""
import argparse
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from torch_resnet import imagenet_resnet  # noqa: E402

MODELS = {
    "resnet18": lambda: imagenet_resnet(18),
    "resnet50": lambda: imagenet_resnet(50),
    "resnet50d": lambda: imagenet_resnet(50, b=True, c=True, d=True),
}


def timed(f, iters, warm):
    times = []
    for i in range(iters + warm):
        t0 = time.perf_counter()
        f()
        if i >= warm:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet50d")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--mode", choices=["infer", "train"], default="infer")
    args = ap.parse_args()
    if args.batch < 1 or args.iters < 1 or args.threads < 1:
        sys.exit("torch_bench_224.py: --batch, --iters and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = MODELS[args.model]().to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, 224, 224).to(memory_format=torch.channels_last)
    if args.mode == "train":
        y = torch.randint(0, 1000, (args.batch,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()
        model.train()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        print(f"torch train_images_per_s {args.batch / timed(step, args.iters, 1):.2f}")
    else:
        model.eval()
        with torch.no_grad():
            print(f"torch infer_images_per_s {args.batch / timed(lambda: model(x), args.iters, 1):.2f}")
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            ref = model(x)
            diff = (frozen(x) - ref).abs().max().item()
            if not diff <= 1e-3 * max(1.0, ref.abs().max().item()):
                sys.exit(f"torch_bench_224.py: the frozen model's logits differ from the eager model's by {diff}")
            # the profiling executor specialises the graph during the first runs: two warm-up calls
            print(f"torch infer_frozen_images_per_s {args.batch / timed(lambda: frozen(x), args.iters, 2):.2f}")
    print(f"torch peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
