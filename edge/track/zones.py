"""Zones (polygons) and lines in normalised frame coordinates, tested against many boxes at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.track.labels import LabelMap
from edge.track.settings import LineSettings, TrackSettings, ZoneSettings

# The Frigate-style inertia: a zone's membership flips only after this many frames in a row agree,
# so a box jittering across an edge does not enter and leave every frame.
ZONE_FRAMES = 3


def anchor_points(xyxy: np.ndarray, wh: tuple[int, int], center: np.ndarray) -> np.ndarray:
    """(k, 2) normalised points of the boxes: the middle of the lower edge, or the centre where ``center``."""
    width, height = wh
    box = np.asarray(xyxy, np.float64).reshape(-1, 4)
    x = (box[:, 0] + box[:, 2]) / 2 / width
    y_bottom = box[:, 3] / height
    y_center = (box[:, 1] + box[:, 3]) / 2 / height
    return np.stack([x, np.where(center, y_center, y_bottom)], axis=1)


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(k,) whether each point is inside ``polygon`` (p, 2), by the even-odd rule over all edges at once."""
    px, py = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    return np.count_nonzero(straddles & (px < cross_x), axis=1) % 2 == 1


def side_of(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(k,) >0 right of a->b as seen in the image (y down), <0 left, 0 on the line."""
    return (b[0] - a[0]) * (points[:, 1] - a[1]) - (b[1] - a[1]) * (points[:, 0] - a[0])


def crosses(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(k,) +1 where p0->p1 crosses segment a->b to its right, -1 to its left, 0 where it does not cross."""
    before, after = side_of(p0, a, b), side_of(p1, a, b)
    across = (before < 0) != (after < 0)
    # the movement's own line must separate a and b, or it passed beside the segment
    move = p1 - p0
    side_a = move[:, 0] * (a[1] - p0[:, 1]) - move[:, 1] * (a[0] - p0[:, 0])
    side_b = move[:, 0] * (b[1] - p0[:, 1]) - move[:, 1] * (b[0] - p0[:, 0])
    hit = across & ((side_a < 0) != (side_b < 0))
    return np.where(hit, np.where(after >= 0, 1, -1), 0)


@dataclass(frozen=True)
class Regions:
    """The zones and lines of a camera with, for each, which label ids it counts (a (Z, L) boolean table)."""

    zones: tuple[ZoneSettings, ...]
    lines: tuple[LineSettings, ...]
    zone_labels: np.ndarray  # (Z, L) bool
    line_labels: np.ndarray  # (N, L) bool
    labels: tuple[int, ...]  # the tracked label ids, in the settings' order

    @classmethod
    def build(cls, settings: TrackSettings, label_map: LabelMap) -> Regions:
        ids = tuple(label_map.names.index(label) for label in settings.labels)
        size = len(label_map.names)

        def table(items) -> np.ndarray:
            wanted = np.zeros((len(items), size), bool)
            for row, item in enumerate(items):
                wanted[row, [label_map.names.index(label) for label in settings.labels_of(item)]] = True
            return wanted

        return cls(settings.zones, settings.lines, table(settings.zones), table(settings.lines), ids)

    def zone_membership(self, xyxy: np.ndarray, label_ids: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
        """(k, Z) whether each box's anchor is inside each zone that counts its label."""
        inside = np.zeros((len(label_ids), len(self.zones)), bool)
        for column, zone in enumerate(self.zones):
            points = anchor_points(xyxy, wh, np.full(len(label_ids), zone.anchor == "center"))
            inside[:, column] = inside_polygon(points, np.asarray(zone.points)) & self.zone_labels[column, label_ids]
        return inside

    def line_points(self, xyxy: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
        """(k, N, 2) each box's anchor for each line."""
        out = np.zeros((len(xyxy), len(self.lines), 2))
        for column, line in enumerate(self.lines):
            out[:, column] = anchor_points(xyxy, wh, np.full(len(xyxy), line.anchor == "center"))
        return out

    def line_crossings(self, before: np.ndarray, after: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
        """(k, N) +1 / -1 / 0 per box and line, from the anchors ``before`` and ``after`` (k, N, 2)."""
        out = np.zeros((len(label_ids), len(self.lines)), np.int64)
        for column, line in enumerate(self.lines):
            a, b = (np.asarray(p) for p in line.points)
            out[:, column] = crosses(before[:, column], after[:, column], a, b) * self.line_labels[column, label_ids]
        return out
