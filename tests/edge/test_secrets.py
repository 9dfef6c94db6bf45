"""No planted secret comes out of any channel of a real run.

A camera stream whose URL carries credentials in the user info and in the query (as IP cameras
take them), a broker password from a file, and every output edge-detect has: stdout, stderr (the
log), the JSON lines file, the MQTT messages a subscriber receives from a real Mosquitto, the
saved frames' names, the spool, and ``--check-config``. Each planted secret is unique, so finding
it anywhere is a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.edge.edge_testing import REPO_ROOT, frame_budget, time_limit
from tests.edge.mjpeg_server import MjpegServer, jpeg_frames
from tests.edge.mosquitto import Mosquitto, Subscriber

USERINFO_SECRET = "UserinfoSecret7d1f"
QUERY_SECRET = "QuerySecret93ab"
TOKEN_SECRET = "TokenSecret55c2"
MQTT_SECRET = "MqttSecret0e4b"
SECRETS = (USERINFO_SECRET, QUERY_SECRET, TOKEN_SECRET, MQTT_SECRET)
PEOPLE_VIDEO = Path("data") / "video" / "one-by-one-person-detection.mp4"
FRAMES = frame_budget(30, 8)
EVENT_TIMEOUT_S = 90


def camera_url(port: int) -> str:
    return (f"http://admin:{USERINFO_SECRET}@127.0.0.1:{port}/stream.mjpg"
            f"?user=admin&password={QUERY_SECRET}&token={TOKEN_SECRET}&fps=10")


def leaks(channel: str, data: bytes | str) -> list[str]:
    blob = data.encode() if isinstance(data, str) else data
    return [f"{secret} in {channel}" for secret in SECRETS if secret.encode() in blob]


@pytest.fixture
def stream(data_dir):
    server = MjpegServer(jpeg_frames(data_dir / PEOPLE_VIDEO, 40, start=300), fps=10)
    yield server
    server.stop()


def test_a_run_with_credentials_everywhere_shows_none_of_them(tmp_path, model_dir, stream):
    broker = Mosquitto(tmp_path / "broker", users={"cam": MQTT_SECRET}).start()
    subscriber = Subscriber(broker, "#", username="cam", password=MQTT_SECRET)
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(MQTT_SECRET + "\n")
    json_out, saved, state = tmp_path / "detections.jsonl", tmp_path / "saved", tmp_path / "state"
    args = ["--model", str(model_dir / "yolov5n_320_int8.tflite"), "--source", camera_url(stream.port),
            "--max-frames", str(FRAMES), "--json-out", str(json_out), "--save", str(saved), "--stats-interval", "1",
            "--mqtt", broker.url, "--mqtt-username", "cam", "--mqtt-password-file", str(password_file),
            "--device-id", "cam1", "--state-dir", str(state), "--snapshot", "person"]
    try:
        process = subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=REPO_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(time_limit(3))  # the camera is not up yet: the waiting line names it
            stream.start()
            out, err = process.communicate(timeout=time_limit(EVENT_TIMEOUT_S))
        finally:
            process.kill()
        assert subscriber.wait_for(lambda: len(subscriber.on("edge-yolo/cam1/detections")) >= FRAMES, EVENT_TIMEOUT_S)
        assert subscriber.wait_for(lambda: subscriber.on("edge-yolo/cam1/stats"), EVENT_TIMEOUT_S)
    finally:
        subscriber.close()
        broker.stop()
    assert process.returncode == 0, err
    records = [json.loads(line) for line in json_out.read_text().splitlines()]
    assert len(records) == FRAMES
    shown = records[0]["source"]
    assert shown == f"http://admin:***@127.0.0.1:{stream.port}/stream.mjpg?user=admin&password=***&token=***&fps=10"
    assert "waiting for it" in err and "admin:***@" in err  # the URL is in the log, masked

    found = leaks("stdout", out) + leaks("stderr", err) + leaks("the JSON lines file", json_out.read_bytes())
    found += [leak for m in subscriber.messages for leak in leaks(f"MQTT {m.topic}", m.topic.encode() + m.payload)]
    found += [leak for p in saved.iterdir() for leak in leaks("a saved frame's name", p.name)]
    found += [leak for p in state.iterdir() if p.is_file() for leak in leaks(f"the spool {p.name}", p.read_bytes())]
    assert found == []
    assert {m.topic for m in subscriber.messages} >= {"edge-yolo/cam1/detections", "edge-yolo/cam1/stats",
                                                      "edge-yolo/cam1/status", "edge-yolo/cam1/snapshot"}
    assert len(list(saved.iterdir())) == FRAMES


def test_check_config_and_errors_mask_them(tmp_path, model_dir, data_dir):
    config = tmp_path / "config.toml"
    config.write_text(f'model = "{model_dir / "yolov5n_320_int8.tflite"}"\nsource = "{camera_url(554)}"\n'
                      f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "cam"\npassword = "{MQTT_SECRET}"\n')
    checked = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(config), "--check-config"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=time_limit(60))
    assert checked.returncode == 0, checked.stderr
    assert 'source = "http://admin:***@127.0.0.1:554/stream.mjpg?user=admin&password=***&token=***&fps=10"' in checked.stdout
    errors = ""
    for url, shown in ((f"mqtt://cam:{MQTT_SECRET}@127.0.0.1:notaport", "must not hold credentials"),
                       (f"mqtt://127.0.0.1/topic?password={MQTT_SECRET}", "'mqtt://127.0.0.1/topic?password=***' is not a broker URL")):
        malformed = subprocess.run([sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
                                    "--source", str(data_dir / "data" / "photos" / "bus.jpg"), "--mqtt", url],
                                   cwd=REPO_ROOT, capture_output=True, text=True, timeout=time_limit(60))
        assert malformed.returncode == 2 and shown in malformed.stderr, malformed.stderr
        errors += malformed.stdout + malformed.stderr
    assert leaks("--check-config", checked.stdout + checked.stderr) + leaks("an error", errors) == []
