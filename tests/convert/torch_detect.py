"""PyTorch detections through the device's own letterbox and post-processing, for comparisons."""
from __future__ import annotations

import numpy as np
import torch

from convert.onnx_export import SigmoidHeads
from edge.detect.detections import Detections
from edge.detect.letterbox import boxes_to_frame, letterbox_into
from edge.model.metadata import parse_metadata
from edge.detect.postprocess import Decoder


def torch_detect(model, frame_bgr: np.ndarray, imgsz: int, conf=0.25, iou=0.45) -> Detections:
    canvas = np.empty((imgsz, imgsz, 3), np.uint8)
    params = letterbox_into(frame_bgr, canvas)
    x = torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        heads = SigmoidHeads(model)(x)
    outputs = {s: h.permute(0, 2, 3, 1).numpy() for s, h in zip(model.strides, heads)}
    meta = parse_metadata({
        "format": "edge-yolo", "layout_version": 1, "imgsz": [imgsz, imgsz], "precision": "fp32",
        "strides": model.strides, "anchors": model.anchors_px.tolist(), "nc": model.detect.nc,
        "names": list(model.names)})
    dets = Decoder(meta, {s: None for s in outputs}, conf=conf, iou=iou)(outputs)
    return Detections(boxes_to_frame(dets.xyxy, params), dets.score, dets.class_id)
