"""Where results go: JSON lines (stdout or a size-rotated file), annotated images or an annotated video.

Every sink has ``write(frame, dets)`` (called by the inference loop, never by capture),
``stats(snapshot)`` (the periodic pipeline figures; sinks that have nowhere to put them ignore them)
and ``close()`` (flush at shutdown).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

import cv2

from edge.annotate import draw_detections
from edge.detections import Detections
from edge.errors import EdgeError
from edge.sources import IMAGE_SUFFIXES, Frame

log = logging.getLogger(__name__)

TIME_DECIMALS = 3  # milliseconds are plenty for a capture timestamp
BYTES_PER_MB = 1024 * 1024
DEFAULT_JSON_MAX_MB = 10.0
DEFAULT_JSON_BACKUPS = 3
VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # container -> a FourCC every OpenCV build writes
DEFAULT_VIDEO_FPS = 10.0  # for sources that report no rate (image folders, some cameras)


def frame_record(frame: Frame, dets: Detections, names: Sequence[str]) -> dict[str, Any]:
    """The JSON object published for one frame."""
    width, height = frame.wh
    return {
        "frame": frame.index,
        "source": frame.source,
        "time": round(frame.time, TIME_DECIMALS),
        "width": width,
        "height": height,
        "detections": dets.to_json(names),
    }


class JsonLinesSink:
    """One compact JSON object per line, flushed per frame so a reader sees each frame at once."""

    def __init__(self, stream: TextIO, names: Sequence[str]):
        self.stream = stream
        self.names = names

    def write(self, frame: Frame, dets: Detections) -> None:
        self.stream.write(json_line(frame, dets, self.names))
        self.stream.flush()

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        """Stats go to the log on stderr; stdout keeps one record per frame."""

    def close(self) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # the reader left, or the stream is already closed
            pass


def json_line(frame: Frame, dets: Detections, names: Sequence[str]) -> str:
    return json.dumps(frame_record(frame, dets, names), separators=(", ", ": ")) + "\n"


class RotatingJsonFile:
    """JSON lines to a file that is rotated by size: FILE, FILE.1 (newest) ... FILE.<backups>.

    A record is never split across files; the file is flushed per frame so a crash loses nothing
    already reported. Months of records fit in (backups + 1) × max_bytes.
    """

    def __init__(self, path: str | Path, names: Sequence[str], max_bytes: int, backups: int):
        if max_bytes < 1:
            raise EdgeError(f"--json-max-mb must be positive, received {max_bytes / BYTES_PER_MB:g}")
        if backups < 0:
            raise EdgeError(f"--json-backups must be 0 or more, received {backups}")
        self.path = Path(path)
        self.names = names
        self.max_bytes = max_bytes
        self.backups = backups
        self._file = self._open()

    def _open(self) -> TextIO:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise EdgeError(f"cannot write --json-out {self.path}: {exc.strerror}") from None

    def _rotate(self) -> None:
        self._file.close()
        for number in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            newer = self.path.with_name(f"{self.path.name}.{number - 1}") if number > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = self._open()

    def write(self, frame: Frame, dets: Detections) -> None:
        line = json_line(frame, dets, self.names)
        if self._file.tell() and self._file.tell() + len(line.encode()) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._file.flush()

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        self._file.close()


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

