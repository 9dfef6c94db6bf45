"""MQTT publisher against a real Mosquitto of our own: round trips, outages, crashes, credentials, TLS.

Every broker here is private (free loopback port, config and persistence in tmp_path). The subscriber
keeps a persistent session, so what it misses while a broker restarts is queued for it by the broker:
a seq missing at the subscriber is a message the sink lost.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from edge.detect.detections import Detections
from edge.sinks.mqtt import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED, MqttSettings, MqttSink
from edge.sources import Frame, iter_frames
from tests.edge.edge_testing import REPO_ROOT, frame_budget, time_limit
from tests.edge.mosquitto import Mosquitto, Subscriber, read_retained
from tests.edge.mqtt_driver import synthetic_detections

REPO = REPO_ROOT
SCHEMA_PATH = REPO / "edge" / "sinks" / "mqtt" / "schemas" / "mqtt.schema.json"
VIDEO = Path("data") / "video" / "car-detection.mp4"
INT8_MODEL = "yolov5n_320_int8.tflite"
REAL_FRAMES = frame_budget(40, 12)  # spread over the whole video: yolov5n finds little in the top-down parking lot
DEVICE = "cam1"
PREFIX = "edge-yolo"
TOPICS = f"{PREFIX}/{DEVICE}/#"
DETECTIONS_TOPIC = f"{PREFIX}/{DEVICE}/detections"
STATUS_TOPIC = f"{PREFIX}/{DEVICE}/status"
FAST_RETRY = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0}  # outages here last seconds, not hours
SHORT_KEEPALIVE_S = 1  # the broker declares a silent client dead after 1.5 keepalives
DELIVERY_TIMEOUT_S = 20.0
FEED_FPS = 20
STARTUP_OUTAGE_S = 5.0
MID_RUN_OUTAGE_S = 10.0
PROCESS_TIMEOUT_S = 20.0
SHUTDOWN_LIMIT_S = 2.0  # systemd's stop must not wait on us


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def real_frames(model_dir, data_dir) -> list[tuple[Frame, Detections]]:
    """Frames of the car video with the int8 model's detections: what the camera loop would write."""
    from edge.detect.detector import Detector

    detector = Detector(model_dir / INT8_MODEL)
    frames = list(iter_frames(data_dir / VIDEO))
    step = max(len(frames) // REAL_FRAMES, 1)
    pairs = [(frame, detector.detect(frame.image)[0]) for frame in frames[::step][:REAL_FRAMES]]
    assert sum(len(dets) for _, dets in pairs) > 0, "the car video should give detections"
    return pairs


def make_sink(broker: Mosquitto, state_dir: Path, names=("person", "bicycle", "car"), **overrides) -> MqttSink:
    settings = dict(url=broker.url, device_id=DEVICE, prefix=PREFIX, state_dir=str(state_dir), model="yolov5n_320_int8",
                    **FAST_RETRY)
    settings.update(overrides)
    return MqttSink(MqttSettings(**settings), names)


def seqs(subscriber: Subscriber) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in subscriber.on(DETECTIONS_TOPIC)]


def has_all(subscriber: Subscriber, count: int):
    return lambda: set(range(1, count + 1)) <= set(seqs(subscriber))


def assert_complete_in_order(received: list[int], count: int) -> int:
    """Every seq 1..count arrived, first arrivals in order; returns how many duplicates QoS 1 brought."""
    assert set(received) == set(range(1, count + 1)), f"missing seq: {sorted(set(range(1, count + 1)) - set(received))}"
    first_seen = list(dict.fromkeys(received))
    assert first_seen == sorted(first_seen)
    return len(received) - len(first_seen)


def feed(sink: MqttSink, pairs, seconds: float, start_index: int = 0) -> int:
    """Write frames at FEED_FPS for ``seconds``, cycling through ``pairs``; returns how many were written."""
    written = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame, dets = pairs[(start_index + written) % len(pairs)]
        sink.write(frame, dets)
        written += 1
        time.sleep(1 / FEED_FPS)
    return written


def test_round_trip_real_detections(broker, tmp_path, real_frames, names, schema):
    # snapshots of the class seen most, so some are due whatever the model makes of the video
    seen = Counter(c for _, dets in real_frames for c in set(dets.class_id.tolist()))
    snapshot_class = seen.most_common(1)[0][0]
    subscriber = Subscriber(broker, TOPICS)
    sink = make_sink(broker, tmp_path / "state", names, snapshot=(snapshot_class,), snapshot_interval_s=0)
    try:
        # snapshots are not spooled (they are big and only the latest matters): wait for the connection
        assert subscriber.wait_for(lambda: sink.connected, DELIVERY_TIMEOUT_S)
        for frame, dets in real_frames:
            sink.write(frame, dets)
        sink.stats({"fps_in": 25.0, "fps_out": 24.5, "latency_ms": {"invoke": 11.5}, "dropped": 0, "corrupt": 0, "reconnects": 0})
        assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(has_all(subscriber, len(real_frames)), DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(lambda: subscriber.on(f"{PREFIX}/{DEVICE}/stats"), DELIVERY_TIMEOUT_S)
        assert read_retained(broker, STATUS_TOPIC) == STATUS_ONLINE.encode()
    finally:
        sink.close()
        subscriber.close()

    payloads = [json.loads(m.payload) for m in subscriber.on(DETECTIONS_TOPIC)]
    assert_complete_in_order([p["seq"] for p in payloads], len(real_frames))
    by_seq = {p["seq"]: p for p in payloads}
    for seq, (frame, dets) in enumerate(real_frames, start=1):
        payload = by_seq[seq]
        jsonschema.validate(payload, schema)
        assert (payload["frame"], payload["width"], payload["height"]) == (frame.index, *frame.wh)
        assert [{k: d[k] for k in ("label", "class_id", "score", "box")} for d in payload["detections"]] == dets.to_json(names)
    stats = json.loads(subscriber.on(f"{PREFIX}/{DEVICE}/stats")[-1].payload)
    jsonschema.validate(stats, schema)
    assert stats["pipeline"]["fps_in"] == 25.0
    snapshots = subscriber.on(f"{PREFIX}/{DEVICE}/snapshot")
    assert len(snapshots) == seen[snapshot_class]
    image = cv2.imdecode(np.frombuffer(snapshots[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == real_frames[0][0].image.shape
    assert read_retained(broker, STATUS_TOPIC) == STATUS_STOPPED.encode()


def test_broker_down_at_startup(tmp_path, real_frames, names, caplog):
    broker = Mosquitto(tmp_path / "broker")
    with broker:  # register the subscriber's persistent session, then take the broker away
        Subscriber(broker, TOPICS).client.disconnect()
    with caplog.at_level(logging.WARNING, logger="edge.sinks.mqtt.sink"):
        sink = make_sink(broker, tmp_path / "state", names)
        try:
            written = feed(sink, real_frames, STARTUP_OUTAGE_S)
            assert not sink.connected
            broker.start()
            subscriber = Subscriber(broker, TOPICS)
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
            assert subscriber.wait_for(has_all(subscriber, written), DELIVERY_TIMEOUT_S)
            assert_complete_in_order(seqs(subscriber), written)
            subscriber.close()
        finally:
            sink.close()
            broker.stop()
    assert len([r for r in caplog.records if "cannot reach MQTT broker" in r.getMessage()]) == 1


def test_broker_outage_mid_run_loses_nothing(broker, tmp_path, real_frames, names):
    subscriber = Subscriber(broker, TOPICS)
    sink = make_sink(broker, tmp_path / "state", names)
    try:
        assert subscriber.wait_for(lambda: sink.connected, DELIVERY_TIMEOUT_S)
        written = feed(sink, real_frames, 1.0)
        broker.stop()
        outage_start = time.monotonic()
        written += feed(sink, real_frames, MID_RUN_OUTAGE_S, start_index=written)
        assert time.monotonic() - outage_start >= MID_RUN_OUTAGE_S
        assert not sink.connected
        broker.start()
        written += feed(sink, real_frames, 1.0, start_index=written)
        assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(has_all(subscriber, written), DELIVERY_TIMEOUT_S)
        duplicates = assert_complete_in_order(seqs(subscriber), written)
        counters = sink.snapshot_counters()
        assert counters["reconnects"] == 1
        assert counters["spool_depth"] == 0
        print(f"{written} messages across a {MID_RUN_OUTAGE_S:g} s outage, {duplicates} duplicates")
    finally:
        sink.close()
        subscriber.close()


class Driver:
    """tests/edge/mqtt_driver.py as a child process, for what needs a real kill."""

    def __init__(self, broker: Mosquitto, state_dir: Path, frames: int, keepalive: int = 60):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.edge.mqtt_driver", "--url", broker.url, "--state-dir", str(state_dir),
             "--device", DEVICE, "--frames", str(frames), "--keepalive", str(keepalive)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expect(self, line: str) -> None:
        got = self.process.stdout.readline().strip()
        assert got == line, f"driver said {got!r}, expected {line!r}; stderr: {self.stderr()}"

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(PROCESS_TIMEOUT_S)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(PROCESS_TIMEOUT_S)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self.process.stdout.close()
        self.process.stderr.close()


def test_spool_survives_sigkill_while_broker_down(tmp_path):
    frames = 200
    broker = Mosquitto(tmp_path / "broker")
    with broker:
        Subscriber(broker, TOPICS).client.disconnect()
    first = Driver(broker, tmp_path / "state", frames)
    try:
        first.expect(f"spooled {frames}")
        first.kill()
    finally:
        first.cleanup()
    broker.start()
    subscriber = Subscriber(broker, TOPICS)
    second = Driver(broker, tmp_path / "state", frames=0)
    try:
        second.expect("spooled 0")
        second.expect("delivered")
        assert subscriber.wait_for(has_all(subscriber, frames), DELIVERY_TIMEOUT_S)
        assert_complete_in_order(seqs(subscriber), frames)
        assert second.terminate() == 0
        assert read_retained(broker, STATUS_TOPIC) == STATUS_STOPPED.encode()
    finally:
        second.cleanup()
        subscriber.close()
        broker.stop()


def test_sigkill_leaves_offline_status(broker, tmp_path):
    driver = Driver(broker, tmp_path / "state", frames=5, keepalive=SHORT_KEEPALIVE_S)
    try:
        driver.expect("spooled 5")
        driver.expect("delivered")
        assert read_retained(broker, STATUS_TOPIC) == STATUS_ONLINE.encode()
        driver.kill()
    finally:
        driver.cleanup()
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while read_retained(broker, STATUS_TOPIC) != STATUS_OFFLINE.encode():
        assert time.monotonic() < deadline, "the broker never published the last will"
        time.sleep(SHORT_KEEPALIVE_S / 2)


def test_wrong_password_is_logged_once_and_retried(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("EDGE_YOLO_MQTT_PASSWORD", raising=False)
    broker = Mosquitto(tmp_path / "broker", users={"cam": "right-password"}).start()
    attempts = 3
    try:
        with caplog.at_level(logging.INFO, logger="edge.sinks.mqtt.sink"):
            sink = make_sink(broker, tmp_path / "state", username="cam", password="wrong-password",
                             reconnect_min_s=0.1, reconnect_max_s=0.2)
            try:
                for index in range(5):
                    sink.write(Frame(index, "t", time.time(), np.zeros((8, 8, 3), np.uint8)), synthetic_detections(index))
                assert sink.wait_spooled(DELIVERY_TIMEOUT_S)
                deadline = time.monotonic() + DELIVERY_TIMEOUT_S
                while sink.snapshot_counters()["refused"] < attempts:
                    assert time.monotonic() < deadline, "the sink stopped retrying"
                    time.sleep(0.05)
                assert not sink.connected
                assert sink.snapshot_counters()["spool_depth"] == 5
            finally:
                sink.close()
    finally:
        broker.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "refused the connection" in errors[0] and "--mqtt-username" in errors[0] and "\n" not in errors[0]
    assert "wrong-password" not in caplog.text
    assert not [r for r in caplog.records if "connected to" in r.getMessage()]


def test_password_from_env_connects(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_YOLO_MQTT_PASSWORD", "right-password")
    broker = Mosquitto(tmp_path / "broker", users={"cam": "right-password"}).start()
    try:
        sink = make_sink(broker, tmp_path / "state", username="cam")
        try:
            sink.write(Frame(0, "t", time.time(), np.zeros((8, 8, 3), np.uint8)), synthetic_detections(0))
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
            assert sink.snapshot_counters()["refused"] == 0
        finally:
            sink.close()
    finally:
        broker.stop()


def test_tls_round_trip(tmp_path, real_frames, names):
    broker = Mosquitto(tmp_path / "broker", tls=True).start()
    try:
        subscriber = Subscriber(broker, TOPICS)
        sink = make_sink(broker, tmp_path / "state", names, tls_ca=str(broker.ca_file))
        try:
            for frame, dets in real_frames:
                sink.write(frame, dets)
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
            assert subscriber.wait_for(has_all(subscriber, len(real_frames)), DELIVERY_TIMEOUT_S)
            assert_complete_in_order(seqs(subscriber), len(real_frames))
        finally:
            sink.close()
            subscriber.close()
    finally:
        broker.stop()


def test_tls_with_an_untrusted_server_is_reported(tmp_path, caplog):
    broker = Mosquitto(tmp_path / "broker", tls=True).start()
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sinks.mqtt.sink"):
            sink = make_sink(broker, tmp_path / "state")  # system CAs: the test CA is not among them
            try:
                deadline = time.monotonic() + DELIVERY_TIMEOUT_S
                while "cannot reach MQTT broker" not in caplog.text:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert not sink.connected
            finally:
                sink.close()
    finally:
        broker.stop()
    assert "certificate verify failed" in caplog.text and "--mqtt-ca" in caplog.text


@pytest.mark.parametrize("broker_up", [True, False], ids=["broker-up", "broker-down"])
def test_sigterm_with_mqtt_on_ends_within_the_shutdown_limit(tmp_path, model_dir, data_dir, broker_up):
    """systemd stops the service with SIGTERM: with MQTT on, even with the broker away, exit 0 in 2 s."""
    server = Mosquitto(tmp_path / "broker")
    if broker_up:
        server.start()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "--model", str(model_dir / INT8_MODEL), "--source",
             str(data_dir / VIDEO), "--mqtt", server.url, "--device-id", DEVICE, "--state-dir", str(tmp_path / "state")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert json.loads(process.stdout.readline())["frame"] == 0
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_S * 3)
            took_s = time.monotonic() - signalled
        finally:
            process.kill()
        assert process.returncode == 0, stderr
        assert took_s < time_limit(SHUTDOWN_LIMIT_S), f"took {took_s:.2f} s to stop"
        if broker_up:
            assert read_retained(server, STATUS_TOPIC) == STATUS_STOPPED.encode()
        else:
            assert "stay spooled" in stderr  # nothing lost: kept on disk for the next run
    finally:
        server.stop()
