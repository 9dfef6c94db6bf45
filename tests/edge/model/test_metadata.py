"""Metadata appended to the model or beside it: round trip and one-line errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from edge.errors import EdgeError
from edge.model.metadata import MEMBER_NAME, class_ids_from, parse_metadata, read_metadata, sidecar_path, write_metadata
from tests.edge.edge_testing import YOLOV5_ANCHORS_WH, metadata_dict

FLATBUFFER = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 40  # stands in for a model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m_int8.tflite"
    path.write_bytes(FLATBUFFER)
    return path


def test_write_then_read_round_trip(model_file):
    raw = metadata_dict(nc=2, names=["person", "bus"], imgsz=[256, 320], source={"sha256": "ab"})
    write_metadata(model_file, raw)
    meta = read_metadata(model_file)
    assert meta.imgsz_hw == (256, 320)
    assert meta.strides == (8, 16, 32)
    assert meta.names == ("person", "bus") and meta.nc == 2
    assert meta.anchors_wh.shape == (3, 3, 2) and meta.anchors_wh.dtype == np.float32
    np.testing.assert_array_equal(meta.anchors_for(32), YOLOV5_ANCHORS_WH[2])
    assert meta.raw == raw
    assert model_file.read_bytes().startswith(FLATBUFFER)


def test_rewriting_replaces_instead_of_stacking(model_file):
    write_metadata(model_file, metadata_dict(precision="fp32"))
    first_size = model_file.stat().st_size
    write_metadata(model_file, metadata_dict(precision="int8"))
    write_metadata(model_file, metadata_dict(precision="fp16"))
    assert model_file.stat().st_size == first_size - len('"fp32"') + len('"fp16"')
    assert model_file.read_bytes()[: len(FLATBUFFER)] == FLATBUFFER
    assert read_metadata(model_file).precision == "fp16"
    with zipfile.ZipFile(model_file) as zf:
        assert zf.namelist() == [MEMBER_NAME]


def test_sidecar_used_when_model_carries_none(model_file):
    sidecar = sidecar_path(model_file)
    assert sidecar.name == "m_int8.json"
    sidecar.write_text(json.dumps(metadata_dict(nc=1, names=["person"])))
    assert read_metadata(model_file).names == ("person",)


def test_appended_metadata_wins_over_sidecar(model_file):
    sidecar_path(model_file).write_text(json.dumps(metadata_dict(nc=1, names=["sidecar"])))
    write_metadata(model_file, metadata_dict(nc=1, names=["appended"]))
    assert read_metadata(model_file).names == ("appended",)


def test_missing_metadata_names_file_and_fix(model_file):
    with pytest.raises(EdgeError) as err:
        read_metadata(model_file)
    message = str(err.value)
    assert "m_int8.tflite" in message and "m_int8.json" in message and "edge-convert export" in message
    assert "\n" not in message


BAD_METADATA = [
    pytest.param({"layout_version": 2}, "layout_version 2 is not supported", id="future-layout"),
    pytest.param({"format": "ultralytics"}, "format is 'ultralytics'", id="wrong-format"),
    pytest.param({"precision": "int4"}, "precision 'int4'", id="bad-precision"),
    pytest.param({"imgsz": [320]}, "imgsz must be [height, width]", id="imgsz-one-value"),
    pytest.param({"strides": [8, -16, 32]}, "strides must be a list of positive integers", id="negative-stride"),
    pytest.param({"anchors": [[[10, 13]]]}, "anchors must have shape (3 levels, anchors, 2)", id="anchors-wrong-levels"),
    pytest.param({"names": ["a", "b"]}, "nc is 80 but names lists 2", id="nc-names-mismatch"),
    pytest.param({"names": {"0": "a", "2": "b"}, "nc": 2}, "names keys must be 0..nc-1", id="names-dict-gap"),
]


@pytest.mark.parametrize("override, message", BAD_METADATA)
def test_bad_metadata_is_one_clear_line(model_file, override, message):
    write_metadata(model_file, metadata_dict(**override))
    with pytest.raises(EdgeError) as err:
        read_metadata(model_file)
    assert message in str(err.value)
    assert "m_int8.tflite" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("missing_key", ["anchors", "layout_version", "names"])
def test_missing_key_is_named(missing_key):
    raw = metadata_dict()
    del raw[missing_key]
    with pytest.raises(EdgeError, match=f"lacks {missing_key}"):
        parse_metadata(raw, "x.tflite")


def test_invalid_sidecar_json(model_file):
    sidecar_path(model_file).write_text("{not json")
    with pytest.raises(EdgeError, match="not valid JSON"):
        read_metadata(model_file)


def test_names_as_dict_are_ordered():
    meta = parse_metadata(metadata_dict(nc=2, names={"1": "bus", "0": "person"}))
    assert meta.names == ("person", "bus")


CLASS_TOKENS = [
    pytest.param(["person"], (0,), id="name"),
    pytest.param(["2"], (2,), id="id"),
    pytest.param(["person,2", "bus"], (0, 2, 1), id="mixed-comma"),
    pytest.param(["person", "0"], (0,), id="duplicates-dropped"),
]


@pytest.mark.parametrize("tokens, expected", CLASS_TOKENS)
def test_class_ids_from_tokens(tokens, expected):
    assert class_ids_from(tokens, ("person", "bus", "car")) == expected


@pytest.mark.parametrize("tokens, message", [(["persn"], "unknown class 'persn'"), (["7"], "class id 7 is out of range")])
def test_bad_class_tokens(tokens, message):
    with pytest.raises(EdgeError, match=message):
        class_ids_from(tokens, ("person", "bus", "car"))
