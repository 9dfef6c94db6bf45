"""edge-detect with tracking, events, zones, Home Assistant discovery and metrics, end to end in a subprocess
against a real broker, set from a config file as a service would be; and their bad settings refused in one line.

The wiring is what is tested here, on bus.jpg read over and over as a camera would see a still
scene (cheap under emulation too); what tracking makes of the real videos is tested in
tests/edge/track and tests/edge/sinks/mqtt/test_mqtt_events.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from edge.track import EVENT_NEW
from tests.edge.edge_testing import time_limit
from tests.edge.mosquitto import Subscriber, free_port, read_retained
from tests.edge.videos import PEOPLE_VIDEO

EXIT_ERROR = 2
FRAMES = 8
PEOPLE_IN = 2  # bus.jpg: four people, two of them scored above --track-new-score (0.86 and 0.69)
NEAR_HALF = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]  # their feet are in the lower half
DEVICE = "hall"
WAIT_S = 30.0
CONFIG = """
[mqtt]
url = "{url}"
device-id = "{device}"
publish = "events"
state-dir = "{state}"

[track]
labels = ["person"]

[[track.zones]]
name = "near"
points = {points}

[homeassistant]
discovery = true
"""


def run_cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == EXIT_ERROR, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edge-detect: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def int8_model(model_dir):
    return model_dir / "yolov5n_320_int8.tflite"


@pytest.fixture
def video(data_dir):
    return data_dir / "data" / "video" / PEOPLE_VIDEO


@pytest.fixture
def bus(data_dir):
    return data_dir / "data" / "photos" / "bus.jpg"


def write_config(tmp_path, broker, extra: str = "", **overrides) -> str:
    values = {"url": broker.url, "device": DEVICE, "state": tmp_path / "state", "points": json.dumps(NEAR_HALF),
              **overrides}
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(**values) + extra)
    return str(path)


def test_events_zones_and_discovery_from_a_config_file(broker, tmp_path, int8_model, bus):
    config = write_config(tmp_path, broker)
    subscriber = Subscriber(broker, "#")
    try:
        result = run_cli("--model", int8_model, "--source", bus, "--loop", "--max-frames", FRAMES, "--config", config)
        assert result.returncode == 0, result.stderr
        assert subscriber.wait_for(lambda: sum(json.loads(m.payload)["type"] == "end" for m in
                                               subscriber.on(f"edge-yolo/{DEVICE}/events")) >= PEOPLE_IN, WAIT_S)
    finally:
        subscriber.close()
    events = [json.loads(m.payload) for m in subscriber.on(f"edge-yolo/{DEVICE}/events")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert sum(e["type"] == EVENT_NEW for e in events) == PEOPLE_IN
    assert all(e["after"]["entered_zones"] == ["near"] for e in events)
    assert len(result.stdout.splitlines()) == FRAMES  # JSON lines on stdout as before
    assert "track_ms=" in result.stderr
    configs = [m for m in subscriber.messages if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")]
    names = {json.loads(m.payload)["name"] for m in configs}
    assert {"near person count", "near occupancy", "person count", "snapshot", "fps", "CPU temperature"} <= names
    for message in configs:
        assert read_retained(broker, message.topic) == message.payload
    assert read_retained(broker, f"edge-yolo/{DEVICE}/near/person") == b"0"  # all gone by the end

    removed = run_cli("--model", int8_model, "--source", bus, "--config", config, "--ha-discovery-remove")
    assert removed.returncode == 0, removed.stderr
    assert f"{len(configs)} entities of {DEVICE} removed" in removed.stderr
    assert all(read_retained(broker, m.topic) is None for m in configs)
    assert removed.stdout == ""  # nothing was run


def test_metrics_are_served_while_running(broker, tmp_path, int8_model, video):
    port = free_port()
    config = write_config(tmp_path, broker, f'\n[metrics]\nlisten = "{port}"\n')
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "--model", str(int8_model), "--source", str(video),
                                "--realtime", "--config", config, "--stats-interval", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline()  # running
        deadline = time.monotonic() + time_limit(10)
        text = ""
        while "edge_yolo_fps" not in text:  # after the first stats snapshot
            assert time.monotonic() < deadline, text
            time.sleep(0.3)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        for name in ("edge_yolo_frames_processed_total", 'edge_yolo_stage_latency_ms{stage="track"}',
                     "edge_yolo_tracks_active", "edge_yolo_mqtt_spool_depth"):
            assert name in text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


@pytest.mark.parametrize("points, zone_labels, fragments", [
    ("[[0.1, 0.5], [0.9, 0.5]]", None, ("key 'track.zones[0].points'", "needs at least 3 points, received 2")),
    ("[[0.1, 0.5], [1.5, 0.5], [0.5, 0.9]]", None, ("key 'track.zones[0].points'", "[1.5, 0.5] is outside")),
    (json.dumps(NEAR_HALF), '["unicorn"]', ("key 'track.zones[0].labels'", "'unicorn' is not tracked")),
])
def test_bad_zones_are_one_line_naming_the_key(broker, tmp_path, int8_model, video, points, zone_labels, fragments):
    config = write_config(tmp_path, broker, points=points)
    if zone_labels:
        edit(config, 'name = "near"\n', f'name = "near"\nlabels = {zone_labels}\n')
    assert_one_line_error(run_cli("--model", int8_model, "--source", video, "--config", config, "--check-config"),
                          *fragments)


def test_a_label_the_model_does_not_have_is_refused_before_the_run(broker, tmp_path, int8_model, video):
    config = write_config(tmp_path, broker)
    edit(config, 'labels = ["person"]', 'labels = ["person", "unicorn"]')
    assert_one_line_error(run_cli("--model", int8_model, "--source", video, "--config", config, "--check-config"),
                          "key 'track.labels'", "the model has no label 'unicorn'")


def edit(path: str, old: str, new: str) -> None:
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def test_home_assistant_needs_a_broker(int8_model, video):
    assert_one_line_error(run_cli("--model", int8_model, "--source", video, "--ha-discovery"),
                          "argument --ha-discovery", "needs --mqtt URL")
