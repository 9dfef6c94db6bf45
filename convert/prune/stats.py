"""Per-channel activation statistics of a network on real photos (what pruning ranks channels by)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from convert.calibration import letterboxed_images, select_evenly
from convert.errors import ConvertError
from convert.holdout import training_images
from convert.yolo_model import YOLOv5

STATS_IMAGES = 64  # enough for stable per-channel means and variances


def stats_images(folders: list[Path], imgsz_hw: tuple[int, int], count: int = STATS_IMAGES,
                 offset: int = 0, purpose: str = "activation statistics") -> torch.Tensor:
    """`[N, 3, H, W]` letterboxed photos in [0, 1], spread evenly over the folders' training images
    (the held-out part is left for scoring); `offset` shifts the picks to draw a disjoint set."""
    paths = training_images(folders, purpose)
    chosen = select_evenly(paths[offset:] + paths[:offset], count)
    frames, _ = letterboxed_images(chosen, imgsz_hw, purpose)
    if not frames:
        raise ConvertError(f"no readable images in {', '.join(map(str, folders))}: {purpose} needs real photos, "
                           "pass --images FOLDER")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def input_stats(model: YOLOv5, images: torch.Tensor, batch: int = 16) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every convolution's input mean and variance per channel over `images` (`[N, 3, H, W]`, 0-1)."""
    names = {m: n for n, m in model.named_modules()}
    sums: dict[nn.Conv2d, list[torch.Tensor]] = {}

    def record(conv, inputs):
        x = inputs[0].double()
        first, second = x.mean((2, 3)).sum(0), x.pow(2).mean((2, 3)).sum(0)
        old = sums.get(conv)
        sums[conv] = [first, second] if old is None else [old[0] + first, old[1] + second]

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(images[start:start + batch])
    finally:
        for hook in hooks:
            hook.remove()
    stats = {}
    for conv, (first, second) in sums.items():
        mean = first / len(images)
        stats[names[conv]] = (mean.float(), (second / len(images) - mean.pow(2)).clamp_min(0).float())
    return stats
