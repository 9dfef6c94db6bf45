"""Re-shape a network built from its yaml to the tensors a checkpoint actually holds.

A yaml says what a model was before anyone changed it. A channel-pruned checkpoint has fewer
filters than the yaml, a depth-pruned one fewer blocks, and a fused one (batch norm folded into
its convolutions, as `fuse()` and many export scripts leave it) has biased convolutions and no
batch norm at all. All three are read from the tensors' names and shapes here, never guessed.
"""
from __future__ import annotations

import torch
from torch import nn

from convert.errors import ConvertError
from convert.layers.conv import batch_norm
from convert.layers.csp import C3, BottleneckCSP, Bottleneck, CrossConv


def fit_to_state(model: nn.Module, state: dict[str, torch.Tensor]):
    _fit_depth(model, state)
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            _fit_conv(model, name, module, state)
        elif isinstance(module, nn.BatchNorm2d):
            _fit_batch_norm(model, name, module, state)
    recheck_shortcuts(model)


def _fit_depth(model: nn.Module, state: dict):
    """A CSP block keeps as many inner blocks as the checkpoint has tensors for."""
    for name, module in list(model.named_modules()):
        if isinstance(module, (C3, BottleneckCSP)):
            prefix = f"{name}.m."
            kept = {int(k[len(prefix):].split(".")[0]) for k in state if k.startswith(prefix)}
            depth = max(kept) + 1 if kept else 0
            if depth < len(module.m):
                module.m = module.m[:depth]


def _fit_conv(model: nn.Module, name: str, conv, state: dict):
    weight = state.get(name + ".weight")
    if weight is None or weight.dim() != 4:
        return  # reported as a missing tensor when the weights are loaded
    has_bias = name + ".bias" in state
    if tuple(weight.shape) == tuple(conv.weight.shape) and has_bias == (conv.bias is not None):
        return
    if tuple(weight.shape[2:]) != tuple(conv.weight.shape[2:]):
        raise ConvertError(f"tensor {name}.weight has a {tuple(weight.shape[2:])} kernel, the model "
                           f"description gives {tuple(conv.weight.shape[2:])}: the yaml does not match its weights")
    if isinstance(conv, nn.ConvTranspose2d):
        c_in, per_group = int(weight.shape[0]), int(weight.shape[1])
        groups = c_in if conv.groups == conv.in_channels == conv.out_channels else conv.groups
        new = nn.ConvTranspose2d(c_in, per_group * groups, conv.kernel_size, conv.stride, conv.padding,
                                 conv.output_padding, groups=groups, bias=has_bias, dilation=conv.dilation)
        _set(model, name, new)
        return
    c_out, per_group = int(weight.shape[0]), int(weight.shape[1])
    replace_conv(model, name, c_out, per_group * _groups_for(conv, c_out, per_group), has_bias)


def _groups_for(conv: nn.Conv2d, c_out: int, per_group: int) -> int:
    if conv.groups == 1:
        return 1
    if conv.groups == conv.in_channels == conv.out_channels and per_group == 1:
        return c_out  # depthwise stays depthwise when pruned
    return conv.groups


def replace_conv(model: nn.Module, name: str, c_out: int, c_in: int, bias: bool):
    """Swap the convolution `name` for one with these channels (kernel, stride, padding kept)."""
    conv = model.get_submodule(name)
    groups = 1
    if conv.groups > 1:
        groups = c_out if conv.groups == conv.in_channels == conv.out_channels and c_in == c_out else conv.groups
    if c_in % groups or c_out % groups:
        raise ConvertError(f"tensor {name}.weight: {c_out}x{c_in} channels do not split into {groups} groups")
    new = nn.Conv2d(c_in, c_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups, bias=bias)
    _set(model, name, new)
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    bn = getattr(parent, "bn", None)
    if name.endswith(".conv") and isinstance(bn, nn.BatchNorm2d) and bn.num_features != c_out:
        parent.bn = batch_norm(c_out)


def _fit_batch_norm(model: nn.Module, name: str, bn: nn.BatchNorm2d, state: dict):
    weight = state.get(name + ".weight", state.get(name + ".running_mean"))
    if weight is None:
        if not any(k.startswith(name + ".") for k in state):
            _set(model, name, nn.Identity())  # folded into the convolution before saving
        return
    if int(weight.shape[0]) != bn.num_features:
        _set(model, name, batch_norm(int(weight.shape[0])))


def recheck_shortcuts(model: nn.Module):
    """A residual add needs equal widths at both ends; pruning may have made them differ."""
    for module in model.modules():
        if isinstance(module, (Bottleneck, CrossConv)):
            module.add = bool(module.add) and module.cv1.conv.in_channels == module.cv2.conv.out_channels


def _set(model: nn.Module, name: str, new: nn.Module):
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
