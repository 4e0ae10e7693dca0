"""PyTorch definitions of tricks' ImageNet ResNets, with torchvision's and timm's module names.

    build("resnet50d") -> torch.nn.Module whose state_dict keys are timm's resnet50d's

A/B: torchvision.models.resnetN (torchvision's bottleneck is ResNet-B, "v1.5"; for ResNet-A the
stride moves back to the first 1x1). C: timm's deep stem (conv1.0/1/3/4/6 = conv 3->32 s2, BN,
conv 32->32, BN, conv 32->64; then bn1). D: timm's avg_down shortcut (downsample.0 = AvgPool2d(2,
stride, ceil_mode=True, count_include_pad=False), or Identity at stride 1; .1 conv 1x1; .2 BN).
Used by tests/tools/torch_weights_ref.py (weight import parity). bench/peers/torch_resnet.py is the
independent, hand-written reference (its own module names) for parameter counts and benchmarks.
"""
import re

import torch
import torchvision


def parse(name):
    m = re.fullmatch(r"resnet(18|34|50|101|152)([bcd]?)", name)
    if not m:
        raise SystemExit(f"torchvision_resnet: unknown model '{name}' (resnet18/34/50/101/152 with an optional b/c/d)")
    depth, tweak = int(m.group(1)), m.group(2)
    # the paper's tweaks are cumulative: C includes B, D includes B and C
    return depth, tweak in "bcd" and tweak != "", tweak in ("c", "d") and tweak != "", tweak == "d"


def build(name, classes=1000):
    depth, b, c, d = parse(name)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=classes)
    bottleneck = depth >= 50
    if bottleneck and not b:  # ResNet-A: stride on the first 1x1 of path A
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                s = block.conv2.stride
                if s != (1, 1):
                    block.conv1.stride, block.conv2.stride = s, (1, 1)
    if c:
        nn = torch.nn
        net.conv1 = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False))
    if d:
        nn = torch.nn
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                if block.downsample is None:
                    continue
                conv, bn = block.downsample[0], block.downsample[1]
                s = conv.stride[0]
                pool = nn.AvgPool2d(2, s, ceil_mode=True, count_include_pad=False) if s > 1 else nn.Identity()
                block.downsample = nn.Sequential(
                    pool, nn.Conv2d(conv.in_channels, conv.out_channels, 1, 1, 0, bias=False), bn)
    return net


def randomize_batch_norms(net, generator):
    """Random gamma/beta and running statistics, so that a mix-up of BN tensors shows in the logits."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
