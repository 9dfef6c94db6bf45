"""onnx2tf's SavedModel → full-integer int8 TFLite, calibrated on real images, ranges set by error."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from convert.errors import ConvertError
from convert.int8.graph import RangedTensor, ranged_tensors, read_model, set_ranges, write_model
from convert.int8.ranges import BINS, best_range
from convert.progress import progress

log = logging.getLogger(__name__)

# "error": each range minimises the error after its consumer; "minmax": TFLite's calibrator as is.
RANGE_METHODS = ("error", "minmax")


def quantize_int8(saved_model: Path, calib: np.ndarray, per_channel: bool = True,
                  ranges: str = "error") -> tuple[bytes, dict]:
    """The int8 flatbuffer (int8 input and outputs) and a summary of the ranges, for the metadata."""
    if ranges not in RANGE_METHODS:
        raise ConvertError(f"unknown range method {ranges!r}: use one of {', '.join(RANGE_METHODS)}")
    calibrated = calibrate(saved_model, calib)
    model = read_model(calibrated)
    tensors = ranged_tensors(model)
    summary = {"activation_ranges": ranges, "ranged_tensors": len(tensors)}
    if ranges == "error":
        chosen = error_ranges(calibrated, calib, [t for t in tensors if not t.fixed])
        set_ranges(model, chosen)
        narrowing = [(t.high - t.low) / (chosen[t.index][1] - chosen[t.index][0]) for t in tensors if t.index in chosen]
        summary.update(narrowed_tensors=len(chosen), median_narrowing=round(float(np.median(narrowing)), 3))
        log.info("int8 ranges: %d of %d activations narrowed, median %.2fx", len(chosen), len(tensors),
                 summary["median_narrowing"])
    return quantize_calibrated(write_model(model), per_channel), summary


def _converter_module():
    import tensorflow as tf

    return tf


def calibrate(saved_model: Path, calib: np.ndarray) -> bytes:
    """The float model with every activation's calibrated min/max recorded in it."""
    tf = _converter_module()

    def samples():
        for image in progress(calib, desc="int8 calibration"):
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_calibrate_only = True  # stop before quantizing: the ranges are set here
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises bare Exceptions with multi-page messages
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConvertError(f"int8 calibration of {saved_model} failed: {first}") from None


def error_ranges(calibrated: bytes, calib: np.ndarray, tensors: list[RangedTensor]) -> dict[int, tuple[float, float]]:
    """Histogram each tensor over its calibrated range on the calibration images; pick the best range."""
    counts = histograms(calibrated, calib, tensors)
    return {t.index: best_range(counts[t.index], t.low, t.high, t.transfer) for t in tensors if t.high > t.low}


def histograms(calibrated: bytes, calib: np.ndarray, tensors: list[RangedTensor]) -> dict[int, np.ndarray]:
    tf = _converter_module()
    with warnings.catch_warnings():  # preserve_all_tensors' "debugging only" warning: keeping them is the point
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(
            model_content=calibrated, experimental_preserve_all_tensors=True, num_threads=2,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    counts = {t.index: np.zeros(BINS, np.int64) for t in tensors}
    for image in progress(calib, desc="int8 activation histograms"):
        interpreter.set_tensor(index, image[None].astype(np.float32))
        interpreter.invoke()
        for t in tensors:
            if t.high > t.low:
                counts[t.index] += np.histogram(interpreter.get_tensor(t.index), BINS, (t.low, t.high))[0]
    return counts


def quantize_calibrated(calibrated: bytes, per_channel: bool) -> bytes:
    """TFLite's quantizer on a calibrated float model: int8 input, outputs and every op between."""
    tf = _converter_module()
    from tensorflow.lite.python import convert as tflite_convert

    try:
        return tflite_convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, fully_quantize=True,
                                            input_data_type=tf.int8, output_data_type=tf.int8)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConvertError(f"int8 quantization failed: {first}") from None
