"""Events from made-up scenes: news only (appear, zone, line, stationary, better snapshot, end), never per frame."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.detections import Detections
from edge.sources.base import Frame
from edge.track import EVENT_END, EVENT_NEW, EVENT_UPDATE, EventSettings, ObjectTracker, TrackSettings

NAMES = ("person", "bicycle", "car")
WH = (640, 480)
FPS = 10.0
LEFT_HALF = {"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
MIDDLE_LINE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]]}  # drawn downwards: moving left is "in"


def frame(index: int) -> Frame:
    image = np.full((WH[1], WH[0], 3), index % 255, np.uint8)
    return Frame(index, "test", 1_700_000_000.0 + index / FPS, image, position_ms=index * 1000 / FPS)


def person(x: float, score: float = 0.9) -> Detections:
    return Detections(np.array([[x, 200, x + 40, 300]], np.float32), np.array([score], np.float32), np.zeros(1, np.int64))


def run(tracker: ObjectTracker, detections, start: int = 0):
    """Every event of the frames, as (frame index, event)."""
    out = []
    for i, dets in enumerate(detections, start=start):
        out += [(i, e) for e in tracker.update(frame(i), dets).events]
    return out


def test_an_object_standing_in_view_is_told_twice_not_per_frame():
    tracker = ObjectTracker(TrackSettings(stationary_s=1000.0), NAMES, EventSettings(snapshot=False))
    events = run(tracker, [person(100)] * 300) + [(300, e) for e in tracker.finish().events]
    assert [e.kind for _, e in events] == [EVENT_NEW, EVENT_END]
    new, end = events[0][1], events[1][1]
    assert new.before is None and end.before == new.after
    assert end.after.end_time == pytest.approx(1_700_000_000.0 + 299 / FPS)
    assert new.after.start_time == pytest.approx(1_700_000_000.0)  # the first sighting, not the confirmation


def test_zone_entered_and_left_once_each_despite_jitter_on_the_edge():
    tracker = ObjectTracker(TrackSettings(zones=[LEFT_HALF]), NAMES, EventSettings(snapshot=False))
    walk_in = [person(100 + 10 * i) for i in range(20)]  # bottom centre at x = 120 .. 310 of 640
    edge = [person(300 + (3 if i % 2 else -3)) for i in range(20)]  # anchor flickers across x = 320 every frame
    walk_out = [person(303 + 10 * i) for i in range(1, 20)]
    events = run(tracker, walk_in + edge + walk_out)
    changes = [(e.kind, e.changes) for _, e in events]
    assert changes[0] == (EVENT_NEW, {}) and events[0][1].after.zones == ("left",)
    assert len({e.after.id for _, e in events}) == 1
    assert [c for k, c in changes if "left" in c] == [{"left": ["left"]}]  # flicker produced nothing
    assert events[-1][1].after.entered_zones == ("left",) and events[-1][1].after.zones == ()


def test_counts_follow_the_zone():
    tracker = ObjectTracker(TrackSettings(zones=[LEFT_HALF]), NAMES, EventSettings(snapshot=False))
    counts = []
    for i in range(40):
        update = tracker.update(frame(i), person(100 + 10 * i))
        counts.append((update.counts["left/person"], update.counts["all/person"], update.counts["left/all"]))
    assert counts[0] == (0, 0, 0)  # not yet an object
    assert counts[5] == (1, 1, 1)
    assert counts[-1] == (0, 1, 0)
    assert tracker.finish().counts == {"left/person": 0, "all/person": 0, "left/all": 0}


def test_line_crossings_are_counted_by_direction():
    tracker = ObjectTracker(TrackSettings(lines=[MIDDLE_LINE]), NAMES, EventSettings(snapshot=False))
    there = [person(200 + 10 * i) for i in range(30)]  # left to right: to the left of a line drawn downwards
    events = run(tracker, there + there[::-1])
    crossed = [e.changes["crossed"] for _, e in events if "crossed" in e.changes]
    assert crossed == [{"gate": "out"}, {"gate": "in"}]
    counts = tracker.update(frame(60), person(200)).counts
    assert (counts["gate/person/in"], counts["gate/person/out"]) == (1, 1)


def test_stationary_is_told_when_it_starts_and_ends_and_nothing_between():
    tracker = ObjectTracker(TrackSettings(stationary_s=2.0), NAMES, EventSettings(snapshot_wait_s=0.0))
    scores = 0.5 + 0.4 * np.random.default_rng(0).random(100)  # scores wander: a better snapshot every now and then
    standing = [person(100, s) for s in scores]
    leaving = [person(100 + 25 * i) for i in range(1, 8)]
    events = run(tracker, standing + leaving)
    parked = [i for i, e in events if e.changes.get("stationary") is True]
    moving = [i for i, e in events if e.changes.get("stationary") is False]
    assert len(parked) == 1 and len(moving) == 1
    assert not [i for i, e in events if parked[0] < i < moving[0]]  # no re-alerts while it stands


def test_snapshots_come_with_new_and_with_better_frames_at_most_one_per_event():
    settings = EventSettings(snapshot_gain=0.1, snapshot_wait_s=1.0)
    tracker = ObjectTracker(TrackSettings(stationary_s=1000.0), NAMES, settings)
    scores = [0.55] * 5 + [0.6] * 10 + [0.9] * 30  # +0.05 is not better; +0.35 is, once the wait has passed
    events = run(tracker, [person(100 + i, s) for i, s in enumerate(scores)])
    with_snapshot = [(i, e.kind) for i, e in events if e.snapshot is not None]
    assert with_snapshot == [(2, EVENT_NEW), (15, EVENT_UPDATE)]
    snapshot = events[-1][1].snapshot
    assert snapshot.score == pytest.approx(0.9) and snapshot.label == "person"
    assert snapshot.image.base is None  # a copy: the frame may be reused
    x1, y1, x2, y2 = snapshot.box
    assert (x2 - x1, y2 - y1) == (40, 100) and x1 > 0 and y1 > 0  # the margin is around the box
