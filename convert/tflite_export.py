"""ONNX → TFLite (fp32, fp16, full-integer int8) through onnx2tf, offline and with visible progress.

onnx2tf is driven as a subprocess: it is a 9,000-line program with global state, prints a great
deal, and a crash in it should become one clear message here, not a dead converter.
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
from convert.onnx_export import INPUT_NAME

log = logging.getLogger(__name__)

# onnx2tf 1.29 loads this sample file for a self-check of any image model and downloads it when it is
# absent; the converter is given one made from the user's own calibration images instead.
ONNX2TF_SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
ONNX2TF_SAMPLE_COUNT = 20
ONNX2TF_SAMPLE_SIDE = 128

# What onnx2tf writes, and the names this project gives the files.
PRODUCTS = {
    "fp32": "{stem}_float32.tflite",
    "fp16": "{stem}_float16.tflite",
    "int8": "{stem}_full_integer_quant.tflite",
}


@dataclass(frozen=True)
class QuantSettings:
    """How the int8 model is calibrated; recorded in the model's metadata."""

    per_channel: bool = True
    input_dtype: str = "int8"
    output_dtype: str = "int8"

    def flags(self, calib_npy: Path) -> list[str]:
        return [
            "-oiqt",
            "-qt", "per-channel" if self.per_channel else "per-tensor",
            # The calibration array is already pixel/255: mean 0, std 1 (onnx2tf's default is ImageNet's).
            "-cind", INPUT_NAME, str(calib_npy), "[[[[0,0,0]]]]", "[[[[1,1,1]]]]",
            "-iqd", self.input_dtype,
            "-oqd", self.output_dtype,
        ]

    def as_dict(self) -> dict:
        return {"quantization": "per-channel" if self.per_channel else "per-tensor",
                "input_dtype": self.input_dtype, "output_dtype": self.output_dtype}


def onnx2tf_sample(calib: np.ndarray) -> np.ndarray:
    """The converter's self-check sample, `[20, 128, 128, 3]` float32, cut from real calibration images."""
    import cv2

    picks = calib[np.linspace(0, len(calib) - 1, ONNX2TF_SAMPLE_COUNT).astype(int)]
    side = (ONNX2TF_SAMPLE_SIDE, ONNX2TF_SAMPLE_SIDE)
    return np.stack([cv2.resize(img, side, interpolation=cv2.INTER_AREA) for img in picks]).astype(np.float32)


def run_onnx2tf(onnx_path: Path, work_dir: Path, calib: np.ndarray, settings: QuantSettings) -> dict[str, Path]:
    """Convert; return the fp32/fp16/int8 files onnx2tf produced (inside `work_dir`)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    calib_npy = work_dir / "calibration.npy"
    np.save(calib_npy, calib.astype(np.float32))
    np.save(work_dir / ONNX2TF_SAMPLE_NAME, onnx2tf_sample(calib))
    out_dir = (work_dir / "saved_model").resolve()
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path.resolve()), "-o", str(out_dir),
           *settings.flags(calib_npy.resolve())]
    env = dict(os.environ)
    # onnx2tf calls `onnxsim` by name and silently skips simplification when it is not on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if shutil.which("onnxsim", path=env["PATH"]) is None:
        log.warning("onnxsim is not installed: the graph will not be simplified (pip install onnxsim)")
    log_path = work_dir / "onnx2tf.log"
    code = _run_with_progress(cmd, work_dir, env, log_path, "onnx2tf: converting and calibrating")
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
    return products


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
