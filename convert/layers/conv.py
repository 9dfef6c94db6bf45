"""Convolution units: Conv (conv, batch norm, activation) and its depthwise/transposed variants."""
from __future__ import annotations

import math

from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def autopad(k, p=None, d: int = 1):
    """'Same' padding for odd kernels, per axis when the kernel is a tuple."""
    if p is not None:
        return p
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    return k // 2 if isinstance(k, int) else [x // 2 for x in k]


def default_act(act) -> nn.Module:
    """`True` is SiLU (the default since v4.0; the checkpoint's own modules override it later)."""
    if act is True:
        return nn.SiLU()
    return act if isinstance(act, nn.Module) else nn.Identity()


def batch_norm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class Conv(nn.Module):
    """Convolution, batch norm, activation: the unit every YOLOv5 block is made of."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, d: int = 1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = batch_norm(c2)
        self.act = default_act(act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWConv(Conv):
    """Depthwise-style Conv: groups = gcd(c1, c2) (a plain depthwise conv when c1 == c2)."""

    def __init__(self, c1: int, c2: int, k=1, s=1, d: int = 1, act=True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class DWConvTranspose2d(nn.ConvTranspose2d):
    """Grouped transposed convolution used for upsampling in the C3x experimental models."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p1=0, p2=0):
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))
