"""Which of the user's photos train and which judge: a fixed split of one folder.

Distillation, reconstruction, pruning statistics and calibration use the training part; the
held-out part (every `HOLDOUT_EVERY`-th file in name order) is kept for scoring variants against
the original's own detections (`convert.pseudo_map`). The split depends only on the file names,
so every command and every rerun agrees on it.
"""
from __future__ import annotations

from pathlib import Path

from convert.calibration import find_images
from convert.errors import ConvertError

HOLDOUT_EVERY = 8  # 1 image in 8 is held out: 256 of a 2,050-photo pool
MIN_HOLDOUT = 16


def split_holdout(paths: list[Path], every: int = HOLDOUT_EVERY) -> tuple[list[Path], list[Path]]:
    """(training images, held-out images): every `every`-th file in sorted order is held out."""
    paths = sorted(paths)
    held = paths[every - 1::every]
    taken = set(held)
    return [p for p in paths if p not in taken], held


def training_images(folders: list[Path] | Path, purpose: str) -> list[Path]:
    """The training part of the folders' images; a folder with none is one clear error."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    paths = find_images(folders)
    if not paths:
        raise ConvertError(f"no images found in {', '.join(map(str, folders))}: {purpose} needs a folder of "
                           ".jpg/.png photos like the ones the camera will see")
    return split_holdout(paths)[0]


def pool_split(folder: Path) -> tuple[list[Path], list[Path]]:
    """The training and held-out images of a photo folder, refusing one too small to score on."""
    paths = find_images(Path(folder))
    if not paths:
        raise ConvertError(f"no images found in {folder}: pass a folder of .jpg/.png photos like the camera's")
    train, held = split_holdout(paths)
    if len(held) < MIN_HOLDOUT:
        raise ConvertError(f"{folder} has {len(paths)} images: at least {MIN_HOLDOUT * HOLDOUT_EVERY} are needed "
                           f"to hold {MIN_HOLDOUT} out for scoring")
    return train, held
