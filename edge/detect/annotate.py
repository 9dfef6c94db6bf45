"""Boxes and labels drawn on a frame, for eyeballing results."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edge.detect.detections import Detections

LINE_THICKNESS = 2
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
TEXT_COLOR_BGR = (255, 255, 255)
TEXT_PAD = 3
GOLDEN_HUE_STEP = 0.618  # spreads consecutive class ids far apart on the hue circle
HUE_RANGE = 180  # OpenCV 8-bit hue spans 0..179
BOX_SATURATION = 200
BOX_VALUE = 230


def class_color_bgr(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class."""
    hue = int((class_id * GOLDEN_HUE_STEP) % 1.0 * HUE_RANGE)
    hsv = np.array([[[hue, BOX_SATURATION, BOX_VALUE]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image_bgr: np.ndarray, dets: Detections, names: Sequence[str]) -> np.ndarray:
    """A copy of ``image_bgr`` with each detection's box and "label score" drawn."""
    canvas = image_bgr.copy()
    boxes = np.round(dets.xyxy).astype(int).tolist()
    for (x1, y1, x2, y2), score, class_id in zip(boxes, dets.score.tolist(), dets.class_id.tolist()):
        color = class_color_bgr(class_id)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, LINE_THICKNESS)
        label = f"{names[class_id] if class_id < len(names) else class_id} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, FONT, FONT_SCALE, 1)
        top = max(y1 - text_h - baseline - TEXT_PAD, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + text_w + 2 * TEXT_PAD, top + text_h + baseline + TEXT_PAD), color, cv2.FILLED)
        cv2.putText(canvas, label, (x1 + TEXT_PAD, top + text_h + TEXT_PAD // 2), FONT, FONT_SCALE, TEXT_COLOR_BGR, 1, cv2.LINE_AA)
    return canvas
