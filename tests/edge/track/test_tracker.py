"""The tracker on made-up scenes whose answer is known: ids kept, gaps bridged, tracks ended."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.detections import Detections
from edge.track.settings import TrackSettings
from edge.track import tracker as tracker_module
from edge.track.tracker import Tracker

FPS = 10.0
WH = (640, 480)


def dets(boxes, scores=None, classes=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(boxes, np.full(n, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32),
                      np.zeros(n, np.int64) if classes is None else np.asarray(classes, np.int64))


def box_at(x: float, y: float = 100.0, w: float = 40.0, h: float = 80.0) -> list[float]:
    return [x, y, x + w, y + h]


def run(tracker: Tracker, frames, start: int = 0):
    """Feed per-frame detections; returns the updates."""
    return [tracker.update(d, (start + i) / FPS, WH) for i, d in enumerate(frames)]


def test_a_moving_object_keeps_one_id_and_is_confirmed_after_min_hits():
    tracker = Tracker(TrackSettings(min_hits=3))
    updates = run(tracker, [dets([box_at(100 + 12 * i)]) for i in range(30)])  # 120 px/s: IoU with the last box ~0.55
    assert [len(u.tracks) for u in updates[:3]] == [0, 0, 1]
    assert updates[2].started.tolist() == [True]
    ids = {int(u.tracks.id[0]) for u in updates[2:]}
    assert ids == {1}
    last = updates[-1].tracks
    assert last.hits[0] == 30 and last.top_score[0] == pytest.approx(0.9)
    assert (updates[-1].det_track_id == 1).all()
    assert np.isfinite(last.history[0]).sum() == min(30, last.history.shape[1])


@pytest.mark.parametrize("beta, one_track", [(tracker_module.BETA, True), (0.0, False)], ids=["with-velocity", "without"])
def test_fast_motion_is_followed_thanks_to_the_velocity(monkeypatch, beta, one_track):
    # 20 px per frame, then 32: a 40 px wide box then overlaps its last position by IoU 0.11, below
    # match_iou 0.2; only the predicted position keeps the match (without it, the track breaks)
    monkeypatch.setattr(tracker_module, "BETA", beta)
    tracker = Tracker(TrackSettings(min_hits=1))
    xs = np.concatenate([50 + 20 * np.arange(10), 230 + 32 * np.arange(1, 10)])
    run(tracker, [dets([box_at(x)]) for x in xs])
    assert (tracker.created == 1) == one_track, tracker.created


def test_a_short_gap_is_bridged_and_a_long_one_ends_the_track():
    settings = TrackSettings(min_hits=1, lost_s=1.0)
    tracker = Tracker(settings)
    frames = [dets([box_at(100)])] * 5 + [Detections.empty()] * 5 + [dets([box_at(100)])] * 5  # 0.5 s gap
    updates = run(tracker, frames)
    assert tracker.created == 1 and all(len(u.ended) == 0 for u in updates)
    assert updates[7].tracks.seen.tolist() == [False]  # lost, still an object
    frames = [Detections.empty()] * 12  # 1.2 s gap
    updates = run(tracker, frames, start=15)
    ended_at = [i for i, u in enumerate(updates) if len(u.ended)]
    assert ended_at == [10]  # unseen for more than 1.0 s: frame 15 + 10 is 1.1 s after the last sighting


def test_a_low_score_detection_continues_a_track_but_never_starts_one():
    tracker = Tracker(TrackSettings(min_hits=1, high_score=0.5, low_score=0.1, new_score=0.6))
    run(tracker, [dets([box_at(100)], [0.9])] * 3)
    updates = run(tracker, [dets([box_at(101)], [0.2])] * 3, start=3)  # partly hidden: scores drop
    assert [u.tracks.seen.tolist() for u in updates] == [[True]] * 3
    fresh = Tracker(TrackSettings(min_hits=1, high_score=0.5, low_score=0.1, new_score=0.6))
    assert all(len(u.tracks) == 0 for u in run(fresh, [dets([box_at(100)], [0.2])] * 5))


def test_a_blip_shorter_than_min_hits_never_becomes_an_object():
    tracker = Tracker(TrackSettings(min_hits=3))
    updates = run(tracker, [dets([box_at(100)])] * 2 + [Detections.empty()] * 30)
    assert tracker.created == 0 and all(len(u.tracks) == 0 and len(u.ended) == 0 for u in updates)


def test_two_objects_passing_each_other_keep_their_ids():
    tracker = Tracker(TrackSettings(min_hits=1))
    frames = [dets([box_at(100 + 10 * i, y=100), box_at(400 - 10 * i, y=130)]) for i in range(30)]
    updates = run(tracker, frames)
    first = updates[0].tracks
    by_id = {int(i): x for i, x in zip(first.id, first.xyxy[:, 0])}
    last = updates[-1].tracks
    assert tracker.created == 2
    for track_id, x in zip(last.id.tolist(), last.xyxy[:, 0].tolist()):
        moving_right = by_id[track_id] < 200
        assert (x > 300) == moving_right  # each id ended on the side its object went to


def test_labels_are_kept_apart():
    tracker = Tracker(TrackSettings(min_hits=1))
    updates = run(tracker, [dets([box_at(100)], classes=[0])] * 3 + [dets([box_at(100)], classes=[2])] * 3)
    assert tracker.created == 2  # a car where a person stood is another object
    assert sorted(updates[-1].tracks.class_id.tolist()) == [0, 2]


def test_only_the_chosen_classes_are_tracked():
    tracker = Tracker(TrackSettings(min_hits=1), class_ids=(2,))
    updates = run(tracker, [dets([box_at(100), box_at(300)], classes=[0, 2])] * 3)
    assert updates[-1].tracks.class_id.tolist() == [2]
    assert updates[-1].det_track_id.tolist() == [-1, 1]


def test_an_object_standing_still_becomes_stationary_and_keeps_longer():
    settings = TrackSettings(min_hits=1, stationary_s=2.0, lost_s=0.5, stationary_lost_s=5.0)
    tracker = Tracker(settings)
    jitter = np.random.default_rng(0).normal(0, 1.0, (40, 4))  # a pixel of detection noise
    updates = run(tracker, [dets([np.add(box_at(100), j)]) for j in jitter])
    flags = [bool(u.tracks.stationary[0]) for u in updates]
    assert flags.index(True) == pytest.approx(20, abs=2)  # 2 s at 10 fps
    assert all(flags[flags.index(True):])
    updates = run(tracker, [Detections.empty()] * 30, start=40)  # 3 s unseen: a moving one would have ended
    assert all(len(u.ended) == 0 for u in updates)
    moved = run(tracker, [dets([box_at(100 + 15 * i)]) for i in range(1, 6)], start=70)
    assert not moved[-1].tracks.stationary[0] and int(moved[-1].tracks.id[0]) == 1


def test_a_track_leaving_the_frame_ends_at_once():
    tracker = Tracker(TrackSettings(min_hits=1, lost_s=10.0))
    run(tracker, [dets([box_at(520 + 20 * i)]) for i in range(5)])  # heading out at the right edge
    updates = run(tracker, [Detections.empty()] * 5, start=5)
    assert sum(len(u.ended) for u in updates) == 1
    assert len(updates[-1].tracks) == 0


def test_time_going_back_starts_a_new_scene():
    tracker = Tracker(TrackSettings(min_hits=1))
    run(tracker, [dets([box_at(100)])] * 3, start=100)
    update = tracker.update(dets([box_at(100)]), 0.0, WH)  # a looped file starts over
    assert update.ended.id.tolist() == [1] and update.tracks.id.tolist() == [2]


def test_finish_ends_every_object():
    tracker = Tracker(TrackSettings(min_hits=1))
    run(tracker, [dets([box_at(100), box_at(300)])] * 3)
    assert sorted(tracker.finish().id.tolist()) == [1, 2]
    assert tracker.active == 0
