"""`edge-convert explain` on the real converted models: what it covers, a self-check, and its refusals."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from convert.calibration import find_images, letterboxed_images, select_evenly
from convert.cli import main
from convert.explain import Graph, TensorStats, explain

IMGSZ = 320
IMAGES = 4
STRIDES = [8, 16, 32]
SANE_SQNR_DB = (5.0, 60.0)  # int8 against fp32: a real but bounded error


@pytest.fixture(scope="module")
def models() -> Path:
    return Path(os.environ["EDGE_YOLO_TEST_MODELS"])


@pytest.fixture(scope="module")
def int8(models) -> Path:
    return models / f"yolov5n_{IMGSZ}_int8.tflite"


@pytest.fixture(scope="module")
def fp32(models) -> Path:
    return models / f"yolov5n_{IMGSZ}_fp32.tflite"


@pytest.fixture(scope="module")
def pool(shared) -> Path:
    return shared / "data/pool"


@pytest.fixture(scope="module")
def images(pool) -> list[np.ndarray]:
    found, _ = letterboxed_images(select_evenly(find_images([pool]), IMAGES), (IMGSZ, IMGSZ), "test images")
    return found


@pytest.fixture(scope="module")
def report(int8, fp32, images):
    return explain(int8, fp32, images)


def test_report_covers_heads_and_every_activation(report, int8):
    assert [h.head for h in report.heads] == STRIDES
    assert all(h.op == "LOGISTIC" and h.shape[1] == IMGSZ // h.head for h in report.heads)
    graph = Graph(int8, "int8")
    # every tensor an op writes is compared: by name, through a QUANTIZE wrapper, or as an output head
    assert report.unmatched == []
    assert len(report.tensors) + len(report.heads) == len(graph.producer)
    assert report.matched_by_name > 100 and report.matched_through_wrapper >= 1
    wrapped = [t for t in report.tensors if t.name != t.reference]
    assert len(wrapped) == report.matched_through_wrapper and all(t.op == "QUANTIZE" for t in wrapped)
    assert {"CONV_2D", "MUL", "LOGISTIC", "CONCATENATION"} <= {t.op for t in report.tensors}


def test_int8_error_is_finite_and_sorted(report):
    sqnr = [t.sqnr_db for t in report.tensors]
    assert sqnr == sorted(sqnr)
    for t in report.tensors + report.heads:
        assert SANE_SQNR_DB[0] < t.sqnr_db < SANE_SQNR_DB[1], (t.name, t.sqnr_db)
        assert t.error_power > 0 and t.relative_error > 0 and t.scale > 0
        assert t.values == IMAGES * math.prod(t.shape)
        assert 0.0 <= t.clipped_fraction <= 1.0
        assert t.min <= t.max and 0 < t.percentile_abs <= max(abs(t.min), abs(t.max))
        assert t.outlier_ratio >= 1.0
        # a step much finer than the tensor's own range needs means its range was cut: values beyond it are clipped
        assert t.step_ratio > 0.5 or t.clipped > 0, (t.name, t.step_ratio)
    # sigmoid heads: [0, 1] on a 1/256 step, nothing clipped
    assert all(h.scale == pytest.approx(1 / 256) and h.clipped == 0 for h in report.heads)
    assert report.summary().startswith("worst: ")
    assert f"{len(report.below())} of {len(report.tensors)} tensors below" in report.summary()


def test_drop_is_the_error_an_op_adds(report):
    # a TRANSPOSE moves int8 bytes: its error is its input's, so no drop; a mismatched pair would show one
    transposes = [t for t in report.tensors if t.op == "TRANSPOSE"]
    assert transposes and all(t.drop_db == pytest.approx(0.0, abs=1e-6) for t in transposes)
    convs = [t for t in report.tensors if t.op == "CONV_2D" and t.drop_db is not None]
    assert len(convs) > 50 and max(t.drop_db for t in convs) > 0
    assert report.drops()[0].drop_db == max(t.drop_db for t in report.tensors if t.drop_db is not None)


def test_concat_inputs_share_the_output_scale(report, int8):
    graph = Graph(int8, "int8")
    outputs = {t.name: t for t in report.tensors if "out" in t.concat}
    inputs = [t for t in report.tensors if "in" in t.concat]
    assert outputs and inputs
    concat_scales = {t.scale for t in outputs.values()}
    assert all(t.scale in concat_scales for t in inputs)
    # each input gets the output's step, sized for the union of all branches: never finer than its own
    # range needs relative to the output, and much coarser for the narrowest branch
    by_name = {t.name: t for t in report.tensors}
    excess = []
    for op in graph.ops:
        if op["op_name"] == "CONCATENATION":
            out = by_name[graph.details[int(op["outputs"][0])]["name"]]
            for i in op["inputs"]:
                branch = by_name[graph.details[int(i)]["name"]]
                assert branch.step_ratio >= out.step_ratio * (1 - 1e-6), (branch.name, out.name)
                excess.append(branch.step_ratio / out.step_ratio)
    assert max(excess) > 1.5
    for op in graph.ops:  # every quantized Concatenation's output is marked
        if op["op_name"] == "CONCATENATION":
            assert graph.details[int(op["outputs"][0])]["name"] in outputs


def test_fp32_against_itself_has_no_error(fp32, images):
    same = explain(fp32, fp32, images[:2], require_int8=False)
    assert len(same.heads) == len(STRIDES) and len(same.tensors) > 100
    for t in same.tensors + same.heads:
        assert t.error_power == 0.0 and t.sqnr_db == math.inf and t.relative_error == 0.0
        assert t.scale is None and t.clipped == 0 and t.step_ratio is None
    assert all(h.signal_power > 0 for h in same.heads)  # infinite because the error is zero, not the signal
    assert "0 of" in same.summary()


def test_percentile_over_all_images_is_exact():
    rng = np.random.default_rng(0)
    chunks = [rng.standard_t(3, size=30_000).astype(np.float32) for _ in range(3)]
    stats = TensorStats(name="x", reference="x", op="CONV_2D", shape=[30_000], scale=0.05, zero_point=0)
    for chunk in chunks:
        stats.add(chunk, chunk + np.float32(0.01), chunk.size * len(chunks))
    values = np.concatenate(chunks)
    assert stats.percentile_abs == pytest.approx(np.percentile(np.abs(values), 99.99), rel=1e-6)
    assert stats.clipped == np.count_nonzero((values < -128.5 * 0.05) | (values > 127.5 * 0.05))  # zero point 0
    assert stats.sqnr_db == pytest.approx(10 * np.log10((values.astype(np.float64) ** 2).sum() / (values.size * 1e-4)),
                                          rel=1e-3)


def test_cli_table_and_json(int8, fp32, pool, capsys):
    args = ["explain", "--int8", str(int8), "--fp32", str(fp32), "--images", str(pool), "--count", "2"]
    assert main(args + ["--top", "5"]) == 0
    text = capsys.readouterr().out
    assert "Output heads:" in text and "stride 32" in text and "Worst 5 of" in text and "Largest 5 drops" in text
    assert text.strip().splitlines()[-1].startswith("worst: ")
    assert main(args + ["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 2 and [h["head"] for h in data["heads"]] == STRIDES
    assert len(data["tensors"]) > 100 and all(t["sqnr_db"] is not None for t in data["tensors"])


def _tiny_tflite(path: Path, size: int) -> Path:
    """A real float TFLite model with a `(1, size, size, 3)` input."""
    import tensorflow as tf

    kernel = tf.constant(np.ones((3, 3, 3, 4), np.float32) / 27)

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    def net(x):
        return tf.nn.sigmoid(tf.nn.conv2d(x, kernel, 1, "SAME"))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "--int8 file not found"),
    ("float-as-int8", "has no int8 activations"),
    ("int8-as-fp32", "is quantized: pass the *_fp32.tflite"),
    ("other-size", "the models take different inputs"),
])
def test_wrong_models_are_one_line(case, message, int8, fp32, models, pool, tmp_path, capsys):
    pairs = {
        "missing": (tmp_path / "none_int8.tflite", fp32),
        "float-as-int8": (models / f"yolov5n_{IMGSZ}_fp16.tflite", fp32),
        "int8-as-fp32": (int8, int8),
        "other-size": (int8, _tiny_tflite(tmp_path / "tiny_160.tflite", 160) if case == "other-size" else fp32),
    }
    quant, ref = pairs[case]
    rc = main(["explain", "--int8", str(quant), "--fp32", str(ref), "--images", str(pool), "--count", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("edge-convert: error: ") and message in err[0], err


def test_no_images(int8, fp32, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no photos")
    assert main(["explain", "--int8", str(int8), "--fp32", str(fp32), "--images", str(tmp_path)]) == 2
    assert "no images found" in capsys.readouterr().err
