"""Loading models: every bad file or device is one EdgeError line; real models map outputs by stride."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.model.interpreter import Model, load_interpreter, parse_device
from edge.model.metadata import read_metadata

TFLITE_HEADER = b"\x1c\x00\x00\x00TFL3"


@pytest.mark.parametrize(
    "device, options",
    [("cpu", None), ("edgetpu", {}), ("edgetpu:usb", {"device": "usb"}), ("edgetpu:usb:0", {"device": "usb:0"}),
     ("edgetpu:pci:0", {"device": "pci:0"})],
)
def test_parse_device(device, options):
    assert parse_device(device) == options


@pytest.mark.parametrize("device", ["gpu", "cpu:1", "tpu"])
def test_unknown_device(device):
    with pytest.raises(EdgeError, match=f"unknown device '{device}'"):
        parse_device(device)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "model file not found"),
        (b"", "is not a TFLite model"),
        (bytes(range(256)) * 8, "is not a TFLite model"),
        (TFLITE_HEADER + bytes(range(256)) * 8, "is truncated or corrupt"),
    ],
    ids=["missing", "empty", "random-bytes", "tflite-header-then-garbage"],
)
def test_bad_model_files(tmp_path, content, message):
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EdgeError, match=message) as err:
        load_interpreter(path)
    assert "\n" not in str(err.value)


@pytest.fixture
def edgetpu_marked_model(model_dir, tmp_path):
    """A valid model whose bytes contain the Edge TPU custom op name (after the flatbuffer)."""
    path = tmp_path / "model_edgetpu.tflite"
    path.write_bytes((model_dir / "yolov5n_320_int8.tflite").read_bytes() + b"edgetpu-custom-op")
    return path


def test_truncated_real_model_is_an_error_not_a_crash(model_dir, tmp_path):
    """TFLite segfaults on a truncated flatbuffer; the bounds check must catch it first."""
    data = (model_dir / "yolov5n_320_int8.tflite").read_bytes()
    path = tmp_path / "half.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeError, match="is truncated or corrupt"):
        load_interpreter(path)


def test_edgetpu_without_library_names_the_fix(edgetpu_marked_model):
    """No Coral runtime on this machine: loading the delegate fails with the fix spelled out."""
    path = edgetpu_marked_model
    with pytest.raises(EdgeError) as err:
        load_interpreter(path, device="edgetpu:usb")
    message = str(err.value)
    assert "libedgetpu" in message and "libedgetpu1-std" in message and "_edgetpu.tflite" in message


def test_edgetpu_model_on_cpu_says_use_edgetpu(edgetpu_marked_model):
    path = edgetpu_marked_model
    with pytest.raises(EdgeError, match="--device edgetpu"):
        load_interpreter(path, device="cpu")


@pytest.mark.parametrize("precision, input_dtype", [("int8", np.int8), ("fp32", np.float32), ("fp16", np.float32)])
def test_real_model_outputs_by_stride(model_dir, precision, input_dtype):
    model = Model(model_dir / f"yolov5n_320_{precision}.tflite", threads=1)
    assert model.input_dtype == input_dtype
    assert model.input_view().shape == (320, 320, 3)
    model.invoke()
    outputs = model.outputs()
    assert {stride: raw.shape for stride, raw in outputs.items()} == {
        8: (1, 40, 40, 255), 16: (1, 20, 20, 255), 32: (1, 10, 10, 255)
    }
    is_int8 = precision == "int8"
    assert all((q is not None) == is_int8 for q in model.output_quantization.values())
    if is_int8:
        assert {(q.scale, q.zero_point) for q in model.output_quantization.values()} == {(1 / 256, -128)}


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(imgsz_hw=(640, 640)), "input is 320x320 (HxW) but metadata says 640x640"),
        (dict(strides=(8, 16)), "has 3 outputs, metadata expects one per stride [8, 16]"),
        (dict(nc=3), "does not match the metadata"),
    ],
)
def test_metadata_disagreeing_with_model(model_dir, change, message):
    path = model_dir / "yolov5n_320_int8.tflite"
    meta = dataclasses.replace(read_metadata(path), **change)
    if "strides" in change:
        meta = dataclasses.replace(meta, anchors_wh=meta.anchors_wh[:2])
    with pytest.raises(EdgeError) as err:
        Model(path, meta=meta, threads=1)
    assert message in str(err.value)
