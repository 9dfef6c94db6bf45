"""Checkpoint → ONNX → TFLite fp32/fp16/int8, each file carrying the metadata the device needs."""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convert.calibration import DEFAULT_CALIB_IMAGES, calibration_set
from convert.checkpoint import LoadedCheckpoint, load_checkpoint
from convert.errors import ConvertError
from convert.onnx_export import INPUT_NAME, SigmoidHeads, export_onnx
from convert.tflite_export import QuantSettings, convert_tflite
from edge.model.metadata import FORMAT_NAME, write_metadata

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
# A float TFLite that differs from PyTorch by more than this on a real image is a broken conversion.
FLOAT_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
# int8 heads are quantized with a step of 1/256. Single values may drift by many steps where
# activations saturate, so the check is on the mean. yolov5n calibrated on the pool drifts 0.004;
# custom models calibrated on photos unlike their own scenes 0.013-0.054 (a warning past 0.02, with
# the fix); a broken graph drifts by the size of the signal (refused past 0.08, 20 steps on average).
INT8_MEAN_WARN = 0.02
INT8_MEAN_REFUSE = 0.08


@dataclass(frozen=True)
class ExportResult:
    models: dict[str, Path]
    onnx: Path
    metadata: dict


def parse_imgsz(value, stride: int | None = 32) -> tuple[int, int]:
    """`320` or `320,256` / `[h, w]` → (h, w), rounded up to a multiple of `stride` (None: as given)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConvertError(f"--imgsz {value!r} is not a size: give 320 or HEIGHT,WIDTH") from None
    if isinstance(value, int):
        value = [value]
    hw = (int(value[0]), int(value[-1]))
    if any(v <= 0 for v in hw):
        raise ConvertError(f"--imgsz {hw[0]}x{hw[1]} is not a size: give a positive size like 320 or 640")
    return round_imgsz(hw, stride) if stride else hw


def round_imgsz(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """The network halves its input down to `stride`: a size that does not divide is rounded up, once, loudly."""
    up = tuple(-(-v // stride) * stride for v in hw)
    if up != tuple(hw):
        log.warning("--imgsz %dx%d is not a multiple of %d (the model's largest stride): using %dx%d",
                    hw[0], hw[1], stride, up[0], up[1])
    return up


def export_all(weights: Path, out_dir: Path, imgsz, calib_dirs: list[Path],
               calib_images: int = DEFAULT_CALIB_IMAGES, settings: QuantSettings = QuantSettings(),
               keep_work: bool = False) -> ExportResult:
    ckpt = load_checkpoint(weights)
    model = ckpt.model.fuse().eval()
    imgsz_hw = round_imgsz(parse_imgsz(imgsz, stride=None), max(model.strides))
    calib, calib_paths = calibration_set(calib_dirs, imgsz_hw, calib_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{weights.stem}_{imgsz_hw[0]}" if imgsz_hw[0] == imgsz_hw[1] else f"{weights.stem}_{imgsz_hw[0]}x{imgsz_hw[1]}"
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    started = time.time()
    try:
        onnx_path = export_onnx(model, work / f"{stem}.onnx", imgsz_hw)
        probe = calib[:1]
        reference = _torch_heads(model, probe)
        _check_onnx(onnx_path, probe, reference)
        products, int8_summary = convert_tflite(onnx_path, work, calib, settings)
        final_onnx = out_dir / onnx_path.name
        shutil.copyfile(onnx_path, final_onnx)
        models, checks = {}, {}
        for precision in PRECISIONS:
            target = out_dir / f"{stem}_{precision}.tflite"
            shutil.copyfile(products[precision], target)
            checks[precision] = _check_tflite(target, precision, probe, reference)
            models[precision] = target
        meta_common = _metadata(ckpt, model, imgsz_hw, settings, calib_paths, started, checks, int8_summary)
        for precision, target in models.items():
            meta = dict(meta_common, precision=precision, quantization=_tensor_quantization(target))
            write_metadata(target, meta)
    finally:
        if keep_work:
            log.info("intermediate files kept in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return ExportResult(models=models, onnx=final_onnx, metadata=meta_common)


def _torch_heads(model, images_nhwc: np.ndarray) -> list[np.ndarray]:
    """PyTorch sigmoid heads as NHWC arrays, ordered by stride."""
    with torch.no_grad():
        x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).contiguous()
        return [o.permute(0, 2, 3, 1).numpy() for o in SigmoidHeads(model)(x)]


def _check_onnx(onnx_path: Path, images_nhwc: np.ndarray, reference: list[np.ndarray]):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {INPUT_NAME: images_nhwc.transpose(0, 3, 1, 2).copy()})
    worst = max(float(np.abs(o.transpose(0, 2, 3, 1) - r).max()) for o, r in zip(outs, reference))
    if worst > FLOAT_TOLERANCE["fp32"]:
        raise ConvertError(f"the ONNX export differs from PyTorch by {worst:.4f} (limit "
                           f"{FLOAT_TOLERANCE['fp32']}): the exporter produced a wrong graph")
    log.info("ONNX matches PyTorch (max abs diff %.2e)", worst)


def _run_tflite(path: Path, images_nhwc: np.ndarray) -> dict[int, np.ndarray]:
    """Outputs of a TFLite file on float images, dequantized, keyed by stride."""
    from edge.model.interpreter import load_interpreter

    interpreter = load_interpreter(path, threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    x = images_nhwc
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    height = inp["shape"][1]
    outputs = {}
    for det in interpreter.get_output_details():
        value = interpreter.get_tensor(det["index"]).astype(np.float32)
        if det["dtype"] == np.int8:
            scale, zero = det["quantization"]
            value = (value - zero) * scale
        outputs[int(height // det["shape"][1])] = value
    return outputs


def _check_tflite(path: Path, precision: str, images_nhwc: np.ndarray, reference: list[np.ndarray]) -> dict:
    outputs = _run_tflite(path, images_nhwc)
    strides = sorted(outputs)
    diffs = [float(np.abs(outputs[s] - r).max()) for s, r in zip(strides, reference)]
    mean = [float(np.abs(outputs[s] - r).mean()) for s, r in zip(strides, reference)]
    worst, limit = (max(diffs), FLOAT_TOLERANCE[precision]) if precision in FLOAT_TOLERANCE \
        else (max(mean), INT8_MEAN_REFUSE)
    if worst > limit:
        hint = "" if precision in FLOAT_TOLERANCE else \
            ", or the calibration photos are nothing like this model's inputs (pass --calib with photos of its scenes)"
        raise ConvertError(f"{path.name} differs from PyTorch by {worst:.4f} on a calibration image "
                           f"(limit {limit}): the conversion is broken{hint}")
    if precision == "int8" and worst > INT8_MEAN_WARN:
        log.warning("%s drifts from PyTorch by %.4f on average on a calibration image (a well calibrated "
                    "model stays under %.2f): calibrate on photos of the scenes this model sees (--calib)",
                    path.name, worst, INT8_MEAN_WARN)
    else:
        log.info("%s matches PyTorch: max abs diff %.4f, mean %.5f", path.name, max(diffs), max(mean))
    return {"max_abs_diff_vs_torch": round(max(diffs), 6), "mean_abs_diff_vs_torch": round(max(mean), 7)}


def _tensor_quantization(path: Path) -> dict:
    from edge.model.interpreter import load_interpreter

    interpreter = load_interpreter(path, threads=1)
    tensors = {}
    for det in interpreter.get_input_details() + interpreter.get_output_details():
        scale, zero = det["quantization"]
        tensors[det["name"]] = {"dtype": np.dtype(det["dtype"]).name, "shape": [int(v) for v in det["shape"]],
                                "scale": float(scale), "zero_point": int(zero)}
    return tensors


def _metadata(ckpt: LoadedCheckpoint, model, imgsz_hw, settings: QuantSettings, calib_paths: list[Path],
              started: float, checks: dict, int8_summary: dict) -> dict:
    import onnx2tf
    import tensorflow as tf

    return {
        "format": FORMAT_NAME,
        "layout_version": LAYOUT_VERSION,
        "imgsz": list(imgsz_hw),
        "strides": model.strides,
        "anchors": model.anchors_px.round().tolist(),
        "nc": model.detect.nc,
        "names": list(model.names),
        "source": {"file": ckpt.path.name, "sha256": ckpt.sha256, "kind": ckpt.kind,
                   "parameters": int(sum(p.numel() for p in model.parameters()))},
        "conversion": {
            **settings.as_dict(),
            "int8_ranges": int8_summary,
            "calibration_images": len(calib_paths),
            "calibration_sources": sorted({str(p.parent) for p in calib_paths}),
            "letterbox": {"pad": 114, "color": "rgb", "scale": "1/255"},
            "tools": {"torch": torch.__version__, "onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__},
            "seconds": round(time.time() - started, 1),
            "checks": checks,
        },
        "metrics": {},
    }
