"""Annotated frames for a human to look at: one JPEG per frame in a folder, or one video file.

These are the user's output, written where ``--save`` points and with the user's umask, unlike
the detection history and the MQTT spool, which are state kept private. A full disk is said
plainly (with the free space), never blamed on permissions, and costs no more than the frames it
could not take: the folder is kept within a count and a size (oldest frames removed first), each
JPEG is written whole or not at all, and a video is closed while there is still room to finish it,
so it stays playable; it goes on in a new file once space is back.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2

from edge.detect.annotate import draw_detections
from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.sinks.files import free_bytes, free_kb, os_problem
from edge.sources.base import IMAGE_SUFFIXES, Frame

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}  # container -> a FourCC every OpenCV build writes
DEFAULT_VIDEO_FPS = 10.0  # for sources that report no rate (image folders, some cameras)
DEFAULT_SAVE_MAX_FILES = 10_000
DEFAULT_SAVE_MAX_MB = 1024.0
BYTES_PER_MB = 1024 * 1024
# A video is closed when less than this is free: what FFmpeg still holds in its buffers (256 kB
# for mp4v) plus the index written at the end, with a wide margin.
VIDEO_RESERVE_BYTES = 2 * BYTES_PER_MB
FRAME_FILE = re.compile(r".+_\d{6}\.jpg")  # the frames this sink names itself (video and camera frames)
SAFE_STEM = re.compile(r"[^A-Za-z0-9._-]+")
TEMP_SUFFIX = ".part"


class AnnotatedImageSink:
    """Each frame with its detections drawn, saved as ``<image stem>.jpg`` or ``<source>_<n>.jpg``."""

    def __init__(self, folder: str | Path, names: Sequence[str], max_files: int = DEFAULT_SAVE_MAX_FILES,
                 max_mb: float = DEFAULT_SAVE_MAX_MB):
        self.folder = Path(folder)
        self.label = f"--save {self.folder}"
        self.names = names
        self.max_files = max_files
        self.max_bytes = max_mb * BYTES_PER_MB
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"cannot create --save folder {self.folder}: {exc.strerror}") from None
        # oldest first: frames an earlier run left (by their time), then this run's in writing order
        earlier = sorted((p for p in self.folder.iterdir() if FRAME_FILE.fullmatch(p.name) and p.is_file()),
                         key=lambda p: p.stat().st_mtime)
        self._kept: dict[Path, int] = {p: p.stat().st_size for p in earlier}  # insertion order: oldest first
        self._kept_bytes = sum(self._kept.values())

    def write(self, frame: Frame, dets: Detections) -> None:
        source = Path(frame.source)
        # still images keep their name; video and camera frames are numbered
        if source.suffix.lower() in IMAGE_SUFFIXES:
            name = f"{source.stem}.jpg"
        else:
            name = f"{SAFE_STEM.sub('_', source.stem) or 'frame'}_{frame.index:06d}.jpg"
        target = self.folder / name
        ok, encoded = cv2.imencode(".jpg", draw_detections(frame.image, dets, self.names))
        if not ok:
            raise EdgeError(f"cannot encode frame {frame.index} as JPEG for {target}")
        data = encoded.tobytes()
        self._write_whole(target, data)
        self._keep(target, len(data))

    def _write_whole(self, target: Path, data: bytes) -> None:
        """The file complete or not at all: written under a temporary name, then renamed."""
        temporary = target.with_name(target.name + TEMP_SUFFIX)
        try:
            with open(temporary, "wb") as f:
                f.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise EdgeError(f"cannot write {target}: {os_problem(exc, self.folder)}") from None

    def _keep(self, target: Path, size: int) -> None:
        """Count the file written, then remove the oldest while over either bound."""
        self._kept_bytes += size - self._kept.pop(target, 0)  # a file overwritten counts once, newest
        self._kept[target] = size
        while len(self._kept) > self.max_files or (self._kept_bytes > self.max_bytes and len(self._kept) > 1):
            oldest = next(iter(self._kept))
            self._kept_bytes -= self._kept.pop(oldest)
            oldest.unlink(missing_ok=True)

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class AnnotatedVideoSink:
    """Annotated frames into one video file (``--save out.mp4`` or ``.avi``), sized by the first frame.

    OpenCV's writer reports nothing per frame and cannot finish a file on a full disk, so the free
    space is watched: below VIDEO_RESERVE_BYTES the file is closed (playable, with the frames so
    far) and frames are refused until space is back, when ``out-2.mp4`` begins. ``close()``
    checks that the file opens as a video and raises EdgeError when it does not.
    """

    def __init__(self, path: str | Path, names: Sequence[str], fps: float | None):
        self.path = Path(path)
        self.label = f"--save {self.path}"
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
        self.files: list[Path] = []  # every file begun, in order
        self.frames = 0  # frames handed to the current file
        self._writer: cv2.VideoWriter | None = None
        self._size_wh: tuple[int, int] | None = None

    def write(self, frame: Frame, dets: Detections) -> None:
        folder = self.path.parent
        if free_bytes(folder) < VIDEO_RESERVE_BYTES:
            if self._writer is not None:
                current = self.files[-1]
                self._finish()
                log.warning("disk nearly full (%s kB free in %s): closed %s after %d frames so that it stays playable; "
                            "frames are not saved until there is space again", free_kb(folder), folder, current, self.frames)
            raise EdgeError(f"no room for {self.label}: {free_kb(folder)} kB free in {folder}, "
                            f"{VIDEO_RESERVE_BYTES // 1024} kB needed to keep the video playable")
        if self._writer is None:
            self._begin(frame.wh)
        image = draw_detections(frame.image, dets, self.names)
        if frame.wh != self._size_wh:  # a camera that came back at another resolution
            image = cv2.resize(image, self._size_wh)
        self._writer.write(image)
        self.frames += 1

    def _begin(self, size_wh: tuple[int, int]) -> None:
        target = self.path if not self.files else self.path.with_name(f"{self.path.stem}-{len(self.files) + 1}{self.path.suffix}")
        writer = cv2.VideoWriter(str(target), self.fourcc, self.fps, self._size_wh or size_wh)
        if not writer.isOpened():
            writer.release()
            raise EdgeError(f"cannot write the video {target}; check that the folder is writable "
                            f"({free_kb(target.parent)} kB free)")
        self._size_wh = self._size_wh or size_wh
        self._writer = writer
        self.files.append(target)
        self.frames = 0

    def _finish(self) -> None:
        """Release the writer (it writes the index: an unreleased .mp4 does not play) and check the file."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.release()
        target = self.files[-1]
        check = cv2.VideoCapture(str(target))
        try:
            playable = check.isOpened() and check.read()[0]
        finally:
            check.release()
        if not playable:
            raise EdgeError(f"the video {target} could not be finished and will not play "
                            f"({free_kb(target.parent)} kB free in {target.parent})")

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        self._finish()


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
