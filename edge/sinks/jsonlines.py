"""JSON lines, one object per frame: to stdout, or to a file rotated by size."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.sources.base import Frame

log = logging.getLogger(__name__)

TIME_DECIMALS = 3  # milliseconds are plenty for a capture timestamp
BYTES_PER_MB = 1024 * 1024
DEFAULT_JSON_MAX_MB = 10.0
DEFAULT_JSON_BACKUPS = 3


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
