"""The YOLOv5 network (every layer of the official model descriptions, v5.0 to v7.0), built from a yaml.

Module and parameter names follow the published checkpoint layout (`model.<i>.cv1.conv.weight`, ...)
so that released weights load with a plain `load_state_dict`. The network can also be re-shaped to
given tensors (`convert.fit_tensors`), which is how pruned and fused models come back.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from convert.errors import ConvertError
from convert.layers.conv import BN_EPS, BN_MOMENTUM, Conv, DWConv, DWConvTranspose2d
from convert.layers.csp import C3, C3SPP, C3TR, BottleneckCSP, Bottleneck, C3Ghost, C3x, CrossConv
from convert.layers.detect import Detect
from convert.layers.ghost import GhostBottleneck, GhostConv
from convert.layers.pooling import SPP, SPPF
from convert.layers.reshape import Concat, Contract, Expand, Focus

__all__ = ["BN_EPS", "BN_MOMENTUM", "Bottleneck", "C3", "Concat", "Conv", "Detect", "SPPF", "YOLOv5",
           "build_model", "fuse_conv_bn", "make_divisible", "yolov5_yaml", "LAYERS"]

CHANNEL_DIVISOR = 8

# The public YOLOv5 v6 layout: (from, repeats, module, args). Sizes n/s/m/l/x differ only in the
# depth and width multiples.
_BACKBONE = [
    [-1, 1, "Conv", [64, 6, 2, 2]],
    [-1, 1, "Conv", [128, 3, 2]],
    [-1, 3, "C3", [128]],
    [-1, 1, "Conv", [256, 3, 2]],
    [-1, 6, "C3", [256]],
    [-1, 1, "Conv", [512, 3, 2]],
    [-1, 9, "C3", [512]],
    [-1, 1, "Conv", [1024, 3, 2]],
    [-1, 3, "C3", [1024]],
    [-1, 1, "SPPF", [1024, 5]],
]
_HEAD = [
    [-1, 1, "Conv", [512, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 6], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]],
    [-1, 1, "Conv", [256, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]],
    [-1, 3, "C3", [256, False]],
    [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]],
    [-1, 3, "C3", [512, False]],
    [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]],
    [-1, 3, "C3", [1024, False]],
    [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],
]
COCO_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
SIZES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def yolov5_yaml(size: str = "n", nc: int = 80, anchors=None) -> dict:
    """The model description of a standard YOLOv5 size, as the checkpoints carry it."""
    if size not in SIZES:
        raise ConvertError(f"unknown YOLOv5 size {size!r}: use one of {', '.join(SIZES)}")
    depth, width = SIZES[size]
    return {
        "nc": nc,
        "depth_multiple": depth,
        "width_multiple": width,
        "anchors": copy.deepcopy(anchors or COCO_ANCHORS),
        "backbone": copy.deepcopy(_BACKBONE),
        "head": copy.deepcopy(_HEAD),
    }


@dataclass(frozen=True)
class LayerSpec:
    index: int
    source: int | list[int]
    module: str


def make_divisible(x: float, divisor: int = CHANNEL_DIVISOR) -> int:
    return int(math.ceil(x / divisor) * divisor)


class YOLOv5(nn.Module):
    """YOLOv5 detection model. `forward` returns the raw logits of each level, `[B, na*no, H/s, W/s]`."""

    def __init__(self, cfg: dict, ch: int = 3):
        super().__init__()
        self.yaml = copy.deepcopy(cfg)
        self.model, self.save, self.layers = _build(self.yaml, ch)
        self.names = [str(i) for i in range(self.detect.nc)]
        self._init_stride(ch)

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    @property
    def strides(self) -> list[int]:
        return [int(s) for s in self.detect.stride.tolist()]

    @property
    def anchors_px(self) -> torch.Tensor:
        """Anchors in input pixels, `(nl, na, 2)`."""
        return self.detect.anchors * self.detect.stride.view(-1, 1, 1)

    def _init_stride(self, ch: int):
        probe = 256
        with torch.no_grad():
            was_training = self.training
            self.eval()
            outs = self.forward(torch.zeros(1, ch, probe, probe))
            self.train(was_training)
        self.detect.stride.copy_(torch.tensor([probe / o.shape[-2] for o in outs]))

    def forward(self, x):
        outputs = []
        for layer, spec in zip(self.model, self.layers):
            if spec.source != -1:
                x = outputs[spec.source] if isinstance(spec.source, int) else [
                    x if j == -1 else outputs[j] for j in spec.source]
            x = layer(x)
            outputs.append(x if spec.index in self.save else None)
        return x

    def fuse(self) -> "YOLOv5":
        """Fold every batch norm into its convolution (inference only; exact up to float rounding)."""
        for module in self.modules():
            if isinstance(module, Conv) and isinstance(module.bn, nn.BatchNorm2d):
                module.conv = fuse_conv_bn(module.conv, module.bn)
                module.bn = nn.Identity()
        return self

    def channel_shapes(self) -> dict[str, list[int]]:
        """Every convolution's `[out, in]` channels: the architecture of a pruned model."""
        return {name: [m.out_channels, m.in_channels]
                for name, m in self.named_modules() if isinstance(m, nn.Conv2d)}


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


# yaml name → class, for the layers whose first argument is an output width (scaled by width_multiple).
_WIDTH_LAYERS = {
    "Conv": Conv, "GhostConv": GhostConv, "Bottleneck": Bottleneck, "GhostBottleneck": GhostBottleneck,
    "SPP": SPP, "SPPF": SPPF, "DWConv": DWConv, "Focus": Focus, "CrossConv": CrossConv,
    "BottleneckCSP": BottleneckCSP, "C3": C3, "C3TR": C3TR, "C3SPP": C3SPP, "C3Ghost": C3Ghost, "C3x": C3x,
    "nn.ConvTranspose2d": nn.ConvTranspose2d, "DWConvTranspose2d": DWConvTranspose2d,
}
# These take the repeat count as their third argument instead of being stacked.
_REPEAT_INSIDE = {"BottleneckCSP", "C3", "C3TR", "C3Ghost", "C3x"}
_OTHER_LAYERS = {"nn.Upsample", "Concat", "Contract", "Expand", "nn.BatchNorm2d", "Detect"}
LAYERS = frozenset(_WIDTH_LAYERS) | _OTHER_LAYERS


def layer_name(name: str) -> str:
    """`torch.nn.Upsample` and `nn.Upsample` are the same layer."""
    return "nn." + name[len("torch.nn."):] if name.startswith("torch.nn.") else name


def unknown_layers(cfg: dict) -> list[str]:
    """Layer names in a description that this builder does not know (a fork's own blocks), in order."""
    found = []
    for row in list(cfg.get("backbone") or []) + list(cfg.get("head") or []):
        name = layer_name(str(row[2])) if isinstance(row, (list, tuple)) and len(row) == 4 else str(row)
        if name not in LAYERS and name not in found:
            found.append(name)
    return found


def _arg(value, nc, anchors):
    """yaml arguments are literals or the names `nc`/`anchors`/`None`/`True`/`False` (never evaluated)."""
    if not isinstance(value, str):
        return value
    return {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}.get(value, value)


def _build(cfg: dict, ch_in: int):
    for key in ("nc", "depth_multiple", "width_multiple", "backbone", "head"):
        if key not in cfg:
            raise ConvertError(f"model description has no {key!r}: give a YOLOv5 model yaml")
    unknown = unknown_layers(cfg)
    if unknown:
        raise ConvertError(f"model description uses {', '.join(unknown)}, not a YOLOv5 layer: "
                           f"supported are {', '.join(sorted(LAYERS))}")
    nc, gd, gw = cfg["nc"], cfg["depth_multiple"], cfg["width_multiple"]
    anchors = cfg.get("anchors", 3)
    channels = [ch_in]
    layers, specs, save = [], [], set()
    for i, (src, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        name = layer_name(name)
        args = [_arg(a, nc, anchors) for a in args]
        n = max(round(n * gd), 1) if n > 1 else n
        c_prev = channels[src] if isinstance(src, int) else None
        if name in _WIDTH_LAYERS:
            c2 = args[0]
            if c2 != (nc + 5) * _anchor_count(anchors):
                c2 = make_divisible(c2 * gw)
            args = [c_prev, c2, *args[1:]]
            if name in _REPEAT_INSIDE:
                args.insert(2, n)
                n = 1
            module = _stack(_WIDTH_LAYERS[name], args, n)
        elif name == "nn.Upsample":
            size, factor, mode = (args + [None, None, "nearest"])[:3]
            module = _stack(nn.Upsample, [size, factor, mode], n)
            c2 = c_prev
        elif name == "nn.BatchNorm2d":
            module, c2 = nn.BatchNorm2d(c_prev), c_prev
        elif name == "Concat":
            module = Concat(*args[:1])
            c2 = sum(channels[j] for j in src)
        elif name == "Contract":
            gain = args[0] if args else 2
            module, c2 = Contract(gain), c_prev * gain ** 2
        elif name == "Expand":
            gain = args[0] if args else 2
            module, c2 = Expand(gain), c_prev // gain ** 2
        else:  # Detect
            det_anchors = args[1]
            if isinstance(det_anchors, int):  # auto-anchor count: the values come from the checkpoint
                det_anchors = [[1.0] * (2 * det_anchors)] * len(src)
            module = Detect(args[0], det_anchors, [channels[j] for j in src])
            c2 = None
        sources = [src] if isinstance(src, int) else list(src)
        save.update(j % i for j in sources if j != -1)
        layers.append(module)
        specs.append(LayerSpec(i, src, name))
        if i == 0:
            channels = []
        channels.append(c2)
    return nn.Sequential(*layers), save, specs


def _anchor_count(anchors) -> int:
    return anchors if isinstance(anchors, int) else len(anchors[0]) // 2


def _stack(cls, args, n: int) -> nn.Module:
    return cls(*args) if n == 1 else nn.Sequential(*(cls(*args) for _ in range(n)))


def build_model(cfg: dict, channel_shapes: dict[str, list[int]] | None = None,
                state: dict[str, torch.Tensor] | None = None) -> YOLOv5:
    """Build from a description; `channel_shapes` (from `YOLOv5.channel_shapes`) or `state` resizes layers.

    Pruning changes only tensor shapes, never the wiring, so the model built from the yaml is
    re-shaped layer by layer: every convolution and its batch norm take the recorded channel counts.
    With `state` (a checkpoint's tensors) the shapes, the number of blocks kept and whether batch
    norm was folded into the convolutions are all read from the tensors themselves.
    """
    from convert.fit_tensors import fit_to_state

    model = YOLOv5(cfg)
    if channel_shapes:
        _apply_channel_shapes(model, channel_shapes)
    if state is not None:
        fit_to_state(model, state)
    if channel_shapes or state is not None:
        model._init_stride(3)
    return model


def _apply_channel_shapes(model: nn.Module, shapes: dict[str, list[int]]):
    from convert.fit_tensors import recheck_shortcuts, replace_conv

    _apply_depth(model, shapes)
    modules = dict(model.named_modules())
    unknown = sorted(set(shapes) - {n for n, m in modules.items() if isinstance(m, nn.Conv2d)})
    if unknown:
        raise ConvertError(f"channel shapes name layers this architecture does not have: {unknown[:3]}")
    for name, (c_out, c_in) in shapes.items():
        conv = modules[name]
        if (conv.out_channels, conv.in_channels) != (c_out, c_in):
            replace_conv(model, name, c_out, c_in, conv.bias is not None)
    recheck_shortcuts(model)


def _apply_depth(model: nn.Module, shapes: dict[str, list[int]]):
    """A C3 keeps as many bottlenecks as the shapes list (a depth-pruned model has fewer than its yaml)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, C3):
            depth = sum(f"{name}.m.{j}.cv1.conv" in shapes for j in range(len(module.m)))
            if depth < len(module.m):
                module.m = module.m[:depth]
