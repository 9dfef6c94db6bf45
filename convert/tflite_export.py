"""ONNX → TFLite: fp32 and fp16 through onnx2tf, full-integer int8 from its SavedModel.

onnx2tf is driven as a subprocess: it is a 9,000-line program with global state, prints a great
deal, and a crash in it should become one clear message here, not a dead converter. The int8 file
is quantized here (`convert.int8`) so that its activation ranges can be chosen by error.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from convert.int8 import RANGE_METHODS, quantize_int8

log = logging.getLogger(__name__)

# onnx2tf 1.29 loads this sample file for a self-check of any image model and downloads it when it is
# absent; the converter is given one made from the user's own calibration images instead.
ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SAMPLE_COUNT = 20
ONNX2TF_SAMPLE_SIDE = 128

# What onnx2tf writes.
PRODUCTS = {
    "fp32": "{stem}_float32.tflite",
    "fp16": "{stem}_float16.tflite",
}


@dataclass(frozen=True)
class QuantSettings:
    """How the int8 model is calibrated; recorded in the model's metadata."""

    per_channel: bool = True
    ranges: str = "error"  # convert.int8.RANGE_METHODS
    input_dtype: str = "int8"
    output_dtype: str = "int8"

    def __post_init__(self):
        if self.ranges not in RANGE_METHODS:
            raise ConvertError(f"--ranges {self.ranges!r} is not a range method: use one of {', '.join(RANGE_METHODS)}")

    def as_dict(self) -> dict:
        return {"quantization": "per-channel" if self.per_channel else "per-tensor",
                "activation_ranges": self.ranges,
                "input_dtype": self.input_dtype, "output_dtype": self.output_dtype}


def onnx2tf_sample(calib: np.ndarray) -> np.ndarray:
    """The converter's self-check sample, `[20, 128, 128, 3]` float32, cut from real calibration images."""
    import cv2

    picks = calib[np.linspace(0, len(calib) - 1, ONNX2TF_SAMPLE_COUNT).astype(int)]
    side = (ONNX2TF_SAMPLE_SIDE, ONNX2TF_SAMPLE_SIDE)
    return np.stack([cv2.resize(img, side, interpolation=cv2.INTER_AREA) for img in picks]).astype(np.float32)


def convert_tflite(onnx_path: Path, work_dir: Path, calib: np.ndarray,
                   settings: QuantSettings) -> tuple[dict[str, Path], dict]:
    """The fp32/fp16/int8 files (inside `work_dir`) and the int8 range summary for the metadata."""
    products, saved_model = run_onnx2tf(onnx_path, work_dir, calib)
    int8, summary = quantize_int8(saved_model, calib, settings.per_channel, settings.ranges)
    products["int8"] = work_dir / f"{onnx_path.stem}_int8.tflite"
    products["int8"].write_bytes(int8)
    return products, summary


def run_onnx2tf(onnx_path: Path, work_dir: Path, calib: np.ndarray) -> tuple[dict[str, Path], Path]:
    """Convert; return the fp32/fp16 files onnx2tf produced and its SavedModel folder (inside `work_dir`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    np.save(work_dir / ONNX2TF_SAMPLE_NAME, onnx2tf_sample(calib))
    out_dir = (work_dir / "saved_model").resolve()
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path.resolve()), "-o", str(out_dir)]
    env = dict(os.environ)
    # onnx2tf calls `onnxsim` by name and silently skips simplification when it is not on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if shutil.which("onnxsim", path=env["PATH"]) is None:
        log.warning("onnxsim is not installed: the graph will not be simplified (pip install onnxsim)")
    log_path = work_dir / "onnx2tf.log"
    code = _run_with_progress(cmd, work_dir, env, log_path, "onnx2tf: converting")
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise ConvertError("onnx2tf failed (exit code %d); its log is %s; last lines:\n  %s"
                           % (code, log_path, "\n  ".join(tail)))
    stem = onnx_path.stem
    products = {}
    for precision, pattern in PRODUCTS.items():
        path = out_dir / pattern.format(stem=stem)
        if not path.is_file():
            raise ConvertError(f"onnx2tf finished but wrote no {path.name}; its log is {log_path}")
        products[precision] = path
    return products, out_dir


def _run_with_progress(cmd: list[str], cwd: Path, env: dict, log_path: Path, label: str) -> int:
    """Run a long subprocess with its output in a log file and an elapsed-time line on stderr."""
    done = threading.Event()
    start = time.monotonic()
    tty = sys.stderr.isatty()

    def ticker():
        while not done.wait(1.0 if tty else 15.0):
            elapsed = time.monotonic() - start
            end = "\r" if tty else "\n"
            print(f"{label} ... {elapsed:4.0f} s", end=end, file=sys.stderr, flush=True)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        with open(log_path, "wb") as log_file:
            code = subprocess.run(cmd, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL).returncode
    finally:
        done.set()
        thread.join()
    print(f"{label}: done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return code
