"""Zones and lines: point in polygon, which side of a line, crossings by direction."""

from __future__ import annotations

import numpy as np
import pytest

from edge.track.zones import anchor_points, crosses, inside_polygon

SQUARE = np.array([[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]])
L_SHAPE = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]])


@pytest.mark.parametrize("polygon, point, inside", [
    (SQUARE, (0.4, 0.4), True),
    (SQUARE, (0.1, 0.4), False),
    (SQUARE, (0.4, 0.7), False),
    (L_SHAPE, (0.25, 0.25), True),
    (L_SHAPE, (0.75, 0.25), False),  # the notch of the L
    (L_SHAPE, (0.75, 0.75), True),
])
def test_inside_polygon(polygon, point, inside):
    assert inside_polygon(np.array([point]), polygon).tolist() == [inside]


def test_inside_polygon_is_vectorised_over_points():
    points = np.random.default_rng(0).random((1000, 2))
    expected = (points >= 0.2).all(axis=1) & (points <= 0.6).all(axis=1)
    assert (inside_polygon(points, SQUARE) == expected).all()


def test_anchor_points_are_normalised_bottom_centres_or_centres():
    xyxy = np.array([[100, 50, 200, 250]], float)
    assert anchor_points(xyxy, (400, 500), np.array([False])).tolist() == [[0.375, 0.5]]
    assert anchor_points(xyxy, (400, 500), np.array([True])).tolist() == [[0.375, 0.3]]


A, B = np.array([0.0, 0.5]), np.array([1.0, 0.5])  # a line drawn left to right across the middle


@pytest.mark.parametrize("p0, p1, expected", [
    ((0.5, 0.4), (0.5, 0.6), 1),  # moving down: to the right of a->b as seen in the image: "in"
    ((0.5, 0.6), (0.5, 0.4), -1),  # moving up: "out"
    ((0.5, 0.4), (0.5, 0.45), 0),  # approaching, not crossing
    ((1.5, 0.4), (1.5, 0.6), 0),  # crossing the line's extension beside the segment
    ((0.2, 0.6), (0.8, 0.7), 0),  # moving along one side
])
def test_crossings_by_direction(p0, p1, expected):
    assert crosses(np.array([p0]), np.array([p1]), A, B).tolist() == [expected]
