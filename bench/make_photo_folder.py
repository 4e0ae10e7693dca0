#!/usr/bin/python3
"""Builds a folder of real JPEG photographs of ImageNet-like size for the data-pipeline benchmark
(bench/data_compare.sh): OUT/train/<class>/NNNNN.jpg and OUT/val/<class>/NNNNN.jpg.

    /usr/bin/python3 bench/make_photo_folder.py --out out/bench/photos [--train 1000] [--val 200]
                                                [--classes 10] [--seed 1]

Sources: the colour photographs that scikit-image bundles (Debian: python3-skimage; found through
skimage.data's directory, the synthetic and grey images there are not used). Each output image
takes a random source photo, a random crop of 60-100% of its sides, random horizontal flip, slight
per-channel gain and gamma, a random ImageNet-typical size (500x375, 375x500, 500x333, 333x500,
480x360, 500x500, 400x300, ...) reached with PIL's bicubic filter, then an unsharp mask and mild
sensor-like noise (std 3 of 255), so that the files keep more of the detail, and of the
entropy-coded size, of camera photos than smooth upscaled crops would (the sources are small:
the mean file is ~65 kB, against ~110 kB for ImageNet's train set, whose images are also a
little larger on average).
Saved as baseline JPEG, quality 90, 4:2:0 chroma subsampling, like most of ImageNet's files.
Image i of a split belongs to class i % classes (classes are arbitrary labels: the benchmark
measures decoding and augmentation, not accuracy). Deterministic for a given seed and
PIL/numpy version. Needs PIL and numpy (Debian: python3-pil, python3-numpy).
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageFilter

# Real colour photographs among skimage's data files (others are synthetic, grey or tiny).
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png"]
# (width, height) of typical ImageNet images, the first ones the most frequent.
SIZES = [(500, 375), (500, 375), (500, 375), (375, 500), (500, 333), (333, 500), (480, 360),
         (500, 500), (400, 300), (500, 400), (450, 338), (640, 480)]


def skimage_data_dir():
    try:
        import skimage.data
    except ImportError:
        sys.exit("make_photo_folder: scikit-image is missing (Debian: apt-get install python3-skimage)")
    return os.path.dirname(skimage.data.__file__)


def load_sources():
    d = skimage_data_dir()
    srcs = []
    for name in PHOTOS:
        path = os.path.join(d, name)
        if not os.path.exists(path):
            continue
        with Image.open(path) as im:
            srcs.append((name, np.asarray(im.convert("RGB"), dtype=np.float32)))
    if not srcs:
        sys.exit(f"make_photo_folder: none of {', '.join(PHOTOS)} found in {d}")
    return srcs


def make_image(src, rng):
    h, w, _ = src.shape
    out_w, out_h = SIZES[rng.integers(len(SIZES))]
    # A crop of 50-100% of each side, with the output's aspect ratio as far as the source allows.
    f = rng.uniform(0.6, 1.0)
    cw = min(w, max(16, int(round(f * min(w, h * out_w / out_h)))))
    ch = min(h, max(16, int(round(cw * out_h / out_w))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    a = src[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        a = a[:, ::-1]
    gain = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    gamma = np.float32(rng.uniform(0.85, 1.15))
    a = 255.0 * np.power(np.clip(a * gain / 255.0, 0.0, 1.0), gamma)
    im = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)).resize((out_w, out_h), Image.BICUBIC)
    im = im.filter(ImageFilter.UnsharpMask(radius=2, percent=100, threshold=0))
    b = np.asarray(im, dtype=np.float32) + rng.normal(0.0, 3.0, size=(out_h, out_w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(b + 0.5, 0, 255).astype(np.uint8))


def write_split(out, split, n, classes, srcs, rng):
    total = 0
    for c in range(classes):
        os.makedirs(os.path.join(out, split, f"class{c:02d}"), exist_ok=True)
    for i in range(n):
        _, src = srcs[rng.integers(len(srcs))]
        path = os.path.join(out, split, f"class{i % classes:02d}", f"{i:05d}.jpg")
        make_image(src, rng).save(path, "JPEG", quality=90, subsampling=2, optimize=False, progressive=False)
        total += os.path.getsize(path)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (train/ and val/ are created in it)")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.classes < 1 or args.train < args.classes or args.val < args.classes:
        sys.exit("make_photo_folder: need --classes >= 1 and at least one image per class in each split")
    srcs = load_sources()
    rng = np.random.default_rng(args.seed)
    tb = write_split(args.out, "train", args.train, args.classes, srcs, rng)
    vb = write_split(args.out, "val", args.val, args.classes, srcs, rng)
    mean_kb = (tb + vb) / (args.train + args.val) / 1e3
    print(f"make_photo_folder: {args.out}: {args.train} train + {args.val} val JPEGs in {args.classes} classes "
          f"from {len(srcs)} photos ({', '.join(n for n, _ in srcs)}), mean {mean_kb:.0f} kB")


if __name__ == "__main__":
    main()
