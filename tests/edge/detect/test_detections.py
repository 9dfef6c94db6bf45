"""The Detections record: shape checks, indexing, JSON."""

from __future__ import annotations

import numpy as np
import pytest

from edge.detect.detections import Detections


def three() -> Detections:
    return Detections(
        xyxy=np.array([[0, 0, 10, 10], [1.04, 2.06, 3.0, 4.0], [5, 5, 6, 6]], np.float32),
        score=np.array([0.9, 0.123456, 0.3], np.float32),
        class_id=np.array([0, 1, 7]),
    )


@pytest.mark.parametrize(
    "xyxy_shape, score_shape, class_shape, message",
    [
        ((3, 5), (3,), (3,), r"xyxy must have shape \(n, 4\), received \(3, 5\)"),
        ((3, 4), (2,), (3,), r"score must have shape \(3,\) to match xyxy \(3, 4\), received \(2,\)"),
        ((3, 4), (3,), (3, 1), r"class_id must have shape \(3,\) to match xyxy \(3, 4\), received \(3, 1\)"),
    ],
)
def test_shape_errors_name_expected_and_received(xyxy_shape, score_shape, class_shape, message):
    with pytest.raises(ValueError, match=message):
        Detections(np.zeros(xyxy_shape), np.zeros(score_shape), np.zeros(class_shape))


def test_mask_index_and_slice():
    dets = three()
    assert len(dets[dets.score > 0.25]) == 2
    assert dets[np.array([2, 0])].class_id.tolist() == [7, 0]
    assert dets[1:].class_id.tolist() == [1, 7]
    assert dets[-1].class_id.tolist() == [7]
    assert len(Detections.empty()) == 0 and Detections.empty().xyxy.shape == (0, 4)


def test_dtypes_are_normalised():
    dets = Detections([[0, 0, 1, 1]], [1], [3])
    assert (dets.xyxy.dtype, dets.score.dtype, dets.class_id.dtype) == (np.float32, np.float32, np.int64)


def test_to_json_rounds_and_labels():
    records = three().to_json(["person", "bicycle"])
    assert records[1] == {"label": "bicycle", "class_id": 1, "score": 0.123, "box": [1.0, 2.1, 3.0, 4.0]}
    assert records[2]["label"] == "7"  # id beyond the names: label falls back to the id
    assert all(type(r["class_id"]) is int and type(r["score"]) is float for r in records)
