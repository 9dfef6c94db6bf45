"""Where results go: JSON lines on a stream, annotated images in a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence, TextIO

import cv2

from edge.annotate import draw_detections
from edge.detections import Detections
from edge.errors import EdgeError
from edge.sources import IMAGE_SUFFIXES, Frame

TIME_DECIMALS = 3  # milliseconds are plenty for a capture timestamp


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
        self.stream.write(json.dumps(frame_record(frame, dets, self.names), separators=(", ", ": ")) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


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

    def close(self) -> None:
        pass

