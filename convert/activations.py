"""Activations as the checkpoint's own modules say, kept beside the weights when saved again.

YOLOv5 switched its default from LeakyReLU/Hardswish to SiLU in v4.0, yamls may set another
(`activation: nn.LeakyReLU(0.1)`), and forks use ReLU; the only reliable source is the module a
checkpoint holds at each place, so that is what is read and written here, as a short text spec.
"""
from __future__ import annotations

from torch import nn

from convert.errors import ConvertError

_PLAIN = {"SiLU": nn.SiLU, "ReLU": nn.ReLU, "Hardswish": nn.Hardswish, "Identity": nn.Identity,
          "Sigmoid": nn.Sigmoid, "ReLU6": nn.ReLU6}
ACTIVATION_CLASSES = frozenset(_PLAIN) | {"LeakyReLU"}


def spec_of(module: nn.Module) -> str | None:
    if isinstance(module, nn.LeakyReLU):
        return f"LeakyReLU({module.negative_slope:g})"
    for name, cls in _PLAIN.items():
        if type(module) is cls:
            return name
    return None


def from_spec(spec: str) -> nn.Module:
    if spec in _PLAIN:
        return _PLAIN[spec]()
    if spec.startswith("LeakyReLU(") and spec.endswith(")"):
        try:
            return nn.LeakyReLU(float(spec[len("LeakyReLU("):-1]))
        except ValueError:
            pass
    raise ConvertError(f"activation {spec!r} is not one YOLOv5 uses: SiLU, Hardswish, LeakyReLU, ReLU")


def activation_specs(model: nn.Module) -> dict[str, str]:
    """Every `act` slot and its activation, e.g. `{'model.0.act': 'SiLU', ...}`."""
    return {name: spec_of(m) for name, m in model.named_modules()
            if name.rpartition(".")[2] == "act" and spec_of(m) is not None}


def set_activations(model: nn.Module, specs: dict[str, str]):
    """Put each named activation in place; names the model has no `act` slot for are an error."""
    slots = {name for name, _ in model.named_modules() if name.rpartition(".")[2] == "act"}
    for name, spec in specs.items():
        if name not in slots:
            raise ConvertError(f"the checkpoint has an activation at {name}, where this architecture has none")
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if spec_of(getattr(parent, attr)) != spec:
            setattr(parent, attr, from_spec(spec))
