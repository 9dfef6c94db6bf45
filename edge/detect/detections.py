"""Detections as parallel arrays: one box format (xyxy), one place that checks shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOX_DECIMALS = 1  # pixels: sub-pixel digits beyond this are noise from the model
SCORE_DECIMALS = 3


@dataclass(frozen=True)
class Detections:
    """n detections: ``xyxy`` (n, 4) float32 corners, ``score`` (n,) float32, ``class_id`` (n,) int64.

    Indexing with a boolean mask, an index array or a slice returns a new ``Detections``,
    so filters read like ``dets[dets.score > 0.5]``.
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        score = np.asarray(self.score, dtype=np.float32)
        class_id = np.asarray(self.class_id, dtype=np.int64)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must have shape (n, 4), received {xyxy.shape}")
        n = xyxy.shape[0]
        for name, value in (("score", score), ("class_id", class_id)):
            if value.shape != (n,):
                raise ValueError(
                    f"Detections.{name} must have shape ({n},) to match xyxy {xyxy.shape}, "
                    f"received {value.shape}"
                )
        # frozen dataclass: store the normalised arrays without re-triggering __setattr__
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_id", class_id)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.empty((0, 4), np.float32),
            score=np.empty((0,), np.float32),
            class_id=np.empty((0,), np.int64),
        )

    def __len__(self) -> int:
        return self.xyxy.shape[0]

    def __getitem__(self, index: np.ndarray | slice | int) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1 if index != -1 else None)
        return Detections(self.xyxy[index], self.score[index], self.class_id[index])

    def to_json(self, names: Sequence[str]) -> list[dict]:
        """JSON-ready dicts, one per detection, in the order held (highest score first after NMS)."""
        boxes = np.round(self.xyxy.astype(np.float64), BOX_DECIMALS).tolist()
        scores = np.round(self.score.astype(np.float64), SCORE_DECIMALS).tolist()
        return [
            {
                "label": names[class_id] if 0 <= class_id < len(names) else str(class_id),
                "class_id": class_id,
                "score": score,
                "box": box,
            }
            for box, score, class_id in zip(boxes, scores, self.class_id.tolist())
        ]
