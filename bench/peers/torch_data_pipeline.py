#!/usr/bin/python3
"""PyTorch peer of bench/data_pipeline.cpp for bench/data_compare.sh: the same image-folder
pipeline (read, decode, augment, normalise; no model) with torchvision's ImageFolder, its PIL
transforms and torch.utils.data.DataLoader, batch 64.

Run with Debian's PyTorch (python3-torch, python3-torchvision, python3-pil):
    /usr/bin/python3 bench/peers/torch_data_pipeline.py DIR [--workers N] [--epochs E] [--eval]
DIR holds train/<class>/*.jpg (bench/make_photo_folder.py makes one). Prints a summary and
    torch_data images_per_s=... per_core=... workers=... size=224 mode=train
per_core is images_per_s / workers: the workers (processes, one torch thread each) do the work,
the main process only receives the collated batches, as the consuming thread does in tricks.
Timing as in bench_data_pipeline: warm-up over the first batches of epoch 0 (the workers start,
the files enter the page cache), then epochs 1..E timed; persistent workers, so that a new epoch
does not fork new processes (tricks' loader restarts its threads at each epoch, which costs
microseconds).

Training transform, the closest torchvision equivalent of tricks' aug::paper_train:
  RandomResizedCrop(224) (scale (0.08, 1), ratio (3/4, 4/3), bilinear: PIL crop + resize with
  antialiasing, as tricks), RandomHorizontalFlip(), ColorJitter(brightness=0.4, saturation=0.4,
  hue=0.2), ToTensor(), Lighting(0.1) (AlexNet PCA noise, written below as in fb.resnet.torch and
  GluonCV), Normalize(ImageNet mean/std).
  Hue: torchvision shifts the HSV hue by U(-hue, hue) of a full turn (hue <= 0.5); tricks rotates
  the YIQ chroma plane by (h - 1) * pi with h in [0.6, 1.4] (MXNet's HueJitterAug), i.e. by up to
  +-0.4 pi = +-0.2 of a turn, so hue=0.2 draws the same range of rotations (in HSV, not YIQ).
  ColorJitter applies its steps in a random order per image, tricks in a fixed order; contrast is
  not jittered (the paper jitters brightness, saturation and hue). Brightness/saturation/hue act on
  8-bit PIL images here (each step rounds and clamps); tricks fuses them into one float 3x3 matrix.
Evaluation transform: Resize(256), CenterCrop(224), ToTensor(), Normalize.
The decoder is PIL's (libjpeg-turbo on Debian), which decodes every JPEG at full size (torchvision's
default loader does not use PIL's draft mode); tricks decodes at 1/2, 1/4 or 1/8 scale when the crop
allows.
"""
import argparse
import os
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class Lighting:
    """AlexNet-style PCA lighting noise (Krizhevsky et al. 2012, §4.1) on a 0..1 CHW tensor, with
    fb.resnet.torch's ImageNet eigenvalues/eigenvectors (as GluonCV's transforms.Lighting)."""

    eigval = torch.tensor([0.2175, 0.0188, 0.0045])
    eigvec = torch.tensor([[-0.5675, 0.7192, 0.4009],
                           [-0.5808, -0.0045, -0.8140],
                           [-0.5836, -0.6948, 0.4203]])

    def __init__(self, alphastd):
        self.alphastd = alphastd

    def __repr__(self):
        return f"Lighting(alphastd={self.alphastd})"

    def __call__(self, img):
        if self.alphastd == 0:
            return img
        alpha = torch.empty(3).normal_(0, self.alphastd)
        rgb = (self.eigvec * (alpha * self.eigval).view(1, 3)).sum(1)
        return img + rgb.view(3, 1, 1)


def worker_init(_):
    torch.set_num_threads(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2, help="batches of epoch 0 before the timing")
    ap.add_argument("--eval", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    if args.eval:
        tf = transforms.Compose([transforms.Resize(max(256, args.size)), transforms.CenterCrop(args.size),
                                 transforms.ToTensor(), normalize])
    else:
        tf = transforms.Compose([transforms.RandomResizedCrop(args.size), transforms.RandomHorizontalFlip(),
                                 transforms.ColorJitter(brightness=0.4, saturation=0.4, hue=0.2),
                                 transforms.ToTensor(), Lighting(0.1), normalize])
    folder = datasets.ImageFolder(os.path.join(args.dir, "train"), transform=tf)
    loader = DataLoader(folder, batch_size=args.batch, shuffle=not args.eval, drop_last=not args.eval,
                        num_workers=args.workers, worker_init_fn=worker_init if args.workers > 0 else None,
                        persistent_workers=args.workers > 0)
    it = iter(loader)
    for _ in range(min(args.warmup, len(loader))):
        next(it)
    del it
    count = 0
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for images, labels in loader:
            count += labels.numel()
    s = time.perf_counter() - t0
    ips = count / s
    print(f"folder           {folder.root} ({len(folder)} images, {len(folder.classes)} classes)")
    print(f"transform        {tf}".replace("\n", " "))
    print(f"timed            {count} images in {s:.2f} s ({args.epochs} epochs after {args.warmup} warm-up batches), "
          f"batch {args.batch}")
    per_core = ips / max(1, args.workers)
    print(f"torch_data images_per_s={ips:.1f} per_core={per_core:.1f} workers={args.workers} size={args.size} "
          f"mode={'eval' if args.eval else 'train'}")


if __name__ == "__main__":
    main()
