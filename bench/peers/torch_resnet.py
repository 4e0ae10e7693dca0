#!/usr/bin/env python3
"""Independent plain-PyTorch reference ResNets for cross-checking "tricks".

This file is a benchmark peer: it does not depend on torchvision or timm, so
the architectures below are written out by hand and can be used both to
produce reference numbers (parameter counts, MACs, feature-map sizes) and,
later, for throughput comparisons.

Architectures
-------------
* ImageNet ResNets (He et al. 2016), depth 18/34 (basic blocks) and
  50/101/152 (bottleneck blocks, expansion 4), with the "Bag of Tricks"
  (He et al. 2019) tweaks as independent flags:
    B: in a downsampling bottleneck, the stride sits on the 3x3 conv instead
       of the first 1x1 conv (torchvision's "v1.5" layout is B).
    C: deep stem, three 3x3 convs (32, 32, 64 channels; first one stride 2),
       each followed by BN+ReLU, then the usual 3x3 stride-2 max pool.
    D: a downsampling (stride-2) projection shortcut becomes
       AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) followed by a
       stride-1 1x1 conv + BN. Stride-1 projections stay a plain 1x1 conv + BN.
  Reference: torchvision resnet50 has 25,557,032 parameters and timm
  resnet50d (B+C+D) has 25,576,264.
* CIFAR-style ResNets (depth 6n+2, width W): 3x3 stride-1 stem to W (or, with
  C, three 3x3 stride-1 convs to W/2, W/2, W), no max pool, three stages of n
  basic blocks with W, 2W, 4W channels; stages 2 and 3 downsample by 2 in
  their first block through a projection shortcut (with D: avg-pool + 1x1).

All convs are bias-free and followed by BN; the head is global average pool
followed by a Linear layer with bias.

CLI
---
  python3 bench/peers/torch_resnet.py counts   # name, params, MACs table
  python3 bench/peers/torch_resnet.py shapes   # per-layer output sizes
"""

import sys

import torch
import torch.nn as nn


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------

def conv_bn(cin, cout, k, stride=1, relu=True):
    """k x k conv (no bias, 'same' padding for odd k) + BN (+ ReLU)."""
    layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
              nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def shortcut(cin, cout, stride, d):
    """Identity when shapes match, else a projection shortcut.

    Plain projection: 1x1 conv with the block's stride + BN.
    ResNet-D (only when stride > 1): AvgPool2d(2, 2, ceil_mode=True,
    count_include_pad=False) followed by a stride-1 1x1 conv + BN.
    """
    if stride == 1 and cin == cout:
        return nn.Identity()
    if d and stride > 1:
        return nn.Sequential(
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
            conv_bn(cin, cout, 1, relu=False))
    return conv_bn(cin, cout, 1, stride=stride, relu=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first carries the stride."""
    expansion = 1

    def __init__(self, cin, planes, stride=1, b=False, d=False):
        super().__init__()
        cout = planes * self.expansion
        # `b` is irrelevant here: the stride is on the first 3x3 anyway.
        self.main = nn.Sequential(conv_bn(cin, planes, 3, stride),
                                  conv_bn(planes, cout, 3, relu=False))
        self.short = shortcut(cin, cout, stride, d)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.main(x) + self.short(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion).

    Original (A) layout: stride on the first 1x1 conv.
    ResNet-B: stride on the 3x3 conv.
    """
    expansion = 4

    def __init__(self, cin, planes, stride=1, b=False, d=False):
        super().__init__()
        cout = planes * self.expansion
        s1, s3 = (1, stride) if b else (stride, 1)
        self.main = nn.Sequential(conv_bn(cin, planes, 1, s1),
                                  conv_bn(planes, planes, 3, s3),
                                  conv_bn(planes, cout, 1, relu=False))
        self.short = shortcut(cin, cout, stride, d)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.main(x) + self.short(x))


class ResNet(nn.Module):
    """Generic ResNet: stem -> stages -> global avg pool -> Linear."""

    def __init__(self, stem, block, cin, widths, depths, strides,
                 num_classes, b=False, d=False):
        super().__init__()
        self.stem = stem
        stages = []
        for i, (w, n, s) in enumerate(zip(widths, depths, strides)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, s if j == 0 else 1, b=b, d=d))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        # Named layer1..layerN so hooks / state dicts read naturally.
        for i, st in enumerate(stages):
            self.add_module(f"layer{i + 1}", st)
        self.num_stages = len(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


# ---------------------------------------------------------------------------
# Public constructors
# ---------------------------------------------------------------------------

IMAGENET_CONFIGS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def imagenet_resnet(depth, b=False, c=False, d=False, in_channels=3, num_classes=1000):
    """ImageNet ResNet-{18,34,50,101,152} with optional B/C/D tweaks."""
    block, depths = IMAGENET_CONFIGS[depth]
    if c:  # deep stem: 3x3/2 -> 3x3 -> 3x3, widths 32, 32, 64
        stem_convs = [conv_bn(in_channels, 32, 3, 2), conv_bn(32, 32, 3), conv_bn(32, 64, 3)]
    else:  # classic 7x7/2 stem
        stem_convs = [conv_bn(in_channels, 64, 7, 2)]
    stem = nn.Sequential(*stem_convs, nn.MaxPool2d(3, stride=2, padding=1))
    return ResNet(stem, block, 64, [64, 128, 256, 512], depths, [1, 2, 2, 2],
                  num_classes, b=b, d=d)


def cifar_resnet(depth, width=16, c=False, d=False, in_channels=1, num_classes=10):
    """CIFAR ResNet of depth 6n+2 and base width W (stages W, 2W, 4W)."""
    assert (depth - 2) % 6 == 0, "CIFAR ResNet depth must be 6n+2"
    n = (depth - 2) // 6
    if c:  # deep stem: three 3x3 stride-1 convs to W/2, W/2, W
        h = width // 2
        stem = nn.Sequential(conv_bn(in_channels, h, 3), conv_bn(h, h, 3), conv_bn(h, width, 3))
    else:
        stem = conv_bn(in_channels, width, 3)
    return ResNet(stem, BasicBlock, width, [width, 2 * width, 4 * width], [n, n, n],
                  [1, 2, 2], num_classes, d=d)


# ---------------------------------------------------------------------------
# Counting utilities
# ---------------------------------------------------------------------------

def params(model):
    """Number of parameters (BN running stats excluded, as in torchvision)."""
    return sum(p.numel() for p in model.parameters())


def macs(model, input_shape):
    """Multiply-accumulates per image of Conv2d and Linear layers only.

    input_shape is (C, H, W). Conv MACs = out_elems * (cin/groups) * kh * kw;
    Linear MACs = in_features * out_features.
    """
    total = [0]

    def conv_hook(m, inp, out):
        kh, kw = m.kernel_size
        total[0] += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total[0]


def layer_shapes(model, input_shape):
    """[(name, (C, H, W))] of the stem's children, each block, pool and fc."""
    rows = []
    named = [(f"stem.{n}", m) for n, m in model.stem.named_children()] \
        if isinstance(model.stem, nn.Sequential) else [("stem", model.stem)]
    for i in range(model.num_stages):
        named += [(f"layer{i + 1}.{n}", m)
                  for n, m in getattr(model, f"layer{i + 1}").named_children()]
    named += [("pool", model.pool), ("fc", model.fc)]
    handles = [m.register_forward_hook(
        lambda m, inp, out, name=name: rows.append((name, tuple(out.shape[1:]))))
        for name, m in named]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return rows


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def reference_models():
    """(name, constructor, input_shape) for the `counts` table."""
    I = imagenet_resnet
    C = cifar_resnet
    rows = [
        ("resnet18", lambda: I(18), (3, 224, 224)),
        ("resnet34", lambda: I(34), (3, 224, 224)),
        ("resnet50", lambda: I(50), (3, 224, 224)),
        ("resnet50b", lambda: I(50, b=True), (3, 224, 224)),
        ("resnet50c", lambda: I(50, b=True, c=True), (3, 224, 224)),
        ("resnet50d", lambda: I(50, b=True, c=True, d=True), (3, 224, 224)),
        ("resnet101", lambda: I(101), (3, 224, 224)),
        ("resnet101d", lambda: I(101, b=True, c=True, d=True), (3, 224, 224)),
        ("resnet152", lambda: I(152), (3, 224, 224)),
        ("resnet152d", lambda: I(152, b=True, c=True, d=True), (3, 224, 224)),
        ("cifar_resnet20_w16", lambda: C(20), (1, 28, 28)),
        ("cifar_resnet20_w16_cd", lambda: C(20, c=True, d=True), (1, 28, 28)),
        ("cifar_resnet20_w32_cd", lambda: C(20, width=32, c=True, d=True), (1, 28, 28)),
        ("cifar_resnet56_w16", lambda: C(56), (1, 28, 28)),
    ]
    for hw in (28, 32):
        rows.append((f"resnet18_in1_c10@{hw}",
                     lambda: I(18, in_channels=1, num_classes=10), (1, hw, hw)))
        rows.append((f"resnet50d_in1_c10@{hw}",
                     lambda: I(50, b=True, c=True, d=True, in_channels=1, num_classes=10),
                     (1, hw, hw)))
    return rows


def cmd_counts():
    print(f"{'name':<26} {'params':>12} {'macs':>15}  input")
    for name, make, shape in reference_models():
        m = make()
        print(f"{name:<26} {params(m):>12} {macs(m, shape):>15}  {'x'.join(map(str, shape))}")


def cmd_shapes():
    for name, make, shape in [
        ("resnet50d", lambda: imagenet_resnet(50, b=True, c=True, d=True), (3, 224, 224)),
        ("cifar_resnet20_w16_cd", lambda: cifar_resnet(20, c=True, d=True), (1, 28, 28)),
        ("resnet50d_in1_c10@28",
         lambda: imagenet_resnet(50, b=True, c=True, d=True, in_channels=1, num_classes=10),
         (1, 28, 28)),
    ]:
        print(f"== {name} input {'x'.join(map(str, shape))}")
        for lname, s in layer_shapes(make(), shape):
            print(f"  {lname:<16} {'x'.join(map(str, s))}")


def main(argv):
    cmds = {"counts": cmd_counts, "shapes": cmd_shapes}
    if len(argv) != 2 or argv[1] not in cmds:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(cmds)}}}")
    torch.manual_seed(0)
    cmds[argv[1]]()


if __name__ == "__main__":
    main(sys.argv)
