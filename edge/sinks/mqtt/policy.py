"""Which frames become MQTT messages: the publish mode's choice, and when a snapshot is due."""

from __future__ import annotations

from edge.detect.detections import Detections
from edge.sinks.mqtt.payloads import label_counts
from edge.sinks.mqtt.settings import PUBLISH_CHANGE, PUBLISH_INTERVAL, PublishMode


class FramePolicy:
    """``every`` frame, on a ``change`` of the count per label, or once per ``interval``; a snapshot when a
    wanted class is seen, at most once per ``snapshot_interval_s``. Called from the inference loop only."""

    def __init__(self, mode: PublishMode, snapshot_classes: frozenset[int], snapshot_interval_s: float):
        self.mode = mode
        self.snapshot_classes = snapshot_classes
        self.snapshot_interval_s = snapshot_interval_s
        self._last_counts: tuple | None = None
        self._last_publish_t = float("-inf")
        self._last_snapshot_t = float("-inf")

    def decide(self, dets: Detections, now: float) -> tuple[bool, bool]:
        """(publish this frame's detections, send a snapshot of it) at monotonic time ``now``."""
        publish = True
        if self.mode.kind == PUBLISH_CHANGE:
            counts = label_counts(dets)
            publish = counts != self._last_counts
            if publish:
                self._last_counts = counts
        elif self.mode.kind == PUBLISH_INTERVAL:
            publish = now - self._last_publish_t >= self.mode.interval_s
            if publish:
                self._last_publish_t = now
        snapshot = False
        wanted = self.snapshot_classes
        if wanted and len(dets) and now - self._last_snapshot_t >= self.snapshot_interval_s:
            snapshot = not wanted.isdisjoint(dets.class_id.tolist())
            if snapshot:
                self._last_snapshot_t = now
        return publish, snapshot
