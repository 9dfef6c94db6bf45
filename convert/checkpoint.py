"""Load YOLOv5 checkpoints without the code that wrote them, and save this project's own format.

The pickle is read by `convert.unpickle` (inert records, numeric data, nothing that runs code);
the tensors are then copied into this project's own network built from the checkpoint's yaml and
re-shaped to the tensors (`convert.fit_tensors`), with the activations the checkpoint's modules have.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convert.activations import ACTIVATION_CLASSES, activation_specs, set_activations
from convert.download import sha256_of
from convert.errors import ConvertError
from convert.unpickle import MODEL_MODULES, Record, restricted_pickle
from convert.yolo_model import YOLOv5, build_model, unknown_layers

OWN_FORMAT = "edge-yolo-checkpoint"
OWN_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class LoadedCheckpoint:
    model: YOLOv5
    path: Path
    sha256: str
    kind: str  # "ultralytics" or "edge-yolo"
    extra: dict = field(default_factory=dict)


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load an ultralytics YOLOv5 `.pt` or an edge-yolo checkpoint into an eval-mode `YOLOv5`."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"checkpoint {path} does not exist: pass --weights with a YOLOv5 .pt file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head == ZIP_MAGIC:
            raise ConvertError(f"{path} is truncated ({path.stat().st_size:,} bytes, the zip archive has no "
                               "end): an incomplete download? download it again")
        raise ConvertError(f"{path} is not a PyTorch checkpoint (not a zip archive): "
                           "pass a YOLOv5 .pt saved by torch.save")
    digest = sha256_of(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        kind = "edge-yolo" if isinstance(raw, dict) and raw.get("format") == OWN_FORMAT else None
    except pickle.UnpicklingError:
        kind = "ultralytics"
    except Exception as exc:  # torch raises many types for damaged archives
        raise ConvertError(f"{path} could not be read as a checkpoint ({_first_line(exc)}): "
                           "is it truncated or damaged? download it again") from None
    if kind == "edge-yolo":
        model, extra = _from_own(raw, path)
    elif kind == "ultralytics":
        model, extra = _from_ultralytics(path)
    else:
        raise ConvertError(f"{path} is a PyTorch file but not a YOLOv5 checkpoint: "
                           "pass a YOLOv5 detection .pt or one written by edge-convert")
    model.eval()
    return LoadedCheckpoint(model=model, path=path, sha256=digest, kind=kind, extra=extra)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _from_ultralytics(path: Path) -> tuple[YOLOv5, dict]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except pickle.UnpicklingError as exc:
        raise ConvertError(f"{path} was not loaded: {exc}; a YOLOv5 checkpoint holds only the "
                           "model's classes and tensors (is this file from an untrusted source?)") from None
    except Exception as exc:
        raise ConvertError(f"{path} could not be unpickled ({_first_line(exc)}): "
                           "is it a complete YOLOv5 detection checkpoint?") from None
    record = None
    if isinstance(ckpt, dict):
        record = ckpt.get("ema") or ckpt.get("model")
    elif isinstance(ckpt, Record):
        record = ckpt  # torch.save(model) without the training dict
    if record is None or not isinstance(getattr(record, "yaml", None), dict):
        raise ConvertError(f"{path} holds no YOLOv5 model with a yaml description: "
                           "pass a checkpoint saved by YOLOv5's train.py")
    _refuse_forks(record, path)
    state = _record_state_dict(record)
    model = build_model(record.yaml, state=state)
    set_activations(model, _record_activations(record))
    _load_state(model, state, path)
    model.names = _names(getattr(record, "names", None), model.detect.nc)
    extra = {k: ckpt.get(k) for k in ("epoch", "date") if isinstance(ckpt, dict) and isinstance(ckpt.get(k), (int, str))}
    return model, extra


def _refuse_forks(record, path: Path):
    """A layer the builder does not know is a fork's own: one line naming it, before any building."""
    unknown = unknown_layers(record.yaml)
    if not unknown:
        return
    others = f" (nor {', '.join(unknown[1:])})" if unknown[1:] else ""
    raise ConvertError(f"{path.name}: {unknown[0]} from a fork of YOLOv5 is not supported{others}; "
                       "only the layers of the official YOLOv5 yamls load: export it with the fork's "
                       "own tools, or retrain with official YOLOv5")


def _record_state_dict(record, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a tree of records the way `nn.Module.state_dict` names its tensors."""
    state = {}
    for kind in ("_parameters", "_buffers"):
        skip = getattr(record, "_non_persistent_buffers_set", set()) if kind == "_buffers" else set()
        for name, tensor in (getattr(record, kind, None) or {}).items():
            if isinstance(tensor, torch.Tensor) and name not in skip and name != "anchor_grid":
                state[prefix + name] = tensor.detach().float() if tensor.is_floating_point() else tensor
    for name, child in (getattr(record, "_modules", None) or {}).items():
        if child is not None:
            state.update(_record_state_dict(child, f"{prefix}{name}."))
    return state


def _record_activations(record, prefix: str = "") -> dict[str, str]:
    """`{'model.0.act': 'SiLU', ...}` for every activation module the checkpoint holds in an `act` slot."""
    found = {}
    for name, child in (getattr(record, "_modules", None) or {}).items():
        if child is None:
            continue
        path = f"{prefix}{name}"
        kind = type(child).__name__
        if name == "act" and kind in ACTIVATION_CLASSES and getattr(type(child), "source_module", None) not in MODEL_MODULES:
            slope = getattr(child, "negative_slope", 0.01)
            found[path] = f"LeakyReLU({float(slope):g})" if kind == "LeakyReLU" else kind
        else:
            found.update(_record_activations(child, path + "."))
    return found


def _load_state(model: YOLOv5, state: dict, path: Path):
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ConvertError(f"{path} does not match the YOLOv5 architecture "
                           f"(missing {missing[:2]}, unexpected {unexpected[:2]}): "
                           "its tensors are not those its yaml describes")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise ConvertError(f"{path}: tensor {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                           f"the architecture expects {tuple(own[wrong[0]].shape)}")
    model.load_state_dict(state)


def _names(names, nc: int) -> list[str]:
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if isinstance(names, (list, tuple)) and len(names) == nc:
        return [str(n) for n in names]
    return [f"class{i}" for i in range(nc)]


def save_checkpoint(model: YOLOv5, path: str | Path, **extra) -> Path:
    """Write the model in this project's format: architecture, explicit channel shapes, weights.

    It loads with `torch.load(weights_only=True)`: no pickled code, safe to share.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": OWN_FORMAT,
        "version": OWN_VERSION,
        "yaml": model.yaml,
        "names": list(model.names),
        "channel_shapes": model.channel_shapes(),
        "activations": activation_specs(model),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def _from_own(raw: dict, path: Path) -> tuple[YOLOv5, dict]:
    if raw.get("version") != OWN_VERSION:
        raise ConvertError(f"{path} is edge-yolo checkpoint version {raw.get('version')}, "
                           f"this tool reads version {OWN_VERSION}: upgrade edge-yolo")
    model = build_model(raw["yaml"], channel_shapes=raw["channel_shapes"], state=raw["state_dict"])
    set_activations(model, raw.get("activations") or {})
    _load_state(model, raw["state_dict"], path)
    model.names = _names(raw.get("names"), model.detect.nc)
    return model, dict(raw.get("extra") or {})
