"""Object events: what a subscriber hears about a tracked object, only when there is news.

* ``new``: a track is confirmed (it has been matched ``min_hits`` frames in a row);
* ``update``: it entered or left a zone, crossed a line, started or stopped standing still, or a
  frame scored ``snapshot_gain`` better than its last snapshot;
* ``end``: it has not been seen for ``lost_s`` (or ``stationary_lost_s``) seconds, or the stream stopped.

Never per frame. A stationary object raises no better-snapshot updates: a parked car is news when it
parks and when it leaves, not every minute in between. Each event carries the object's state
``before`` (as last told) and ``after``, and at most one snapshot (a crop of its best frame so far).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.track.labels import LabelMap
from edge.track.settings import EventSettings
from edge.track.tracker import TrackerUpdate, Tracks
from edge.track.zones import ZONE_FRAMES, Regions

EVENT_NEW, EVENT_UPDATE, EVENT_END = "new", "update", "end"
DIRECTIONS = ("in", "out")  # crossing to the right of the line as drawn, to its left
CROP_STEP = 0.02  # a crop is copied again only when the score rose at least this much: bounded copying


@dataclass(frozen=True)
class Snapshot:
    """A crop of the object's best frame so far (owned: a copy), the object's box in crop pixels."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    label: str
    score: float


@dataclass(frozen=True)
class ObjectState:
    """What is told about an object; times are Unix seconds, the box is xyxy in frame pixels."""

    id: int
    label: str
    score: float
    top_score: float
    box: tuple[float, float, float, float]
    frame_wh: tuple[int, int]
    zones: tuple[str, ...]
    entered_zones: tuple[str, ...]
    lines: tuple[tuple[str, str], ...]  # (line, direction of its latest crossing)
    stationary: bool
    hits: int
    start_time: float
    last_seen: float
    end_time: float | None = None


@dataclass(frozen=True)
class ObjectEvent:
    kind: str
    time: float
    before: ObjectState | None
    after: ObjectState
    changes: dict  # entered / left: zone names; crossed: {line: direction}; stationary: bool; snapshot: True
    snapshot: Snapshot | None = None


class EventState:
    """Per-object memory between frames; rows follow track ids, which only grow, so stay sorted."""

    def __init__(self, regions: Regions, label_map: LabelMap, settings: EventSettings):
        self.regions = regions
        self.label_map = label_map
        self.settings = settings
        zones, lines = len(regions.zones), len(regions.lines)
        self._zone_names = np.array([z.name for z in regions.zones] or [""], dtype=object)[:zones]
        self.ids = np.zeros(0, np.int64)
        self.zone = np.zeros((0, zones), bool)
        self.pending = np.zeros((0, zones), np.int64)
        self.entered = np.zeros((0, zones), bool)
        self.anchor = np.zeros((0, lines, 2))
        self.last_cross = np.zeros((0, lines), np.int64)
        self.stationary = np.zeros(0, bool)
        self.held = np.zeros(0)  # score of the crop held
        self.sent = np.zeros(0)  # score of the snapshot last published
        self.sent_t = np.zeros(0)  # when (tracker clock)
        self.crossings = np.zeros((lines, len(label_map.names), 2), np.int64)  # running counts: in, out
        self._crops: dict[int, Snapshot] = {}
        self._told: dict[int, ObjectState] = {}

    def step(self, update: TrackerUpdate, image: np.ndarray | None, wh: tuple[int, int],
             to_unix: Callable[[np.ndarray], np.ndarray]) -> list[ObjectEvent]:
        """This frame's events, after folding its tracks into the memory."""
        tracks, started = update.tracks, update.started
        if not len(tracks):
            return self.end(update.ended, wh, to_unix)  # an empty scene: nothing else to look at
        self._add(tracks, started, wh)
        pos = np.searchsorted(self.ids, tracks.id)
        seen = tracks.seen
        raw = self.regions.zone_membership(tracks.xyxy, tracks.class_id, wh)
        current = self.zone[pos]
        differ = (raw != current) & seen[:, None]
        pending = np.where(differ, self.pending[pos] + 1, np.where(seen[:, None], 0, self.pending[pos]))
        flip = pending >= ZONE_FRAMES
        pending[flip] = 0
        now_zone = current ^ flip
        self.zone[pos], self.pending[pos] = now_zone, pending
        self.entered[pos] |= now_zone
        entered, left = flip & now_zone, flip & ~now_zone
        points = self.regions.line_points(tracks.xyxy, wh)
        crossed = self.regions.line_crossings(self.anchor[pos], points, tracks.class_id) * seen[:, None]
        self.anchor[pos[seen]] = points[seen]
        self.last_cross[pos] = np.where(crossed != 0, crossed, self.last_cross[pos])
        rows, lines = np.nonzero(crossed)
        np.add.at(self.crossings, (lines, tracks.class_id[rows], (crossed[rows, lines] < 0).astype(np.int64)), 1)
        settled = (tracks.stationary != self.stationary[pos]) & ~started
        self.stationary[pos] = tracks.stationary
        better = np.zeros(len(tracks), bool)
        if self.settings.snapshot and image is not None:
            take = seen & (started | (tracks.improved & (tracks.score >= self.held[pos] + CROP_STEP)))
            for row in np.flatnonzero(take):
                self._crops[int(tracks.id[row])] = self._crop(image, tracks, row)
            self.held[pos[take]] = tracks.score[take]
            better = (~started & ~tracks.stationary & (self.held[pos] >= self.sent[pos] + self.settings.snapshot_gain)
                      & (tracks.last_t - self.sent_t[pos] >= self.settings.snapshot_wait_s))
        news = started | entered.any(axis=1) | left.any(axis=1) | settled | (crossed != 0).any(axis=1) | better
        times = to_unix(np.stack([tracks.first_t, tracks.last_t], axis=1)) if len(tracks) else np.zeros((0, 2))
        events = []
        for row in np.flatnonzero(news):
            changes: dict = {}
            for key, mask in (("entered", entered[row]), ("left", left[row])):
                if mask.any():
                    changes[key] = list(self._zone_names[mask])
            if crossed[row].any():
                changes["crossed"] = {self.regions.lines[c].name: DIRECTIONS[int(crossed[row, c] < 0)]
                                      for c in np.flatnonzero(crossed[row])}
            if settled[row]:
                changes["stationary"] = bool(tracks.stationary[row])
            snapshot = self._snapshot_due(int(tracks.id[row]), pos[row], bool(started[row] or better[row]), tracks.last_t[row])
            if snapshot is not None:
                changes["snapshot"] = True
            kind = EVENT_NEW if started[row] else EVENT_UPDATE
            events.append(self._tell(kind, tracks, row, pos[row], times[row], wh, changes, snapshot))
        events += self.end(update.ended, wh, to_unix)
        return events

    def _tell(self, kind: str, tracks: Tracks, row: int, at: int, times: np.ndarray, wh, changes: dict,
              snapshot: Snapshot | None, end: bool = False) -> ObjectEvent:
        track_id = int(tracks.id[row])
        after = ObjectState(
            id=track_id, label=self.label_map.label(int(tracks.class_id[row])), score=float(tracks.score[row]),
            top_score=float(tracks.top_score[row]), box=tuple(float(v) for v in tracks.xyxy[row]), frame_wh=wh,
            zones=tuple(self._zone_names[self.zone[at]]) if not end else (),
            entered_zones=tuple(self._zone_names[self.entered[at]]),
            lines=tuple((self.regions.lines[c].name, DIRECTIONS[int(self.last_cross[at, c] < 0)])
                        for c in np.flatnonzero(self.last_cross[at])),
            stationary=bool(tracks.stationary[row]), hits=int(tracks.hits[row]),
            start_time=float(times[0]), last_seen=float(times[1]), end_time=float(times[1]) if end else None)
        before = self._told.get(track_id)
        self._told[track_id] = after
        return ObjectEvent(kind, after.last_seen, before, after, changes, snapshot)

    def _snapshot_due(self, track_id: int, at: int, due: bool, t: float) -> Snapshot | None:
        crop = self._crops.get(track_id)
        if crop is None or not due:
            return None
        self.sent[at], self.sent_t[at] = self.held[at], t
        return crop

    def end(self, ended: Tracks, wh, to_unix) -> list[ObjectEvent]:
        """The end events of ``ended`` tracks; their memory is dropped."""
        if not len(ended):
            return []
        pos = np.searchsorted(self.ids, ended.id)
        times = to_unix(np.stack([ended.first_t, ended.last_t], axis=1))
        events = []
        for row in range(len(ended)):
            track_id = int(ended.id[row])
            at = pos[row]
            due = self.held[at] >= self.sent[at] + self.settings.snapshot_gain
            snapshot = self._snapshot_due(track_id, at, bool(due), ended.last_t[row])
            changes = {"left": list(self._zone_names[self.zone[at]])} if self.zone[at].any() else {}
            if snapshot is not None:
                changes["snapshot"] = True
            events.append(self._tell(EVENT_END, ended, row, at, times[row], wh, changes, snapshot, end=True))
            self._crops.pop(track_id, None)
            self._told.pop(track_id, None)
        keep = ~np.isin(self.ids, ended.id)
        for name in ("ids", "zone", "pending", "entered", "anchor", "last_cross", "stationary", "held", "sent", "sent_t"):
            setattr(self, name, getattr(self, name)[keep])
        return events

    def _add(self, tracks: Tracks, started: np.ndarray, wh) -> None:
        if not started.any():
            return
        new = tracks.id[started]
        zone = self.regions.zone_membership(tracks.xyxy[started], tracks.class_id[started], wh)
        m = len(new)
        self.ids = np.concatenate([self.ids, new])
        self.zone = np.concatenate([self.zone, zone])
        self.pending = np.concatenate([self.pending, np.zeros_like(zone, np.int64)])
        self.entered = np.concatenate([self.entered, zone])
        self.anchor = np.concatenate([self.anchor, self.regions.line_points(tracks.xyxy[started], wh)])
        self.last_cross = np.concatenate([self.last_cross, np.zeros((m, len(self.regions.lines)), np.int64)])
        self.stationary = np.concatenate([self.stationary, tracks.stationary[started]])
        self.held = np.concatenate([self.held, np.zeros(m)])
        self.sent = np.concatenate([self.sent, np.zeros(m)])
        self.sent_t = np.concatenate([self.sent_t, np.zeros(m)])

    def _crop(self, image: np.ndarray, tracks: Tracks, row: int) -> Snapshot:
        height, width = image.shape[:2]
        x1, y1, x2, y2 = tracks.xyxy[row].astype(np.float64)
        mx, my = (x2 - x1) * self.settings.crop_margin, (y2 - y1) * self.settings.crop_margin
        left, top = int(max(x1 - mx, 0)), int(max(y1 - my, 0))
        right, bottom = int(min(x2 + mx, width)), int(min(y2 + my, height))
        right, bottom = max(right, left + 1), max(bottom, top + 1)
        crop = image[top:bottom, left:right].copy()
        box = (int(x1) - left, int(y1) - top, int(x2) - left, int(y2) - top)
        return Snapshot(crop, box, self.label_map.label(int(tracks.class_id[row])), float(tracks.score[row]))
