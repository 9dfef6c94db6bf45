"""The teacher's outputs on every training image, computed once and read back each epoch.

Distillation runs the teacher on every batch of every epoch, although its outputs never change:
that is a third of each step's work. Each image is seen as is and mirrored (the only augmentation),
so the teacher's head outputs for both are stored once, as probabilities in uint8 (a step of 1/255,
finer than the int8 model's own 1/256), in a memory-mapped file beside the student checkpoint:
1 MB per image at 320. The file is keyed by the teacher, the input size and the exact image set,
so a changed input rebuilds it and a finished one is reused by a resumed run.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convert.progress import progress
from convert.yolo_model import YOLOv5

LEVELS_KEY = "levels"
SCALE = 255.0
BATCH = 16


@dataclass(frozen=True)
class TeacherCache:
    """`probs[i, f]` is the flat uint8 output for image i (f=1: mirrored); `levels` its per-level shapes."""

    probs: np.ndarray
    levels: list[tuple[int, int, int]]

    def targets(self, indices: np.ndarray, flips: np.ndarray) -> list[torch.Tensor]:
        """Per-level `[B, C, H, W]` float probabilities for these images and flips."""
        flat = torch.from_numpy(np.ascontiguousarray(self.probs[indices, flips.astype(np.int64)]))
        out, start = [], 0
        for c, h, w in self.levels:
            size = c * h * w
            out.append(flat[:, start:start + size].view(-1, c, h, w).float().div_(SCALE))
            start += size
        return out


def cache_key(teacher_sha256: str, imgsz_hw: tuple[int, int], images: np.ndarray) -> str:
    digest = hashlib.sha256(f"{teacher_sha256}|{imgsz_hw}|{images.shape}".encode())
    digest.update(np.ascontiguousarray(images[:, ::8, ::8]).tobytes())  # cheap fingerprint of the pixels
    return digest.hexdigest()[:16]


def teacher_cache(teacher: YOLOv5, images: np.ndarray, folder: Path, key: str) -> TeacherCache:
    """The cache for `images` (`[N, H, W, 3]` uint8), built in `folder` unless a complete one is there."""
    from convert.distill import to_tensor

    folder.mkdir(parents=True, exist_ok=True)
    data, meta_path = folder / f"teacher-{key}.u8", folder / f"teacher-{key}.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        levels = [tuple(level) for level in meta[LEVELS_KEY]]
        total = sum(c * h * w for c, h, w in levels)
        return TeacherCache(np.memmap(data, np.uint8, "r", shape=(len(images), 2, total)), levels)
    with torch.no_grad():
        probe = teacher.eval()(to_tensor(images[:1]))
    levels = [tuple(o.shape[1:]) for o in probe]
    total = sum(c * h * w for c, h, w in levels)
    probs = np.memmap(data, np.uint8, "w+", shape=(len(images), 2, total))
    started = time.perf_counter()
    starts = range(0, len(images), BATCH)
    for start in progress(starts, desc="teacher outputs (once)", total=len(starts), unit="batch"):
        batch = images[start:start + BATCH]
        for flip in (0, 1):
            x = to_tensor(batch, np.full(len(batch), bool(flip)))
            with torch.no_grad():
                outs = [torch.sigmoid(o).flatten(1) for o in teacher(x)]
            probs[start:start + len(batch), flip] = torch.cat(outs, 1).mul_(SCALE).round_().to(torch.uint8).numpy()
    probs.flush()
    meta_path.write_text(json.dumps({LEVELS_KEY: levels, "images": len(images),
                                     "seconds": round(time.perf_counter() - started, 1)}))
    return TeacherCache(np.memmap(data, np.uint8, "r", shape=(len(images), 2, total)), levels)
