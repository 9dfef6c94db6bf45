"""edge-detect end to end in a subprocess: JSON lines on stdout, one-line errors, exit codes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("edge-detect: error:")]


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


@pytest.fixture
def photos(data_dir):
    return data_dir / "data" / "photos"


@pytest.fixture
def int8_model(model_dir):
    return model_dir / "yolov5n_320_int8.tflite"


@pytest.mark.parametrize(
    "content, fragments",
    [
        (None, ("model file not found",)),
        (bytes(range(256)) * 64, ("is not a TFLite model",)),
        (b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 64, ("is truncated or corrupt",)),
    ],
    ids=["missing-model", "random-bytes", "corrupt-flatbuffer"],
)
def test_bad_model_is_one_line_error(tmp_path, photos, content, fragments):
    model = tmp_path / "m.tflite"
    if content is not None:
        model.write_bytes(content)
    assert_one_line_error(run_cli("--model", model, "--source", photos / "bus.jpg"), str(model), *fragments)


def test_model_without_metadata(tmp_path, photos, int8_model):
    bare = tmp_path / "bare.tflite"
    data = int8_model.read_bytes()
    bare.write_bytes(data[: data.rindex(b"PK\x03\x04")])  # drop the appended archive
    assert_one_line_error(run_cli("--model", bare, "--source", photos / "bus.jpg"), "no edge-yolo metadata", "bare.json")


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--source", "/nonexistent/x.jpg"], ("source not found",)),
        (["--classes", "persn"], ("unknown class 'persn'",)),
        (["--conf", "1.5"], ("conf must be between 0 and 1",)),
        (["--device", "gpu"], ("unknown device 'gpu'",)),
        (["--max-frames", "0"], ("--max-frames must be at least 1",)),
    ],
)
def test_bad_arguments_are_one_line_errors(int8_model, photos, extra, fragments):
    args = ["--model", int8_model, "--source", photos, *extra]
    if "--source" in extra:
        args = ["--model", int8_model, *extra]
    assert_one_line_error(run_cli(*args), *fragments)


def test_folder_skips_unreadable_image_and_processes_the_rest(tmp_path, int8_model, photos):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photos / "bus.jpg", folder / "a_bus.jpg")
    (folder / "b_broken.jpg").write_bytes(b"not a jpeg at all")
    shutil.copy(photos / "zidane.jpg", folder / "c_zidane.jpg")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    result = run_cli("--model", int8_model, "--source", folder, "--save", tmp_path / "annotated")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "b_broken.jpg" in warnings[0]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["source"].rsplit("/", 1)[1] for r in records] == ["a_bus.jpg", "c_zidane.jpg"]
    assert [r["frame"] for r in records] == [0, 1]
    assert (records[0]["width"], records[0]["height"]) == (810, 1080)
    labels = [d["label"] for d in records[0]["detections"]]
    assert labels.count("person") >= 3 and "bus" in labels
    first = records[0]["detections"][0]
    assert set(first) == {"label", "class_id", "score", "box"} and len(first["box"]) == 4
    assert all(set(r) == {"frame", "source", "time", "width", "height", "detections"} for r in records)
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["a_bus.jpg", "c_zidane.jpg"]


def test_video_with_max_frames(int8_model, data_dir):
    video = data_dir / "data" / "video" / "car-detection.mp4"
    result = run_cli("--model", int8_model, "--source", video, "--max-frames", "4", "--conf", "0.01")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert all((r["width"], r["height"]) == (768, 432) and r["source"] == str(video) for r in records)
    detections = [d for r in records for d in r["detections"]]
    assert detections, "conf 0.01 finds something in four frames of the parking lot"
    assert all(0.01 <= d["score"] <= 1 and 0 <= d["box"][0] <= d["box"][2] <= 768 for d in detections)
    times = [r["time"] for r in records]
    assert times == sorted(times)


def test_video_class_filter(int8_model, data_dir):
    video = data_dir / "data" / "video" / "one-by-one-person-detection.mp4"
    result = run_cli("--model", int8_model, "--source", video, "--max-frames", "120", "--classes", "person")
    assert result.returncode == 0, result.stderr
    labels = {d["label"] for line in result.stdout.splitlines() for d in json.loads(line)["detections"]}
    assert labels == {"person"}


def test_bench_prints_the_figures(int8_model, photos):
    result = run_cli("bench", "--model", int8_model, "--frames", "10", "--images", photos, "--imgsz", "320", "--threads", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for stage in ("preprocess", "invoke", "postprocess"):
        row = next(line for line in out.splitlines() if line.startswith(stage)).split()
        assert len(row) == 3 and float(row[1]) > 0 and float(row[2]) >= float(row[1])
    for figure in ("FPS", "peak RSS", "MB", "(pre+post)/invoke"):
        assert figure in out


def test_bench_wrong_imgsz(int8_model, photos):
    assert_one_line_error(run_cli("bench", "--model", int8_model, "--imgsz", "640", "--images", photos), "--imgsz 640")


def test_ctrl_c_exits_130_quietly(int8_model, data_dir):
    video = data_dir / "data" / "video" / "one-by-one-person-detection.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--model", str(int8_model), "--source", str(video)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert json.loads(process.stdout.readline())["frame"] == 0  # running
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_closed_stdout_pipe_is_quiet(int8_model, data_dir):
    """`edge-detect ... | head -1`: the reader leaving is not an error."""
    video = data_dir / "data" / "video" / "one-by-one-person-detection.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--model", str(int8_model), "--source", str(video)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read()
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
