"""Image files as a source: one image, a folder (not recursive) or a glob, in name order.

Each image is decoded once, and only after its header's size is checked against a pixel limit:
a small file can declare a picture that takes gigabytes to decode.
"""

from __future__ import annotations

import glob
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.sources.base import IMAGE_SUFFIXES, CorruptFrame, Grab
from edge.sources.image_header import HEADER_BYTES, image_size_wh

log = logging.getLogger(__name__)

GLOB_CHARS = frozenset("*?[")
DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: beyond any camera photo; decoded BGR it is 150 MB
LIMIT_SETTING = "max-image-pixels"


class OversizedImage(CorruptFrame):
    """The header declares more pixels than the limit: refused before decoding."""


def load_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The BGR uint8 image at ``path``, decoded once; CorruptFrame saying why when it cannot be used."""
    size = None
    try:
        with open(path, "rb") as f:
            data = f.read(HEADER_BYTES)
            size = image_size_wh(data)
            if size is None and len(data) == HEADER_BYTES:  # a JPEG whose frame header sits after large EXIF
                data += f.read()
                size = image_size_wh(data)
            if size is not None and size[0] * size[1] > max_pixels:
                width, height = size
                raise OversizedImage(f"oversized image {path}: {width}x{height} = {width * height:,} pixels, over the limit "
                                     f"of {max_pixels:,} ({LIMIT_SETTING}); resize it or raise the limit")
            data += f.read()
    except OSError:
        size = None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if size is not None else None
    if image is None:
        raise CorruptFrame(f"unreadable image {path}")
    return image


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray | None:
    """BGR uint8 image, or None when the file is not a readable image within ``max_pixels``."""
    try:
        return load_image(path, max_pixels)
    except CorruptFrame:
        return None


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
    """Each image once; an unreadable or oversized one is a corrupt frame (warned about by name, then skipped)."""

    live = False
    fps = None
    logs_corrupt = True  # each unreadable file is named in its own warning

    def __init__(self, spec: str, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.spec = spec
        self.name = spec
        self.max_pixels = max_pixels
        self._paths: list[Path] = []
        self._next = 0
        self._single = not Path(spec).is_dir() and not is_glob(spec)
        self._first: np.ndarray | None = None  # a single image, decoded by open() and handed out by read()

    def open(self) -> None:
        self._paths = list_images(self.spec)
        self._next = 0
        if self._single:
            try:
                self._first = load_image(self._paths[0], self.max_pixels)
            except OversizedImage as exc:
                raise EdgeError(f"cannot use {exc}") from None
            except CorruptFrame:
                raise EdgeError(f"cannot read image {self._paths[0]}: not a readable image file") from None

    def read(self) -> Grab | None:
        if self._next >= len(self._paths):
            return None
        path = self._paths[self._next]
        self._next += 1
        self.name = str(path)  # the JSON "source" of an image is its own path
        image, self._first = self._first, None
        if image is None:
            try:
                image = load_image(path, self.max_pixels)
            except CorruptFrame as exc:
                log.warning("skipping %s", exc)
                raise
        return Grab(image, time.time())

    def close(self) -> None:
        self._first = None
