"""Detections of each frame in, objects out: labels merged, tracks updated, zones and lines counted, events.

``ObjectTracker`` is the stage the pipeline runs after the detector when tracking is on; sinks get
its ``ObjectsUpdate`` beside the frame's detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge.detect.detections import Detections
from edge.errors import InvalidSetting
from edge.sources.base import Frame
from edge.track.events import DIRECTIONS, EventState, ObjectEvent
from edge.track.labels import LabelMap, label_slug
from edge.track.settings import EventSettings, TrackSettings
from edge.track.tracker import Tracker, Tracks
from edge.track.zones import Regions

MS_PER_S = 1000.0
WHOLE_FRAME = "all"  # the count topics of the whole frame: <prefix>/<device>/all/<label>


@dataclass(frozen=True)
class ObjectsUpdate:
    """One frame's objects: the confirmed tracks, each detection's track id (-1: none), this frame's
    events, and every count by its topic below ``<prefix>/<device>/`` (``door/person``, ``all/car``,
    ``gate/person/in``, ``door/all`` for a zone's total) with whether any count changed."""

    tracks: Tracks
    det_track_id: np.ndarray
    events: list[ObjectEvent]
    counts: dict[str, int]
    counts_changed: bool


class ObjectTracker:
    """Tracker, zones, lines and events of one camera. Not thread-safe: the inference loop owns it."""

    def __init__(self, settings: TrackSettings, names: Sequence[str], events: EventSettings = EventSettings()):
        settings.check_labels(names)
        self.settings = settings
        self.labels = LabelMap.build(names, settings.aliases)
        if WHOLE_FRAME in map(label_slug, settings.labels):
            raise InvalidSetting("labels", f"{WHOLE_FRAME!r} names the totals in count topics; give the label another name")
        self.regions = Regions.build(settings, self.labels)
        self.tracker = Tracker(settings, self.regions.labels)
        self.state = EventState(self.regions, self.labels, events)
        self._count_keys, self._count_index = _count_layout(self.regions, self.labels)
        self._counts = np.full(len(self._count_keys), -1, np.int64)
        self._offset: float | None = None  # Unix time minus the tracker's clock
        self._clock_last: float | None = None
        self._wh = (1, 1)

    @property
    def active(self) -> int:
        return self.tracker.active

    @property
    def created(self) -> int:
        """Objects confirmed since start."""
        return self.tracker.created

    @property
    def count_topics(self) -> tuple[str, ...]:
        """Every count's topic below ``<prefix>/<device>/``, in a fixed order."""
        return tuple(self._count_keys)

    def update(self, frame: Frame, dets: Detections) -> ObjectsUpdate:
        clock = frame_clock(frame)
        if self._offset is None or (self._clock_last is not None and clock < self._clock_last):
            self._offset = frame.time - clock
        self._clock_last = clock
        self._wh = frame.wh
        update = self.tracker.update(self.labels.apply(dets), clock, frame.wh)
        events = self.state.step(update, frame.image, frame.wh, self._to_unix)
        return self._result(update.tracks, update.det_track_id, events)

    def finish(self) -> ObjectsUpdate:
        """End every object (the stream stopped): their end events and counts back to zero."""
        ended = self.tracker.finish()
        events = self.state.end(ended, self._wh, self._to_unix)
        empty = Tracks.empty()
        self._offset = self._clock_last = None
        return self._result(empty, np.zeros(0, np.int64), events)

    def _to_unix(self, clock: np.ndarray) -> np.ndarray:
        return clock + (self._offset or 0.0)

    def _result(self, tracks: Tracks, det_track_id: np.ndarray, events: list[ObjectEvent]) -> ObjectsUpdate:
        regions, state = self.regions, self.state
        size = len(self.labels.names)
        zones = np.zeros((len(regions.zones) + 1, size), np.int64)
        pos = np.searchsorted(state.ids, tracks.id)
        inside = state.zone[pos] if len(tracks) else np.zeros((0, len(regions.zones)), bool)
        rows, columns = np.nonzero(inside)
        np.add.at(zones, (columns, tracks.class_id[rows]), 1)
        zones[-1] = np.bincount(tracks.class_id, minlength=size)[:size]
        totals = zones[:-1].sum(axis=1)
        values = np.concatenate([zones.ravel(), state.crossings.ravel(), totals])[self._count_index]
        changed = bool((values != self._counts).any())
        self._counts = values
        return ObjectsUpdate(tracks, det_track_id, events, dict(zip(self._count_keys, values.tolist())), changed)


def frame_clock(frame: Frame) -> float:
    """Seconds on the frame's own clock: a file's position (so a video read faster than real time keeps
    its timing), else the capture time."""
    return frame.position_ms / MS_PER_S if frame.position_ms is not None else frame.time


def _count_layout(regions: Regions, labels: LabelMap) -> tuple[list[str], np.ndarray]:
    """The count topics and where each value sits in the flattened (zones + whole frame, labels) and
    (lines, labels, directions) tables, then the zones' totals."""
    size = len(labels.names)
    keys, index = [], []
    for row, zone in enumerate(regions.zones):
        for label in np.flatnonzero(regions.zone_labels[row]):
            keys.append(f"{zone.name}/{label_slug(labels.names[label])}")
            index.append(row * size + label)
    whole = len(regions.zones)
    for label in regions.labels:
        keys.append(f"{WHOLE_FRAME}/{label_slug(labels.names[label])}")
        index.append(whole * size + label)
    base = (len(regions.zones) + 1) * size
    for row, line in enumerate(regions.lines):
        for label in np.flatnonzero(regions.line_labels[row]):
            for direction, name in enumerate(DIRECTIONS):
                keys.append(f"{line.name}/{label_slug(labels.names[label])}/{name}")
                index.append(base + (row * size + label) * 2 + direction)
    base += len(regions.lines) * size * 2
    for row, zone in enumerate(regions.zones):
        keys.append(f"{zone.name}/{WHOLE_FRAME}")
        index.append(base + row)
    return keys, np.asarray(index, np.int64)
