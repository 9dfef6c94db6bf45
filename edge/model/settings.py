"""Which model runs where: the settings of ``Model`` and its interpreter."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edge.errors import InvalidSetting
from edge.fields import check_fields, setting

# cpu, or an Edge TPU by bus and index (pycoral's device strings)
DEVICE_PATTERN = re.compile(r"cpu|edgetpu(:(usb|pci)(:\d+)?|:\d+)?")
DEVICE_FORMS = "cpu, edgetpu, edgetpu:usb, edgetpu:usb:N, edgetpu:pci or edgetpu:pci:N"
MAX_THREADS = 256


def device_text(text: str) -> str:
    """``text`` if it names a device the interpreter can use; ValueError saying which forms exist."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise ValueError(f"unknown device {text!r}; use {DEVICE_FORMS}")
    return text


@dataclass(frozen=True)
class ModelSettings:
    TITLE: ClassVar[str] = "model"

    model: Path = setting(help="a .tflite exported by edge-convert (metadata embedded or as sidecar .json)",
                          metavar="PATH", example="/opt/edge-yolo/models/MODEL.tflite",
                          note="install.sh copies the model it is given to /opt/edge-yolo/models/.")
    device: str = setting("cpu", help=f"where inference runs: {DEVICE_FORMS}", parse=device_text,
                          note="An Edge TPU needs a model compiled with edgetpu_compiler.")
    threads: int | None = setting(None, help="interpreter CPU threads", low=1, high=MAX_THREADS, example=4,
                                  default_text="all cores")

    def __post_init__(self) -> None:
        check_fields(self)
        path = Path(self.model)
        if not path.exists():
            raise InvalidSetting("model", f"file not found: {path}")
        if not path.is_file():
            raise InvalidSetting("model", f"not a file: {path}")
        if not os.access(path, os.R_OK):
            raise InvalidSetting("model", f"cannot read {path}: permission denied")
