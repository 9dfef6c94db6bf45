"""Block-wise recovery: each pruned block trained alone to reproduce the original block's output.

End-to-end distillation pushes one loss at the heads back through every layer; a block far from
the heads learns slowly and from a signal blurred by all the layers after it. Training each block
on its own (FSKD, NetGraft) gives every one a direct target: the teacher block's output on the
kept channels. Two sources of input are possible:

- `"teacher"`: the teacher's own input to that block (on the kept channels). Blocks are then
  independent of each other, and each learns the original mapping undisturbed;
- `"student"`: the pruned network's actual input, block after block, so each block also learns to
  undo what the blocks before it still get wrong.

Activations of a few hundred images are kept in memory (`LayerInputs`), so a block's epoch costs
one pass of that block alone.
"""
from __future__ import annotations

import torch

from convert.progress import progress
from convert.prune.reconstruct import BATCH, LayerInputs
from convert.yolo_model import YOLOv5

SOURCES = ("student", "teacher")
BLOCK_OUTPUT = {"Conv": "conv", "C3": "cv3.conv", "SPPF": "cv2.conv"}
DEFAULT_EPOCHS = 4
DEFAULT_LR = 1e-3


def block_channels(model: YOLOv5, kept_channels: dict[str, list[int]], widths: dict[int, int]) -> dict[int, torch.Tensor]:
    """For every layer, which of the teacher's output channels the student's output channels are.

    Upsample passes its input's channels through; a Concat lists each part's, offset by the
    teacher's width of the parts before it (`widths`: the teacher's output width per layer).
    """
    kept: dict[int, torch.Tensor] = {}
    for spec in model.layers[:-1]:
        sources = [spec.source] if isinstance(spec.source, int) else list(spec.source)
        sources = [spec.index - 1 if j == -1 else j for j in sources]
        if spec.module in BLOCK_OUTPUT:
            kept[spec.index] = torch.as_tensor(kept_channels[f"model.{spec.index}.{BLOCK_OUTPUT[spec.module]}"])
        elif spec.module == "Concat":
            offsets = torch.cumsum(torch.tensor([0] + [widths[j] for j in sources[:-1]]), 0)
            kept[spec.index] = torch.cat([kept[j] + offset for j, offset in zip(sources, offsets)])
        else:
            kept[spec.index] = kept[sources[0]]
    return kept


class _TeacherFed(LayerInputs):
    """The teacher's layer inputs reduced to the channels the student kept."""

    def __init__(self, teacher_run: LayerInputs, kept: dict[int, torch.Tensor]):
        self.run, self.kept = teacher_run, kept

    def inputs(self, index: int, start: int, stop: int):
        source = self.run.model.layers[index].source
        full = self.run.inputs(index, start, stop)
        if index == 0:
            return full
        if isinstance(source, int):
            return full.index_select(1, self.kept[index - 1 if source == -1 else source])
        return [x.index_select(1, self.kept[index - 1 if j == -1 else j]) for x, j in zip(full, source)]


def _relative(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean() / target.var().clamp_min(1e-6)


def train_blocks(student: YOLOv5, teacher: YOLOv5, kept_channels: dict[str, list[int]], images: torch.Tensor,
                 source: str = "student", epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
                 seed: int = 0) -> list[tuple[int, float, float]]:
    """Train each Conv/C3/SPPF block of `student` in place; returns (layer, error before, after) per block.

    Batch-norm statistics stay frozen (they are the teacher's, or refitted by `reconstruct`).
    """
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: use one of {SOURCES}")
    torch.manual_seed(seed)
    teacher.eval()
    t_run = LayerInputs(teacher, images)
    s_run = LayerInputs(student, images)
    widths = _teacher_widths(teacher, images[:1])
    kept = block_channels(student, kept_channels, widths)
    feed = s_run if source == "student" else _TeacherFed(t_run, kept)
    report = []
    n = len(images)
    for index in progress(range(len(student.model) - 1), desc=f"block-wise ({source} inputs)", unit="layer"):
        spec, block = student.layers[index], student.model[index]
        if spec.module in BLOCK_OUTPUT:
            with torch.no_grad():
                targets = torch.cat([t_run.model.model[index](t_run.inputs(index, s, s + BATCH))
                                     for s in range(0, n, BATCH)]).index_select(1, kept[index])
            before = _block_error(block, feed, index, targets)
            _train(block, feed, index, targets, epochs, lr)
            report.append((index, before, _block_error(block, feed, index, targets)))
        s_run.advance(index)
        t_run.advance(index)
    student.eval()
    return report


def _teacher_widths(teacher: YOLOv5, probe: torch.Tensor) -> dict[int, int]:
    widths, run = {}, LayerInputs(teacher, probe)
    for index in range(len(teacher.model) - 1):
        run.advance(index)
        widths[index] = run.prev.shape[1]
    return widths


def _block_error(block, feed, index, targets) -> float:
    block.eval()
    with torch.no_grad():
        errs = [float(_relative(block(feed.inputs(index, s, s + BATCH)), targets[s:s + BATCH]))
                for s in range(0, len(targets), BATCH)]
    return sum(errs) / len(errs)


def _train(block, feed, index, targets, epochs: int, lr: float):
    params = [p for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    steps = epochs * ((len(targets) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
    block.train()
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    for _ in range(epochs):
        for start in torch.randperm(len(targets)).split(BATCH):
            idx = start.sort().values
            x = _gather(feed, index, idx)
            loss = _relative(block(x), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    block.eval()


def _gather(feed, index: int, idx: torch.Tensor):
    """The block's inputs for the images `idx` (sorted), from the feed's contiguous batches."""
    parts = [feed.inputs(index, int(i), int(i) + 1) for i in idx]
    if isinstance(parts[0], list):
        return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]
    return torch.cat(parts)
