"""How much each channel matters, by which the channels to remove are chosen."""
from __future__ import annotations

import torch

from convert.errors import ConvertError

METHODS = ("act", "l1", "l2", "bn")
DEFAULT_METHOD = "act"


def importance_for(method: str, stats: dict | None = None, origin: dict | None = None):
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
        return _variance_importance(stats, origin if origin is not None else {})
    raise ConvertError(f"--method {method!r} is not a pruning method: use one of {', '.join(METHODS)}")


def _variance_importance(stats: dict, origin: dict):
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
                idx, valid = in_range(idxs, conv.in_channels)
                score = torch.zeros(len(idx))
                var = stats[conv][1][original_inputs(origin, conv, idx[valid])]
                score[valid] = var * conv.weight[:, idx[valid]].pow(2).sum((0, 2, 3))
                # Scores land on the root channel each index stands for (SPPF lists a channel 4 times).
                total.scatter_add_(0, torch.as_tensor(roots, dtype=torch.long), score)
                found = True
            return total if found else None

    return VarianceImportance()


def in_range(idxs, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices and which of them exist: torch-pruning lists some beyond a layer's width after
    SPPF's repeated pooling (and ignores those itself when pruning)."""
    idx = torch.as_tensor(list(idxs), dtype=torch.long)
    return idx, idx < channels


def original_inputs(origin: dict, conv, idx: torch.Tensor) -> torch.Tensor:
    """Original input-channel indices of `conv` for its current indices `idx`.

    torch-pruning numbers a layer's channels as they are now; the statistics were taken on the
    unpruned model. The two differ for a layer fed by a Concat once another part of it was pruned.
    """
    return origin[conv][idx] if conv in origin else idx
