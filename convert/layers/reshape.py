"""Layers that only move values around: space-to-depth (Focus, Contract), depth-to-space, concat."""
from __future__ import annotations

import torch
from torch import nn

from convert.layers.conv import Conv


class Focus(nn.Module):
    """v5.0 stem: the four pixel phases stacked as channels, then a Conv."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x):
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2],
                                    x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


class Contract(nn.Module):
    """(b, c, h, w) → (b, c·g², h/g, w/g), sub-pixel phases first."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).contiguous()
        return x.view(b, c * s * s, h // s, w // s)


class Expand(nn.Module):
    """(b, c, h, w) → (b, c/g², h·g, w·g): the inverse of Contract."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s ** 2, h, w).permute(0, 3, 4, 1, 5, 2).contiguous()
        return x.view(b, c // s ** 2, h * s, w * s)


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs):
        return torch.cat(xs, self.d)
