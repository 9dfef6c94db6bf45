"""The labels objects go by: the model's names, with the ones merged for a scene (``[track.aliases]``).

A top-down camera shows cars the way COCO rarely does; yolov5n then calls one car ``cell phone`` in
one frame and ``car`` or ``bus`` in the next. Merging those names into ``car`` before tracking lets a
track keep one label. The same serves ``vehicle = ["car", "truck", "bus"]`` on any camera.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge.detect.detections import Detections
from edge.errors import InvalidSetting
from edge.track.settings import AliasSettings

_NOT_SLUG = re.compile(r"[^a-z0-9_]+")


def label_slug(label: str) -> str:
    """A label as one topic level and a Home Assistant object id: ``cell phone`` -> ``cell_phone``."""
    return _NOT_SLUG.sub("_", label.lower()).strip("_") or "label"


@dataclass(frozen=True)
class LabelMap:
    """``names``: the model's names then the alias targets it lacks; ``remap[model class id]`` is a label id."""

    names: tuple[str, ...]
    remap: np.ndarray

    @classmethod
    def build(cls, model_names: Sequence[str], aliases: Sequence[AliasSettings] = ()) -> LabelMap:
        names = list(model_names)
        remap = np.arange(len(names), dtype=np.int64)
        for index, alias in enumerate(aliases):
            if alias.label not in names:
                names.append(alias.label)
            for source in alias.merge:
                if source not in model_names:
                    raise InvalidSetting(f"aliases[{index}].merge",
                                         f"the model has no label {source!r} to merge into {alias.label!r}")
                remap[list(model_names).index(source)] = names.index(alias.label)
        return cls(tuple(names), remap)

    def apply(self, dets: Detections) -> Detections:
        """``dets`` with each class id replaced by its label id (ids beyond the model's kept as they are)."""
        if not len(dets):
            return dets
        ids = dets.class_id
        known = (ids >= 0) & (ids < len(self.remap))
        return Detections(dets.xyxy, dets.score, np.where(known, self.remap[np.clip(ids, 0, len(self.remap) - 1)], ids))

    def label(self, label_id: int) -> str:
        return self.names[label_id] if 0 <= label_id < len(self.names) else str(label_id)
