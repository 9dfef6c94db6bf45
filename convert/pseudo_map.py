"""How much of the original model's behaviour a lighter variant keeps, measured without labels.

A user has photos from their camera, not labels. The original model's confident detections on a
held-out part of those photos stand in for ground truth, and a variant is scored against them
with the usual COCO mAP50-95. The original scores (about) 100 by construction, so the figure is
agreement with the original, not accuracy: a variant that drops 3 of these points reproduces the
original's detections less well; it does not mean 3 points of real mAP (see the README for the
relation measured on labelled sets).

The held-out part is fixed by file order (`convert.holdout`), so distillation, reconstruction and
calibration are kept off it and the score stays honest across runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.dataset import COCO_ID_OFFSET, coco_detections, read_image
from convert.errors import ConvertError
from convert.evaluate import Backend, coco_map
from convert.progress import progress
from edge.detect.detections import Detections

LABEL_CONF = 0.25  # the usual deployment threshold: what the user would act on
LABEL_IOU = 0.45


@dataclass(frozen=True)
class PseudoLabels:
    """The reference model's confident detections on the held-out frames, as COCO ground truth."""

    frames: list[np.ndarray]
    ground_truth: dict
    boxes: int


def read_frames(paths: list[Path]) -> list[np.ndarray]:
    return [read_image(p) for p in progress(paths, desc="reading images")]


def pseudo_labels(reference: Backend, frames: list[np.ndarray], names: list[str],
                  conf: float = LABEL_CONF, iou: float = LABEL_IOU) -> PseudoLabels:
    """Ground truth made of the reference's detections at `conf` (single label, NMS at `iou`)."""
    from edge.detect.postprocess import Decoder

    decoder = Decoder(reference.meta, getattr(reference, "quant", {s: None for s in reference.meta.strides}),
                      conf=conf, iou=iou)
    images, annotations = [], []
    for index, frame in enumerate(progress(frames, desc="pseudo-labels")):
        dets = _detect_with(reference, frame, decoder)
        height, width = frame.shape[:2]
        images.append({"id": index + COCO_ID_OFFSET, "width": width, "height": height})
        wh = dets.xyxy[:, 2:] - dets.xyxy[:, :2]
        for (x, y), (w, h), c in zip(dets.xyxy[:, :2], wh, dets.class_id):
            annotations.append({"id": len(annotations) + COCO_ID_OFFSET, "image_id": index + COCO_ID_OFFSET,
                                "category_id": int(c) + COCO_ID_OFFSET, "bbox": [float(x), float(y), float(w), float(h)],
                                "area": float(w * h), "iscrowd": 0})
    categories = [{"id": i + COCO_ID_OFFSET, "name": n} for i, n in enumerate(names)]
    if not annotations:
        raise ConvertError(f"the original model detects nothing at confidence {conf} in the {len(frames)} held-out "
                           "images: the photos show none of its classes, so no variant can be scored on them")
    return PseudoLabels(frames, {"images": images, "annotations": annotations, "categories": categories},
                        len(annotations))


def _detect_with(backend: Backend, frame: np.ndarray, decoder) -> Detections:
    """The backend's detections with another decoder (its own keeps the mAP thresholds)."""
    own = backend.decoder
    backend.decoder = decoder
    try:
        return backend.detect(frame)
    finally:
        backend.decoder = own


def pseudo_map(candidate: Backend, labels: PseudoLabels, desc: str | None = None) -> float:
    """mAP50-95 (percent) of the candidate against the pseudo-labels."""
    results = []
    for index, frame in enumerate(progress(labels.frames, desc=desc or f"score {candidate.path.name}")):
        dets = candidate.detect(frame)
        results += coco_detections(index, dets.xyxy, dets.score, dets.class_id)
    return coco_map(labels.ground_truth, results)[0]
