"""A pickle reader for YOLOv5 checkpoints that can rebuild data and nothing that runs code.

An ultralytics `.pt` is a pickle of its classes (`models.yolo.Model`, `models.common.C3`, ...).
Unpickling it normally would import and run that code; a checkpoint from the internet is untrusted
input. Here every global the pickle asks for is looked up in closed lists:

- model classes (`models.*`, the `torch.nn` modules YOLOv5 uses) become inert records that keep
  their attribute dict and have no behaviour; a fork's own classes become records too, so the
  builder can name them;
- tensors, `OrderedDict`, `set` and `torch.Size` are the real thing;
- numpy values only through numpy's own reduce path (`_reconstruct`/`scalar`, `dtype`, `ndarray`,
  `_codecs.encode` for the raw bytes), only for bool/int/float dtypes and only with byte data;
- `pathlib` paths become pure paths (no filesystem access), `argparse.Namespace` an inert record;
- `getattr` only for the (class, attribute) pairs in `GETATTR_ALLOWED` (a fused Conv pickles its
  `forward` as `getattr(conv, 'forward_fuse')`), returning a marker, never the attribute.

Anything else is refused with its module and name.
"""
from __future__ import annotations

import collections
import pathlib
import pickle
import types

import numpy as np
import torch

from convert.activations import ACTIVATION_CLASSES

# Modules whose classes are YOLOv5's own (or a fork's): any name becomes an inert record.
MODEL_MODULES = ("models.yolo", "models.common", "models.experimental")
TORCH_MODULE_CLASSES = {
    "torch.nn.modules.conv": {"Conv2d", "ConvTranspose2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.activation": set(ACTIVATION_CLASSES - {"Identity"}) | {"MultiheadAttention"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.container": {"ModuleList", "Sequential"},
    "torch.nn.modules.linear": {"Identity", "Linear", "NonDynamicallyQuantizableLinear"},
}
OPTION_HOLDERS = {("argparse", "Namespace"), ("types", "SimpleNamespace")}
# (record class, attribute) pairs a real checkpoint pickles through getattr.
GETATTR_ALLOWED = {("Conv", "forward_fuse"), ("DWConv", "forward_fuse"), ("Conv", "forward"),
                   ("DWConv", "forward")}
NUMPY_KINDS = "biuf"  # bool, signed, unsigned, float: values that are only bytes

_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}


class Record:
    """Stands in for a pickled object: keeps its attribute dict, runs nothing."""

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            self.__dict__.update(state[0] or {})  # (dict, slots) form
            self.__dict__.update(state[1])


class Options(Record):
    """Saved training options (`argparse.Namespace`): attributes only."""


class MethodRef:
    """What an allowed `getattr(record, name)` gives back: a name, not a callable."""

    def __init__(self, owner: str, name: str):
        self.owner, self.name = owner, name

    def __repr__(self):
        return f"<{self.owner}.{self.name}>"


def _record_class(module: str, name: str) -> type:
    return type(name, (Record,), {"__module__": "edge_yolo_record." + module, "source_module": module})


def _safe_getattr(obj, name):
    if isinstance(obj, Record) and isinstance(name, str) and (type(obj).__name__, name) in GETATTR_ALLOWED:
        return MethodRef(type(obj).__name__, name)
    owner = type(obj).__name__ if isinstance(obj, Record) else type(obj).__qualname__
    raise pickle.UnpicklingError(f"refusing to load getattr({owner}, {name!r})")


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """`_codecs.encode`: how protocol-2 pickles carry numpy's raw bytes, as a latin-1 str."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("refusing to load _codecs.encode other than str → latin-1 bytes")
    return text.encode("latin1")


class DTypeSpec:
    """`numpy.dtype(code, align, copy)` for plain numeric codes; its byte order set by `__setstate__`."""

    def __init__(self, code, align=False, copy=False):
        if not isinstance(code, str):
            raise pickle.UnpicklingError(f"refusing to load numpy.dtype({type(code).__name__})")
        try:
            dtype = np.dtype(code)
        except TypeError:
            raise pickle.UnpicklingError(f"refusing to load numpy.dtype({code!r})") from None
        if dtype.kind not in NUMPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(f"refusing to load numpy.dtype({code!r}): only bool/int/float values")
        self.dtype = dtype

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) >= 5 and state[2:5] == (None, None, None)
                and state[1] in ("<", ">", "|", "=")):
            raise pickle.UnpicklingError("refusing to load numpy.dtype with fields or sub-arrays")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype(value) -> np.dtype:
    if isinstance(value, DTypeSpec):
        return value.dtype
    raise pickle.UnpicklingError(f"refusing to load numpy data of type {type(value).__name__}")


class _NDArrayMarker:
    """What `numpy.ndarray` resolves to: usable only as `_reconstruct`'s first argument."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to load numpy.ndarray called directly (not numpy's reduce path)")


class SafeArray(np.ndarray):
    """An array rebuilt from numeric bytes only (numpy's `__setstate__` would accept objects)."""

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("refusing to load numpy.ndarray with an unknown state")
        version, shape, dtype, fortran, raw = state
        dtype = _dtype(dtype)
        if not isinstance(raw, bytes) or not all(isinstance(v, int) and v >= 0 for v in shape):
            raise pickle.UnpicklingError("refusing to load numpy.ndarray whose data is not bytes")
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise pickle.UnpicklingError("refusing to load numpy.ndarray whose data does not fit its shape")
        np.ndarray.__setstate__(self, (version, tuple(shape), dtype, bool(fortran), raw))


def _reconstruct(subtype, shape, code):
    if not isinstance(subtype, _NDArrayMarker):
        raise pickle.UnpicklingError(f"refusing to load numpy _reconstruct of {type(subtype).__name__}")
    return np.ndarray.__new__(SafeArray, (0,), np.uint8)


def _scalar(dtype, raw=None):
    dtype = _dtype(dtype)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise pickle.UnpicklingError("refusing to load numpy scalar whose data is not bytes of its size")
    return np.frombuffer(raw, dtype)[0]


def _pure_path(cls):
    def make(*parts):
        if not all(isinstance(p, str) for p in parts):
            raise pickle.UnpicklingError(f"refusing to load a {cls.__name__} made of non-strings")
        return cls(*parts)
    make.__name__ = cls.__name__
    return make


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_PATH_CLASSES = {"PosixPath": pathlib.PurePosixPath, "PurePosixPath": pathlib.PurePosixPath,
                 "WindowsPath": pathlib.PureWindowsPath, "PureWindowsPath": pathlib.PureWindowsPath}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in MODEL_MODULES:
            return _record_class(module, name)
        if name in TORCH_MODULE_CLASSES.get(module, ()):
            return _record_class(module, name)
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in OPTION_HOLDERS:
            return Options
        if module in ("pathlib", "pathlib._local") and name in _PATH_CLASSES:
            return _pure_path(_PATH_CLASSES[name])
        if module in ("__builtin__", "builtins") and name == "getattr":
            return _safe_getattr
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) == ("numpy", "dtype"):
            return DTypeSpec
        if (module, name) == ("numpy", "ndarray"):
            return _NDArrayMarker()
        if module in _NUMPY_MODULES and name == "_reconstruct":
            return _reconstruct
        if module in _NUMPY_MODULES and name == "scalar":
            return _scalar
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=pickle.load,
                                          __name__="edge_yolo_restricted_pickle")
