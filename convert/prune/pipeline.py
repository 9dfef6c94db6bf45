"""The whole of `edge-convert prune`: remove bottlenecks, thin channels to a MACs budget, refit.

Each step is in its own module; this one decides their order and what the result records:
depth first (a removed bottleneck need not be thinned), then channels until the model is `ratio`
cheaper than the original in total, then the reconstruction that puts back, layer by layer, what
the original computed on real photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convert.errors import ConvertError
from convert.prune.channels import DEFAULT_ROUND_TO, check_ratio, prune_to_cost
from convert.prune.cost import measure
from convert.prune.depth import bottlenecks, drop_bottlenecks, parse_drops, rank_bottlenecks
from convert.prune.importance import DEFAULT_METHOD, METHODS
from convert.prune.reconstruct import MODES, Fit, reconstruct
from convert.prune.stats import input_stats, stats_images
from convert.yolo_model import YOLOv5

RECONSTRUCT_IMAGES = 256
DEFAULT_RECONSTRUCT = "ls"
RANK_IMAGES = 64  # training photos the bottlenecks are ranked on (the held-out part stays for scoring)


@dataclass(frozen=True)
class PruneSpec:
    """What to remove: `ratio` of the MACs in total (0: no channel thinning), the bottlenecks named
    in `drop` or the `depth` cheapest ones, and how to refit (`reconstruct`: ls, bn or none)."""

    ratio: float = 0.0
    method: str = DEFAULT_METHOD
    round_to: int = DEFAULT_ROUND_TO
    drop: str = ""
    depth: int = 0
    reconstruct: str = DEFAULT_RECONSTRUCT
    reconstruct_images: int = RECONSTRUCT_IMAGES

    def check(self, model: YOLOv5):
        if self.ratio:
            check_ratio(self.ratio)
        if self.method not in METHODS:
            raise ConvertError(f"--method {self.method!r} is not a pruning method: use one of {', '.join(METHODS)}")
        available = len(bottlenecks(model))
        if not 0 <= self.depth <= available:
            raise ConvertError(f"--depth {self.depth} is out of range: the model has {available} bottlenecks (0..{available})")
        if self.drop and self.depth:
            raise ConvertError("give --drop (which bottlenecks) or --depth (how many), not both")
        if self.drop:
            parse_drops(self.drop, model)
        if not (self.ratio or self.drop or self.depth):
            raise ConvertError("nothing to remove: give --ratio (fraction of MACs) and/or --depth/--drop (bottlenecks)")
        if self.reconstruct not in MODES + ("none",):
            raise ConvertError(f"--reconstruct {self.reconstruct!r}: use one of {', '.join(MODES + ('none',))}")
        if self.reconstruct_images < 16:
            raise ConvertError(f"--reconstruct-images {self.reconstruct_images} is too few: give 16 or more (256 suits)")


@dataclass
class Pruned:
    model: YOLOv5
    kept_channels: dict[str, list[int]]
    depth: dict[str, list[int]] | None
    dropped: list[str] = field(default_factory=list)
    fits: list[Fit] = field(default_factory=list)


def prune(teacher: YOLOv5, spec: PruneSpec, folders: list[Path], imgsz_hw: tuple[int, int]) -> Pruned:
    """A pruned, refitted copy of `teacher`; photos come from the training part of `folders`."""
    spec.check(teacher)
    teacher = teacher.eval()
    base, depth, dropped = teacher, None, []
    if spec.drop or spec.depth:
        if spec.drop:
            chosen = parse_drops(spec.drop, teacher)
        else:
            chosen = [b for b, _ in rank_bottlenecks(teacher, _agreement(teacher, folders, imgsz_hw))[:spec.depth]]
        base, depth = drop_bottlenecks(teacher, chosen)
        dropped = [b.name for b in chosen]
    kept = {n: list(range(c)) for n, (c, _) in base.channel_shapes().items()}
    model = base
    if spec.ratio:
        full, now = measure(teacher, imgsz_hw).macs, measure(base, imgsz_hw).macs
        rest = 1 - (1 - spec.ratio) * full / now  # what thinning must still remove of the depth-pruned cost
        if rest > 0:
            stats = input_stats(base, stats_images(folders, imgsz_hw))
            model = prune_to_cost(base, rest, spec.method, spec.round_to, imgsz_hw, stats)
            kept = model.kept_channels
    model.yaml = teacher.yaml
    fits = []
    if spec.reconstruct != "none":
        images = stats_images(folders, imgsz_hw, spec.reconstruct_images, offset=1, purpose="reconstruction")
        fits = reconstruct(model, teacher, kept, images, mode=spec.reconstruct, depth=depth)
    return Pruned(model.eval(), kept, depth, dropped, fits)


def _agreement(teacher: YOLOv5, folders: list[Path], imgsz_hw: tuple[int, int]):
    """A function scoring a model by its agreement with the teacher's detections on training photos."""
    from convert.calibration import select_evenly
    from convert.evaluate import TorchBackend
    from convert.holdout import training_images
    from convert.pseudo_map import pseudo_labels, pseudo_map, read_frames

    frames = read_frames(select_evenly(training_images(folders, "ranking bottlenecks"), RANK_IMAGES))
    labels = pseudo_labels(TorchBackend(teacher, Path("original"), imgsz_hw, None), frames, list(teacher.names))
    return lambda model: pseudo_map(TorchBackend(model, Path("candidate"), imgsz_hw, None), labels)
