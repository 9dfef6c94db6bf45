"""edge-detect end to end in a subprocess: JSON lines on stdout, one-line errors, exit codes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.edge.edge_testing import time_limit
from tests.edge.notify_socket import notify_socket  # noqa: F401  (fixture)

EXIT_ERROR = 2
SHUTDOWN_LIMIT_S = 2.0  # systemd's stop must not wait on us


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
        (None, ("--model", "file not found")),
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
        (["--conf", "1.5"], ("--conf", "must be between 0.0 and 1.0",)),
        (["--device", "gpu"], ("unknown device 'gpu'",)),
        (["--max-frames", "0"], ("--max-frames", "must be at least 1")),
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


@pytest.mark.parametrize("classes, kept", [(["bus"], {"bus"}), (["0"], {"person"}), (["person", "bus"], {"person", "bus"})],
                         ids=["by-name", "by-id", "two"])
def test_class_filter(int8_model, photos, classes, kept):
    """bus.jpg holds people and a bus: the filter keeps exactly the classes asked for, by name or id."""
    result = run_cli("--model", int8_model, "--source", photos / "bus.jpg", "--classes", *classes)
    assert result.returncode == 0, result.stderr
    labels = {d["label"] for line in result.stdout.splitlines() for d in json.loads(line)["detections"]}
    assert labels == kept


def test_bench_prints_the_figures(int8_model, photos):
    result = run_cli("bench", "--model", int8_model, "--frames", "10", "--images", photos, "--imgsz", "320", "--threads", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for stage in ("preprocess", "invoke", "postprocess"):
        row = next(line for line in out.splitlines() if line.startswith(stage)).split()
        assert len(row) == 3 and float(row[1]) > 0 and float(row[2]) >= float(row[1])
    for figure in ("FPS", "peak RSS", "MB", "(pre+post)/invoke"):
        assert figure in out
    lines = out.splitlines()  # then the tracker's cost per frame with 0, 10 and 100 objects in view
    track = lines.index(next(line for line in lines if line.startswith("track")))
    rows = [line.split() for line in lines[track + 1: track + 4]]
    assert [row[:2] for row in rows] == [["0", "objects"], ["10", "objects"], ["100", "objects"]]
    assert all(float(row[2]) > 0 and float(row[3]) >= float(row[2]) for row in rows)


def test_overhead_bench_prints_its_figures(int8_model, data_dir):
    script = Path(__file__).resolve().parents[1] / "bench_overhead.py"
    env = {**os.environ, "EDGE_YOLO_DATA": str(data_dir)}
    result = subprocess.run([sys.executable, str(script), "--model", str(int8_model), "--frames", "5"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "medians of 5 frames" in result.stdout
    assert re.search(r"resize alone .*: \d+ µs", result.stdout), result.stdout
    match = re.search(r"decode \+ NMS: (\d+) µs right after invoke, (\d+) µs repeated", result.stdout)
    assert match and int(match[1]) > 0 and int(match[2]) > 0, result.stdout
    assert re.search(r"objectness pass alone, right after invoke: \d+ µs", result.stdout), result.stdout


def test_bench_wrong_imgsz(int8_model, photos):
    assert_one_line_error(run_cli("bench", "--model", int8_model, "--imgsz", "640", "--images", photos), "--imgsz 640")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_the_run_cleanly(int8_model, data_dir, signum):
    """systemd stops with SIGTERM, a terminal with SIGINT: either way exit 0, complete output, within 2 s."""
    video = data_dir / "data" / "video" / "one-by-one-person-detection.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--model", str(int8_model), "--source", str(video)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = process.stdout.readline()
        assert json.loads(first)["frame"] == 0  # running
        process.send_signal(signum)
        signalled = time.monotonic()
        rest, stderr = process.communicate(timeout=30)
        took_s = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert took_s < time_limit(SHUTDOWN_LIMIT_S)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    records = [json.loads(line) for line in (first + rest).splitlines()]  # the last line is complete too
    assert [r["frame"] for r in records] == list(range(len(records)))
    final = next(line for line in stderr.splitlines() if "final stats:" in line)
    counts = {k: int(v) for k, v in (part.split("=") for part in final.split() if "=" in part) if v.isdigit()}
    assert counts["processed"] == len(records)
    assert counts["read"] == counts["processed"] + counts["dropped"]


def free_loopback_port() -> int:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("extra, fragments", [
    (["--camera", "lobby"], ("expected a camera index",)),
    (["--source", "ftp://example.com/clip.mp4"], ("unsupported URL scheme",)),
    (["--source", "{tmp}/*.jpg"], ("no images matching",)),
    (["--source", "{tmp}/notes.mp4"], ("cannot open", "as a video")),
], ids=["camera-name", "ftp", "empty-glob", "not-a-video"])
def test_unusable_sources_are_one_line_errors(int8_model, tmp_path, extra, fragments):
    (tmp_path / "notes.mp4").write_text("not a video")
    fill = {"port": free_loopback_port(), "tmp": tmp_path}
    result = run_cli("--model", int8_model, *[arg.format(**fill) for arg in extra])
    assert_one_line_error(result, *[fragment.format(**fill) for fragment in fragments])


@pytest.mark.parametrize("extra, fragments", [
    (["--camera", "9"], ("camera 9", "/dev/video9", "v4l2-ctl --list-devices")),
    (["--source", "http://127.0.0.1:{port}/stream.mjpg"], ("cannot open stream http://127.0.0.1:{port}/stream.mjpg",)),
    (["--source", "rtsp://admin:hunter2@127.0.0.1:{port}/h264?password=hunter3"],
     ("cannot open stream rtsp://admin:***@127.0.0.1:{port}/h264?password=***",)),
], ids=["missing-camera", "http-refused", "rtsp-refused"])
def test_a_live_source_that_is_not_there_is_waited_for(int8_model, notify_socket, extra, fragments):  # noqa: F811
    """A camera not plugged in or not booted yet, a stream refused: one line naming it and the fix, then
    the run waits for it (READY=1, STATUS= says what for, the watchdog fed) until stopped."""
    fill = {"port": free_loopback_port()}
    env = {**os.environ, **notify_socket.env, "WATCHDOG_USEC": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "--model", str(int8_model),
                                *[arg.format(**fill) for arg in extra]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready = notify_socket.wait_for("READY=1", timeout=time_limit(60))
        assert ready["STATUS"].startswith("waiting for "), ready.raw
        pings = [m for m in notify_socket.collect(time_limit(3.0)) if "WATCHDOG" in m]
        assert len(pings) >= 2, "the watchdog is fed while the camera is waited for"
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=time_limit(10))
    finally:
        process.kill()
    assert process.returncode == 0 and out == "", err
    assert "Traceback" not in err and "hunter" not in err and "hunter" not in ready.raw.decode()
    warnings = [line for line in err.splitlines() if line.startswith("edge-detect: warning:")]
    assert len(warnings) == 1 and "waiting for it" in warnings[0], err
    for fragment in fragments:
        assert fragment.format(**fill) in warnings[0]


def test_a_pi_camera_without_picamera2_says_how_to_install_it(int8_model):
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    assert_one_line_error(run_cli("--model", int8_model, "--camera", "picam"),
                          "sudo apt install python3-picamera2", "--system-site-packages")


def test_loop_is_refused_for_a_live_source(int8_model):
    assert_one_line_error(run_cli("--model", int8_model, "--camera", "0", "--loop"), "--loop applies to files")


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


# --- --check-config is the run's own build: what it approves, the run accepts ---------------------

CHECK_REFUSALS = [
    ('camera = 0\n[mqtt]\nurl = "mqtt://b"\npublish = "sometimes"\n', "key 'mqtt.publish': 'sometimes' is not a publish mode"),
    ('camera = 0\n[mqtt]\nurl = "mqtt://b"\ndevice-id = "a/b#"\n', "key 'mqtt.device-id': 'a/b#' cannot be used"),
    ('camera = 0\n[mqtt]\nurl = "htp://broker"\n', "key 'mqtt.url': 'htp://broker' is not a broker URL"),
    ('camera = 0\n[mqtt]\nurl = "mqtt://b"\nspool-max = -5\n', "key 'mqtt.spool-max': must be between 1 and"),
    ('camera = 0\njson-max-mb = inf\n', "key 'json-max-mb': must be a finite number"),
    ('camera = 0\nthreads = 99999999999\n', "key 'threads': must be between 1 and 256"),
    ('camera = 0\nclasses = ["persn"]\n', "key 'classes': unknown class 'persn'"),
    ('camera = 0\n[mqtt]\nurl = "mqtt://b"\nsnapshot = [99]\n', "key 'mqtt.snapshot': class id 99 is out of range"),
    ('camera = "picam:x"\n', "key 'camera': --camera 'picam:x': expected picam or picam:N"),
    ('source = "/nonexistent/clip.mp4"\n', "key 'source': source not found: /nonexistent/clip.mp4"),
    ('camera = 0\nloop = true\n', "key 'loop': --loop applies to files"),
    ('camera = 0\n[mqtt]\nurl = "mqtt://b"\nusername = "u"\npassword-file = "/nonexistent/pw"\n',
     "--mqtt-password-file /nonexistent/pw: file not found"),
]


@pytest.mark.parametrize("body, fragment", CHECK_REFUSALS, ids=[f.split(":")[0] for _, f in CHECK_REFUSALS])
def test_check_config_refuses_what_a_run_would(tmp_path, int8_model, body, fragment):
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{int8_model}"\n{body}')
    assert_one_line_error(run_cli("--config", config, "--check-config"), fragment)


def test_check_config_prints_the_settings_and_opens_nothing(tmp_path, int8_model):
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{int8_model}"\ncamera = 7\nclasses = ["person"]\n[mqtt]\nurl = "mqtt://127.0.0.1:9"\n'
                      f'state-dir = "{tmp_path}/state"\n')
    result = run_cli("--config", config, "--check-config")   # no /dev/video7 and no broker: nothing is opened
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout)
    assert (printed["camera"], printed["classes"], printed["mqtt"]["url"]) == ("7", ["person"], "mqtt://127.0.0.1:9")
    assert not (tmp_path / "state").exists()
