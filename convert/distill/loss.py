"""What the student is trained to reproduce: the teacher's head outputs, and optionally its block outputs.

The targets are the teacher's sigmoid outputs (box, objectness, class probabilities) at every cell
and anchor:

- objectness: binary cross-entropy against the teacher's probability, counted more where the
  teacher sees an object (most cells are empty background and would otherwise dominate);
- box (sigmoid x, y, w, h) and classes: only meaningful where there is an object, so weighted by
  the teacher's objectness.

Each cross-entropy has the target's own entropy subtracted (that is the KL divergence): the loss is
0 when the student matches, which makes progress readable in the log.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from convert.errors import ConvertError
from convert.yolo_model import YOLOv5

OBJ_FLOOR = 0.05      # weight of a background cell relative to a cell the teacher is sure about
GAINS = {"obj": 1.0, "box": 5.0, "cls": 1.0, "feat": 1.0}
# The convolution whose output is a block's output, by block type (see `feature_pairs`).
BLOCK_OUTPUT = {"Conv": "conv", "C3": "cv3.conv", "SPPF": "cv2.conv"}
PROB_EPS = 1e-6


def _split(raw: torch.Tensor, na: int) -> torch.Tensor:
    """`[B, na*no, H, W]` logits → `[B, na, H, W, no]`."""
    b, c, h, w = raw.shape
    return raw.view(b, na, c // na, h, w).permute(0, 1, 3, 4, 2)


def _soft_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise KL between Bernoulli(target) and Bernoulli(sigmoid(logits)): 0 when they match."""
    t = target.clamp(PROB_EPS, 1 - PROB_EPS)
    entropy = -(t * t.log() + (1 - t) * (1 - t).log())
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") - entropy


def distill_loss(student_out: list[torch.Tensor], teacher_probs: list[torch.Tensor],
                 na: int) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the student's raw head logits against the teacher's sigmoid outputs, and its parts for the log."""
    parts = {"obj": 0.0, "box": 0.0, "cls": 0.0}
    total = student_out[0].new_zeros(())
    for s_raw, t_prob in zip(student_out, teacher_probs):
        s, t = _split(s_raw, na), _split(t_prob.detach(), na)
        t_obj = t[..., 4]
        obj_w = t_obj + OBJ_FLOOR
        obj = (_soft_bce(s[..., 4], t_obj) * obj_w).sum() / obj_w.sum()
        norm = t_obj.sum().clamp_min(1.0)
        box = ((torch.sigmoid(s[..., :4]) - t[..., :4]).pow(2).sum(-1) * t_obj).sum() / norm
        cls = (_soft_bce(s[..., 5:], t[..., 5:]).mean(-1) * t_obj).sum() / norm if s.shape[-1] > 5 \
            else s.new_zeros(())
        level = {"obj": obj, "box": box, "cls": cls}
        for k, v in level.items():
            total = total + GAINS[k] * v / len(student_out)
            parts[k] += float(v.detach()) / len(student_out)
    return total, parts


def feature_pairs(student: YOLOv5, kept_channels: dict | None) -> list[tuple[int, torch.Tensor]]:
    """(block index, the teacher channels the student's are) for every block output.

    A pruned channel keeps its weights, so student channel j still is teacher channel kept[j]:
    the teacher's feature maps are targets for every block, not only for the heads, without
    learned adapters. Empty when the student did not come with the map (no feature loss then).
    """
    if not kept_channels:
        return []
    shapes, pairs = student.channel_shapes(), []
    for index, spec in enumerate(student.layers):
        name = f"model.{index}.{BLOCK_OUTPUT[spec.module]}" if spec.module in BLOCK_OUTPUT else None
        if name in kept_channels:
            if len(kept_channels[name]) != shapes[name][0]:
                raise ConvertError(f"the student's channel map says {name} kept {len(kept_channels[name])} "
                                   f"channels, it has {shapes[name][0]}: the checkpoint was edited")
            pairs.append((index, torch.as_tensor(kept_channels[name], dtype=torch.long)))
    return pairs


class BlockOutputs:
    """Records the outputs of chosen blocks during a forward pass (a context manager)."""

    def __init__(self, model: YOLOv5, indices: list[int]):
        self.model, self.indices, self.outputs, self.hooks = model, indices, {}, []

    def __enter__(self) -> dict[int, torch.Tensor]:
        for i in self.indices:
            self.hooks.append(self.model.model[i].register_forward_hook(
                lambda module, inputs, output, i=i: self.outputs.__setitem__(i, output)))
        return self.outputs

    def __exit__(self, *exc):
        for hook in self.hooks:
            hook.remove()


def feature_loss(student_feats: dict, teacher_feats: dict, pairs: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Mean squared error to the teacher's kept channels, over each block's variance (scale-free)."""
    total = next(iter(student_feats.values())).new_zeros(())
    for index, kept in pairs:
        target = teacher_feats[index].index_select(1, kept)
        total = total + (student_feats[index] - target).pow(2).mean() / target.var().clamp_min(PROB_EPS)
    return total / len(pairs)
