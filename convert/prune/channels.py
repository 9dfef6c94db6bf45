"""Structured pruning: remove whole channels so the smaller network is really cheaper to run.

Which channels may go together is decided by torch-pruning's dependency graph (DepGraph): a C3
residual add, a Concat or SPPF's pooled concatenation couple channels across layers, and the graph
finds those groups by tracing the network, so the wiring rules are not written out here. The model
is pruned with its batch norms in place, so it can still be fine-tuned (see `convert.distill`).
The detection convolutions keep their outputs: the layout `na*(5+nc)` is the model contract.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from convert.errors import ConvertError
from convert.prune.cost import measure
from convert.prune.importance import DEFAULT_METHOD, importance_for, in_range, original_inputs
from convert.yolo_model import YOLOv5, build_model

DEFAULT_ROUND_TO = 8
BISECTION_STEPS = 7  # channel fraction to within 0.95 / 2^7 < 0.01


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
    origin = {conv: torch.arange(conv.in_channels) for conv in pruned.modules() if isinstance(conv, nn.Conv2d)}
    pruner = tp.pruner.MetaPruner(
        pruned, example, importance=importance_for(method, stats, origin), pruning_ratio=ratio,
        pruning_ratio_dict=per_layer, global_pruning=False, round_to=round_to, ignored_layers=heads)
    names = {m: n for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)}
    widths = {n: m.out_channels for m, n in names.items()}
    removed: dict[str, set[int]] = {}
    for group in pruner.step(interactive=True):
        shifts = _removed_inputs_shift(group, stats, origin, tp.prune_conv_in_channels) if stats else []
        for dep, idxs in group:
            if dep.handler == tp.prune_conv_out_channels and dep.target.module in names:
                removed.setdefault(names[dep.target.module], set()).update(int(i) for i in idxs)
        _forget_inputs(group, origin, tp.prune_conv_in_channels)
        group.prune()
        _compensate(pruned, shifts)
    pruned.yaml = copy.deepcopy(model.yaml)
    pruned.names = list(model.names)
    rebuilt = _rebuilt(pruned)
    rebuilt.kept_channels = {n: [i for i in range(w) if i not in removed.get(n, ())] for n, w in widths.items()}
    return rebuilt


def _forget_inputs(group, origin: dict, in_channel_handler):
    """Drop the inputs this group removes from the current-to-original index maps."""
    for dep, idxs in group:
        conv = dep.target.module
        if dep.handler == in_channel_handler and conv in origin:
            idx, valid = in_range(idxs, conv.in_channels)
            keep = torch.ones(conv.in_channels, dtype=torch.bool)
            keep[idx[valid]] = False
            origin[conv] = origin[conv][keep]


def _removed_inputs_shift(group, stats: dict, origin: dict, in_channel_handler) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """For each convolution losing inputs in `group`: the output its removed inputs gave on average."""
    shifts = []
    for dep, idxs in group:
        conv = dep.target.module
        if dep.handler == in_channel_handler and isinstance(conv, nn.Conv2d) and conv in stats:
            idx, valid = in_range(idxs, conv.in_channels)
            idx = idx[valid].unique()
            with torch.no_grad():
                shift = conv.weight[:, idx].sum((2, 3)) @ stats[conv][0][original_inputs(origin, conv, idx)]
            shifts.append((conv, shift))
    return shifts


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


