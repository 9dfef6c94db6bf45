"""The detection head: one 1x1 convolution per level, raw logits out (decoding lives elsewhere)."""
from __future__ import annotations

import torch
from torch import nn


class Detect(nn.Module):
    """`anchors` is stored in stride units (as in the checkpoints); `YOLOv5.anchors_px` gives pixels.

    Three levels for the P5 models, four for P6 (stride 64), five for P7.
    """

    def __init__(self, nc: int, anchors: list, ch: list[int]):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.stride = torch.zeros(self.nl)  # derived at build time, not saved

    def forward(self, xs):
        return [conv(x) for conv, x in zip(self.m, xs)]
