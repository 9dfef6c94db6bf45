"""Where the shared data lives: `$EDGE_YOLO_DATA`, else `../shared` beside the checkout or CWD."""
from __future__ import annotations

import os
from pathlib import Path

from convert.errors import ConvertError

_REPO = Path(__file__).resolve().parent.parent
DEFAULT_CALIB_SETS = ("data/coco-val-person700", "data/coco-train130")


def data_root() -> Path | None:
    env = os.environ.get("EDGE_YOLO_DATA")
    candidates = [Path(env)] if env else [_REPO.parent / "shared", Path.cwd().parent / "shared"]
    return next((c for c in candidates if c.is_dir()), None)


def default_calib_dirs() -> list[Path]:
    root = data_root()
    dirs = [root / d for d in DEFAULT_CALIB_SETS if root and (root / d).is_dir()]
    if not dirs:
        raise ConvertError("no calibration images: pass --calib FOLDER (real photos like the camera's), "
                           "or set EDGE_YOLO_DATA to a folder holding data/coco-train130")
    return dirs


POOL_DIR = "data/pool"  # unlabelled photos, disjoint from every evaluation folder


def default_pool_dir() -> Path:
    """The shared unlabelled photos that pruning statistics, reconstruction and distillation use by default."""
    root = data_root()
    if root is None or not (root / POOL_DIR).is_dir():
        raise ConvertError("no default photo folder: pass --images FOLDER (unlabelled photos like the camera's), "
                           "or set EDGE_YOLO_DATA to a folder holding data/pool")
    return root / POOL_DIR
