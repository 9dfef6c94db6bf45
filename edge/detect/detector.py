"""Frame in, Detections in frame pixels out: letterbox → invoke → decode + NMS → map back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edge.detect.detections import Detections
from edge.fields import check_fields, setting
from edge.model.interpreter import Model
from edge.model.metadata import class_ids_from
from edge.detect.letterbox import boxes_to_frame, letterbox_into
from edge.detect.postprocess import Decoder

MS_PER_S = 1000.0
MAX_DETECTIONS = 10_000
STAGES = ("preprocess", "invoke", "postprocess")


@dataclass(frozen=True)
class DetectSettings:
    """Thresholds applied to every frame; defaults are YOLOv5's detect.py defaults.

    ``classes`` holds what the user wrote (ids or names); the Detector resolves it against the
    model's names, so a typo is caught when the model is known.
    """

    TITLE: ClassVar[str] = "detection"

    conf: float = setting(0.25, help="minimum score (objectness x class probability), 0..1", low=0.0, high=1.0)
    iou: float = setting(0.45, help="IoU above which NMS merges overlapping boxes of one class, 0..1", low=0.0, high=1.0)
    classes: tuple[str | int, ...] | None = setting(None, help="keep only these class ids or names, e.g. person 2",
                                                    metavar="CLASS", example=("person", "car"), default_text="all")
    max_det: int = setting(300, help="most detections reported per frame", low=1, high=MAX_DETECTIONS)
    multi_label: bool = False
    agnostic: bool = False

    def __post_init__(self) -> None:
        check_fields(self)


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
            classes=None if settings.classes is None else class_ids_from(settings.classes, self.meta.names),
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

