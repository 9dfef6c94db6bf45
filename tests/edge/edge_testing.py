"""Builders for edge/ tests that need metadata or raw outputs but no model file."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from edge.model.metadata import ModelMeta, parse_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]

EMULATION_ENV = "EDGE_YOLO_EMULATION"  # set by tests/aarch64/run.sh
EMULATED = os.environ.get(EMULATION_ENV) == "qemu-user"
# Under QEMU user-mode emulation an interpreter invoke is about 100x slower than native and
# everything else 5-20x: time limits meant for a real device are stretched by this much there.
EMULATION_SLOWDOWN = 8.0


def time_limit(native_s: float) -> float:
    """A limit in seconds that holds on a real device, stretched when the tests run under QEMU."""
    return native_s * EMULATION_SLOWDOWN if EMULATED else native_s


def frame_budget(native: int, emulated: int) -> int:
    """How many frames a test runs: fewer under QEMU, where each one costs about a second."""
    return emulated if EMULATED else native


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


INT8_OUTPUT_SCALE = 1.0 / 256.0  # sigmoid outputs: the contract's quantization
INT8_OUTPUT_ZERO_POINT = -128


def random_raw_outputs(
    meta: ModelMeta, rng: np.random.Generator, obj_high_fraction: float, obj_low_max: int = -80
) -> dict[int, np.ndarray]:
    """Random int8 head outputs: most objectness values below ``obj_low_max``, a fraction anywhere."""
    height, width = meta.imgsz_hw
    outputs = {}
    for stride in reversed(meta.strides):  # the interpreter's order is not the stride order
        shape = (1, height // stride, width // stride, meta.num_anchors, meta.channels_per_anchor)
        raw = rng.integers(-128, 128, size=shape, dtype=np.int16).astype(np.int8)
        low = rng.integers(-128, obj_low_max, size=shape[:4], dtype=np.int16).astype(np.int8)
        high = rng.random(shape[:4]) < obj_high_fraction
        raw[..., 4] = np.where(high, raw[..., 4], low)
        outputs[stride] = raw.reshape(shape[:3] + (-1,))
    return outputs


def optimal_total(similarity: np.ndarray, threshold: float) -> float:
    """The best total similarity of any one-to-one assignment of pairs at or above ``threshold``
    (brute force over permutations: for the small matrices of a test)."""
    m, n = similarity.shape
    best = 0.0
    for cols in itertools.permutations(range(max(n, m)), m):
        best = max(best, sum(similarity[r, c] for r, c in enumerate(cols) if c < n and similarity[r, c] >= threshold))
    return best
