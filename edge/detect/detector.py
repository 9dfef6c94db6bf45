"""Frame in, Detections in frame pixels out: letterbox → invoke → decode + NMS → map back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.model.interpreter import Model
from edge.detect.letterbox import boxes_to_frame, letterbox_into
from edge.detect.postprocess import Decoder

MS_PER_S = 1000.0
STAGES = ("preprocess", "invoke", "postprocess")


@dataclass(frozen=True)
class DetectSettings:
    """Thresholds applied to every frame; defaults are YOLOv5's detect.py defaults."""

    conf: float = 0.25
    iou: float = 0.45
    classes: tuple[int, ...] | None = None
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False

    def __post_init__(self) -> None:
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EdgeError(f"{name} must be between 0 and 1, received {value}")
        if self.max_det < 1:
            raise EdgeError(f"max-det must be at least 1, received {self.max_det}")


class Detector:
    """A model and its thresholds, built once; ``detect()`` runs one frame.

    Not thread-safe: one interpreter, one input buffer. Use one Detector per thread.
    """

    def __init__(
        self,
        model_path: str | Path,
        settings: DetectSettings = DetectSettings(),
        threads: int | None = None,
        device: str = "cpu",
        color_order: str = "bgr",
    ):
        self.model = Model(model_path, threads=threads, device=device)
        self.meta = self.model.meta
        self.color_order = color_order
        height, width = self.meta.imgsz_hw
        # float inputs are staged as uint8 first; int8/uint8 inputs are written in place
        self._scratch = np.empty((height, width, 3), np.uint8) if self.model.input_dtype == np.float32 else None
        self.settings = settings

    @property
    def settings(self) -> DetectSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: DetectSettings) -> None:
        """New thresholds rebuild the decoder's tables once, not per frame."""
        self._settings = settings
        self._decoder = Decoder(
            self.meta,
            self.model.output_quantization,
            conf=settings.conf,
            iou=settings.iou,
            classes=settings.classes,
            max_det=settings.max_det,
            multi_label=settings.multi_label,
            agnostic=settings.agnostic,
        )

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    @property
    def names(self) -> tuple[str, ...]:
        return self.meta.names

    def detect(self, frame: np.ndarray) -> tuple[Detections, dict[str, float]]:
        """Detections in ``frame`` pixels, and the time of each stage in ms."""
        t0 = time.perf_counter()
        params = letterbox_into(frame, self.model.input_view(), self.color_order, self._scratch)
        t1 = time.perf_counter()
        self.model.invoke()
        t2 = time.perf_counter()
        dets = self._decoder(self.model.outputs())
        dets = Detections(boxes_to_frame(dets.xyxy, params), dets.score, dets.class_id)
        t3 = time.perf_counter()
        timings = dict(zip(STAGES, ((t1 - t0) * MS_PER_S, (t2 - t1) * MS_PER_S, (t3 - t2) * MS_PER_S)))
        return dets, timings

