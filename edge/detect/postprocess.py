"""Raw YOLOv5 head outputs → Detections in input pixels.

Most of the 6,300 (320) or 25,200 (640) rows are background. Rows are rejected on the raw
(quantized) objectness before anything is dequantized: a row can only reach obj × cls ≥ conf if
obj ≥ conf, because cls ≤ 1. Only the survivors are dequantized (one table look-up), decoded
and sent to NMS. Everything that depends only on the model and the thresholds (raw thresholds,
look-up tables, per-row grid and anchor factors) is computed once, in ``Decoder``, so a frame
costs a fixed few dozen numpy calls, plus three per box kept.

Why count calls: right after ``invoke()`` the inference has evicted the caches, and each numpy
call then costs microseconds whatever its size (``tests/bench_overhead.py`` shows the same
decode taking 1.7x longer there than when repeated). On a model that runs in a millisecond, the
number of calls, not the number of rows, is what post-processing costs.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from edge.detect.detections import Detections
from edge.model.interpreter import Quantization
from edge.model.metadata import ModelMeta

BOX_CHANNELS = 4  # x, y, w, h (raw sigmoids)
OBJ_CHANNEL = 4
FIRST_CLASS_CHANNEL = 5
MAX_NMS_CANDIDATES = 30_000  # keep the best this many by score before NMS
MATRIX_NMS_MAX = 256  # up to this many candidates, NMS builds the full pairwise matrix
QUANT_LEVELS = 256  # every value an int8/uint8 tensor can hold
# columns of the per-row decode table: centre = sigmoid * XY_GAIN + OFFSET, half size = sigmoid² * HALF_GAIN
OFFSET_X, OFFSET_Y, XY_GAIN, HALF_GAIN_W, HALF_GAIN_H = range(5)


def quantized_threshold(conf: float, scale: float, zero_point: int, dtype: str = "int8") -> int:
    """Smallest raw value q with (q - zero_point) * scale >= conf; dtype max + 1 if none can pass."""
    info = np.iinfo(np.dtype(dtype))
    q = math.ceil(conf / scale + zero_point)
    # float rounding can land one step off either way: settle on the exact float32 comparison
    def passes(value: int) -> bool:
        return (np.float32(value) - np.float32(zero_point)) * np.float32(scale) >= np.float32(conf)

    while q > info.min and passes(q - 1):
        q -= 1
    while q <= info.max and not passes(q):
        q += 1
    return max(q, int(info.min))


def decode_table(meta: ModelMeta, stride: int) -> np.ndarray:
    """(rows, 5) float32 factors that turn one level's box sigmoids into centre and half size.

    YOLOv5 decodes centre = (2σ - 0.5 + cell) * stride and size = (2σ)² * anchor; rewritten as
    σ * 2·stride + (cell - 0.5)·stride and half size σ² * 2·anchor, one multiply-add per value.
    Rows are in NHWC order: (y, x, anchor).
    """
    height, width = meta.imgsz_hw
    grid_h, grid_w = height // stride, width // stride
    grid_y, grid_x, anchor = np.meshgrid(np.arange(grid_h), np.arange(grid_w), np.arange(meta.num_anchors), indexing="ij")
    anchors = meta.anchors_for(stride)[anchor.ravel()]
    table = np.empty((grid_x.size, 5), np.float32)
    table[:, OFFSET_X] = (grid_x.ravel() - 0.5) * stride
    table[:, OFFSET_Y] = (grid_y.ravel() - 0.5) * stride
    table[:, XY_GAIN] = 2.0 * stride
    table[:, HALF_GAIN_W] = 2.0 * anchors[:, 0]
    table[:, HALF_GAIN_H] = 2.0 * anchors[:, 1]
    return table


def dequantize_table(quant: Quantization, dtype: np.dtype) -> np.ndarray:
    """float32 value of every raw byte, indexed by the byte read as uint8 (same rounding as dequantize)."""
    every_byte = np.arange(QUANT_LEVELS, dtype=np.uint8).view(dtype)
    return quant.dequantize(every_byte)


class Decoder:
    """Decode + NMS for one model and one set of thresholds; build once, call per frame.

    ``quant[s]`` is the output quantization of stride ``s`` (None for float outputs).
    Single-label (default) keeps each box's best class among ``classes``; ``multi_label`` keeps
    every (box, class) pair scoring ≥ conf, as mAP evaluation does. NMS is per class unless
    ``agnostic``.
    """

    def __init__(
        self,
        meta: ModelMeta,
        quant: Mapping[int, Quantization | None],
        conf: float = 0.25,
        iou: float = 0.45,
        classes: Sequence[int] | None = None,
        max_det: int = 300,
        multi_label: bool = False,
        agnostic: bool = False,
    ):
        self.meta = meta
        self.quant = dict(quant)
        self.conf = np.float32(conf)
        self.iou = float(iou)
        self.max_det = max_det
        self.multi_label = multi_label
        self.agnostic = agnostic
        self.class_ids = None if classes is None else np.asarray(classes, dtype=np.int64)
        self.class_columns = None if classes is None else FIRST_CLASS_CHANNEL + self.class_ids
        self._tables = {stride: decode_table(meta, stride) for stride in meta.strides}
        self._levels: dict[tuple[int, str], tuple[int | np.float32, np.ndarray | None]] = {}

    def level_constants(self, stride: int, dtype: np.dtype) -> tuple[int | np.float32, np.ndarray | None]:
        """Raw objectness threshold and dequantisation look-up table (None for float outputs) of one
        level, computed on first sight of its output dtype."""
        key = (stride, dtype.str)
        if key not in self._levels:
            quant = self.quant.get(stride)
            if quant is None or dtype.kind == "f":
                self._levels[key] = (self.conf, None)
            else:
                threshold = quantized_threshold(float(self.conf), quant.scale, quant.zero_point, dtype.name)
                self._levels[key] = (threshold, dequantize_table(quant, dtype))
        return self._levels[key]

    def __call__(self, outputs_by_stride: Mapping[int, np.ndarray]) -> Detections:
        """Detections (xyxy in input pixels, best first) from per-stride raw (1, H/s, W/s, na*(5+nc)) maps."""
        values, tables = [], []
        for stride, raw in outputs_by_stride.items():
            threshold, lut = self.level_constants(stride, raw.dtype)
            rows = raw.reshape(-1, self.meta.channels_per_anchor)
            hits = np.flatnonzero(rows[:, OBJ_CHANNEL] >= threshold)
            if hits.size:
                values.append(rows[hits].astype(np.float32) if lut is None else lut[rows.view(np.uint8)[hits]])
                tables.append(self._tables[stride][hits])
        if not values:
            return Detections.empty()
        value = values[0] if len(values) == 1 else np.concatenate(values)
        table = tables[0] if len(tables) == 1 else np.concatenate(tables)

        class_prob = value[:, FIRST_CLASS_CHANNEL:] if self.class_columns is None else value[:, self.class_columns]
        class_score = class_prob * value[:, OBJ_CHANNEL, None]
        if self.multi_label:
            row, column = np.nonzero(class_score >= self.conf)
            score = class_score[row, column]
        else:
            row = None  # one candidate per row
            column = class_score.argmax(axis=1)
            score = class_score.max(axis=1)
        # best first, and the rows below conf are a suffix of that order: one sort, one cut
        order = np.argsort(-score, kind="stable")[: min(np.count_nonzero(score >= self.conf), MAX_NMS_CANDIDATES)]
        if not order.size:
            return Detections.empty()
        row = order if row is None else row[order]
        score, column = score[order], column[order]
        class_id = column if self.class_ids is None else self.class_ids[column]

        # coordinate-major (4, n) and (5, n): every array op below runs along n, not along 2
        sig, factors = value[row, :BOX_CHANNELS].T, table[row].T
        centre = sig[:2] * factors[XY_GAIN] + factors[OFFSET_X:OFFSET_Y + 1]
        half = np.square(sig[2:]) * factors[HALF_GAIN_W:]
        corners = np.concatenate((centre - half, centre + half))
        keep = greedy_nms(corners, None if self.agnostic else class_id, self.iou, self.max_det)
        xyxy = np.ascontiguousarray(corners[:, keep].T)
        return Detections(xyxy, score[keep], class_id[keep])


def nms(
    xyxy: np.ndarray,
    score: np.ndarray,
    class_id: np.ndarray | None,
    iou_threshold: float,
    max_det: int,
    max_candidates: int = MAX_NMS_CANDIDATES,
) -> np.ndarray:
    """Greedy NMS on unsorted boxes: indices kept, best score first; ties keep the lower index."""
    order = np.argsort(-score, kind="stable")[:max_candidates]
    corners = np.ascontiguousarray(np.asarray(xyxy, np.float32)[order].T)
    keep = greedy_nms(corners, None if class_id is None else class_id[order], iou_threshold, max_det)
    return order[keep]


def greedy_nms(
    corners: np.ndarray,
    class_id: np.ndarray | None,
    iou_threshold: float,
    max_det: int,
) -> np.ndarray:
    """Greedy NMS on boxes sorted best first, given as (4, n) rows x1, y1, x2, y2: positions kept.

    Each kept box suppresses the later boxes of its class (any class if ``class_id`` is None)
    that overlap it by IoU > ``iou_threshold``. A frame rarely has more than a few dozen
    candidates: up to ``MATRIX_NMS_MAX`` of them every pairwise "would suppress" flag is computed
    in one pass and the greedy loop only reads rows of it (a few numpy calls in all). Beyond that
    an N×N matrix costs more than it saves, and each round compares the kept box with the boxes
    after it. Both paths do the same float32 arithmetic, so they keep the same boxes.
    """
    count = corners.shape[1]
    if count <= 1:
        return np.arange(count)
    size = np.maximum(corners[2:] - corners[:2], 0)
    area = size[0] * size[1]
    threshold = np.float32(iou_threshold)
    if count <= MATRIX_NMS_MAX:
        keep = _greedy_matrix(corners, area, class_id, threshold, max_det)
    else:
        keep = _greedy_rows(corners, area, class_id, threshold, max_det)
    return np.asarray(keep, dtype=np.int64)


def _suppresses(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray, threshold: np.float32) -> np.ndarray:
    """IoU > t  <=>  inter > t * union: no division, and zero-area pairs never suppress."""
    return inter > threshold * (area_a + area_b - inter)


def _greedy_matrix(corners, area, class_id, threshold, max_det) -> list[int]:
    """Greedy pass over a precomputed (n, n) suppression matrix: three numpy calls per kept box."""
    top_left, bottom_right = corners[:2], corners[2:]
    # (2, n, n): overlap along x, then along y, of every pair
    overlap = np.minimum(bottom_right[:, :, None], bottom_right[:, None]) - np.maximum(top_left[:, :, None], top_left[:, None])
    np.maximum(overlap, 0, out=overlap)
    suppress = _suppresses(overlap[0] * overlap[1], area[:, None], area, threshold)
    if class_id is not None:
        suppress &= class_id[:, None] == class_id
    alive = ~suppress[0]
    keep = [0]
    while len(keep) < max_det:
        after = keep[-1] + 1
        if after >= alive.size:
            break
        best = after + int(alive[after:].argmax())
        if not alive[best]:
            break
        keep.append(best)
        alive &= ~suppress[best]
    return keep


def _greedy_rows(corners, area, class_id, threshold, max_det) -> list[int]:
    """Greedy pass for many candidates: each kept box is compared with the boxes after it."""
    x1, y1, x2, y2 = corners
    alive = np.ones(area.size, bool)
    keep: list[int] = []
    best = 0
    while best < area.size and len(keep) < max_det:
        best += int(alive[best:].argmax())
        if not alive[best]:
            break
        keep.append(best)
        rest = slice(best + 1, None)
        inter = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        inter *= np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        suppressed = _suppresses(inter, area[best], area[rest], threshold)
        if class_id is not None:
            suppressed &= class_id[rest] == class_id[best]
        alive[rest] &= ~suppressed
        best += 1
    return keep
