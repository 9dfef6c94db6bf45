"""Raw YOLOv5 head outputs → Detections in input pixels.

Most of the 6,300 (320) or 25,200 (640) rows are background. Rows are rejected on the raw
(quantized) objectness before anything is dequantized: a row can only reach obj × cls ≥ conf if
obj ≥ conf, because cls ≤ 1. Only the survivors are decoded (grid, anchors) and sent to NMS.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np

from edge.detections import Detections
from edge.interpreter import Quantization
from edge.metadata import ModelMeta

BOX_CHANNELS = 4  # x, y, w, h (raw sigmoids)
OBJ_CHANNEL = 4
FIRST_CLASS_CHANNEL = 5
MAX_NMS_CANDIDATES = 30_000  # keep the best this many by score before NMS


@functools.lru_cache(maxsize=64)
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


def decode_and_nms(
    outputs_by_stride: Mapping[int, np.ndarray],
    meta: ModelMeta,
    quant: Mapping[int, Quantization | None],
    conf: float = 0.25,
    iou: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    multi_label: bool = False,
    agnostic: bool = False,
) -> Detections:
    """Detections (xyxy in input pixels, best first) from per-stride raw outputs.

    ``outputs_by_stride[s]`` is the raw (1, H/s, W/s, na*(5+nc)) tensor, int8/uint8 with
    ``quant[s]`` or float with ``quant[s] = None``. Single-label (default) keeps each box's best
    class among ``classes``; ``multi_label`` keeps every (box, class) pair scoring ≥ conf, as
    mAP evaluation does. NMS is per class unless ``agnostic``.
    """
    boxes, scores, class_ids = [], [], []
    for stride, raw in outputs_by_stride.items():
        level = _decode_level(raw, stride, meta, quant.get(stride), conf, classes, multi_label)
        if level is not None:
            boxes.append(level[0])
            scores.append(level[1])
            class_ids.append(level[2])
    if not boxes:
        return Detections.empty()
    xyxy = np.concatenate(boxes)
    score = np.concatenate(scores)
    class_id = np.concatenate(class_ids)
    if not len(score):
        return Detections.empty()
    keep = nms(xyxy, score, None if agnostic else class_id, iou, max_det)
    return Detections(xyxy[keep], score[keep], class_id[keep])


def _decode_level(
    raw: np.ndarray,
    stride: int,
    meta: ModelMeta,
    quant: Quantization | None,
    conf: float,
    classes: Sequence[int] | None,
    multi_label: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    _, grid_h, grid_w, channels = raw.shape
    num_anchors = meta.num_anchors
    rows = raw.reshape(grid_h * grid_w * num_anchors, channels // num_anchors)
    obj_raw = rows[:, OBJ_CHANNEL]
    if quant is not None:
        threshold = quantized_threshold(float(conf), quant.scale, quant.zero_point, raw.dtype.name)
        if threshold > np.iinfo(raw.dtype).max:
            return None
        candidates = np.flatnonzero(obj_raw >= threshold)
        survivors = quant.dequantize(rows[candidates])
    else:
        candidates = np.flatnonzero(obj_raw >= np.float32(conf))
        survivors = rows[candidates].astype(np.float32, copy=False)
    if not len(candidates):
        return None

    obj = survivors[:, OBJ_CHANNEL]
    class_prob = survivors[:, FIRST_CLASS_CHANNEL:]
    class_map = None
    if classes is not None:
        class_map = np.asarray(classes, dtype=np.int64)
        class_prob = class_prob[:, class_map]
    class_score = class_prob * obj[:, None]
    if multi_label:
        row_idx, col_idx = np.nonzero(class_score >= np.float32(conf))
        score = class_score[row_idx, col_idx]
    else:
        col_idx = class_score.argmax(axis=1)
        score = class_score[np.arange(len(col_idx)), col_idx]
        row_idx = np.flatnonzero(score >= np.float32(conf))
        col_idx, score = col_idx[row_idx], score[row_idx]
    if not len(row_idx):
        return None
    class_id = class_map[col_idx] if class_map is not None else col_idx.astype(np.int64)

    # NHWC rows are ordered (y, x, anchor): recover the cell and anchor of each survivor
    cell, anchor = np.divmod(candidates[row_idx], num_anchors)
    grid_y, grid_x = np.divmod(cell, grid_w)
    sig = survivors[row_idx, :BOX_CHANNELS]
    center_x = (2.0 * sig[:, 0] - 0.5 + grid_x) * stride
    center_y = (2.0 * sig[:, 1] - 0.5 + grid_y) * stride
    anchors = meta.anchors_for(stride)[anchor]
    half_w = (2.0 * sig[:, 2]) ** 2 * anchors[:, 0] / 2.0
    half_h = (2.0 * sig[:, 3]) ** 2 * anchors[:, 1] / 2.0
    xyxy = np.stack([center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h], axis=1)
    return xyxy.astype(np.float32, copy=False), score.astype(np.float32, copy=False), class_id


def nms(
    xyxy: np.ndarray,
    score: np.ndarray,
    class_id: np.ndarray | None,
    iou_threshold: float,
    max_det: int,
    max_candidates: int = MAX_NMS_CANDIDATES,
) -> np.ndarray:
    """Greedy NMS: indices kept, best score first; ties keep the lower index.

    Boxes only suppress boxes of their own class unless ``class_id`` is None. Each round keeps
    the best box still alive and clears, in one vectorised step over the boxes after it, those
    overlapping it by IoU > ``iou_threshold``: the loop runs once per kept box (at most
    ``max_det`` times) and no N×N IoU matrix is built.
    """
    order = np.argsort(-score, kind="stable")[:max_candidates]
    # contiguous per-coordinate arrays in score order: every round reads plain slices
    x1, y1, x2, y2 = (np.ascontiguousarray(xyxy[order, k], dtype=np.float32) for k in range(4))
    area = (x2 - x1).clip(min=0) * (y2 - y1).clip(min=0)
    classes = class_id[order] if class_id is not None else np.zeros(len(order), np.int64)
    alive = np.ones(len(order), bool)
    threshold = np.float32(iou_threshold)
    keep: list[int] = []
    best = 0
    while best < len(order) and len(keep) < max_det:
        best += int(np.argmax(alive[best:]))
        if not alive[best]:
            break
        keep.append(best)
        rest = slice(best + 1, None)
        inter_w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        inter_h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = inter_w.clip(min=0) * inter_h.clip(min=0)
        # IoU > t  <=>  inter > t * union (no division; zero-area pairs never suppress)
        suppressed = inter > threshold * (area[best] + area[rest] - inter)
        suppressed &= classes[rest] == classes[best]
        alive[rest] &= ~suppressed
        best += 1
    return order[np.asarray(keep, dtype=np.int64)]
