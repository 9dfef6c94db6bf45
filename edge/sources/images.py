"""Image files as a source: one image, a folder (not recursive) or a glob, in name order."""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.sources.base import IMAGE_SUFFIXES, CorruptFrame, Grab

log = logging.getLogger(__name__)

GLOB_CHARS = frozenset("*?[")


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


def is_glob(text: str) -> bool:
    return any(char in text for char in GLOB_CHARS)


def list_images(spec: str) -> list[Path]:
    """The image files ``spec`` names; EdgeError when there are none."""
    path = Path(spec)
    if path.is_dir():
        paths = image_paths(path)
        where = f"in {path}"
    elif is_glob(spec):
        paths = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
        where = f"matching {spec}"
    else:
        paths = [path]
        where = f"at {path}"
    if not paths:
        raise EdgeError(f"no images {where} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


class ImageListSource:
    """Each image once; an unreadable one is a corrupt frame (warned about by name, then skipped)."""

    live = False
    fps = None
    logs_corrupt = True  # each unreadable file is named in its own warning

    def __init__(self, spec: str):
        self.spec = spec
        self.name = spec
        self._paths: list[Path] = []
        self._next = 0
        self._single = not Path(spec).is_dir() and not is_glob(spec)

    def open(self) -> None:
        self._paths = list_images(self.spec)
        self._next = 0
        if self._single and read_image(self._paths[0]) is None:
            raise EdgeError(f"cannot read image {self._paths[0]}: not a readable image file")

    def read(self) -> Grab | None:
        if self._next >= len(self._paths):
            return None
        path = self._paths[self._next]
        self._next += 1
        self.name = str(path)  # the JSON "source" of an image is its own path
        image = read_image(path)
        if image is None:
            log.warning("skipping unreadable image %s", path)
            raise CorruptFrame(f"unreadable image {path}")
        return Grab(image, time.time())

    def close(self) -> None:
        pass
