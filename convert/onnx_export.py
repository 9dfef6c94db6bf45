"""PyTorch → ONNX with the graph cut after the sigmoid of each detection convolution.

Why the cut (measured, see the model contract): a single concatenated `[1, N, 85]` output mixes
pixel boxes and probabilities in one int8 scale and destroys one or the other. Each sigmoid head
keeps every value in [0, 1], so int8 represents it with a step of 1/256 and nothing collapses. The
grid/anchor decode is cheap in numpy on the device, on the few candidates that pass a threshold.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from convert.yolo_model import YOLOv5

OPSET = 13
INPUT_NAME = "images"


class SigmoidHeads(nn.Module):
    """The network as exported: NCHW float input in [0, 1], one sigmoid map per level (NCHW)."""

    def __init__(self, model: YOLOv5):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(torch.sigmoid(o) for o in self.model(x))


def output_names(model: YOLOv5) -> list[str]:
    return [f"stride{s}" for s in model.strides]


def export_onnx(model: YOLOv5, path: Path, imgsz: tuple[int, int]) -> Path:
    """Write a static-shape ONNX file (batch 1) and return its path."""
    model = model.eval()
    dummy = torch.zeros(1, 3, *imgsz)
    with torch.no_grad():
        torch.onnx.export(
            SigmoidHeads(model), (dummy,), str(path),
            input_names=[INPUT_NAME], output_names=output_names(model),
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return path
