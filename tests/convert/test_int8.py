"""Full-integer int8: every operator integer, and ranges chosen by error beat the calibration's extremes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from convert.calibration import find_images, letterboxed_images
from convert.errors import ConvertError
from convert.int8.graph import ranged_tensors, read_model, set_ranges, write_model
from convert.int8.quantize import calibrate, error_ranges, quantize_calibrated, quantize_int8
from convert.int8.ranges import BINS, best_range, identity, sigmoid, silu
from convert.tflite_export import QuantSettings
from edge.model.metadata import read_metadata

IMGSZ = 320
INTEGER_TYPES = {"INT8", "INT32"}


@pytest.fixture(scope="module")
def models() -> Path:
    return Path(os.environ["EDGE_YOLO_TEST_MODELS"])


@pytest.fixture(scope="module")
def pool_split(shared):
    """24 pool images to calibrate on and 8 others, never calibrated on, to judge the result."""
    paths = find_images([shared / "data" / "pool"])
    calib, _ = letterboxed_images(paths[3::80][:24], (IMGSZ, IMGSZ), "calibration")
    held, _ = letterboxed_images(paths[41::250][:8], (IMGSZ, IMGSZ), "held out")
    return np.stack(calib).astype(np.float32) / 255, np.stack(held).astype(np.float32) / 255


@pytest.fixture(scope="module")
def calibrated(models, pool_split) -> bytes:
    return calibrate(models / "saved_model", pool_split[0])


def _tensor_types(content: bytes) -> list[tuple[str, str, str]]:
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model = read_model(content)
    type_names = {v: k for k, v in vars(fb.schema_fb.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(fb.schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        for index in [*op.inputs, *op.outputs]:
            if index >= 0:
                tensor = graph.tensors[index]
                found.append((name, tensor.name.decode(), type_names[tensor.type]))
    return found


def test_every_operator_of_the_exported_int8_model_is_integer(models):
    found = _tensor_types((models / f"yolov5n_{IMGSZ}_int8.tflite").read_bytes())
    assert len({op for op, _, _ in found}) >= 8  # convolutions, sigmoids, products, concats, pools, ...
    not_integer = [entry for entry in found if entry[2] not in INTEGER_TYPES]
    assert not not_integer, not_integer[:5]


def test_the_float_model_is_not_integer(models):
    """The check above can fail: the fp32 file of the same export is all float."""
    found = _tensor_types((models / f"yolov5n_{IMGSZ}_fp32.tflite").read_bytes())
    assert sum(t == "FLOAT32" for _, _, t in found) > len(found) // 2


def test_metadata_records_the_range_method(models):
    conversion = read_metadata(models / f"yolov5n_{IMGSZ}_int8.tflite").raw["conversion"]
    assert conversion["activation_ranges"] == "error"
    ranges = conversion["int8_ranges"]
    assert 100 < ranges["narrowed_tensors"] <= ranges["ranged_tensors"]
    assert ranges["median_narrowing"] > 1.2


def test_tensors_know_their_consumers(calibrated):
    tensors = ranged_tensors(read_model(calibrated))
    by_transfer = {f: [t for t in tensors if t.transfer is f and not t.fixed] for f in (silu, sigmoid, identity)}
    assert len(by_transfer[silu]) == 57  # every convolution of yolov5n but the three heads feeds a SiLU
    assert len(by_transfer[sigmoid]) == 3
    fixed = [t for t in tensors if t.fixed]
    assert len(fixed) == 1 + 60  # the input, and the outputs of every sigmoid (TFLite fixes them to 1/256)


def test_error_ranges_bring_int8_closer_to_float_on_held_out_images(models, calibrated, pool_split):
    """On pool images never calibrated on, the heads' error shrinks against min/max ranges."""
    from convert.export import _run_tflite

    calib, held = pool_split
    model = read_model(calibrated)
    tensors = [t for t in ranged_tensors(model) if not t.fixed]
    minmax = quantize_calibrated(calibrated, per_channel=True)
    set_ranges(model, error_ranges(calibrated, calib, tensors))
    chosen = quantize_calibrated(write_model(model), per_channel=True)
    fp32 = models / f"yolov5n_{IMGSZ}_fp32.tflite"
    reference = [_run_tflite(fp32, image[None]) for image in held]

    def head_error(content: bytes) -> float:
        path = models.parent / f".int8-test-{os.getpid()}.tflite"
        try:
            path.write_bytes(content)
            outputs = [_run_tflite(path, image[None]) for image in held]
        finally:
            path.unlink(missing_ok=True)
        return float(np.mean([np.abs(out[s] - ref[s]).mean() for out, ref in zip(outputs, reference) for s in ref]))

    before, after = head_error(minmax), head_error(chosen)
    print(f"mean |int8 - fp32| on the heads: min/max ranges {before:.5f}, error ranges {after:.5f}")
    assert after < 0.85 * before, (before, after)


def test_unknown_range_method_is_one_line():
    with pytest.raises(ConvertError, match="--ranges 'median' is not a range method: use one of error, minmax"):
        QuantSettings(ranges="median")
    with pytest.raises(ConvertError, match="unknown range method"):
        quantize_int8(Path("unused"), np.zeros((1, 8, 8, 3), np.float32), ranges="median")


# best_range on known distributions: what it cuts and what it keeps

def _histogram(values: np.ndarray):
    lo, hi = float(values.min()), float(values.max())
    return np.histogram(values, BINS, (lo, hi))[0], lo, hi


def _quantization_mse(values, a, b, transfer=identity):
    step = (b - a) / 255
    zero = np.round(-a / step)
    q = (np.clip(np.round(values / step) + zero, 0, 255) - zero) * step
    return float(np.mean((transfer(q) - transfer(values)) ** 2))


def test_a_long_tail_is_cut_and_the_error_falls():
    rng = np.random.default_rng(0)
    values = rng.laplace(0.0, 1.0, 200_000)
    counts, lo, hi = _histogram(values)
    a, b = best_range(counts, lo, hi)
    assert lo < a < 0 < b < hi and b - a < 0.9 * (hi - lo)  # ACIQ: about ±9.9 for a unit Laplace at 8 bits
    fresh = rng.laplace(0.0, 1.0, 200_000)  # judged on values it did not see
    assert _quantization_mse(fresh, a, b) < 0.8 * _quantization_mse(fresh, lo, hi)  # 0.67 here


def test_a_silu_input_gives_up_its_negative_tail_first():
    rng = np.random.default_rng(1)
    values = rng.normal(0.0, 3.0, 200_000)
    counts, lo, hi = _histogram(values)
    plain, after_silu = best_range(counts, lo, hi), best_range(counts, lo, hi, silu)
    assert after_silu[0] > plain[0]  # less of the range below zero, where SiLU flattens everything
    assert _quantization_mse(values, *after_silu, silu) < _quantization_mse(values, *plain, silu)


def test_a_tensor_without_spread_keeps_its_range():
    assert best_range(np.zeros(BINS), 0.0, 1.0) == (0.0, 1.0)
    assert best_range(np.ones(BINS), 2.0, 2.0) == (2.0, 2.0)
