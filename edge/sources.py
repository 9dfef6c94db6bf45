"""Frames from an image file, a folder of images, or a video file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Frame:
    """One BGR uint8 image with where and when it was captured (``time`` is Unix seconds)."""

    index: int
    source: str
    time: float
    image: np.ndarray

    @property
    def wh(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def read_image(path: Path) -> np.ndarray | None:
    """BGR uint8 image, or None when the file is not a readable image."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if not data.size:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def image_paths(folder: Path) -> list[Path]:
    """Image files of ``folder`` (not recursive) in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def iter_frames(source: str | Path, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames of an image, a folder (unreadable images skipped with a warning) or a video."""
    path = Path(source)
    if not path.exists():
        raise EdgeError(f"source not found: {path}; pass an image, a folder of images or a video file")
    if path.is_dir():
        frames = _folder_frames(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        frames = _image_frames(path)
    else:
        frames = _video_frames(path)
    try:
        for count, frame in enumerate(frames):
            if max_frames is not None and count >= max_frames:
                return
            yield frame
    finally:
        frames.close()  # releases a video capture as soon as we stop early


def _image_frames(path: Path) -> Iterator[Frame]:
    image = read_image(path)
    if image is None:
        raise EdgeError(f"cannot read image {path}: not a readable image file")
    yield Frame(0, str(path), time.time(), image)


def _folder_frames(folder: Path) -> Iterator[Frame]:
    paths = image_paths(folder)
    if not paths:
        raise EdgeError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    index = 0
    for path in paths:
        image = read_image(path)
        if image is None:
            log.warning("skipping unreadable image %s", path)
            continue
        yield Frame(index, str(path), time.time(), image)
        index += 1


def _video_frames(path: Path) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise EdgeError(f"cannot open {path} as a video; pass an image, a folder of images or a video file")
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(index, str(path), time.time(), image)
            index += 1
        if index == 0:
            raise EdgeError(f"{path} has no decodable video frames")
    finally:
        capture.release()
