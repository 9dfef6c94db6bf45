"""IoU and the greedy assignment: against loops written the obvious way, and against the optimum."""

from __future__ import annotations

import numpy as np
import pytest

from edge.track.assign import greedy_match, iou_matrix, paired_iou
from tests.edge.edge_testing import optimal_total


def iou_reference(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sequential_greedy(similarity: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """The textbook greedy: take the best remaining pair until none reaches the threshold."""
    pairs = sorted(((similarity[r, c], r, c) for r in range(similarity.shape[0]) for c in range(similarity.shape[1])),
                   reverse=True)
    rows, cols, taken = set(), set(), set()
    for value, r, c in pairs:
        if value >= threshold and r not in rows and c not in cols:
            rows.add(r), cols.add(c), taken.add((r, c))
    return taken


def random_boxes(rng, n) -> np.ndarray:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 80, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_iou_matrix_matches_the_loop():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 7), random_boxes(rng, 5)
    expected = np.array([[iou_reference(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou_matrix(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(paired_iou(a[:5], b), np.diag(expected[:5]), atol=1e-12)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges share no area
    ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate boxes: 0, not NaN
])
def test_iou_cases(a, b, expected):
    assert iou_matrix([a], [b])[0, 0] == pytest.approx(expected)


def test_greedy_equals_the_sequential_greedy_on_random_matrices():
    rng = np.random.default_rng(1)
    for _ in range(300):
        m, n = rng.integers(0, 9, 2)
        similarity = rng.random((m, n))
        rows, cols = greedy_match(similarity, 0.3)
        assert set(zip(rows.tolist(), cols.tolist())) == sequential_greedy(similarity, 0.3)


def test_ties_end_in_a_complete_one_to_one_assignment():
    rng = np.random.default_rng(2)
    for _ in range(300):
        similarity = np.round(rng.random(tuple(rng.integers(1, 9, 2))), 1)  # many equal values
        rows, cols = greedy_match(similarity, 0.3)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert (similarity[rows, cols] >= 0.3).all()
        free = np.ones_like(similarity, bool)
        free[rows, :] = False
        free[:, cols] = False
        assert not (free & (similarity >= 0.3)).any()  # nothing left that could still be matched


def test_greedy_is_optimal_when_boxes_are_apart_and_can_lose_when_they_cross():
    # well separated objects: each track overlaps one detection, greedy is optimal
    tracks = np.array([[0, 0, 10, 10], [50, 0, 60, 10], [100, 0, 110, 10]], float)
    similarity = iou_matrix(tracks, tracks + 1)
    rows, cols = greedy_match(similarity, 0.2)
    assert similarity[rows, cols].sum() == pytest.approx(optimal_total(similarity, 0.2))
    # the textbook case where greedy is not optimal: the best pair blocks two good ones
    crossing = np.array([[0.9, 0.8], [0.8, 0.0]])
    rows, cols = greedy_match(crossing, 0.2)
    assert crossing[rows, cols].sum() == pytest.approx(0.9)
    assert optimal_total(crossing, 0.2) == pytest.approx(1.6)
