"""Depth pruning: remove whole bottlenecks from C3 blocks.

A C3 block runs a chain of bottlenecks on half its channels. In the backbone each bottleneck is a
residual `x + f(x)`, so removing one leaves a network that still computes something close (the
skip carries its input on). With few images this recovers better than thinning every layer
(PRACTISE, CVPR 2023), and on a device each removed bottleneck saves two whole convolutions and an
add, their fixed per-operator costs included. The neck's bottlenecks have no skip; they can be
removed too, and the C3 then reduces to its two 1x1 branches.

A depth-pruned model is described by its channel shapes alone: a C3 is built with as many
bottlenecks as the shapes list (`convert.yolo_model`). Which of the original's bottlenecks each
remaining one is (`depth`: C3 name → kept original indices) is recorded beside the channel map, so
reconstruction and distillation know which original layer each one should reproduce.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from torch import nn

from convert.errors import ConvertError
from convert.yolo_model import C3, YOLOv5, build_model

_BOTTLENECK = re.compile(r"^(model\.\d+)\.m\.(\d+)\.(.*)$")


@dataclass(frozen=True)
class Bottleneck:
    """One removable bottleneck: `block` is the C3's name (`model.6`), `index` its place in the chain."""

    block: str
    index: int
    residual: bool

    @property
    def name(self) -> str:
        return f"{self.block}.m.{self.index}"


def bottlenecks(model: YOLOv5) -> list[Bottleneck]:
    """Every bottleneck of every C3, in network order."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, C3):
            found += [Bottleneck(name, j, bool(b.add)) for j, b in enumerate(module.m)]
    return found


def parse_drops(text: str, model: YOLOv5) -> list[Bottleneck]:
    """`model.4.m.1,model.6.m.2` (or `4.1,6.2`) → the bottlenecks named, checked against the model."""
    known = {b.name: b for b in bottlenecks(model)}
    chosen = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name = part if part.startswith("model.") else "model.{}.m.{}".format(*part.split(".", 1)) if "." in part else part
        if name not in known:
            raise ConvertError(f"--drop {part}: the model has no bottleneck {name}; it has {', '.join(known)}")
        chosen.append(known[name])
    return chosen


def drop_bottlenecks(model: YOLOv5, drops: list[Bottleneck]) -> tuple[YOLOv5, dict[str, list[int]]]:
    """A copy of `model` without the given bottlenecks, and the depth map of what remains."""
    by_block: dict[str, set[int]] = {}
    for b in drops:
        by_block.setdefault(b.block, set()).add(b.index)
    smaller = copy.deepcopy(model).eval()
    modules = dict(smaller.named_modules())
    depth = {}
    for block, gone in by_block.items():
        c3 = modules[block]
        keep = [j for j in range(len(c3.m)) if j not in gone]
        c3.m = nn.Sequential(*(c3.m[j] for j in keep))
        depth[block] = keep
    rebuilt = build_model(smaller.yaml, smaller.channel_shapes())
    rebuilt.load_state_dict(smaller.state_dict())
    rebuilt.names = list(model.names)
    return rebuilt.eval(), depth


def original_name(name: str, depth: dict[str, list[int]] | None) -> str:
    """The original model's name for a layer of the depth-pruned one (`model.6.m.1.cv1.conv` → `m.2` when m.1 went)."""
    match = _BOTTLENECK.match(name)
    if not depth or not match or match.group(1) not in depth:
        return name
    block, index, rest = match.groups()
    return f"{block}.m.{depth[block][int(index)]}.{rest}"


def removed_bottlenecks(original: YOLOv5, depth: dict[str, list[int]]) -> list[Bottleneck]:
    """The original's bottlenecks that the depth map does not keep."""
    return [b for b in bottlenecks(original) if b.block in depth and b.index not in depth[b.block]]


def identity_channels(model: YOLOv5) -> dict[str, list[int]]:
    """The channel map of a model that removed no channels: every output channel kept."""
    return {n: list(range(c)) for n, (c, _) in model.channel_shapes().items()}


def rank_bottlenecks(model: YOLOv5, score) -> list[tuple[Bottleneck, float]]:
    """Each bottleneck with `score(model without it)` (higher: closer to the original), most harmless first.

    Measured on yolov5n, the head-output loss ranks them poorly (the neck's stride-32 bottleneck is
    nearly free to remove, the backbone's residual ones are not); agreement with the original's
    detections (`convert.pseudo_map`) is the criterion used.
    """
    scored = [(b, score(drop_bottlenecks(model, [b])[0])) for b in bottlenecks(model)]
    return sorted(scored, key=lambda item: -item[1])
