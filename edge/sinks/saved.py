"""Annotated frames for a human to look at: one JPEG per frame in a folder, or one video file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2

from edge.detect.annotate import draw_detections
from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.sources.base import IMAGE_SUFFIXES, Frame

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # container -> a FourCC every OpenCV build writes
DEFAULT_VIDEO_FPS = 10.0  # for sources that report no rate (image folders, some cameras)


class AnnotatedImageSink:
    """Each frame with its detections drawn, saved as ``<image stem>.jpg`` or ``frame_<n>.jpg``."""

    def __init__(self, folder: str | Path, names: Sequence[str]):
        self.folder = Path(folder)
        self.names = names
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create --save folder {self.folder}: {exc.strerror}") from None

    def write(self, frame: Frame, dets: Detections) -> None:
        source = Path(frame.source)
        # still images keep their name; video frames are numbered
        name = f"{source.stem}.jpg" if source.suffix.lower() in IMAGE_SUFFIXES else f"{source.stem}_{frame.index:06d}.jpg"
        target = self.folder / name
        if not cv2.imwrite(str(target), draw_detections(frame.image, dets, self.names)):
            raise EdgeError(f"cannot write {target}; check that --save points at a writable folder")

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class AnnotatedVideoSink:
    """Annotated frames into one video file (``--save out.mp4`` or ``.avi``), sized by the first frame."""

    def __init__(self, path: str | Path, names: Sequence[str], fps: float | None):
        self.path = Path(path)
        self.names = names
        self.fps = fps or DEFAULT_VIDEO_FPS
        fourcc = VIDEO_SUFFIXES.get(self.path.suffix.lower())
        if fourcc is None:
            raise EdgeError(f"--save {self.path}: a video must end in {' or '.join(VIDEO_SUFFIXES)}")
        self.fourcc = cv2.VideoWriter_fourcc(*fourcc)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create the folder of --save {self.path}: {exc.strerror}") from None
        self._writer: cv2.VideoWriter | None = None
        self._size_wh: tuple[int, int] | None = None

    def write(self, frame: Frame, dets: Detections) -> None:
        if self._writer is None:
            self._size_wh = frame.wh
            self._writer = cv2.VideoWriter(str(self.path), self.fourcc, self.fps, self._size_wh)
            if not self._writer.isOpened():
                raise EdgeError(f"cannot write the video {self.path}; check that the folder is writable")
        image = draw_detections(frame.image, dets, self.names)
        if frame.wh != self._size_wh:  # a camera that came back at another resolution
            image = cv2.resize(image, self._size_wh)
        self._writer.write(image)

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the index: an unreleased .mp4 does not play
            self._writer = None


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
