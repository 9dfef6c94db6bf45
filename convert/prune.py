"""Structured pruning: remove whole channels so the smaller network is really cheaper to run.

Which channels may go together is decided by torch-pruning's dependency graph (DepGraph): a C3
residual add, a Concat or SPPF's pooled concatenation couple channels across layers, and the graph
finds those groups by tracing the network, so the wiring rules are not written out here. The model
is pruned with its batch norms in place, so it can still be fine-tuned (see `convert.distill`).
The detection convolutions keep their outputs: the layout `na*(5+nc)` is the model contract.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convert.calibration import find_images, letterboxed_images, select_evenly
from convert.errors import ConvertError
from convert.yolo_model import YOLOv5, build_model

METHODS = ("act", "l1", "l2", "bn")
DEFAULT_METHOD = "act"
DEFAULT_ROUND_TO = 8
STATS_IMAGES = 64  # enough for stable per-channel means and variances
BISECTION_STEPS = 7  # channel fraction to within 0.95 / 2^7 < 0.01


@dataclass(frozen=True)
class Cost:
    """What a model costs at one input size."""
    params: int
    macs: int

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


def measure(model: YOLOv5, imgsz_hw: tuple[int, int]) -> Cost:
    """Parameters and multiply-accumulates of one forward pass at `imgsz_hw` (batch norms counted as is)."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, *imgsz_hw))
    finally:
        model.train(was_training)
    return Cost(params=int(params), macs=int(macs))


def importance_for(method: str, stats: dict | None = None):
    """l1/l2: filter weight magnitude. bn: the batch-norm scale (network slimming) of each channel.
    act: how much a channel varies, as seen by its consumers (needs activation statistics)."""
    import torch_pruning as tp

    if method == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if method == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if method == "bn":
        return tp.importance.BNScaleImportance()
    if method == "act":
        if not stats:
            raise ConvertError("--method act ranks channels by their activations: give --images")
        return _variance_importance(stats)
    raise ConvertError(f"--method {method!r} is not a pruning method: use one of {', '.join(METHODS)}")


def _variance_importance(stats: dict):
    """A channel's importance: the variance it adds to its consumers' outputs, var(x_c) * |W[:, c]|².

    Its mean is folded back when it is removed (`_compensate`), so only the varying part is lost;
    a channel that is nearly constant on real images costs nothing to remove, whatever its weights.
    """
    import torch_pruning as tp

    class VarianceImportance(tp.importance.Importance):
        @torch.no_grad()
        def __call__(self, group):
            total, found = torch.zeros(len(group[0].idxs)), False
            for i, (dep, idxs) in enumerate(group):
                conv = dep.target.module
                roots = group[i].root_idxs
                if dep.handler != tp.prune_conv_in_channels or conv not in stats or any(r is None for r in roots):
                    continue
                idx, valid = _in_range(idxs, conv.in_channels)
                score = torch.zeros(len(idx))
                score[valid] = stats[conv][1][idx[valid]] * conv.weight[:, idx[valid]].pow(2).sum((0, 2, 3))
                # Scores land on the root channel each index stands for (SPPF lists a channel 4 times).
                total.scatter_add_(0, torch.as_tensor(roots, dtype=torch.long), score)
                found = True
            return total if found else None

    return VarianceImportance()


def check_ratio(ratio: float) -> float:
    if not 0.0 < ratio < 1.0:
        raise ConvertError(f"--ratio {ratio} is outside (0, 1): give the fraction to remove, e.g. 0.3")
    return float(ratio)


def prune_model(model: YOLOv5, ratio: float, method: str = DEFAULT_METHOD,
                round_to: int = DEFAULT_ROUND_TO, imgsz_hw: tuple[int, int] = (320, 320),
                stats: dict | None = None) -> YOLOv5:
    """A pruned copy of `model` with `ratio` of the channels of every prunable layer removed.

    The ratio is uniform per layer (not a global ranking): a global ranking empties the few
    layers whose weights happen to be small, and YOLO's thin neck layers do not survive that.
    Channel counts stay multiples of `round_to`, which int8 kernels process in blocks of.
    With `stats` (`input_stats` of the model on real images) what the removed channels fed their
    consumers on average is kept (see `_compensate`). The result's `kept_channels` maps each convolution to
    the original output channels it kept, in order: distillation matches features through it.
    """
    import torch_pruning as tp

    check_ratio(ratio)
    if round_to < 1:
        raise ConvertError(f"--round-to {round_to} must be 1 or more (8 suits int8 kernels)")
    if any(not isinstance(m, nn.BatchNorm2d) for m in _conv_bns(model)):
        raise ConvertError("the model has its batch norms folded: prune the checkpoint before fusing")
    pruned = copy.deepcopy(model).eval()
    for p in pruned.parameters():
        p.requires_grad_(True)
    by_name = dict(pruned.named_modules())
    stats = {by_name[n]: s for n, s in (stats or {}).items()}
    example = torch.zeros(1, 3, *imgsz_hw)
    heads = list(pruned.detect.m)
    per_layer = {conv: layer_ratio(conv.out_channels, ratio, round_to)
                 for conv in pruned.modules() if isinstance(conv, nn.Conv2d) and conv not in heads}
    pruner = tp.pruner.MetaPruner(
        pruned, example, importance=importance_for(method, stats), pruning_ratio=ratio,
        pruning_ratio_dict=per_layer, global_pruning=False, round_to=round_to, ignored_layers=heads)
    names = {m: n for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)}
    widths = {n: m.out_channels for m, n in names.items()}
    removed: dict[str, set[int]] = {}
    for group in pruner.step(interactive=True):
        shifts = _removed_inputs_shift(group, stats, tp.prune_conv_in_channels) if stats else []
        for dep, idxs in group:
            if dep.handler == tp.prune_conv_out_channels and dep.target.module in names:
                removed.setdefault(names[dep.target.module], set()).update(int(i) for i in idxs)
        group.prune()
        _compensate(pruned, shifts)
    pruned.yaml = copy.deepcopy(model.yaml)
    pruned.names = list(model.names)
    rebuilt = _rebuilt(pruned)
    rebuilt.kept_channels = {n: [i for i in range(w) if i not in removed.get(n, ())] for n, w in widths.items()}
    return rebuilt


def stats_images(folders: list[Path], imgsz_hw: tuple[int, int], count: int = STATS_IMAGES) -> torch.Tensor:
    """`[N, 3, H, W]` letterboxed photos in [0, 1], spread evenly over the folders' images."""
    frames, _ = letterboxed_images(select_evenly(find_images(folders), count), imgsz_hw, "activation statistics")
    if not frames:
        raise ConvertError(f"no readable images in {', '.join(map(str, folders))}: pruning ranks channels "
                           "on real photos, pass --images FOLDER")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def input_stats(model: YOLOv5, images: torch.Tensor, batch: int = 16) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every convolution's input mean and variance per channel over `images` (`[N, 3, H, W]`, 0-1)."""
    names = {m: n for n, m in model.named_modules()}
    sums: dict[nn.Conv2d, list[torch.Tensor]] = {}

    def record(conv, inputs):
        x = inputs[0].double()
        first, second = x.mean((2, 3)).sum(0), x.pow(2).mean((2, 3)).sum(0)
        old = sums.get(conv)
        sums[conv] = [first, second] if old is None else [old[0] + first, old[1] + second]

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(images[start:start + batch])
    finally:
        for hook in hooks:
            hook.remove()
    stats = {}
    for conv, (first, second) in sums.items():
        mean = first / len(images)
        stats[names[conv]] = (mean.float(), (second / len(images) - mean.pow(2)).clamp_min(0).float())
    return stats


def _removed_inputs_shift(group, stats: dict, in_channel_handler) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """For each convolution losing inputs in `group`: the output its removed inputs gave on average."""
    shifts = []
    for dep, idxs in group:
        conv = dep.target.module
        if dep.handler == in_channel_handler and isinstance(conv, nn.Conv2d) and conv in stats:
            idx, valid = _in_range(idxs, conv.in_channels)
            idx = idx[valid].unique()
            with torch.no_grad():
                shift = conv.weight[:, idx].sum((2, 3)) @ stats[conv][0][idx]
            shifts.append((conv, shift))
    return shifts


def _in_range(idxs, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices and which of them exist: torch-pruning lists some beyond a layer's width after
    SPPF's repeated pooling (and ignores those itself when pruning)."""
    idx = torch.as_tensor(list(idxs), dtype=torch.long)
    return idx, idx < channels


def _compensate(model: YOLOv5, shifts: list[tuple[nn.Conv2d, torch.Tensor]]):
    """Put the removed inputs' mean contribution back, as a bias (heads) or a batch-norm mean shift.

    A pruned channel is not silent: after batch norm and SiLU it carries a mean the next layers
    rely on, and dropping it shifts every later activation (on YOLOv5n, removing 10% of channels
    by weight norm takes mAP from 22 to 0). Its mean is a constant input, whose effect on the
    consumer is exact to fold in (up to the zero padding at the image border).
    """
    parents = {conv: module for module in model.modules() if isinstance(getattr(module, "conv", None), nn.Conv2d)
               for conv in [module.conv]}
    with torch.no_grad():
        for conv, shift in shifts:
            if conv.bias is not None:
                conv.bias += shift
            elif conv in parents and isinstance(parents[conv].bn, nn.BatchNorm2d):
                parents[conv].bn.running_mean -= shift


def prune_to_cost(model: YOLOv5, ratio: float, method: str = DEFAULT_METHOD,
                  round_to: int = DEFAULT_ROUND_TO, imgsz_hw: tuple[int, int] = (320, 320),
                  stats: dict | None = None) -> YOLOv5:
    """A pruned copy of `model` that costs at least `ratio` fewer MACs, removing as few channels as that takes.

    A convolution's cost is in-channels times out-channels, so removing a fraction r of every
    layer's channels removes about 1 - (1 - r)^2 of the MACs: 30% of the channels is half the cost.
    Asking for the cost saving directly keeps the accuracy loss no larger than what was asked for.
    The per-layer channel fraction is found by bisection (channel counts, hence cost, do not depend
    on which channels go, so the search prunes by weight norm and only the final pass ranks by `method`).
    """
    check_ratio(ratio)
    budget = (1 - ratio) * measure(model, imgsz_hw).macs
    low, high = 0.0, 0.95
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if measure(prune_model(model, middle, "l1", round_to, imgsz_hw), imgsz_hw).macs <= budget:
            high = middle
        else:
            low = middle
    return prune_model(model, high, method, round_to, imgsz_hw, stats)


def layer_ratio(channels: int, ratio: float, round_to: int) -> float:
    """The ratio that leaves `channels * (1 - ratio)` rounded to the NEAREST multiple of `round_to`.

    torch-pruning rounds the kept count down, which on YOLOv5n's 16- to 64-channel layers turns
    0.3 into as much as 0.5. Nearest rounding keeps each layer close to the requested ratio.
    """
    kept = max(round_to, int(round(channels * (1 - ratio) / round_to)) * round_to)
    kept = min(kept, channels)
    # +0.5: torch-pruning keeps int(channels * (1 - r)), which must not fall below `kept` by float error
    return max(0.0, 1 - (kept + 0.5) / channels)


def _conv_bns(model: YOLOv5):
    from convert.yolo_model import Conv

    return [m.bn for m in model.modules() if isinstance(m, Conv)]


def _rebuilt(pruned: YOLOv5) -> YOLOv5:
    """The pruned network rebuilt from its yaml and channel shapes, so it is exactly what loads back.

    torch-pruning edits layers in place; rebuilding proves the saved form (yaml + shapes + weights)
    describes the same network, and leaves no pruning hooks or stale attributes behind.
    """
    rebuilt = build_model(pruned.yaml, pruned.channel_shapes())
    rebuilt.load_state_dict(pruned.state_dict())
    rebuilt.names = list(pruned.names)
    with torch.no_grad():
        x = torch.rand(1, 3, 128, 128)
        ref, got = pruned.eval()(x), rebuilt.eval()(x)
    worst = max(float((a - b).abs().max()) for a, b in zip(ref, got))
    if worst > 1e-4:
        raise ConvertError(f"the pruned network does not rebuild from its channel shapes (differs by "
                           f"{worst:.2e}): this architecture cannot be pruned with this tool")
    return rebuilt


def check_student(teacher: YOLOv5, student: YOLOv5, student_name: str = "student"):
    """Refuse a student that is not a pruned form of the teacher: same wiring, classes and strides."""
    problems = []
    if student.detect.nc != teacher.detect.nc:
        problems.append(f"{student.detect.nc} classes vs the teacher's {teacher.detect.nc}")
    if student.strides != teacher.strides:
        problems.append(f"strides {student.strides} vs {teacher.strides}")
    if student.detect.na != teacher.detect.na:
        problems.append(f"{student.detect.na} anchors per level vs {teacher.detect.na}")
    elif not torch.allclose(student.anchors_px, teacher.anchors_px):
        problems.append("different anchors")
    if len(student.model) != len(teacher.model) or \
            [s.module for s in student.layers] != [s.module for s in teacher.layers]:
        problems.append(f"{len(student.model)} layers vs the teacher's {len(teacher.model)}")
    elif set(student.channel_shapes()) != set(teacher.channel_shapes()):
        problems.append("a different set of convolutions (other depth)")
    else:
        t_shapes = teacher.channel_shapes()
        wider = [n for n, (o, i) in student.channel_shapes().items() if o > t_shapes[n][0] or i > t_shapes[n][1]]
        if wider:
            problems.append(f"{wider[0]} is wider than the teacher's (other width)")
    if problems:
        raise ConvertError(f"{student_name} is not a pruned form of the teacher ({'; '.join(problems)}): "
                           "pass a checkpoint written by `edge-convert prune` from the same weights")
