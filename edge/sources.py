"""Frames and where they come from: the source interface, and which backend opens which spec.

A source is anything with ``open()``, ``read()`` and ``close()`` (see :class:`FrameSource`):
a video file, an image folder or glob (``sources_files``), a V4L2 camera or an RTSP/HTTP stream
(``sources_opencv``), a Raspberry Pi camera (``sources_picamera2``). ``open_source`` picks one from
``--camera`` / ``--source``; the capture thread (``edge.capture``) drives it. ``iter_frames`` is
the simple one-shot reader of files kept for scripts and tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

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
    """One frame could not be decoded or has the wrong shape: skip it, count it, keep reading."""


class SourceLost(Exception):
    """A live source failed (read error, device gone, stream cut): close it and reconnect."""


class FrameSource(Protocol):
    """The interface every backend implements.

    ``open()`` raises EdgeError when the source cannot be opened (the message names the fix);
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


def open_source(camera: str | None = None, source: str | None = None, stall_timeout_s: float = 10.0) -> FrameSource:
    """The backend for ``--camera`` (index, /dev/videoN, picam, picam:N) or ``--source`` (file, folder, glob, URL).

    Nothing is opened yet; EdgeError for a spec no backend takes.
    """
    if (camera is None) == (source is None):
        raise EdgeError("give exactly one of --camera (e.g. --camera 0, --camera picam) and --source (file, folder, glob or URL)")
    if camera is not None:
        text = str(camera).strip()
        if text == "picam" or text.startswith("picam:"):
            from edge.sources_picamera2 import PicameraSource, parse_picam_spec

            return PicameraSource(parse_picam_spec(text), stall_timeout_s=stall_timeout_s)
        from edge.sources_opencv import CameraSource

        return CameraSource(text, stall_timeout_s=stall_timeout_s)
    text = str(source)
    from edge.sources_opencv import StreamSource, VideoFileSource, is_stream_url

    if is_stream_url(text):
        return StreamSource(text, stall_timeout_s=stall_timeout_s)
    from edge.sources_files import ImageListSource, is_glob

    path = Path(text)
    if path.is_dir() or is_glob(text) or (path.suffix.lower() in IMAGE_SUFFIXES and path.exists()):
        return ImageListSource(text)
    if "://" in text:
        raise EdgeError(f"unsupported URL scheme in {text.split('://', 1)[0]}://...; use rtsp://, rtsps://, http:// or https://")
    if not path.exists():
        raise EdgeError(f"source not found: {path}; pass an image, a folder of images, a glob, a video file or a stream URL")
    return VideoFileSource(path)


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
