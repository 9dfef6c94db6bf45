"""The YOLOv5 (v6+) network, built from a model description.

Module and parameter names follow the published checkpoint layout (`model.<i>.cv1.conv.weight`, ...)
so that released weights load with a plain `load_state_dict`. The network can also be built with
explicit per-layer shapes, which is how pruned models (fewer channels than the yaml says) come back.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from convert.errors import ConvertError

BN_EPS = 1e-3
BN_MOMENTUM = 0.03
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


class Conv(nn.Module):
    """Convolution, batch norm, SiLU: the unit every YOLOv5 block is made of."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual add when the block keeps its width."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block: a stack of bottlenecks on half the channels, concatenated with a bypass."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        hidden = int(c2 * 0.5)
        self.cv1 = Conv(c1, hidden, 1)
        self.cv2 = Conv(c1, hidden, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling done as three chained 5x5 max-pools (same result as 5/9/13, cheaper)."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1)
        self.cv2 = Conv(hidden * 4, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs):
        return torch.cat(xs, self.d)


class Detect(nn.Module):
    """The three 1x1 output convolutions. Returns raw logits per level; decoding lives elsewhere.

    `anchors` is stored in stride units (as in the checkpoints); `anchors_px` gives input pixels.
    """

    def __init__(self, nc: int, anchors: list, ch: list[int]):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.stride = torch.zeros(self.nl)  # derived at build time, not saved

    def forward(self, xs):
        return [conv(x) for conv, x in zip(self.m, xs)]


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


def _build(cfg: dict, ch_in: int):
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise ConvertError(f"model description has no {key!r}: give a YOLOv5 model yaml")
    nc, gd, gw, anchors = cfg["nc"], cfg["depth_multiple"], cfg["width_multiple"], cfg["anchors"]
    if isinstance(anchors, int):
        raise ConvertError("model description gives a count of anchors, not anchor sizes: "
                           "list them in the yaml (auto-anchors are not supported)")
    channels = [ch_in]
    layers, specs, save = [], [], set()
    for i, (src, n, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        args = [nc if a == "nc" else anchors if a == "anchors" else a for a in args]
        n = max(round(n * gd), 1) if n > 1 else n
        c_prev = channels[src] if isinstance(src, int) else None
        if name in ("Conv", "C3", "SPPF"):
            c2 = make_divisible(args[0] * gw)
            if name == "Conv":
                module = Conv(c_prev, c2, *args[1:])
            elif name == "C3":
                module = C3(c_prev, c2, n, *args[1:])
            else:
                module = SPPF(c_prev, c2, *args[1:])
        elif name == "nn.Upsample":
            size, factor, mode = args
            module = nn.Upsample(size=None if size in (None, "None") else size,
                                 scale_factor=factor, mode=mode)
            c2 = c_prev
        elif name == "Concat":
            module = Concat(args[0])
            c2 = sum(channels[j] for j in src)
        elif name == "Detect":
            module = Detect(args[0], args[1], [channels[j] for j in src])
            c2 = None
        else:
            raise ConvertError(f"layer {i}: module {name!r} is not part of the YOLOv5 v6 architecture "
                               "(supported: Conv, C3, SPPF, nn.Upsample, Concat, Detect)")
        sources = [src] if isinstance(src, int) else list(src)
        save.update(j % i for j in sources if j != -1)
        layers.append(module)
        specs.append(LayerSpec(i, src, name))
        if i == 0:
            channels = []
        channels.append(c2)
    return nn.Sequential(*layers), save, specs


def build_model(cfg: dict, channel_shapes: dict[str, list[int]] | None = None) -> YOLOv5:
    """Build from a description; `channel_shapes` (from `YOLOv5.channel_shapes`) resizes layers.

    Pruning changes only tensor shapes, never the wiring, so the model built from the yaml is
    re-shaped layer by layer: every convolution and its batch norm take the recorded channel counts.
    """
    model = YOLOv5(cfg)
    if channel_shapes:
        _apply_channel_shapes(model, channel_shapes)
        model._init_stride(3)
    return model


def _apply_channel_shapes(model: nn.Module, shapes: dict[str, list[int]]):
    _apply_depth(model, shapes)
    modules = dict(model.named_modules())
    unknown = sorted(set(shapes) - {n for n, m in modules.items() if isinstance(m, nn.Conv2d)})
    if unknown:
        raise ConvertError(f"channel shapes name layers this architecture does not have: {unknown[:3]}")
    for name, (c_out, c_in) in shapes.items():
        conv = modules[name]
        if (conv.out_channels, conv.in_channels) == (c_out, c_in):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name]
        new = nn.Conv2d(c_in, c_out, conv.kernel_size, conv.stride, conv.padding,
                        bias=conv.bias is not None)
        setattr(parent, attr, new)
        if isinstance(parent, Conv):
            parent.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
    for module in model.modules():
        if isinstance(module, Bottleneck):
            module.add = module.add and module.cv1.conv.in_channels == module.cv2.conv.out_channels


def _apply_depth(model: nn.Module, shapes: dict[str, list[int]]):
    """A C3 keeps as many bottlenecks as the shapes list (a depth-pruned model has fewer than its yaml)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, C3):
            depth = sum(f"{name}.m.{j}.cv1.conv" in shapes for j in range(len(module.m)))
            if depth < len(module.m):
                module.m = module.m[:depth]
