"""The exported models agree with the PyTorch model they came from."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.calibration import calibration_set
from convert.errors import ConvertError
from convert.export import parse_imgsz
from edge.detect.detector import DetectSettings, Detector
from edge.model.metadata import read_metadata
from tests.boxes import iou_matrix
from tests.convert.torch_detect import torch_detect

IMGSZ = 320
MIN_IOU = 0.85
# How far a TFLite score may stray from PyTorch's: fp32 is the same arithmetic, fp16 rounds weights,
# int8 rounds every activation (a box's score moves by up to about 0.09 on these photos, 0.02-0.04 on
# average); int8 accuracy as a whole is held by the mAP floor in test_eval.py.
MAX_SCORE_GAP = {"fp32": 0.005, "fp16": 0.01, "int8": 0.10}
MAX_MEAN_SCORE_GAP = {"fp32": 0.002, "fp16": 0.005, "int8": 0.05}


@pytest.fixture(scope="module")
def models() -> Path:
    return Path(os.environ["EDGE_YOLO_TEST_MODELS"])


@pytest.mark.parametrize("photo", ["bus.jpg", "zidane.jpg"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tflite_agrees_with_pytorch(yolov5n, models, shared, photo, precision):
    frame = cv2.imread(str(shared / "data/photos" / photo))
    # PyTorch at a threshold lowered by the allowed gap: a box at .27 here may be .23 there
    gap = MAX_SCORE_GAP[precision]
    reference = torch_detect(yolov5n.model, frame, IMGSZ, conf=0.25 - gap)
    detector = Detector(models / f"yolov5n_{IMGSZ}_{precision}.tflite", DetectSettings(conf=0.25, iou=0.45))
    dets, _ = detector.detect(frame)
    assert len(reference) >= 2
    # every confident PyTorch detection has its twin: same label, IoU >= 0.85, score within the gap
    confident = reference[reference.score >= 0.25 + gap]
    iou = iou_matrix(confident.xyxy, dets.xyxy) * (confident.class_id[:, None] == dets.class_id[None, :])
    best = iou.argmax(axis=1)
    assert (iou.max(axis=1) >= MIN_IOU).all(), iou.max(axis=1)
    np.testing.assert_allclose(dets.score[best], confident.score, atol=gap)
    assert np.abs(dets.score[best] - confident.score).mean() <= MAX_MEAN_SCORE_GAP[precision]
    # and nothing appears that PyTorch did not see
    extra = dets
    twin = iou_matrix(extra.xyxy, reference.xyxy) * (extra.class_id[:, None] == reference.class_id[None, :])
    assert (twin.max(axis=1) >= MIN_IOU).all(), twin.max(axis=1)


def test_metadata_describes_the_model(models, yolov5n):
    for precision in ("fp32", "fp16", "int8"):
        meta = read_metadata(models / f"yolov5n_{IMGSZ}_{precision}.tflite")
        assert meta.precision == precision
        assert meta.imgsz_hw == (IMGSZ, IMGSZ)
        assert meta.names == tuple(yolov5n.model.names)
        np.testing.assert_allclose(meta.anchors_wh, yolov5n.model.anchors_px.numpy(), atol=0.5)
        raw = meta.raw
        assert raw["source"]["sha256"] == yolov5n.sha256
        assert raw["conversion"]["calibration_images"] >= 100
        if precision == "int8":
            outputs = [q for q in raw["quantization"].values() if q["shape"][-1] == 255]
            assert len(outputs) == 3
            for q in outputs:  # sigmoid heads: [0, 1] in int8 is scale 1/256, zero point -128
                assert q["dtype"] == "int8" and q["zero_point"] == -128
                assert q["scale"] == pytest.approx(1 / 256)


def test_calibration_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ConvertError, match="no images found"):
        calibration_set([tmp_path], (320, 320))


def test_calibration_warns_below_hundred_images(shared, caplog):
    calib, used = calibration_set([shared / "data/photos"], (64, 64))
    assert calib.shape == (2, 64, 64, 3) and calib.dtype == np.float32 and 0 <= calib.min() <= calib.max() <= 1
    assert "only 2 calibration images" in caplog.text


@pytest.mark.parametrize("value, expected", [("320", (320, 320)), ("256,320", (256, 320)), (640, (640, 640))])
def test_imgsz(value, expected):
    assert parse_imgsz(value) == expected


def test_imgsz_not_a_multiple_of_the_stride_is_rounded_up_with_one_warning(caplog):
    assert parse_imgsz("299") == (320, 320)
    assert parse_imgsz("352", stride=64) == (384, 384)
    assert parse_imgsz("320,299", stride=None) == (320, 299)
    warnings = [r for r in caplog.records if "not a multiple" in r.getMessage()]
    assert [w.getMessage() for w in warnings] == [
        "--imgsz 299x299 is not a multiple of 32 (the model's largest stride): using 320x320",
        "--imgsz 352x352 is not a multiple of 64 (the model's largest stride): using 384x384"]


@pytest.mark.parametrize("value", ["abc", "0", "-32"])
def test_bad_imgsz(value):
    with pytest.raises(ConvertError, match="imgsz"):
        parse_imgsz(value)


def _int8_check_against(models: Path, shared: Path, shift: float):
    """The export's int8 self-check with the fp32 model's outputs, moved by `shift`, as reference."""
    from convert.export import _check_tflite, _run_tflite

    image = calibration_set([shared / "data/photos"], (IMGSZ, IMGSZ))[0][:1]
    fp32 = _run_tflite(models / f"yolov5n_{IMGSZ}_fp32.tflite", image)
    reference = [np.clip(fp32[s] + shift, 0, 1) for s in sorted(fp32)]
    return _check_tflite(models / f"yolov5n_{IMGSZ}_int8.tflite", "int8", image, reference)


def test_int8_self_check_passes_a_calibrated_model_quietly(models, shared, caplog):
    check = _int8_check_against(models, shared, 0.0)
    assert check["mean_abs_diff_vs_torch"] < 0.02
    assert "drifts" not in caplog.text


def test_int8_self_check_warns_on_drift_and_names_the_fix(models, shared, caplog):
    check = _int8_check_against(models, shared, 0.04)  # what calibration on unlike photos does to a custom model
    assert 0.02 < check["mean_abs_diff_vs_torch"] < 0.08
    assert "calibrate on photos of the scenes this model sees (--calib)" in caplog.text


def test_int8_self_check_refuses_a_broken_conversion(models, shared):
    with pytest.raises(ConvertError, match="the conversion is broken"):
        _int8_check_against(models, shared, 0.3)
