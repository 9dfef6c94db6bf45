"""Refit what pruning left, layer by layer, so each one reproduces the original network on real photos.

Removing channels changes every later layer's input, and the errors compound: at a third fewer MACs
yolov5n's block outputs are as far from the original's as they are wide by the neck, and mAP is 0.
Each remaining convolution can be refitted so that, given the pruned network's actual input, its
output matches what the original convolution gave on the original's input (He et al. 2017; ThiNet):
a ridge least-squares problem over pixels sampled from real photos. Going in execution order, each
fit sees the inputs that the fits before it produced, so the errors stop compounding.

Outputs are compared before the batch norm (its statistics are the original's, so matching its
input makes its output match). A cheaper variant, `mode="bn"`, only rescales and shifts each output
channel to the original's mean and variance (a batch-norm re-estimation aimed at the original's
statistics rather than at the pruned network's own).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convert.progress import progress
from convert.yolo_model import Conv, YOLOv5

MODES = ("ls", "bn")
RIDGE = 1e-3  # relative to the mean input energy; see `solve_ridge`
POSITIONS = 96  # pixels sampled per image and layer: rows of the least-squares problem
BATCH = 16


@dataclass(frozen=True)
class Fit:
    """One layer's relative output error (MSE over the target's variance) before and after the refit."""

    name: str
    before: float
    after: float


class _Stop(Exception):
    """Ends a forward pass once the layer of interest has run."""


def capture(model: nn.Module, module: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """The input or output of `module` when `model` runs on `x`, running no further than it."""
    seen = {}

    def hook(_, inputs, output):
        seen["v"] = inputs[0] if what == "input" else output
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen["v"]


def execution_order(model: YOLOv5, imgsz_hw: tuple[int, int] = (64, 64)) -> list[str]:
    """Convolution names in the order a forward pass runs them (C3 runs its bottlenecks before cv2, cv3)."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _: order.append(names[mod])) for m in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *imgsz_hw))
    finally:
        for h in hooks:
            h.remove()
    return order


def _sampled_rows(conv: nn.Conv2d, x: torch.Tensor, target: torch.Tensor, positions: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(patches `[B*P, C*k*k]`, targets `[B*P, C_out]`) at P pixels drawn from each image."""
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # [B, C*k*k, L]
    flat = target.flatten(2)  # [B, C_out, L]
    length = flat.shape[2]
    take = min(positions, length)
    idx = torch.stack([torch.randperm(length, generator=generator)[:take] for _ in range(x.shape[0])])
    rows = cols.gather(2, idx[:, None].expand(-1, cols.shape[1], -1)).permute(0, 2, 1).reshape(-1, cols.shape[1])
    ys = flat.gather(2, idx[:, None].expand(-1, flat.shape[1], -1)).permute(0, 2, 1).reshape(-1, flat.shape[1])
    return rows.double(), ys.double()


def solve_ridge(xtx: torch.Tensor, xty: torch.Tensor, ridge: float) -> torch.Tensor:
    """Weights `[d + 1, C_out]` (last row the bias) minimising |Xw + b - y|² + λ|w|².

    λ is `ridge` times the mean diagonal of XᵀX, so one setting suits layers of any scale. It keeps
    the solution from amplifying directions the photos barely excite: large, cancelling weights
    fit the samples no better but lose precision in fp32 and int8 (the ONNX and TFLite checks).
    The bias is not penalised.
    """
    d = xtx.shape[0] - 1
    penalty = ridge * torch.diagonal(xtx)[:d].mean().clamp_min(1e-12)
    a = xtx.clone()
    a[range(d), range(d)] += penalty
    return torch.linalg.solve(a, xty)


def _relative_error(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum().clamp_min(1e-12))


class LayerInputs:
    """Every layer's input for the whole image set, one layer at a time, from cached outputs.

    A forward pass per refitted convolution would cost dozens of passes; instead the outputs of
    the layers still needed later (the previous one and those a Concat or the heads read) are kept
    for all images, and each layer runs once on them. At 320 that is ~2.3 MB per image.
    """

    def __init__(self, model: YOLOv5, images: torch.Tensor):
        self.model, self.prev, self.saved = model, images, {}

    def inputs(self, index: int, start: int, stop: int):
        source = self.model.layers[index].source
        if source == -1:
            return self.prev[start:stop]
        if isinstance(source, int):
            return self.saved[source][start:stop]
        return [self.prev[start:stop] if j == -1 else self.saved[j][start:stop] for j in source]

    def advance(self, index: int):
        """Run layer `index` on all images and keep its output as the next layer's input."""
        layer, n = self.model.model[index], len(self.prev)
        last = index == len(self.model.model) - 1
        with torch.no_grad():
            out = None if last else torch.cat([layer(self.inputs(index, s, s + BATCH)) for s in range(0, n, BATCH)])
        if index in self.model.save:
            self.saved[index] = out
        self.prev = out


def reconstruct(student: YOLOv5, teacher: YOLOv5, kept_channels: dict[str, list[int]], images: torch.Tensor,
                mode: str = "ls", ridge: float = RIDGE, positions: int = POSITIONS, seed: int = 0,
                depth: dict[str, list[int]] | None = None) -> list[Fit]:
    """Refit every convolution of `student` (in place) to the teacher's outputs on `images` `[N,3,H,W]`.

    `depth` maps a depth-pruned student's bottlenecks to the teacher's (`convert.prune.depth`).
    """
    from convert.prune.depth import original_name

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {MODES}")
    student.eval()
    teacher.eval()
    s_modules, t_modules = dict(student.named_modules()), dict(teacher.named_modules())
    parents = {m.conv: m for m in student.modules() if isinstance(m, Conv)}
    t_parents = {m.conv: m for m in teacher.modules() if isinstance(m, Conv)}
    order = execution_order(student)
    s_run, t_run = LayerInputs(student, images), LayerInputs(teacher, images)
    fits = []
    fit = _fit_ls if mode == "ls" else _fit_bn
    for index in progress(range(len(student.model)), desc=f"reconstruct ({mode})", unit="layer"):
        for name in (n for n in order if n.startswith(f"model.{index}.") and n != order[0]):  # the first sees the image
            conv, t_conv = s_modules[name], t_modules[original_name(name, depth)]
            kept = torch.as_tensor(kept_channels[name], dtype=torch.long)
            t_shift = t_parents[t_conv].bn.running_mean[kept] if t_conv in t_parents else None
            generator = torch.Generator().manual_seed(seed * 1009 + len(fits))
            pairs = _pairs(index, s_run, t_run, conv, t_conv, kept, t_shift)
            fits.append(Fit(name, *fit(conv, parents.get(conv), pairs, ridge, positions, generator)))
        s_run.advance(index)
        t_run.advance(index)
    return fits


def _pairs(index: int, s_run: LayerInputs, t_run: LayerInputs, conv, t_conv, kept, t_shift):
    """A re-iterable of (student input, teacher target) per batch: the target is the teacher's
    convolution output on the kept channels, less its batch-norm mean (heads: the logits)."""

    def batches():
        layer, t_layer = s_run.model.model[index], t_run.model.model[index]
        for start in range(0, len(s_run.prev), BATCH):
            target = capture(t_layer, t_conv, t_run.inputs(index, start, start + BATCH), "output")[:, kept]
            if t_shift is not None:
                target = target - t_shift.view(1, -1, 1, 1)
            yield capture(layer, conv, s_run.inputs(index, start, start + BATCH), "input"), target

    return batches


def _fit_ls(conv, parent, pairs, ridge, positions, generator):
    d = conv.weight[0].numel()
    xtx = torch.zeros(d + 1, d + 1, dtype=torch.float64)
    xty = torch.zeros(d + 1, conv.out_channels, dtype=torch.float64)
    held = []
    for x, target in pairs():
        rows, ys = _sampled_rows(conv, x, target, positions, generator)
        rows = torch.cat([rows, torch.ones(len(rows), 1, dtype=rows.dtype)], 1)
        xtx += rows.T @ rows
        xty += rows.T @ ys
        if len(held) < 2:
            held.append((rows, ys))
    solution = solve_ridge(xtx, xty, ridge)
    rows, ys = torch.cat([h[0] for h in held]), torch.cat([h[1] for h in held])
    before = _relative_error(rows @ _current(conv, parent), ys)
    after = _relative_error(rows @ solution, ys)
    with torch.no_grad():
        conv.weight.copy_(solution[:d].T.reshape(conv.weight.shape).to(conv.weight.dtype))
        bias = solution[d].to(conv.weight.dtype)
        if parent is not None:
            parent.bn.running_mean.copy_(-bias)
        else:
            conv.bias.copy_(bias)
    return before, after


def _current(conv: nn.Conv2d, parent) -> torch.Tensor:
    """The layer's present weights in the `solve_ridge` layout, to measure the error before the refit."""
    w = conv.weight.detach().reshape(conv.out_channels, -1).T.double()
    shift = -parent.bn.running_mean if parent is not None else conv.bias
    return torch.cat([w, shift.detach().double()[None]], 0)


def _fit_bn(conv, parent, pairs, ridge, positions, generator):
    """Match each output channel's mean and variance to the teacher's: `z' = a z + c`."""
    sums = torch.zeros(4, conv.out_channels, dtype=torch.float64)  # student mean, sq, teacher mean, sq
    count = 0
    pred_rows, target_rows = [], []
    for x, target in pairs():
        with torch.no_grad():
            z = conv(x)
            z = z - parent.bn.running_mean.view(1, -1, 1, 1) if parent is not None else z
        z64, t64 = z.double().transpose(0, 1).flatten(1), target.double().transpose(0, 1).flatten(1)
        sums += torch.stack([z64.sum(1), z64.pow(2).sum(1), t64.sum(1), t64.pow(2).sum(1)])
        count += z64.shape[1]
        if len(pred_rows) < 2:
            pred_rows.append(z64.T[::17])
            target_rows.append(t64.T[::17])
    mean_s, mean_t = sums[0] / count, sums[2] / count
    std_s = (sums[1] / count - mean_s ** 2).clamp_min(1e-12).sqrt()
    std_t = (sums[3] / count - mean_t ** 2).clamp_min(0).sqrt()
    scale = std_t / std_s
    shift = mean_t - scale * mean_s
    pred, tgt = torch.cat(pred_rows), torch.cat(target_rows)
    before, after = _relative_error(pred, tgt), _relative_error(pred * scale + shift, tgt)
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
        if parent is not None:
            # z' - rm' = a (z - rm) + c  with z' = a z  →  rm' = a rm - c
            parent.bn.running_mean.copy_((scale * parent.bn.running_mean.double() - shift).float())
        else:
            conv.bias.copy_((scale * conv.bias.double() + shift).float())
    return before, after


def reestimate_bn(model: YOLOv5, images: torch.Tensor) -> YOLOv5:
    """Plain batch-norm re-estimation: every running mean and variance set to the model's own
    statistics on `images` (exact averages, not a moving average). For comparison with `reconstruct`."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    model.train()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                model(images[start:start + BATCH])
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.eval()
    return model
