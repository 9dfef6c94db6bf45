"""The real checkpoints of `shared/models/zoo/` and what their own tensors say about them.

The parameter count is taken from the pickled tensors directly (not from the network this project
builds), so comparing the two checks the builder against the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tests.model_cache import shared_root

# folder → (file, loads?) as the zoo's README describes each one
ZOO = {
    "official_v6.0_yolov5n": ("yolov5n.pt", True),
    "ultralytics_exp_yolov5n-7_C3x": ("yolov5n-7.pt", True),
    "custom_v6.1_license_plate_bd": ("yolov5n.pt", True),
    "custom_v6.1_shopping_cabinet": ("yolov5n.pt", True),
    "custom_v7.0_trash": ("best.pt", True),
    "fp32_unstripped_with_optimizer_v4era": ("epoch_36.pt", False),
    "pruned_sparse_fp32_model_only": ("pruned_model_plus_final2.pt", False),
    "fork_yolov5lite_v5.0era": ("yolov5-lite.pt", False),
    "fork_yolov5face_plate_v5.0era": ("plate_detect.pt", False),
    "broken_truncated_v6.0_yolov5n": ("yolov5n.pt", False),
}
# The one line each refused file must give (a fragment of it).
REFUSALS = {
    "fp32_unstripped_with_optimizer_v4era": "StemBlock from a fork of YOLOv5 is not supported (nor ShuffleV2Block)",
    "pruned_sparse_fp32_model_only": "Bottleneck3 from a fork of YOLOv5 is not supported",
    "fork_yolov5lite_v5.0era": "conv_bn_relu_maxpool from a fork of YOLOv5 is not supported (nor Shuffle_Block)",
    "fork_yolov5face_plate_v5.0era": "StemBlock from a fork of YOLOv5 is not supported (nor ShuffleV2Block)",
    "broken_truncated_v6.0_yolov5n": "is truncated",
}


@dataclass(frozen=True)
class ZooEntry:
    folder: str
    path: Path
    loads: bool

    @property
    def images(self) -> list[Path]:
        return sorted((self.path.parent / "images").glob("*.jpg"))


def zoo_root() -> Path:
    return shared_root() / "models" / "zoo"


def zoo_entries() -> list[ZooEntry]:
    return [ZooEntry(folder, zoo_root() / folder / name, loads) for folder, (name, loads) in ZOO.items()]


def implied_fused_parameters(path: Path) -> int:
    """Parameters after folding each Conv's batch norm into its convolution, from the raw tensors.

    A folded batch norm leaves one bias per channel where it had a weight and a bias; buffers
    (running statistics, anchors) are not parameters.
    """
    from convert.unpickle import restricted_pickle

    ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    record = ckpt.get("ema") or ckpt.get("model")
    params = dict(_parameters(record))
    total = sum(t.numel() for t in params.values())
    for key, t in params.items():
        prefix = key[: -len(".bn.weight")]
        if key.endswith(".bn.weight") and f"{prefix}.conv.weight" in params and f"{prefix}.conv.bias" not in params:
            total -= t.numel()  # weight and bias become a single bias
    return total


def _parameters(record, prefix: str = ""):
    for name, tensor in (getattr(record, "_parameters", None) or {}).items():
        if isinstance(tensor, torch.Tensor):
            yield prefix + name, tensor
    for name, child in (getattr(record, "_modules", None) or {}).items():
        if child is not None:
            yield from _parameters(child, f"{prefix}{name}.")
