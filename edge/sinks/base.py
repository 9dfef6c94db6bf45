"""The interface every sink implements; the pipeline calls it, never the capture thread."""

from __future__ import annotations

from typing import Any, Protocol

from edge.detect.detections import Detections
from edge.sources.base import Frame


class Sink(Protocol):
    """``write`` per processed frame, ``stats`` with each periodic snapshot (ignored where there is
    nowhere to put it), ``close`` once at shutdown to flush.

    With tracking on, a sink that also has ``write_objects(frame, dets, update)`` gets that instead of
    ``write``, with the frame's ``edge.track.ObjectsUpdate`` (frame None for the objects ended at
    shutdown); sinks without it keep getting ``write``.
    """

    def write(self, frame: Frame, dets: Detections) -> None: ...

    def stats(self, snapshot: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
