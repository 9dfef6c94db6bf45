"""What every source shares: the frame records, the two read errors, and the ``FrameSource`` protocol.

It imports nothing of edge's but the error type, so every backend can build on it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.errors import EdgeError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Frame:
    """One BGR uint8 image with where and when it was captured (``time`` is Unix seconds)."""

    index: int
    source: str
    time: float
    image: np.ndarray
    position_ms: float | None = None  # position in a file; None for live sources

    @property
    def wh(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class Grab:
    """What a source hands over: the image, its capture time (time.time() at grab), file position."""

    image: np.ndarray
    time: float
    position_ms: float | None = None


class CorruptFrame(Exception):
    """A frame could not be decoded or has the wrong shape: skip it, count it, keep reading.

    ``frames`` is how many frames it stands for (a damaged stretch of a video may lose several).
    """

    def __init__(self, message: str, frames: int = 1):
        super().__init__(message)
        self.frames = frames


class SourceLost(Exception):
    """A live source failed (read error, device gone, stream cut): close it and reconnect."""


class SourceUnavailable(EdgeError):
    """A live source cannot be opened now but may come (a camera not plugged in or not booted yet, a
    stream refused): waited for with backoff, at start-up as after a loss. Other EdgeErrors from
    ``open()`` (a missing library, a malformed spec) need the user and end the run."""


class FrameSource(Protocol):
    """The interface every backend implements.

    ``open()`` raises EdgeError when the source cannot be opened (the message names the fix),
    SourceUnavailable when a live source may still come;
    ``read()`` returns the next Grab, None at the end of a file source, raises CorruptFrame for a
    bad frame and SourceLost when a live source fails; ``close()`` may be called more than once.
    """

    name: str  # for logs and the JSON "source" field; never holds a password
    live: bool  # frames arrive on the source's own clock (camera, stream), not when asked for
    fps: float | None  # nominal rate when known (file header, camera setting)

    def open(self) -> None: ...

    def read(self) -> Grab | None: ...

    def close(self) -> None: ...


def check_image(image: np.ndarray | None, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """``image`` if it is a non-empty BGR uint8 frame (of ``expected_hw`` when given), else CorruptFrame."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise CorruptFrame("empty frame")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CorruptFrame(f"frame of shape {image.shape} {image.dtype}, expected (H, W, 3) uint8")
    if expected_hw is not None and image.shape[:2] != expected_hw:
        raise CorruptFrame(f"frame of {image.shape[1]}x{image.shape[0]}, the stream is {expected_hw[1]}x{expected_hw[0]}")
    return image
