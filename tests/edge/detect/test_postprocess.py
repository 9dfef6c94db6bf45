"""Decoder and nms against plain reference implementations written with loops."""

from __future__ import annotations

import numpy as np
import pytest

from edge.model.interpreter import Quantization
from edge.detect.postprocess import Decoder, nms, quantized_threshold
from tests.edge.edge_testing import INT8_OUTPUT_SCALE, INT8_OUTPUT_ZERO_POINT, make_meta, random_raw_outputs

QUANT = Quantization(INT8_OUTPUT_SCALE, INT8_OUTPUT_ZERO_POINT)
BOX_ATOL_PX = 1e-3


def decode_and_nms(outputs, meta, quant, **settings):
    return Decoder(meta, quant, **settings)(outputs)


# ---------------------------------------------------------------- reference (slow on purpose)
def reference_iou(a, b) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, class_ids, iou_threshold, max_det, agnostic=False) -> list[int]:
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    keep = []
    while remaining and len(keep) < max_det:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [
            j for j in remaining
            if not ((agnostic or class_ids[j] == class_ids[best]) and reference_iou(boxes[best], boxes[j]) > iou_threshold)
        ]
    return keep


def reference_decode(outputs, meta, conf, classes=None, multi_label=False, dequantize=True):
    """Every row dequantized and decoded, then filtered: no shortcuts."""
    boxes, scores, class_ids = [], [], []
    conf32 = np.float32(conf)
    allowed = list(range(meta.nc)) if classes is None else list(classes)
    for stride, raw in outputs.items():
        _, grid_h, grid_w, _ = raw.shape
        values = QUANT.dequantize(raw) if dequantize else raw.astype(np.float32)
        values = values.reshape(grid_h, grid_w, meta.num_anchors, meta.channels_per_anchor)
        anchors = meta.anchors_for(stride)
        for y in range(grid_h):
            for x in range(grid_w):
                for a in range(meta.num_anchors):
                    row = values[y, x, a]
                    # one row at a time; numpy only for the products of one row's class scores
                    class_scores = row[5:][allowed] * row[4]
                    if multi_label:
                        picked = [(allowed[i], class_scores[i]) for i in np.flatnonzero(class_scores >= conf32)]
                    else:
                        i = int(np.argmax(class_scores))  # first of equal maxima
                        picked = [(allowed[i], class_scores[i])] if class_scores[i] >= conf32 else []
                    if not picked:
                        continue
                    cx = (2.0 * float(row[0]) - 0.5 + x) * stride
                    cy = (2.0 * float(row[1]) - 0.5 + y) * stride
                    w = (2.0 * float(row[2])) ** 2 * float(anchors[a][0])
                    h = (2.0 * float(row[3])) ** 2 * float(anchors[a][1])
                    for c, s in picked:
                        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
                        scores.append(float(s))
                        class_ids.append(c)
    return boxes, scores, class_ids


def reference_detect(outputs, meta, conf, iou, classes=None, max_det=300, multi_label=False, agnostic=False):
    boxes, scores, class_ids = reference_decode(outputs, meta, conf, classes, multi_label)
    keep = reference_nms(boxes, scores, class_ids, iou, max_det, agnostic)
    return (
        np.array([boxes[i] for i in keep], np.float64).reshape(-1, 4),
        np.array([scores[i] for i in keep], np.float32),
        np.array([class_ids[i] for i in keep], np.int64),
    )


def assert_same(dets, expected) -> None:
    xyxy, score, class_id = expected
    assert len(dets) == len(score)
    np.testing.assert_array_equal(dets.class_id, class_id)
    np.testing.assert_array_equal(dets.score, score)
    np.testing.assert_allclose(dets.xyxy, xyxy, atol=BOX_ATOL_PX)


def float_outputs(outputs):
    return {stride: QUANT.dequantize(raw) for stride, raw in outputs.items()}


def float_quant(outputs):
    return {stride: None for stride in outputs}


def int8_quant(outputs):
    return {stride: QUANT for stride in outputs}


# ---------------------------------------------------------------- decode + NMS vs reference
DECODE_CASES = [
    # id, nc, imgsz, obj_high_fraction, conf, iou, classes, max_det, multi_label, agnostic
    pytest.param(80, (320, 320), 0.01, 0.25, 0.45, None, 300, False, False, id="typical-320"),
    pytest.param(80, (320, 320), 0.02, 0.15, 0.45, None, 300, True, False, id="multi-label"),
    pytest.param(80, (320, 320), 0.05, 0.10, 0.30, None, 20, False, True, id="agnostic-max-det"),
    pytest.param(80, (320, 320), 0.02, 0.15, 0.45, (0, 2, 5), 300, False, False, id="class-filter"),
    pytest.param(3, (256, 320), 0.10, 0.20, 0.50, None, 300, False, False, id="non-square-few-classes"),
    pytest.param(200, (320, 320), 0.01, 0.05, 0.45, None, 300, False, False, id="many-classes"),
    pytest.param(200, (320, 320), 0.005, 0.25, 0.45, None, 300, True, False, id="many-classes-multi-label"),
]


@pytest.mark.parametrize("nc, imgsz, high, conf, iou, classes, max_det, multi_label, agnostic", DECODE_CASES)
def test_decode_and_nms_matches_reference(nc, imgsz, high, conf, iou, classes, max_det, multi_label, agnostic):
    meta = make_meta(nc=nc, imgsz_hw=imgsz)
    outputs = random_raw_outputs(meta, np.random.default_rng(nc + imgsz[1]), high)
    expected = reference_detect(outputs, meta, conf, iou, classes, max_det, multi_label, agnostic)
    assert len(expected[1]) > 0, "case must produce detections to be meaningful"
    kwargs = dict(conf=conf, iou=iou, classes=classes, max_det=max_det, multi_label=multi_label, agnostic=agnostic)
    int8_dets = decode_and_nms(outputs, meta, int8_quant(outputs), **kwargs)
    float_dets = decode_and_nms(float_outputs(outputs), meta, float_quant(outputs), **kwargs)
    assert_same(int8_dets, expected)
    assert_same(float_dets, expected)
    if classes is not None:
        assert set(int8_dets.class_id.tolist()) <= set(classes)


def test_25200_candidates_all_above_conf():
    """640 input: every one of the 25,200 rows passes the objectness test; NMS caps at max_det."""
    meta = make_meta(nc=4, imgsz_hw=(640, 640))
    outputs = random_raw_outputs(meta, np.random.default_rng(7), obj_high_fraction=1.0)
    for raw in outputs.values():  # objectness high everywhere, classes anything
        raw.reshape(-1, meta.channels_per_anchor)[:, 4] = 127
    rows = sum(raw.size // meta.channels_per_anchor for raw in outputs.values())
    assert rows == 25_200
    max_det = 25
    expected = reference_detect(outputs, meta, 0.01, 0.45, max_det=max_det)
    dets = decode_and_nms(outputs, meta, int8_quant(outputs), conf=0.01, iou=0.45, max_det=max_det)
    assert len(dets) == max_det
    assert_same(dets, expected)


@pytest.mark.parametrize("precision", ["int8", "float"])
def test_nothing_above_conf_gives_empty(precision):
    meta = make_meta()
    outputs = random_raw_outputs(meta, np.random.default_rng(3), obj_high_fraction=0.0, obj_low_max=-100)
    if precision == "float":
        outputs, quant = float_outputs(outputs), float_quant(outputs)
    else:
        quant = int8_quant(outputs)
    dets = decode_and_nms(outputs, meta, quant, conf=0.25)
    assert len(dets) == 0
    assert dets.xyxy.shape == (0, 4)


def test_single_box_is_decoded_with_grid_and_anchor():
    """One hand-made row: checks the (y, x, anchor) row order, the grid offset and the anchor."""
    meta = make_meta(nc=2)
    outputs = {s: np.full((1, 320 // s, 320 // s, 3 * 7), -128, np.int8) for s in (32, 16, 8)}
    y, x, anchor, stride = 3, 5, 2, 16
    row = outputs[stride][0, y, x].reshape(3, 7)[anchor]
    row[:] = [0, 0, 0, 0, 127, -128, 127]  # sigmoids 0.5 / 0.996: box (0.5,0.5,0.5,0.5), class 1
    dets = decode_and_nms(outputs, meta, int8_quant(outputs), conf=0.5)
    half = QUANT.dequantize(np.int8(0))
    cx, cy = (2 * half - 0.5 + x) * stride, (2 * half - 0.5 + y) * stride
    anchor_w, anchor_h = meta.anchors_for(stride)[anchor]
    w, h = (2 * half) ** 2 * anchor_w, (2 * half) ** 2 * anchor_h
    assert len(dets) == 1
    assert dets.class_id.tolist() == [1]
    np.testing.assert_allclose(dets.xyxy[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=BOX_ATOL_PX)


# ---------------------------------------------------------------- NMS tables
NMS_TABLE = [
    # id, boxes, scores, classes, iou, max_det, expected kept indices (best first)
    pytest.param([], [], [], 0.45, 300, [], id="empty"),
    pytest.param([[0, 0, 10, 10]], [0.9], [0], 0.45, 300, [0], id="one-box"),
    pytest.param([[0, 0, 10, 10]] * 4, [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 0], 0.45, 300, [0], id="identical-equal-scores-keep-first"),
    pytest.param([[0, 0, 10, 10]] * 3, [0.2, 0.9, 0.5], [0, 0, 0], 0.45, 300, [1], id="identical-keep-best"),
    pytest.param([[0, 0, 10, 10]] * 3, [0.2, 0.9, 0.5], [0, 1, 2], 0.45, 300, [1, 2, 0], id="identical-other-classes-survive"),
    pytest.param([[0, 0, 10, 10], [10, 0, 20, 10]], [0.9, 0.8], [0, 0], 0.0, 300, [0, 1], id="touching-iou-zero"),
    pytest.param([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 0], 0.9, 300, [0, 1], id="overlap-below-threshold"),
    pytest.param([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 0], 0.5, 300, [0], id="overlap-above-threshold"),
    pytest.param([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.7, 0.9, 0.8], [0, 0, 0], 0.45, 2, [1, 2], id="max-det"),
    pytest.param([[5, 5, 5, 5], [5, 5, 5, 5]], [0.9, 0.8], [0, 0], 0.45, 300, [0, 1], id="zero-area-never-suppress"),
    # chain: A suppresses B, so C (overlapping B only) survives
    pytest.param([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], [0.9, 0.8, 0.7], [0, 0, 0], 0.3, 300, [0, 2], id="suppressed-box-suppresses-nothing"),
]


@pytest.mark.parametrize("boxes, scores, classes, iou, max_det, expected", NMS_TABLE)
def test_nms_table(boxes, scores, classes, iou, max_det, expected):
    keep = nms(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(classes, np.int64), iou, max_det)
    assert keep.tolist() == expected
    assert keep.tolist() == reference_nms(boxes, scores, classes, iou, max_det)


@pytest.mark.parametrize("n, num_classes, agnostic", [(300, 1, False), (2000, 80, False), (1000, 5, True)])
def test_nms_random_matches_reference(n, num_classes, agnostic):
    rng = np.random.default_rng(n + num_classes)
    corner = rng.uniform(0, 300, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, 80, (n, 2))], axis=1).astype(np.float32)
    scores = rng.integers(1, 50, n).astype(np.float32) / 50  # many ties on purpose
    classes = rng.integers(0, num_classes, n)
    keep = nms(boxes, scores, None if agnostic else classes, 0.45, 300)
    assert keep.tolist() == reference_nms(boxes.tolist(), scores.tolist(), classes.tolist(), 0.45, 300, agnostic)


# ---------------------------------------------------------------- quantized threshold
@pytest.mark.parametrize("conf", [0.0, 0.001, 0.1, 0.25, 0.5, 0.5 + 1 / 512, 0.99, 0.996])
def test_quantized_threshold_is_exact(conf):
    q = quantized_threshold(conf, INT8_OUTPUT_SCALE, INT8_OUTPUT_ZERO_POINT)
    dequant = lambda v: (np.float32(v) - np.float32(INT8_OUTPUT_ZERO_POINT)) * np.float32(INT8_OUTPUT_SCALE)
    assert q == -128 or dequant(q - 1) < np.float32(conf)
    assert q == 128 or dequant(q) >= np.float32(conf)


def test_conf_above_every_int8_value_passes_nothing():
    assert quantized_threshold(0.999, INT8_OUTPUT_SCALE, INT8_OUTPUT_ZERO_POINT) == 128
    meta = make_meta()
    outputs = random_raw_outputs(meta, np.random.default_rng(1), obj_high_fraction=1.0)
    assert len(decode_and_nms(outputs, meta, int8_quant(outputs), conf=0.999)) == 0


@pytest.mark.parametrize("matrix_max", [0, 10_000], ids=["row-by-row", "pairwise-matrix"])
@pytest.mark.parametrize("n, num_classes, agnostic", [(40, 3, False), (250, 80, False), (600, 2, True)])
def test_both_nms_paths_match_reference(monkeypatch, matrix_max, n, num_classes, agnostic):
    """The pairwise-matrix path (few candidates) and the row-by-row path (many) keep the same boxes."""
    import edge.detect.postprocess

    monkeypatch.setattr(edge.detect.postprocess, "MATRIX_NMS_MAX", matrix_max)
    rng = np.random.default_rng(n * 7 + num_classes)
    corner = rng.uniform(0, 300, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0, 90, (n, 2))], axis=1).astype(np.float32)
    boxes[::17, 2:] = boxes[::17, :2]  # some zero-area boxes
    scores = rng.integers(1, 30, n).astype(np.float32) / 30
    classes = rng.integers(0, num_classes, n)
    keep = nms(boxes, scores, None if agnostic else classes, 0.45, 300)
    expected = reference_nms(boxes.tolist(), scores.tolist(), classes.tolist(), 0.45, 300, agnostic)
    assert len(expected) > 1
    assert keep.tolist() == expected
