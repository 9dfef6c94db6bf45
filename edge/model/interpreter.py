"""The TFLite interpreter, loaded once, and a thin ``Model`` view of its tensors.

Interpreter packages are tried from lightest to heaviest: ``ai_edge_litert``, ``tflite_runtime``,
then ``tensorflow.lite`` (imported only when the others are missing, never at module import).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.errors import EdgeError
from edge.model.flatbuffer import CorruptModel, check_tflite
from edge.model.integrity import check_integrity
from edge.model.metadata import REEXPORT_FIX, ModelMeta, read_metadata
from edge.model.settings import device_text

log = logging.getLogger(__name__)

INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite
IDENTIFIER_SPAN = slice(4, 8)
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
EDGETPU_LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
EDGETPU_FIX = (
    "install libedgetpu1-std from the Coral apt repository (https://coral.ai/software/), "
    "plug in the Coral device, and use a model compiled with edgetpu_compiler (*_edgetpu.tflite)"
)
INPUT_RANK_NHWC = 4
RGB_CHANNELS = 3
INPUT_SCALE = 1.0 / 255.0  # the contract: input = pixel / 255
INPUT_SCALE_RTOL = 1e-4  # stored as float32
INPUT_ZERO_POINT = {"int8": -128, "uint8": 0}


@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 quantization of one tensor: ``real = (q - zero_point) * scale``."""

    scale: float
    zero_point: int

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


def interpreter_module() -> Any:
    """The first TFLite interpreter module installed: LiteRT, tflite-runtime, then TensorFlow's."""
    for name in INTERPRETER_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EdgeError("no TFLite interpreter is installed; pip install ai-edge-litert (or tflite-runtime)")


def parse_device(device: str) -> dict[str, str] | None:
    """``"cpu"`` → None; ``"edgetpu"``, ``"edgetpu:usb"``, ``"edgetpu:pci:0"`` → delegate options."""
    try:
        device_text(device)
    except ValueError as exc:
        raise EdgeError(str(exc)) from None
    if device == "cpu":
        return None
    where = device.partition(":")[2]
    return {"device": where} if where else {}


def _edgetpu_delegate(module: Any, options: dict[str, str]) -> Any:
    library = EDGETPU_LIBRARY.get(platform.system(), EDGETPU_LIBRARY["Linux"])
    # Probe the library ourselves: the interpreters' Delegate prints an "Exception ignored"
    # traceback from its finalizer when the library is missing.
    try:
        ctypes.CDLL(library)
    except OSError:
        raise EdgeError(f"Edge TPU library {library} is not installed; {EDGETPU_FIX}") from None
    load_delegate = getattr(module, "load_delegate", None)
    if load_delegate is None:  # tensorflow.lite keeps it under experimental
        load_delegate = module.experimental.load_delegate
    try:
        return load_delegate(library, options)
    except (ValueError, RuntimeError, OSError):
        raise EdgeError(f"no Edge TPU found (device {options.get('device', 'any')}); {EDGETPU_FIX}") from None


def read_model_file(path: Path) -> bytes:
    """The bytes of a file that is a whole TFLite flatbuffer; EdgeError naming what is wrong otherwise.

    Checked before any interpreter sees the file: a damaged flatbuffer can crash the interpreter.
    """
    if not path.is_file():
        raise EdgeError(f"model file not found: {path}; check --model")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"cannot read model {path}: {exc.strerror}; check the file's permissions") from None
    if content[IDENTIFIER_SPAN] != TFLITE_IDENTIFIER:
        raise EdgeError(f"{path} is not a TFLite model (no TFL3 identifier); pass a .tflite file from `edge-convert export`")
    try:
        check_tflite(content)
    except CorruptModel as exc:
        raise EdgeError(f"{path} is truncated or corrupt ({exc}); copy the file again or {REEXPORT_FIX}") from None
    return content


def load_interpreter(path: str | Path, threads: int | None = None, device: str = "cpu") -> Any:
    """A ready (tensors allocated) interpreter for ``path``; every failure is an EdgeError line.

    ``device="cpu"`` keeps the interpreter's default CPU path (XNNPACK); ``edgetpu[:usb|:pci[:N]]``
    adds the Coral delegate.
    """
    path = Path(path)
    content = read_model_file(path)
    delegate_options = parse_device(device)
    compiled_for_tpu = EDGETPU_CUSTOM_OP in content
    if compiled_for_tpu and delegate_options is None:
        raise EdgeError(f"{path} is compiled for the Edge TPU; run it with --device edgetpu, or use the model before edgetpu_compiler")
    if threads is None:
        threads = os.cpu_count() or 1
    if threads < 1:
        raise EdgeError(f"threads must be at least 1, received {threads}")

    module = interpreter_module()
    delegates = []
    if delegate_options is not None:
        if not compiled_for_tpu:
            log.warning("%s is not compiled for the Edge TPU: it will run on the CPU; compile it with edgetpu_compiler", path.name)
        delegates.append(_edgetpu_delegate(module, delegate_options))
    check_integrity(content, path)  # last before the interpreter parses the file, which trusts every byte
    del content
    try:
        interpreter = module.Interpreter(
            model_path=str(path), num_threads=threads, experimental_delegates=delegates or None
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()
        reason_line = reason[0] if reason else type(exc).__name__
        raise EdgeError(f"cannot load {path}: {reason_line}; if the file is damaged, {REEXPORT_FIX}") from None
    return interpreter


class Model:
    """An interpreter plus the facts about its tensors, read once at start-up.

    Per frame: write the input through ``input_view()``, ``invoke()``, read ``outputs()``.
    TFLite refuses to invoke while numpy views of its buffers are alive, so neither the input
    view nor the output views may be kept across ``invoke()``.
    """

    def __init__(self, path: str | Path, meta: ModelMeta | None = None, threads: int | None = None, device: str = "cpu"):
        self.path = Path(path)
        self.interpreter = load_interpreter(self.path, threads=threads, device=device)
        self.meta = meta if meta is not None else read_metadata(self.path)
        self._check_input()
        self._check_outputs()

    def _check_input(self) -> None:
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise EdgeError(f"{self.path.name}: expected 1 input tensor, found {len(inputs)}; {REEXPORT_FIX}")
        detail = inputs[0]
        shape = tuple(int(d) for d in detail["shape"])
        height, width = self.meta.imgsz_hw
        if len(shape) != INPUT_RANK_NHWC or shape[0] != 1 or shape[3] != RGB_CHANNELS:
            raise EdgeError(f"{self.path.name}: input shape is {list(shape)}, expected [1, H, W, 3] (NHWC); {REEXPORT_FIX}")
        if shape[1:3] != (height, width):
            raise EdgeError(
                f"{self.path.name}: input is {shape[1]}x{shape[2]} (HxW) but metadata says {height}x{width}; {REEXPORT_FIX}"
            )
        self.input_dtype = np.dtype(detail["dtype"])
        if self.input_dtype not in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.float32)):
            raise EdgeError(f"{self.path.name}: input dtype {self.input_dtype} is not supported (int8, uint8 or float32)")
        self.input_quantization = _quantization(detail)
        self._check_input_quantization()
        self._input_tensor: Callable[[], np.ndarray] = self.interpreter.tensor(detail["index"])

    def _check_input_quantization(self) -> None:
        """Integer input must be pixel/255 exactly, so pixels are written with no arithmetic."""
        if self.input_dtype == np.float32:
            return
        expected_zero_point = INPUT_ZERO_POINT[self.input_dtype.name]
        quant = self.input_quantization
        if quant is None or not (
            math.isclose(quant.scale, INPUT_SCALE, rel_tol=INPUT_SCALE_RTOL) and quant.zero_point == expected_zero_point
        ):
            got = "none" if quant is None else f"scale {quant.scale:.6g}, zero point {quant.zero_point}"
            raise EdgeError(
                f"{self.path.name}: {self.input_dtype} input quantization is {got}, expected scale 1/255, "
                f"zero point {expected_zero_point}; {REEXPORT_FIX}"
            )

    def _check_outputs(self) -> None:
        meta = self.meta
        height, width = meta.imgsz_hw
        channels = meta.num_anchors * meta.channels_per_anchor
        outputs = self.interpreter.get_output_details()
        if len(outputs) != len(meta.strides):
            raise EdgeError(
                f"{self.path.name}: has {len(outputs)} outputs, metadata expects one per stride {list(meta.strides)}; {REEXPORT_FIX}"
            )
        self._output_tensors: dict[int, Callable[[], np.ndarray]] = {}
        self.output_quantization: dict[int, Quantization | None] = {}
        for detail in outputs:
            shape = tuple(int(d) for d in detail["shape"])
            stride = height // shape[1] if len(shape) == INPUT_RANK_NHWC and shape[1] else 0
            expected = (1, height // stride, width // stride, channels) if stride in meta.strides else None
            if shape != expected or stride in self._output_tensors:
                wanted = ", ".join(str([1, height // s, width // s, channels]) for s in meta.strides)
                raise EdgeError(f"{self.path.name}: output shape {list(shape)} does not match the metadata ({wanted}); {REEXPORT_FIX}")
            self._output_tensors[stride] = self.interpreter.tensor(detail["index"])
            self.output_quantization[stride] = _quantization(detail)

    def input_view(self) -> np.ndarray:
        """Writable (H, W, 3) view of the input tensor; drop it before ``invoke()``."""
        return self._input_tensor()[0]

    def invoke(self) -> None:
        self.interpreter.invoke()

    def outputs(self) -> dict[int, np.ndarray]:
        """Raw output views by stride, valid until the next ``invoke()``; do not keep them."""
        return {stride: tensor() for stride, tensor in self._output_tensors.items()}


def _quantization(detail: dict) -> Quantization | None:
    if np.dtype(detail["dtype"]) not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    scale, zero_point = detail["quantization"]
    if not scale:
        return None
    return Quantization(scale=float(scale), zero_point=int(zero_point))
