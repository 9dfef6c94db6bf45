"""JSON lines, one object per frame: to stdout, or to a file rotated by size.

The file is a detection history: private (0600, its folder 0700 when created here), written a
whole line at a time (a write the disk cuts short is taken back), and a torn last line left by a
crash or a power cut is removed when the file is opened again, so records never run together.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.sinks.files import STATE_FILE_MODE, make_private_folder, os_problem, write_whole
from edge.sources.base import Frame

log = logging.getLogger(__name__)

TIME_DECIMALS = 3  # milliseconds are plenty for a capture timestamp
BYTES_PER_MB = 1024 * 1024
DEFAULT_JSON_MAX_MB = 10.0
DEFAULT_JSON_BACKUPS = 3
NEWLINE = b"\n"


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

    label = "JSON lines on stdout"

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

    A record is never split across files or torn; each is on disk (written, not fsynced) before
    the next frame. Months of records fit in (backups + 1) × max_bytes. A write the disk refuses
    raises EdgeError saying why (the pipeline counts it and tries again later).
    """

    def __init__(self, path: str | Path, names: Sequence[str], max_bytes: int, backups: int):
        if max_bytes < 1:
            raise EdgeError(f"--json-max-mb must be positive, received {max_bytes / BYTES_PER_MB:g}")
        if backups < 0:
            raise EdgeError(f"--json-backups must be 0 or more, received {backups}")
        self.path = Path(path)
        self.label = f"--json-out {self.path}"
        self.names = names
        self.max_bytes = max_bytes
        self.backups = backups
        try:
            self._fd = self._open()
        except OSError as exc:
            raise EdgeError(f"cannot write {self.label}: {os_problem(exc, self.path.parent)}") from None

    def _open(self) -> int:
        make_private_folder(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, STATE_FILE_MODE)
        try:
            _repair_torn_tail(fd, self.path)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for number in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            newer = self.path.with_name(f"{self.path.name}.{number - 1}") if number > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()

    def write(self, frame: Frame, dets: Detections) -> None:
        line = json_line(frame, dets, self.names).encode()
        try:
            if self._fd < 0:  # a rotation that failed on a full disk: try again
                self._fd = self._open()
            size = os.fstat(self._fd).st_size
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            write_whole(self._fd, line)
        except OSError as exc:
            raise EdgeError(f"cannot write {self.label}: {os_problem(exc, self.path.parent)}") from None

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _repair_torn_tail(fd: int, path: Path) -> None:
    """Cut an incomplete last record (no newline: a crash or a full disk mid-write) off the file."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == NEWLINE:
        return
    keep = 0
    step = 64 * 1024
    end = size
    while end > 0:
        start = max(0, end - step)
        chunk = os.pread(fd, end - start, start)
        found = chunk.rfind(NEWLINE)
        if found >= 0:
            keep = start + found + 1
            break
        end = start
    os.ftruncate(fd, keep)
    log.warning("%s ended in an incomplete record (%d bytes, from a crash or a full disk); removed it", path, size - keep)
