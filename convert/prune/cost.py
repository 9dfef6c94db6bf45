"""What a network costs to run: parameters and multiply-accumulates at one input size."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from convert.yolo_model import YOLOv5


@dataclass(frozen=True)
class Cost:
    """What a model costs at one input size."""
    params: int
    macs: int

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


def measure(model: YOLOv5, imgsz_hw: tuple[int, int]) -> Cost:
    """Parameters and multiply-accumulates of one forward pass at `imgsz_hw` (batch norms counted as is)."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, *imgsz_hw))
    finally:
        model.train(was_training)
    return Cost(params=int(params), macs=int(macs))
