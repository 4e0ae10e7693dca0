#!/usr/bin/env python3
"""The README main job's recipe in PyTorch, for time-to-accuracy comparisons on the CPU.

Same network (cifar_resnet 20, width 16, deep stem + avg-down, zero-gamma, from torch_resnet.py),
same data (Fashion-MNIST IDX files), same recipe as examples/train: Nesterov SGD (momentum 0.9),
linear lr scaling (0.4 * batch / 256), 1 linear warmup epoch then cosine to 0 (per iteration, as
train/schedule.hpp), weight decay 5e-4 on conv/linear weights only (no bias decay), label smoothing
as the paper writes it (1 - eps on the label, eps / (K - 1) elsewhere), mixup (alpha 0.2, one lambda
per batch, a shuffled partner), pad-2 random crop + horizontal flip, normalisation by the training
set's mean and standard deviation. Prints one line per epoch (test top-1, seconds, cumulative
seconds) and the time to reach --target top-1 (train + evaluation, data loading included).

    /usr/bin/python3 bench/peers/torch_train_fmnist.py --threads 2 [--epochs 5] [--target 0.92]
"""
import argparse
import gzip
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch_resnet import BasicBlock, cifar_resnet, params  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("TRICKS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.4)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--mixup", type=float, default=0.2)
    ap.add_argument("--target", type=float, default=0.92)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t_start = time.perf_counter()

    xtr = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    ytr = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xte = read_idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    yte = read_idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    mean, std = float(xtr.mean()), float(xtr.std())
    xtr = torch.from_numpy((xtr - mean) / std).unsqueeze(1)
    xte = torch.from_numpy((xte - mean) / std).unsqueeze(1)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    black = (0.0 - mean) / std  # the padded border: a black pixel, normalised
    padded = torch.nn.functional.pad(xtr, (2, 2, 2, 2), value=black)

    model = cifar_resnet(20, width=16, c=True, d=True).to(memory_format=torch.channels_last)
    for m in model.modules():  # zero-gamma: the last BN of each residual branch starts at 0
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.main[-1][1].weight)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.0, momentum=0.9, nesterov=True)
    n = xtr.shape[0]
    steps = (n + a.batch - 1) // a.batch
    total, warm = steps * a.epochs, steps
    peak = a.lr * a.batch / 256

    def lr_at(t):
        if t < warm:
            return peak * (t + 1) / warm
        T, tt = total - warm, t - warm
        return 0.0 if tt >= T else 0.5 * (1 + math.cos(math.pi * tt / T)) * peak

    K = 10
    off = a.smoothing / (K - 1)
    print(f"torch {torch.__version__}, {a.threads} threads, params {params(model)}, {steps} steps/epoch", flush=True)
    reached = None
    cumulative = 0.0
    for e in range(a.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        for s in range(steps):
            idx = perm[s * a.batch:(s + 1) * a.batch]
            b = idx.numel()
            dy = rng.integers(0, 5, b)
            dx = rng.integers(0, 5, b)
            flip = rng.integers(0, 2, b)
            x = torch.stack([padded[i, :, y0:y0 + 28, x0:x0 + 28] for i, y0, x0 in zip(idx.tolist(), dy, dx)])
            f = torch.from_numpy(flip.astype(bool))
            x[f] = x[f].flip(3)
            q = torch.full((b, K), off)
            q[torch.arange(b), ytr[idx]] = 1.0 - a.smoothing
            lam = float(rng.beta(a.mixup, a.mixup))
            p = torch.from_numpy(rng.permutation(b))
            x = lam * x + (1 - lam) * x[p]
            q = lam * q + (1 - lam) * q[p]
            for g in opt.param_groups:
                g["lr"] = lr_at(e * steps + s)
            opt.zero_grad(set_to_none=True)
            z = model(x.contiguous(memory_format=torch.channels_last))
            loss = -(q * torch.log_softmax(z, 1)).sum(1).mean()
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, xte.shape[0], 500):
                z = model(xte[i:i + 500].contiguous(memory_format=torch.channels_last))
                correct += int((z.argmax(1) == yte[i:i + 500]).sum())
        top1 = correct / xte.shape[0]
        dt = time.perf_counter() - t0
        cumulative = time.perf_counter() - t_start
        print(f"epoch {e + 1}/{a.epochs}  test top-1 {100 * top1:.2f}%  {dt:.1f} s  ({n / dt:.0f} images/s incl. eval)  "
              f"cumulative {cumulative:.1f} s", flush=True)
        if reached is None and top1 >= a.target:
            reached = cumulative
    if reached is None:
        print(f"torch: test top-1 {100 * a.target:.0f}% not reached in {a.epochs} epochs ({cumulative:.1f} s)")
    else:
        print(f"torch: time to {100 * a.target:.0f}% test top-1: {reached:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
