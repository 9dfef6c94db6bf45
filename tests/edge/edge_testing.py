"""Builders for edge/ tests that need metadata or raw outputs but no model file."""

from __future__ import annotations

import numpy as np

from edge.metadata import ModelMeta, parse_metadata

YOLOV5_ANCHORS_WH = [
    [[10, 13], [16, 30], [33, 23]],
    [[30, 61], [62, 45], [59, 119]],
    [[116, 90], [156, 198], [373, 326]],
]
YOLOV5_STRIDES = [8, 16, 32]


def make_meta(nc: int = 80, imgsz_hw: tuple[int, int] = (320, 320), **overrides) -> ModelMeta:
    """A valid metadata record with the YOLOv5 anchors, for tests that need no model file."""
    raw = metadata_dict(nc=nc, imgsz_hw=imgsz_hw, **overrides)
    return parse_metadata(raw, "test")


def metadata_dict(nc: int = 80, imgsz_hw: tuple[int, int] = (320, 320), **overrides) -> dict:
    raw = {
        "format": "edge-yolo",
        "layout_version": 1,
        "imgsz": list(imgsz_hw),
        "precision": "int8",
        "strides": YOLOV5_STRIDES,
        "anchors": YOLOV5_ANCHORS_WH,
        "nc": nc,
        "names": [f"class{i}" for i in range(nc)],
    }
    raw.update(overrides)
    return raw
