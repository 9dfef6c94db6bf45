"""A damaged model file never reaches the interpreter: the sha256 written at export covers every byte.

The fuzzing runs in a child process: on a file that slips through, the TFLite interpreter can die
with a segmentation fault, which must fail this test rather than end the test run.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.model.integrity import UNHASHED, VERIFIED, check_integrity
from edge.model.metadata import MEMBER_NAME, ZIP_COMMENT_PREFIX, read_metadata, write_metadata
from tests.edge.edge_testing import REPO_ROOT, metadata_dict, time_limit

FLATBUFFER = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 8  # stands in for a model
FUZZED_COPIES = 150
INT8 = "yolov5n_320_int8.tflite"

FUZZ_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from edge.errors import EdgeError
from edge.model.interpreter import Model

model, folder, copies, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = np.frombuffer(model.read_bytes(), np.uint8)
rng = np.random.default_rng(seed)
outcomes = []
for i in range(copies):
    damaged = data.copy()
    where = rng.choice(len(data), size=rng.integers(1, 5), replace=False)
    damaged[where] ^= rng.integers(1, 256, size=len(where), dtype=np.uint8)  # every chosen byte changes
    path = folder / f"copy{i}.tflite"
    path.write_bytes(damaged.tobytes())
    try:
        Model(path, threads=1)
        outcomes.append(["loaded", where.tolist()])
    except EdgeError as exc:
        outcomes.append(["refused", str(exc)])
    path.unlink()
print(json.dumps(outcomes))
"""


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "m_int8.tflite"
    path.write_bytes(FLATBUFFER)
    write_metadata(path, metadata_dict(nc=2, names=["person", "bus"]))
    return path


def old_export(source: Path, target: Path) -> Path:
    """``source`` with its metadata appended the way edge-convert wrote it before hashes: no trailer."""
    data = source.read_bytes()
    flatbuffer_size = int(zipfile.ZipFile(source).comment[len(ZIP_COMMENT_PREFIX):].split(b" ")[0])
    document = dict(read_metadata(source).raw)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.comment = ZIP_COMMENT_PREFIX + str(flatbuffer_size).encode()
        zf.writestr(MEMBER_NAME, json.dumps(document))
    target.write_bytes(data[:flatbuffer_size] + archive.getvalue())
    return target


def test_every_single_changed_byte_is_caught(model_file):
    data = model_file.read_bytes()
    assert check_integrity(data, model_file) == VERIFIED
    missed = []
    for offset in range(len(data)):  # the flatbuffer, the JSON, the zip records, the hash itself
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        try:
            check_integrity(bytes(damaged), model_file)
            missed.append(offset)
        except EdgeError as exc:
            assert str(exc).startswith(f"{model_file} is damaged: ") and "\n" not in str(exc)
    assert missed == []


def test_a_cut_or_extended_file_is_caught(model_file):
    data = model_file.read_bytes()
    for damaged in (data[:-1], data[:-64], data[: len(data) - 200], data + b"\x00"):
        with pytest.raises(EdgeError, match="is damaged"):
            check_integrity(damaged, model_file)


def test_the_converted_models_carry_their_hash(model_dir):
    for precision in ("int8", "fp32", "fp16"):
        path = model_dir / f"yolov5n_320_{precision}.tflite"
        assert check_integrity(path.read_bytes(), path) == VERIFIED
        assert "integrity" not in read_metadata(path).raw  # about the file, not part of the model's description


def test_byte_flips_in_the_real_model_never_crash_or_load(model_dir, tmp_path):
    """150 copies of the int8 model with 1-4 random bytes changed: each refused in one line, none loaded, no crash."""
    result = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT, str(model_dir / INT8), str(tmp_path), str(FUZZED_COPIES), "16"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=time_limit(600))
    assert result.returncode == 0, f"the interpreter crashed (status {result.returncode}): {result.stderr[-2000:]}"
    outcomes = json.loads(result.stdout.splitlines()[-1])
    assert len(outcomes) == FUZZED_COPIES
    loaded = [where for kind, where in outcomes if kind == "loaded"]
    assert loaded == [], f"damaged copies that loaded (bytes changed at {loaded})"
    # the flatbuffer's own bounds check may see a few first; either way one line, the file refused
    assert all(("is damaged" in message or "is truncated or corrupt" in message) and "\n" not in message
               for _, message in outcomes)
    assert sum("is damaged" in message for _, message in outcomes) > FUZZED_COPIES * 0.9


def test_edge_detect_refuses_a_damaged_model_in_one_line(model_dir, data_dir, tmp_path):
    data = bytearray((model_dir / INT8).read_bytes())
    data[len(data) // 3] ^= 0x40  # one bit, deep in the weights
    damaged = tmp_path / INT8
    damaged.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "edge.cli", "--model", str(damaged), "--source",
                             str(data_dir / "data" / "photos" / "bus.jpg")], capture_output=True, text=True,
                            timeout=time_limit(120))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "error" in line] == [
        f"edge-detect: error: {damaged} is damaged: its bytes do not match the sha256 recorded when it was exported "
        "(storage corruption or an incomplete copy); copy the model again or re-export the model with `edge-convert export`"]


def test_an_older_export_without_a_hash_loads_with_one_warning(model_dir, data_dir, tmp_path, caplog):
    from edge.detect.detector import Detector

    older = old_export(model_dir / INT8, tmp_path / "older_int8.tflite")
    frame = cv2.imread(str(data_dir / "data" / "photos" / "bus.jpg"))
    with caplog.at_level(logging.WARNING):
        assert check_integrity(older.read_bytes(), older) == UNHASHED
        dets_older, _ = Detector(older, threads=1).detect(frame)  # checked again: said once
    dets_hashed, _ = Detector(model_dir / INT8, threads=1).detect(frame)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["older_int8.tflite carries no integrity hash (exported by an older edge-convert), so damage to it "
                        "cannot be detected; re-export the model with `edge-convert export` to add one"]
    np.testing.assert_array_equal(dets_older.xyxy, dets_hashed.xyxy)


def test_a_garbled_trailer_is_not_mistaken_for_an_older_export(model_file):
    data = bytearray(model_file.read_bytes())
    data[-70] ^= 0x20  # inside " sha256=": the trailer no longer parses, the metadata still says it is there
    with pytest.raises(EdgeError, match="is damaged"):
        check_integrity(bytes(data), model_file)


def test_metadata_rewritten_keeps_one_valid_hash(model_file):
    write_metadata(model_file, metadata_dict(nc=1, names=["person"]))
    write_metadata(model_file, metadata_dict(nc=1, names=["car"]))
    data = model_file.read_bytes()
    assert data.startswith(FLATBUFFER) and check_integrity(data, model_file) == VERIFIED
    assert read_metadata(model_file).names == ("car",)
