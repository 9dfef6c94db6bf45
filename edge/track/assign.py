"""Box overlap and the assignment of detections to tracks, vectorised over a frame's boxes.

Greedy assignment by descending IoU, done as rounds of mutual best matches: a pair whose detection
is the track's best and whose track is the detection's best is taken by any greedy order, so every
such pair of a round is taken at once. A frame needs one or two rounds; the optimal (Hungarian)
assignment differs from this only when boxes of similar overlap cross, which IoU gating makes rare
(see ``tests/edge/track/test_assign.py`` and the tracking figures in the README).
"""

from __future__ import annotations

import numpy as np

UNMATCHED = -1


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(m, n) intersection over union of every box of ``a`` with every box of ``b`` (xyxy corners)."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def paired_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(n,) IoU of ``a[i]`` with ``b[i]``."""
    a = np.asarray(a_xyxy, np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = np.prod(a[:, 2:] - a[:, :2], axis=1) + np.prod(b[:, 2:] - b[:, :2], axis=1) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pairs a greedy assignment takes, best similarity first.

    Pairs below ``threshold`` are never taken; each row and each column is used at most once.
    """
    score = np.where(similarity >= threshold, similarity, -np.inf)
    rows_taken: list[np.ndarray] = []
    cols_taken: list[np.ndarray] = []
    rows = np.arange(score.shape[0])
    while score.size and np.isfinite(score).any():
        best_col = score.argmax(axis=1)
        best_row = score.argmax(axis=0)
        mutual = np.isfinite(score[rows, best_col]) & (best_row[best_col] == rows)
        r, c = rows[mutual], best_col[mutual]
        rows_taken.append(r)
        cols_taken.append(c)
        score[r, :] = -np.inf
        score[:, c] = -np.inf
    if not rows_taken:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows_taken).astype(np.int64), np.concatenate(cols_taken).astype(np.int64)
