"""Write a model the way YOLOv5's train.py pickles it, without YOLOv5's code.

The checkpoint's classes are named `models.yolo.Model`, `models.common.C3`, ...; here stand-in
classes of those names are registered for the duration of the save, and every module of this
project's network is pickled as one of them with the attribute dict YOLOv5 keeps (children,
tensors, flags). A fused Conv gets YOLOv5's `forward = getattr(self, 'forward_fuse')` and no `bn`.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import types
from pathlib import Path

import torch
from torch import nn

from convert.yolo_model import YOLOv5

_KEEP = ("training", "_parameters", "_buffers", "_non_persistent_buffers_set", "_modules")


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@contextlib.contextmanager
def _standins(names: set[tuple[str, str]]):
    added = {}
    for module_name in ("models", "models.yolo", "models.common"):
        if module_name not in sys.modules:
            added[module_name] = sys.modules[module_name] = types.ModuleType(module_name)
    classes = {}
    for module_name, name in names:
        cls = type(name, (), {"__module__": module_name})
        setattr(sys.modules[module_name], name, cls)
        classes[(module_name, name)] = cls
    try:
        yield classes
    finally:
        for module_name, name in names:
            delattr(sys.modules[module_name], name)
        for module_name in added:
            del sys.modules[module_name]


def _ours(module) -> bool:
    return isinstance(module, nn.Module) and type(module).__module__.startswith("convert.")


def _where(module) -> tuple[str, str]:
    if isinstance(module, YOLOv5):
        return "models.yolo", "Model"
    name = type(module).__name__
    return ("models.yolo" if name == "Detect" else "models.common"), name


def _standin_tree(module: nn.Module, classes: dict):
    """The stand-in object for `module` (and its children), with the attributes YOLOv5 pickles."""
    if not _ours(module):  # torch.nn modules pickle as themselves, with stand-in children
        clone = copy.copy(module)
        clone.__dict__["_modules"] = {k: _standin_tree(v, classes) if v is not None else None
                                      for k, v in module._modules.items()}
        return clone
    obj = classes[_where(module)].__new__(classes[_where(module)])
    state = {k: module.__dict__[k] for k in _KEEP if k in module.__dict__}
    state["_modules"] = {k: _standin_tree(v, classes) if v is not None else None
                         for k, v in module._modules.items()}
    if isinstance(module, YOLOv5):
        state.update(yaml=module.yaml, names=list(module.names), stride=module.detect.stride)
    if type(module).__name__ in ("Conv", "DWConv") and isinstance(module.bn, nn.Identity):
        del state["_modules"]["bn"]
        state["forward"] = _Call(getattr, obj, "forward_fuse")
    for attr in ("add", "nc", "no", "nl", "na", "d", "gain", "stride", "c2"):
        if attr in module.__dict__:
            state[attr] = module.__dict__[attr]
    obj.__dict__.update(state)
    return obj


def save_like_ultralytics(model: YOLOv5, path: Path, extra: dict | None = None) -> Path:
    """`torch.save({'model': model, ...})` as YOLOv5 writes it (fp16, like a stripped checkpoint)."""
    names = {_where(m) for m in model.modules() if _ours(m)}
    model = model.half()
    try:
        with _standins(names) as classes:
            payload = {"epoch": -1, "best_fitness": None, "model": _standin_tree(model, classes), "ema": None,
                       "updates": None, "optimizer": None, "date": "2024-01-01T00:00:00", **(extra or {})}
            torch.save(payload, path, pickle_protocol=2)
    finally:
        model.float()
    return path
