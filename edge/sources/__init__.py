"""Where frames come from: one ``FrameSource`` interface, a backend per kind of input.

``open_source`` picks the backend for ``--camera`` / ``--source`` (nothing is opened yet); the
capture thread (``edge.service.capture``) drives it. ``iter_frames`` reads a file source straight
through, for scripts and tests. A new kind of input is a module here implementing ``FrameSource``
(see ``base``) plus one branch in ``open_source``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from edge.errors import EdgeError
from edge.sources.base import (IMAGE_SUFFIXES, CorruptFrame, Frame, FrameSource, Grab, SourceLost, SourceUnavailable,
                               check_image)
from edge.sources.images import DEFAULT_MAX_PIXELS, ImageListSource, image_paths, is_glob, read_image
from edge.sources.opencv import CameraSource, StreamSource, VideoFileSource, is_stream_url
from edge.sources.picam import PicameraSource, parse_picam_spec

__all__ = [
    "IMAGE_SUFFIXES", "CorruptFrame", "Frame", "FrameSource", "Grab", "SourceLost", "SourceUnavailable", "check_image",
    "image_paths", "read_image", "open_source", "iter_frames",
]


def open_source(camera: str | None = None, source: str | None = None, stall_timeout_s: float = 10.0,
                max_image_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """The backend for ``--camera`` (index, /dev/videoN, picam, picam:N) or ``--source`` (file, folder, glob, URL).

    Nothing is opened yet; EdgeError for a spec no backend takes.
    """
    if (camera is None) == (source is None):
        raise EdgeError("give exactly one of --camera (e.g. --camera 0, --camera picam) and --source (file, folder, glob or URL)")
    if camera is not None:
        text = str(camera).strip()
        if text == "picam" or text.startswith("picam:"):
            return PicameraSource(parse_picam_spec(text), stall_timeout_s=stall_timeout_s)
        return CameraSource(text, stall_timeout_s=stall_timeout_s)
    text = str(source)
    if is_stream_url(text):
        return StreamSource(text, stall_timeout_s=stall_timeout_s)
    path = Path(text)
    if path.is_dir() or is_glob(text) or (path.suffix.lower() in IMAGE_SUFFIXES and path.exists()):
        return ImageListSource(text, max_image_pixels)
    if "://" in text:
        raise EdgeError(f"unsupported URL scheme in {text.split('://', 1)[0]}://...; use rtsp://, rtsps://, http:// or https://")
    if not path.exists():
        raise EdgeError(f"source not found: {path}; pass an image, a folder of images, a glob, a video file or a stream URL")
    return VideoFileSource(path)


def iter_frames(source: str | Path, max_frames: int | None = None) -> Iterator[Frame]:
    """The frames of an image, a folder, a glob or a video file, read straight through; corrupt ones skipped."""
    reader = open_source(source=str(source))
    if reader.live:
        raise EdgeError(f"iter_frames reads files; {reader.name} is a live source")
    reader.open()
    try:
        index = 0
        while max_frames is None or index < max_frames:
            try:
                grab = reader.read()
            except CorruptFrame:
                continue
            if grab is None:
                return
            yield Frame(index, reader.name, grab.time, grab.image, grab.position_ms)
            index += 1
    finally:
        reader.close()
