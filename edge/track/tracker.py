"""A ByteTrack-style multi-object tracker: detections of each frame matched to tracks by IoU, numpy only.

Per frame (``Tracker.update``):

1. every track's box is predicted to the frame's time with its constant velocity;
2. sure detections (score >= ``high_score``) are matched to the confirmed tracks, lost ones included;
3. unsure ones (``low_score`` <= score < ``high_score``) may still continue a track that was seen in
   the previous frame: an occluded or blurred object keeps its id instead of being dropped;
4. what is left of the sure detections continues new (tentative) tracks, and the rest start tracks
   if they score ``new_score``; a tentative track missed once is forgotten, one matched ``min_hits``
   frames in a row is confirmed and becomes an object;
5. a confirmed track unseen for ``lost_s`` seconds (``stationary_lost_s`` once it stands still) ends.

Motion is an alpha-beta filter on box centre and size (a steady-state Kalman filter for constant
velocity): no covariance per track, so a frame costs a few array operations whatever the count.
Times are seconds, so the settings mean the same at 2 fps on a Pi as at 30 fps on a desktop.
A track keeps the label of the detection that started it and is matched only to detections of that
label; labels the model confuses for a scene are merged before tracking (``TrackSettings.aliases``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.detect.detections import Detections
from edge.track.assign import UNMATCHED, greedy_match, iou_matrix, paired_iou
from edge.track.settings import TrackSettings

LOW_MATCH_IOU = 0.5  # unsure detections need a closer overlap to continue a track (ByteTrack's value)
TENTATIVE_MATCH_IOU = 0.3
ALPHA = 0.6  # share of the measurement in the new position
BETA = 0.3  # share of the residual (per frame interval) taken into the velocity
MIN_SIZE = 1.0  # px: a predicted box never shrinks below this
HISTORY = 32  # recent scores kept per track

_FLOAT_FIELDS = ("first_t", "last_t", "best_t", "score", "top_score", "still_since")


@dataclass(frozen=True)
class Tracks:
    """k tracked objects as parallel arrays (like ``Detections``); boxes are the last measured, xyxy pixels.

    ``seen``: matched in this frame; ``improved``: this frame is its best so far (a better snapshot);
    ``det_index``: the detection of this frame it was matched to, -1 when unseen;
    ``history``: its recent scores, oldest first, NaN-padded on the right.
    """

    id: np.ndarray
    class_id: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    top_score: np.ndarray
    hits: np.ndarray
    first_t: np.ndarray
    last_t: np.ndarray
    best_t: np.ndarray
    stationary: np.ndarray
    seen: np.ndarray
    improved: np.ndarray
    det_index: np.ndarray
    history: np.ndarray

    def __len__(self) -> int:
        return self.id.shape[0]

    @classmethod
    def empty(cls) -> Tracks:
        return Tracker(TrackSettings())._view(np.zeros(0, bool))


@dataclass(frozen=True)
class TrackerUpdate:
    """One frame's result: the confirmed tracks alive after it, those confirmed in it, those that ended."""

    tracks: Tracks
    started: np.ndarray  # bool per row of ``tracks``: confirmed in this frame
    ended: Tracks
    det_track_id: np.ndarray  # (n,) per detection of the frame: the confirmed track it belongs to, or -1


class Tracker:
    """Tracks of one camera. Not thread-safe: the inference loop owns it."""

    def __init__(self, settings: TrackSettings, class_ids: tuple[int, ...] | None = None):
        """``class_ids``: the classes to track (None: all); the caller maps labels to ids."""
        self.settings = settings
        self._classes = None if class_ids is None else np.asarray(class_ids, np.int64)
        self._next_id = 1
        self._t: float | None = None
        self.created = 0  # confirmed tracks since start
        self._rows = _empty_rows()

    @property
    def active(self) -> int:
        """Confirmed tracks alive now."""
        return int(self._rows["confirmed"].sum())

    def update(self, dets: Detections, t: float, wh: tuple[int, int] | None = None) -> TrackerUpdate:
        """Match ``dets`` (one frame, pixels) taken at ``t`` seconds to the tracks; see the module doc.

        With the frame's ``wh``, an unseen track whose predicted centre has left the frame ends now
        instead of after ``lost_s``: it drove or walked out of view.
        """
        ended_early = None
        if self._t is not None and t < self._t:  # the clock went back (a looped file): a new scene
            ended_early = self._end(self._rows["confirmed"])
            self._rows = _empty_rows()
        self._t = t
        n = len(dets)
        if n == 0 and not len(self._rows["id"]) and ended_early is None:  # nothing in view, nothing to end
            empty = self._view(np.zeros(0, bool))
            return TrackerUpdate(empty, np.zeros(0, bool), empty, np.zeros(0, np.int64))
        wanted = np.ones(n, bool) if self._classes is None else np.isin(dets.class_id, self._classes)
        s = self.settings
        rows = self._rows
        k = len(rows["id"])
        xyxy = dets.xyxy.astype(np.float64)
        hi = wanted & (dets.score >= s.high_score)
        lo = wanted & ~hi & (dets.score >= s.low_score)
        dt = np.maximum(t - rows["last_t"], 0.0)
        predicted = _xyxy(rows["state"] + rows["vel"] * dt[:, None])
        track_of = np.full(n, UNMATCHED, np.int64)  # row of the track each detection went to
        det_of = np.full(k, UNMATCHED, np.int64)
        confirmed = rows["confirmed"]
        stages = (
            (confirmed, hi, s.match_iou),
            (confirmed & rows["seen"], lo, LOW_MATCH_IOU),
            (~confirmed, hi, TENTATIVE_MATCH_IOU),
        )
        for track_mask, det_mask, threshold in stages:
            t_idx = np.flatnonzero(track_mask & (det_of == UNMATCHED))
            d_idx = np.flatnonzero(det_mask & (track_of == UNMATCHED))
            if not (t_idx.size and d_idx.size):
                continue
            overlap = iou_matrix(predicted[t_idx], xyxy[d_idx])
            overlap[rows["class_id"][t_idx, None] != dets.class_id[None, d_idx]] = 0.0
            r, c = greedy_match(overlap, threshold)
            det_of[t_idx[r]] = d_idx[c]
            track_of[d_idx[c]] = t_idx[r]
        matched = det_of != UNMATCHED
        improved = self._measure(matched, det_of, dets, t, dt)
        since = t - rows["last_t"]
        limit = np.where(rows["stationary"], s.stationary_lost_s, s.lost_s)
        gone = ~matched & (~confirmed | (since > limit))
        if wh is not None:
            centre = (predicted[:, :2] + predicted[:, 2:]) / 2
            gone |= ~matched & ((centre < 0) | (centre > np.asarray(wh, np.float64))).any(axis=1)
        started = ~rows["confirmed"] & (rows["hits"] >= s.min_hits) & matched
        rows["confirmed"] |= started
        # the ids of this frame's matches, before rows move
        det_track_id = np.full(n, UNMATCHED, np.int64)
        has = track_of != UNMATCHED
        det_track_id[has] = np.where(rows["confirmed"][track_of[has]], rows["id"][track_of[has]], UNMATCHED)
        ended = self._end(gone & confirmed)
        keep = ~gone
        self._take(keep)
        started, improved, det_of = started[keep], improved[keep], det_of[keep]
        fresh = hi & (track_of == UNMATCHED) & (dets.score >= s.new_score)
        self._start(dets[fresh], xyxy[fresh], t)
        pad = int(fresh.sum())
        started = np.concatenate([started, np.zeros(pad, bool)])
        improved = np.concatenate([improved, np.zeros(pad, bool)])
        det_of = np.concatenate([det_of, np.flatnonzero(fresh)])
        # min_hits of 1 confirms a track in the frame that starts it
        if s.min_hits <= 1 and pad:
            self._rows["confirmed"][-pad:] = True
            started[-pad:] = True
            det_track_id[fresh] = self._rows["id"][-pad:]
        self.created += int(started.sum())
        if ended_early is not None:
            ended = _concat_tracks(ended_early, ended)
        view = self._rows["confirmed"]
        return TrackerUpdate(self._view(view, det_of, improved), started[view], ended, det_track_id)

    def finish(self) -> Tracks:
        """End every confirmed track (the stream stopped); the tracker starts afresh afterwards."""
        ended = self._end(self._rows["confirmed"])
        self._rows = _empty_rows()
        self._t = None
        return ended

    # --- the table of tracks ---------------------------------------------------------------------

    def _measure(self, matched: np.ndarray, det_of: np.ndarray, dets: Detections, t: float, dt: np.ndarray) -> np.ndarray:
        """Fold this frame's matched detections into their tracks; returns which reached a new top score."""
        rows, s = self._rows, self.settings
        idx = np.flatnonzero(matched)
        improved = np.zeros(len(matched), bool)
        rows["seen"] = matched
        if not idx.size:
            return improved
        d = det_of[idx]
        box = dets.xyxy[d].astype(np.float64)
        score = dets.score[d].astype(np.float64)
        z = _cxcywh(box)
        step = dt[idx, None]
        predicted = rows["state"][idx] + rows["vel"][idx] * step
        residual = z - predicted
        rows["state"][idx] = predicted + ALPHA * residual
        rows["vel"][idx] += np.divide(BETA * residual, step, out=np.zeros_like(residual), where=step > 0)
        rows["box"][idx] = box
        rows["score"][idx] = score
        improved[idx] = score > rows["top_score"][idx]
        better = idx[improved[idx]]
        rows["top_score"][better] = score[improved[idx]]
        rows["best_t"][better] = t
        rows["hits"][idx] += 1
        rows["last_t"][idx] = t
        rows["history"][idx] = np.roll(rows["history"][idx], -1, axis=1)
        rows["history"][idx, -1] = score
        smooth = _xyxy(rows["state"][idx])  # the filtered box: one jittery detection does not restart the clock
        moved = paired_iou(smooth, rows["still_box"][idx]) < s.stationary_iou
        rows["still_box"][idx[moved]] = smooth[moved]
        rows["still_since"][idx[moved]] = t
        rows["stationary"][idx] = t - rows["still_since"][idx] >= s.stationary_s
        rows["vel"][idx[rows["stationary"][idx]]] = 0.0  # a parked object's prediction must not drift
        return improved

    def _start(self, dets: Detections, xyxy: np.ndarray, t: float) -> None:
        m = len(dets)
        if not m:
            return
        new = _empty_rows(m)
        new["id"] = np.arange(self._next_id, self._next_id + m, dtype=np.int64)
        self._next_id += m
        new["state"] = _cxcywh(xyxy)
        new["box"] = xyxy
        new["still_box"] = xyxy.copy()
        score = dets.score.astype(np.float64)
        for name in ("score", "top_score"):
            new[name] = score.copy()
        for name in ("first_t", "last_t", "best_t", "still_since"):
            new[name] = np.full(m, t)
        new["hits"][:] = 1
        new["seen"][:] = True
        new["class_id"] = dets.class_id.astype(np.int64)
        new["history"][:, -1] = score
        self._rows = {key: np.concatenate([value, new[key]]) for key, value in self._rows.items()}

    def _take(self, keep: np.ndarray) -> None:
        self._rows = {key: value[keep] for key, value in self._rows.items()}

    def _end(self, mask: np.ndarray) -> Tracks:
        return self._view(mask)

    def _view(self, mask: np.ndarray, det_index: np.ndarray | None = None, improved: np.ndarray | None = None) -> Tracks:
        """The rows under ``mask``; ``det_index`` and ``improved`` are per row of the table (default: none)."""
        rows = self._rows
        k = len(rows["id"])
        det_index = np.full(k, UNMATCHED, np.int64) if det_index is None else det_index
        improved = np.zeros(k, bool) if improved is None else improved
        return Tracks(
            id=rows["id"][mask], class_id=rows["class_id"][mask],
            xyxy=rows["box"][mask].astype(np.float32), score=rows["score"][mask], top_score=rows["top_score"][mask],
            hits=rows["hits"][mask], first_t=rows["first_t"][mask], last_t=rows["last_t"][mask], best_t=rows["best_t"][mask],
            stationary=rows["stationary"][mask], seen=rows["seen"][mask],
            det_index=det_index[mask], improved=improved[mask], history=rows["history"][mask],
        )


def _empty_rows(m: int = 0) -> dict[str, np.ndarray]:
    rows = {
        "id": np.zeros(m, np.int64), "hits": np.zeros(m, np.int64),
        "state": np.zeros((m, 4)), "vel": np.zeros((m, 4)), "box": np.zeros((m, 4)), "still_box": np.zeros((m, 4)),
        "confirmed": np.zeros(m, bool), "seen": np.zeros(m, bool), "stationary": np.zeros(m, bool),
        "class_id": np.zeros(m, np.int64), "history": np.full((m, HISTORY), np.nan, np.float32),
    }
    rows.update({name: np.zeros(m) for name in _FLOAT_FIELDS})
    return rows


def _concat_tracks(a: Tracks, b: Tracks) -> Tracks:
    return Tracks(**{name: np.concatenate([getattr(a, name), getattr(b, name)]) for name in Tracks.__dataclass_fields__})


def _cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[:, 2:], MIN_SIZE) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
