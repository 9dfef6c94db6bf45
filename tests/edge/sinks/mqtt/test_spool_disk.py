"""The MQTT spool on a real small filesystem (a tmpfs mounted here): full disk, restarts, WAL size, file modes.

Mounting needs root (tests/edge/small_disk.py); elsewhere those tests are skipped with that reason. The broker is a real
Mosquitto; a subscriber with a persistent session sees every message the sink published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.sinks.mqtt import MqttSettings, MqttSink
from edge.sinks.mqtt.spool import JOURNAL_SIZE_LIMIT_BYTES, SPOOL_FILE, WAL_CHECKPOINT_PAGES, Spool, open_spool
from edge.sources import Frame
from tests.edge.edge_testing import REPO_ROOT, time_limit
from tests.edge.mosquitto import Mosquitto, Subscriber
from tests.edge.mqtt_driver import synthetic_detections
from tests.edge.small_disk import fill, mounted_tmpfs

DEVICE = "cam1"
TOPICS = f"edge-yolo/{DEVICE}/#"
DETECTIONS_TOPIC = f"edge-yolo/{DEVICE}/detections"
FAST_RETRY = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
DELIVERY_TIMEOUT_S = 30.0
PAGE_BYTES = 4096
PAYLOAD_BYTES = 1000


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB filesystem of its own, unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


def make_sink(broker: Mosquitto, state_dir: Path) -> MqttSink:
    return MqttSink(MqttSettings(url=broker.url, device_id=DEVICE, state_dir=str(state_dir), model="m", **FAST_RETRY),
                    ("person", "bicycle", "car"))


def write_frames(sink: MqttSink, start: int, count: int) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    for index in range(start, start + count):
        sink.write(Frame(index, "t", time.time(), image), synthetic_detections(index))
    assert sink.wait_spooled(DELIVERY_TIMEOUT_S)


def seqs(subscriber: Subscriber) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in subscriber.on(DETECTIONS_TOPIC)]


def test_a_full_disk_is_said_once_and_delivery_goes_on(small_disk, tmp_path, caplog):
    broker = Mosquitto(tmp_path / "broker")
    with broker:
        Subscriber(broker, TOPICS).client.disconnect()  # a persistent session: nothing published is missed
    state = small_disk / "state"
    with caplog.at_level(logging.INFO):
        sink = make_sink(broker, state)
        try:
            write_frames(sink, 0, 100)  # broker down: on disk
            filler = fill(small_disk)
            write_frames(sink, 100, 400)  # broker down, disk full: in memory
            assert sink.snapshot_counters()["spool_held"] > 0
            broker.start()
            subscriber = Subscriber(broker, TOPICS)
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S), sink.snapshot_counters()
            write_frames(sink, 500, 100)  # broker up, disk still full: straight through
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
            filler.unlink()  # space is back
            time.sleep(6)  # the spool tries the disk again every 5 s
            write_frames(sink, 600, 50)
            assert sink.wait_delivered(DELIVERY_TIMEOUT_S)
            assert subscriber.wait_for(lambda: set(range(1, 651)) <= set(seqs(subscriber)), DELIVERY_TIMEOUT_S)
            counters = sink.snapshot_counters()
        finally:
            sink.close()
            broker.stop()
    received = seqs(subscriber)
    assert set(received) == set(range(1, 651)) and list(dict.fromkeys(received)) == sorted(set(received))
    assert counters["spool"] == "disk" and counters["spool_held"] == 0 and counters["spool_problem"] is None
    assert counters["spool_write_errors"] >= 1 and counters["spool_errors"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"MQTT spool {state / SPOOL_FILE}: cannot write it: disk full (")
    assert f"kB free in {state})" in errors[0]
    assert "rollback" not in caplog.text
    assert any("writable again" in r.getMessage() for r in caplog.records)
    reopened = Spool(state, 100)  # everything acknowledged is gone from disk too
    try:
        assert reopened.depth == 0 and reopened.last_seq(DEVICE) == 650
    finally:
        reopened.close()


def test_a_restart_on_a_full_disk_keeps_the_spool_and_goes_on_without_it(small_disk, tmp_path, caplog):
    broker = Mosquitto(tmp_path / "broker")
    state = small_disk / "state"
    first = make_sink(broker, state)  # broker down: the messages stay spooled
    write_frames(first, 0, 50)
    first.close()
    spool_file = state / SPOOL_FILE
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in state.iterdir()}
    filler = fill(small_disk)
    broker.start()
    subscriber = Subscriber(broker, TOPICS)
    try:
        with caplog.at_level(logging.INFO):
            second = make_sink(broker, state)
            try:
                counters = second.snapshot_counters()
                write_frames(second, 50, 20)
                assert second.wait_delivered(DELIVERY_TIMEOUT_S)
                assert subscriber.wait_for(lambda: len(seqs(subscriber)) >= 20, DELIVERY_TIMEOUT_S)
            finally:
                second.close()
    finally:
        subscriber.close()
        broker.stop()
    assert counters["spool"] == "memory" and "disk full" in counters["spool_problem"]
    # never moved aside or changed (the failed open may leave an empty -wal and a -shm, which sqlite rebuilds)
    assert {name: hashlib.sha256((state / name).read_bytes()).hexdigest() for name in before} == before
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"cannot open the MQTT spool {spool_file}: disk full" in errors[0], errors
    assert "without a disk spool" in errors[0]
    assert not list(state.glob("*.corrupt-*"))
    # the seq restarts without the file, but every message of this run went out
    assert sorted(seqs(subscriber)) == list(range(1, 21))
    filler.unlink()
    reopened = Spool(state, 100)  # with space, the earlier run's messages are all still there
    try:
        assert reopened.depth == 50
    finally:
        reopened.close()


def test_edge_detect_on_a_full_state_disk_keeps_detecting(small_disk, tmp_path, model_dir, data_dir):
    fill(small_disk)
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker, TOPICS)
    frames = 20
    try:
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
             "--source", str(data_dir / "data" / "video" / "car-detection.mp4"), "--max-frames", str(frames),
             "--mqtt", broker.url, "--device-id", DEVICE, "--state-dir", str(small_disk / "state")],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=time_limit(120))
        assert subscriber.wait_for(lambda: len(seqs(subscriber)) >= frames, DELIVERY_TIMEOUT_S)
    finally:
        subscriber.close()
        broker.stop()
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and len(result.stdout.splitlines()) == frames
    errors = [line for line in result.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "disk full" in errors[0] and "without a disk spool" in errors[0], result.stderr
    assert sorted(seqs(subscriber)) == list(range(1, frames + 1))


def test_the_wal_stays_small(tmp_path):
    """Without a bound, the WAL grows to 4 MB before sqlite checkpoints it: more than a small disk has."""
    state = tmp_path / "state"
    spool = Spool(state, 100_000)
    wal = state / (SPOOL_FILE + "-wal")
    largest = 0
    try:
        for batch in range(60):
            spool.append([("t", os.urandom(PAYLOAD_BYTES))] * 100)
            largest = max(largest, wal.stat().st_size)
        rows = spool.after(0, 100_000)
        for start in range(0, len(rows), 100):
            spool.remove(r.id for r in rows[start:start + 100])
            largest = max(largest, wal.stat().st_size)
        assert spool.depth == 0
        drained = wal.stat().st_size
    finally:
        spool.close()
    one_transaction = 100 * (PAYLOAD_BYTES + 100) + 20 * PAGE_BYTES
    assert largest <= WAL_CHECKPOINT_PAGES * PAGE_BYTES + 2 * one_transaction, largest
    assert drained <= JOURNAL_SIZE_LIMIT_BYTES, drained


def test_state_files_are_private_outside_systemd(tmp_path):
    old_umask = os.umask(0o022)  # a login shell's
    try:
        spool = Spool(tmp_path / "new" / "state", 10)
        spool.append([("t", b"x")])
        spool.close()
        spool = Spool(tmp_path / "new" / "state", 10)  # with -wal and -shm present
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "new" / "state").iterdir()}
        spool.close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new" / "state").stat().st_mode) == 0o700
    assert set(files) >= {SPOOL_FILE, SPOOL_FILE + "-wal", SPOOL_FILE + "-shm", "mqtt-spool.lock"}
    assert set(files.values()) == {0o600}, files


def test_an_unusable_state_folder_gives_a_bounded_memory_spool(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.ERROR):
        spool = open_spool(blocker / "state", max_messages=100, memory_max=5)
    assert not spool.persistent and "cannot use --state-dir" in spool.problem
    assert spool.append([("t", str(i).encode()) for i in range(8)], "cam1", 8) == 3  # the oldest three dropped
    assert [m.payload for m in spool.after(0, 10)] == [b"3", b"4", b"5", b"6", b"7"]
    spool.remove([m.id for m in spool.after(0, 2)])
    assert spool.depth == 3 and spool.dropped == 3 and spool.last_seq("cam1") == 8
    assert len(caplog.records) == 1 and "MQTT goes on without a disk spool" in caplog.records[0].getMessage()
