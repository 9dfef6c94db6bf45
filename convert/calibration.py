"""Calibration images for int8: real photos, letterboxed exactly as the device letterboxes them.

The quantization ranges are learned from what the model will actually see. A different resize,
padding value or colour order here would calibrate for a distribution the device never feeds in.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from convert.errors import ConvertError
from convert.progress import progress
from edge.detect.letterbox import letterbox_into

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_CALIB_IMAGES = 200
MIN_CALIB_IMAGES = 100


def find_images(folders: list[Path] | Path) -> list[Path]:
    """All images directly in the folders (or their `images/` subfolder), sorted for repeatability."""
    folders = [folders] if isinstance(folders, Path) else folders
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConvertError(f"image folder {folder} does not exist: pass a folder of .jpg/.png images")
        if (folder / "images").is_dir():
            folder = folder / "images"
        found += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return found


def select_evenly(paths: list[Path], count: int) -> list[Path]:
    """`count` paths spread evenly over the sorted list: deterministic, no clustering at one end."""
    if len(paths) <= count:
        return paths
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in picks]


def letterboxed_rgb(path: Path, imgsz_hw: tuple[int, int]) -> np.ndarray | None:
    """The uint8 RGB `(H, W, 3)` input the device would build from this image, or None if unreadable."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        return None
    canvas = np.empty((*imgsz_hw, 3), np.uint8)
    letterbox_into(frame, canvas, color_order="bgr")
    return canvas


def letterboxed_images(paths: list[Path], imgsz_hw: tuple[int, int],
                       desc: str) -> tuple[list[np.ndarray], list[Path]]:
    """The readable images among `paths`, letterboxed, and their paths; one warning per unreadable file."""
    images, used = [], []
    for path in progress(paths, desc=desc):
        canvas = letterboxed_rgb(path, imgsz_hw)
        if canvas is None:
            log.warning("skipping unreadable image %s", path)
            continue
        images.append(canvas)
        used.append(path)
    return images, used


def calibration_set(folders: list[Path], imgsz_hw: tuple[int, int],
                    count: int = DEFAULT_CALIB_IMAGES) -> tuple[np.ndarray, list[Path]]:
    """`[N, H, W, 3]` float32 in [0, 1] (NHWC, as onnx2tf wants it) and the files used."""
    paths = find_images(folders)
    if not paths:
        raise ConvertError(f"no images found in {', '.join(map(str, folders))}: "
                           "calibration needs real photos like the ones the camera will see")
    chosen = select_evenly(paths, count)
    if len(chosen) < MIN_CALIB_IMAGES:
        log.warning("only %d calibration images (at least %d recommended): int8 accuracy may suffer; "
                    "add more images to --calib", len(chosen), MIN_CALIB_IMAGES)
    images, used = letterboxed_images(chosen, imgsz_hw, "calibration images")
    if not images:
        raise ConvertError(f"none of the {len(chosen)} calibration images could be read: check the files")
    return np.stack(images).astype(np.float32) / 255.0, used
