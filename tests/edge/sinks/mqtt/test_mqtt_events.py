"""Events mode against a real Mosquitto: what reaches a subscriber, how much less than per-frame publishing,
and the nothing-lost guarantee of the detections (spool, QoS 1, outages, SIGKILL) kept for events.

Detections come from the real int8 model on the real videos, once per session (``replay``).
"""

from __future__ import annotations

import json
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
from edge.sinks.mqtt import STATUS_OFFLINE, MqttSettings, MqttSink
from edge.track import EVENT_END, EVENT_NEW, ObjectTracker, TrackSettings
from tests.edge.edge_testing import REPO_ROOT
from tests.edge.mosquitto import Mosquitto, Subscriber, read_retained
from tests.edge.videos import CAR_TEST_FRAMES, CAR_TRACKING, CAR_VIDEO, NEAR_HALF, PEOPLE_TEST_FRAMES, PEOPLE_VIDEO, TABLE

SCHEMA = json.loads((REPO_ROOT / "edge" / "sinks" / "mqtt" / "schemas" / "mqtt.schema.json").read_text())
PREFIX = "edge-yolo"
FAST_RETRY = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
DELIVERY_TIMEOUT_S = 30.0
PROCESS_TIMEOUT_S = 30.0
SHORT_KEEPALIVE_S = 1
INT8_MODEL = "yolov5n_320_int8.tflite"
VOLUME_RATIO = 5  # events mode sends at most a fifth of per-frame publishing (measured: 1/7.7 on the busy car video)
SCENES = {  # video: (frames, tracking)
    PEOPLE_VIDEO: (PEOPLE_TEST_FRAMES, TrackSettings(zones=[TABLE])),
    CAR_VIDEO: (CAR_TEST_FRAMES, TrackSettings(zones=[NEAR_HALF], **CAR_TRACKING)),
}


def sink_for(broker: Mosquitto, state_dir: Path, names, device: str, publish: str) -> MqttSink:
    return MqttSink(MqttSettings(url=broker.url, device_id=device, prefix=PREFIX, state_dir=str(state_dir), publish=publish,
                                 model=INT8_MODEL, **FAST_RETRY), names)


def publish_objects(sink: MqttSink, pairs, tracking: TrackSettings, names) -> list:
    """Track the frames and hand each update to the sink, as the pipeline does; returns the events."""
    tracker = ObjectTracker(tracking, names)
    events = []
    for frame, dets in pairs:
        update = tracker.update(frame, dets)
        events += update.events
        sink.write_objects(frame, dets, update)
    final = tracker.finish()
    sink.write_objects(None, Detections.empty(), final)
    return events + final.events


def event_seqs(subscriber: Subscriber, device: str) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in subscriber.on(f"{PREFIX}/{device}/events")]


def assert_all_once_in_order(received: list[int], count: int) -> int:
    """seq 1..count all arrived, first arrivals in order; returns the QoS 1 duplicates."""
    assert set(received) == set(range(1, count + 1)), f"missing: {sorted(set(range(1, count + 1)) - set(received))}"
    first = list(dict.fromkeys(received))
    assert first == sorted(first)
    return len(received) - len(first)


@pytest.mark.parametrize("video", list(SCENES))
def test_events_mode_tells_every_event_in_a_fraction_of_the_messages(broker, tmp_path, replay, names, video):
    frames, tracking = SCENES[video]
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    events_sink = sink_for(broker, tmp_path / "events", names, "cam-events", "events")
    every_sink = sink_for(broker, tmp_path / "every", names, "cam-every", "every")
    try:
        assert subscriber.wait_for(lambda: events_sink.connected and every_sink.connected, DELIVERY_TIMEOUT_S)
        events = publish_objects(events_sink, replay(video, frames), tracking, names)
        for frame, dets in replay(video, frames):
            every_sink.write(frame, dets)
        for sink in (events_sink, every_sink):
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(lambda: len(event_seqs(subscriber, "cam-events")) >= len(events), DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(lambda: len(subscriber.on(f"{PREFIX}/cam-every/detections")) >= frames, DELIVERY_TIMEOUT_S)
        time.sleep(0.5)  # the retained counts and snapshots published straight, after the last event
    finally:
        events_sink.close()
        every_sink.close()
        subscriber.close()
    payloads = [json.loads(m.payload) for m in subscriber.on(f"{PREFIX}/cam-events/events")]
    assert_all_once_in_order([p["seq"] for p in payloads], len(events))
    for payload in payloads:
        jsonschema.validate(payload, SCHEMA)
    by_seq = {p["seq"]: p for p in payloads}
    assert [by_seq[i + 1]["type"] for i in range(len(events))] == [e.kind for e in events]
    kinds = Counter(p["type"] for p in by_seq.values())
    assert kinds[EVENT_NEW] == kinds[EVENT_END] > 0
    for key in ObjectTracker(tracking, names).count_topics:  # every count back to zero once all have left
        assert read_retained(broker, f"{PREFIX}/cam-events/{key}") == b"0", key
    snapshots = subscriber.on(f"{PREFIX}/cam-events/events/snapshot")
    assert len(snapshots) == sum(e.snapshot is not None for e in events) > 0
    image = cv2.imdecode(np.frombuffer(snapshots[-1].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3
    volume = Counter("events" if m.topic.endswith("/events") else "snapshots" if m.topic.endswith("/snapshot")
                     else "status" if m.topic.endswith("/status") else "stats" if m.topic.endswith("/stats") else "counts"
                     for m in subscriber.messages if m.topic.startswith(f"{PREFIX}/cam-events/"))
    per_frame = len(subscriber.on(f"{PREFIX}/cam-every/detections"))
    in_events_mode = sum(n for kind, n in volume.items() if kind != "status")
    print(f"{video}: {frames} frames; publish every: {per_frame} messages; publish events: {in_events_mode} messages "
          f"({dict(volume)})")
    assert per_frame == frames
    assert in_events_mode * VOLUME_RATIO < per_frame


def test_events_survive_a_broker_outage(tmp_path, replay, names):
    frames, tracking = SCENES[PEOPLE_VIDEO]
    pairs = list(replay(PEOPLE_VIDEO, frames))
    dry = ObjectTracker(tracking, names)  # where the events fall, so the outage covers some of them
    at = [frame.index for frame, dets in pairs if dry.update(frame, dets).events]
    down, up = at[0], (at[0] + at[-1]) // 2 + 1
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker, f"{PREFIX}/#")  # a persistent session: the broker keeps what it misses
    sink = sink_for(broker, tmp_path / "state", names, "cam1", "events")
    tracker = ObjectTracker(tracking, names)
    events = []
    try:
        assert subscriber.wait_for(lambda: sink.connected, DELIVERY_TIMEOUT_S)
        for frame, dets in pairs:
            if frame.index == down:
                broker.stop()
            if frame.index == up:
                assert sink.wait_spooled(DELIVERY_TIMEOUT_S)
                during = sink.snapshot_counters()["spool_depth"]
                assert not sink.connected
                broker.start()
            update = tracker.update(frame, dets)
            events += update.events
            sink.write_objects(frame, dets, update)
        final = tracker.finish()
        sink.write_objects(None, Detections.empty(), final)
        events += final.events
        assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
        assert subscriber.wait_for(lambda: set(range(1, len(events) + 1)) <= set(event_seqs(subscriber, "cam1")),
                                   DELIVERY_TIMEOUT_S)
        duplicates = assert_all_once_in_order(event_seqs(subscriber, "cam1"), len(events))
        assert sink.snapshot_counters()["reconnects"] == 1
        print(f"{len(events)} events, {during} of them spooled while the broker was down (frames {down}-{up - 1}), "
              f"{duplicates} duplicates")
        assert during > 0
    finally:
        sink.close()
        subscriber.close()
        broker.stop()


def driver(broker: Mosquitto, state_dir: Path, device: str, frames: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.edge.mqtt_driver", "--url", broker.url, "--state-dir",
                             str(state_dir), "--device", device, "--frames", str(frames), *extra],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline().strip()
    assert line, f"the driver ended: {process.stderr.read() if process.poll() is not None else ''}"
    return line


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(PROCESS_TIMEOUT_S)
    process.stdout.close()
    process.stderr.close()


def test_spooled_events_survive_sigkill_while_the_broker_is_down(tmp_path):
    broker = Mosquitto(tmp_path / "broker")
    with broker:  # register the subscriber's persistent session, then take the broker away
        Subscriber(broker, f"{PREFIX}/#").client.disconnect()
    first = driver(broker, tmp_path / "state", "cam1", 400, "--publish", "events")
    try:
        line = read_line(first)
        assert line.startswith("spooled ")
        spooled = int(line.split()[1])
    finally:
        stop(first)  # SIGKILL: nothing flushed, nothing said
    assert spooled == 2 * 10  # a person in view 10 times: a new and an end event each
    broker.start()
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    second = driver(broker, tmp_path / "state", "cam1", 0, "--publish", "events")
    try:
        assert read_line(second) == "spooled 0"
        assert read_line(second) == "delivered"
        assert subscriber.wait_for(lambda: set(range(1, spooled + 1)) <= set(event_seqs(subscriber, "cam1")),
                                   DELIVERY_TIMEOUT_S)
        assert_all_once_in_order(event_seqs(subscriber, "cam1"), spooled)
    finally:
        stop(second, signal.SIGTERM)
        subscriber.close()
        broker.stop()


def test_home_assistant_sees_the_device_go_offline_on_sigkill(broker, tmp_path):
    process = driver(broker, tmp_path / "state", "cam1", 5, "--ha", "--keepalive", str(SHORT_KEEPALIVE_S))
    try:
        assert read_line(process) == "spooled 5"
        assert read_line(process) == "delivered"
        config = json.loads(read_retained(broker, "homeassistant/sensor/edge_yolo_cam1/all_person_count/config"))
        availability = config["availability"][0]["topic"]
        assert read_retained(broker, availability) == b"online"
    finally:
        stop(process)
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while read_retained(broker, availability) != STATUS_OFFLINE.encode():  # the broker published the last will
        assert time.monotonic() < deadline, "the device never went offline"
        time.sleep(SHORT_KEEPALIVE_S / 2)
    assert read_retained(broker, "homeassistant/sensor/edge_yolo_cam1/all_person_count/config") is not None
