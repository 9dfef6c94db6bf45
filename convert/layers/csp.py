"""Bottlenecks and the cross-stage-partial blocks built from them (BottleneckCSP, C3 and its variants)."""
from __future__ import annotations

import torch
from torch import nn

from convert.layers.conv import Conv, batch_norm
from convert.layers.ghost import GhostBottleneck
from convert.layers.pooling import SPP
from convert.layers.transformer import TransformerBlock


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual add when the block keeps its width."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CrossConv(nn.Module):
    """A k×k conv split into 1×k then k×1."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0,
                 shortcut: bool = False):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, (1, k), (1, s))
        self.cv2 = Conv(hidden, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class BottleneckCSP(nn.Module):
    """The v1-v3 CSP block: bottlenecks, a bare 1x1 bypass, batch norm over both, then a Conv."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = nn.Conv2d(c1, hidden, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(hidden, hidden, 1, 1, bias=False)
        self.cv4 = Conv(2 * hidden, c2, 1, 1)
        self.bn = batch_norm(2 * hidden)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


class C3(nn.Module):
    """CSP block with three convs: a stack of blocks on half the channels, concatenated with a bypass."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*self.blocks(hidden, n, shortcut, g))

    def blocks(self, c: int, n: int, shortcut: bool, g: int):
        return [Bottleneck(c, c, shortcut, g, e=1.0) for _ in range(n)]

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3x(C3):
    def blocks(self, c, n, shortcut, g):
        return [CrossConv(c, c, 3, 1, g, 1.0, shortcut) for _ in range(n)]


class C3Ghost(C3):
    def blocks(self, c, n, shortcut, g):
        return [GhostBottleneck(c, c) for _ in range(n)]


class C3TR(C3):
    def blocks(self, c, n, shortcut, g):
        return [TransformerBlock(c, c, 4, n)]


class C3SPP(C3):
    def __init__(self, c1: int, c2: int, k=(5, 9, 13), n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        self._k = tuple(k)
        super().__init__(c1, c2, n, shortcut, g, e)

    def blocks(self, c, n, shortcut, g):
        return [SPP(c, c, self._k)]
