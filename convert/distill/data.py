"""Training images for distillation: letterboxed once into memory, batched and flipped by seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from convert.calibration import letterboxed_images
from convert.errors import ConvertError
from convert.holdout import training_images


def load_image_cache(folder: Path, imgsz_hw: tuple[int, int]) -> np.ndarray:
    """The folder's training images (its held-out part is left for scoring, see `convert.holdout`),
    letterboxed as the device does it: `[N, H, W, 3]` uint8 RGB.

    Kept in memory as uint8 (1,800 images at 320 take 550 MB), so epochs after the first decode nothing.
    """
    paths = training_images(Path(folder), "distillation")
    images, _ = letterboxed_images(paths, imgsz_hw, "loading images")
    if not images:
        raise ConvertError(f"none of the {len(paths)} images in {folder} could be read: check the files")
    return np.stack(images)


def epoch_batches(n_images: int, batch: int, seed: int, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (indices, flip flags) of each batch of one epoch, fixed by seed and epoch alone.

    A trailing batch smaller than half the batch size is dropped: its batch-norm statistics are noise.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_images)
    flips = rng.random(n_images) < 0.5
    batch = min(batch, n_images)
    starts = [s for s in range(0, n_images, batch) if n_images - s >= max(1, batch // 2)]
    return [(order[s:s + batch], flips[s:s + batch]) for s in starts]


def to_tensor(images_nhwc: np.ndarray, flips: np.ndarray | None = None) -> torch.Tensor:
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).float().div_(255.0)
    if flips is not None and flips.any():
        mask = torch.from_numpy(flips)
        x[mask] = x[mask].flip(-1)
    return x.contiguous()
