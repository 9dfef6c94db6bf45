"""MQTT publisher without a broker: settings, payloads, the on-disk spool."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge.detect.detections import Detections
from edge.errors import EdgeError, InvalidSetting
from edge.sinks.mqtt.payloads import cpu_temperature_c, detections_payload, label_counts, stats_payload
from edge.sinks.mqtt import CREDENTIAL_NAME, PASSWORD_ENV, MqttSettings, MqttSink, PublishMode
from edge.sinks.mqtt.spool import SPOOL_FILE, Spool
from edge.sources import Frame
from tests.edge.edge_testing import REPO_ROOT
from tests.edge.mosquitto import free_port

REPO = REPO_ROOT
SCHEMA_PATH = REPO / "edge" / "sinks" / "mqtt" / "schemas" / "mqtt.schema.json"
NAMES = ("person", "bicycle", "car")
FRAME_HW = (48, 64)
SPOOL_WAIT_S = 10.0
FAST_RETRY = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.2}  # close() waits out paho's current retry pause


@pytest.fixture(scope="module")
def schema() -> dict:
    loaded = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@pytest.fixture
def no_secrets_env(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


def dets_of(class_ids: list[int]) -> Detections:
    n = len(class_ids)
    return Detections(np.tile(np.array([[4, 6, 20, 30]], np.float32), (n, 1)), np.full(n, 0.7, np.float32),
                      np.array(class_ids, np.int64).reshape(n))


def frame(index: int) -> Frame:
    return Frame(index, "test", time.time(), np.zeros(FRAME_HW + (3,), np.uint8))


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field, expected_in_error", [
    ({"url": "http://host:1883"}, "url", "'http://host:1883' is not a broker URL"),
    ({"url": "mqtt://"}, "url", "'mqtt://' is not a broker URL"),
    ({"url": "mqtt://host:99999"}, "url", "'mqtt://host:99999' is not a broker URL"),
    ({"url": "mqtt://user:secret@host"}, "url", "must not hold credentials"),
    ({"device_id": "cam/1"}, "device_id", "'cam/1' cannot be used in an MQTT topic"),
    ({"device_id": "cam+"}, "device_id", "'cam+' cannot be used in an MQTT topic"),
    ({"device_id": ""}, "device_id", "'' cannot be used in an MQTT topic"),
    ({"prefix": "a/#"}, "prefix", "'a/#' cannot be used in an MQTT topic"),
    ({"publish": "sometimes"}, "publish", "'sometimes' is not a publish mode"),
    ({"publish": "interval:0"}, "publish", "'interval:0' is not a publish mode"),
    ({"publish": "interval:x"}, "publish", "'interval:x' is not a publish mode"),
    ({"spool_max": 0}, "spool_max", "must be between 1 and 10000000, received 0"),
    ({"qos": 3}, "qos", "must be one of"),
    ({"tls_ca": "/ca.crt"}, "tls_ca", "needs an mqtts:// URL"),
    ({"url": "mqtts://host", "tls_cert": "/c.crt"}, "tls_cert", "--mqtt-cert and --mqtt-key go together"),
    ({"password_file": "/pw"}, "password_file", "add --mqtt-username"),
])
def test_bad_settings_name_the_field(overrides, field, expected_in_error):
    with pytest.raises(InvalidSetting) as error:
        MqttSettings(**overrides)
    assert error.value.field == field
    assert expected_in_error in error.value.message
    assert "\n" not in str(error.value) and "secret" not in str(error.value)


@pytest.mark.parametrize("url, endpoint", [
    ("mqtt://broker", ("broker", 1883, False)),
    ("mqtts://broker", ("broker", 8883, True)),
    ("mqtt://10.0.0.2:1884", ("10.0.0.2", 1884, False)),
    ("mqtts://broker.lan:8884/", ("broker.lan", 8884, True)),
])
def test_url_gives_host_port_and_tls(url, endpoint):
    assert MqttSettings(url=url).endpoint == endpoint


@pytest.mark.parametrize("text, mode", [
    ("every", PublishMode("every")),
    ("change", PublishMode("change")),
    ("interval:5", PublishMode("interval", 5.0)),
    ("interval:0.5", PublishMode("interval", 0.5)),
])
def test_publish_modes(text, mode):
    assert PublishMode.parse(text) == mode


def test_password_sources_in_order(tmp_path, monkeypatch, no_secrets_env):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / CREDENTIAL_NAME).write_text("from-credentials\n")
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert MqttSettings(username="cam").resolve_password() == "from-credentials"
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert MqttSettings(username="cam").resolve_password() == "from-env"
    assert MqttSettings(username="cam", password_file=str(password_file)).resolve_password() == "from-file"
    assert MqttSettings(username="cam", password="from-config", password_file=str(password_file)).resolve_password() == "from-config"
    assert MqttSettings().resolve_password() is None  # no user: anonymous


def test_empty_credential_means_no_password(tmp_path, monkeypatch, no_secrets_env):
    (tmp_path / CREDENTIAL_NAME).write_text("\n")  # what the service unit's SetCredential= gives without a file
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert MqttSettings(username="cam").resolve_password() is None


def test_empty_password_file_is_refused(tmp_path, no_secrets_env):
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(EdgeError, match=f"--mqtt-password-file {empty} is empty"):
        MqttSettings(username="cam", password_file=str(empty)).resolve_password()


def test_missing_password_file_is_one_line_naming_the_option(tmp_path, no_secrets_env):
    missing = tmp_path / "nope"
    with pytest.raises(EdgeError, match=f"--mqtt-password-file {missing}: file not found"):
        MqttSettings(username="cam", password_file=str(missing)).resolve_password()


def test_password_is_not_in_repr():
    assert "hunter2" not in repr(MqttSettings(username="cam", password="hunter2"))


def test_state_dir_follows_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert MqttSettings().resolve_state_dir() == tmp_path / "a"
    assert MqttSettings(state_dir=str(tmp_path / "c")).resolve_state_dir() == tmp_path / "c"


def test_missing_paho_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "paho", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    with pytest.raises(EdgeError, match=r"pip install 'edge-yolo\[mqtt\]' \(or pip install paho-mqtt\)"):
        MqttSink(MqttSettings(state_dir=str(tmp_path)), NAMES)


def test_importing_the_sink_does_not_import_paho():
    code = "import sys, edge.sinks.mqtt.sink; print('paho' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- publish modes through a sink whose broker never answers --------------------------------------


def offline_sink(tmp_path: Path, **overrides) -> MqttSink:
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}", device_id="dev", state_dir=str(tmp_path),
                            **FAST_RETRY, **overrides)
    return MqttSink(settings, NAMES)


def spooled_payloads(sink: MqttSink) -> list[dict]:
    """What the sink has on disk, read through a connection of our own (WAL lets it read alongside)."""
    assert sink.wait_spooled(SPOOL_WAIT_S)
    with sqlite3.connect(sink.spool_path) as db:
        return [json.loads(payload) for (payload,) in db.execute("SELECT payload FROM messages ORDER BY id")]


def spooled_seqs(sink: MqttSink) -> list[int]:
    return [payload["seq"] for payload in spooled_payloads(sink)]


def test_change_mode_publishes_only_when_label_counts_change(tmp_path):
    sink = offline_sink(tmp_path, publish="change")
    try:
        # counts: {} {} {p:1} {p:1} {p:1,c:1} {p:2} {p:2} {}
        for index, ids in enumerate([[], [], [0], [0], [0, 2], [0, 0], [0, 0], []]):
            sink.write(frame(index), dets_of(ids))
        assert [payload["frame"] for payload in spooled_payloads(sink)] == [0, 2, 4, 5, 7]
        assert spooled_seqs(sink) == [1, 2, 3, 4, 5]
    finally:
        sink.close()


def test_interval_mode_publishes_at_most_one_per_interval(tmp_path):
    interval_s = 0.2
    sink = offline_sink(tmp_path, publish=f"interval:{interval_s}")
    try:
        start = time.monotonic()
        index = 0
        while time.monotonic() - start < 3 * interval_s:
            sink.write(frame(index), dets_of([0]))
            index += 1
            time.sleep(interval_s / 20)
        published = len(spooled_seqs(sink))
        assert 1 <= published <= 4  # 0, 0.2, 0.4, and a frame at 0.6 at most
        assert index > published * 5
    finally:
        sink.close()


def test_write_stays_fast_while_the_broker_is_unreachable(tmp_path):
    budget_s = 0.001  # a camera frame at 30 fps is 33 ms; the sink may take a small fraction of it
    frames = 2000
    sink = offline_sink(tmp_path)
    try:
        times = []
        dets = dets_of([0, 2])
        for index in range(frames):
            t0 = time.perf_counter()
            sink.write(frame(index), dets)
            times.append(time.perf_counter() - t0)
        assert float(np.median(times)) < budget_s
        assert spooled_seqs(sink) == list(range(1, frames + 1))
        assert not sink.connected
    finally:
        sink.close()


def test_spool_bound_drops_oldest_and_says_so_once(tmp_path, caplog):
    bound, frames = 50, 120
    sink = offline_sink(tmp_path, spool_max=bound)
    try:
        with caplog.at_level(logging.WARNING, logger="edge.sinks.mqtt.sink"):
            for index in range(frames):
                sink.write(frame(index), dets_of([0]))
                if index % 10 == 9:
                    sink.wait_spooled(SPOOL_WAIT_S)  # several commits: a burst spanning batches
            assert spooled_seqs(sink) == list(range(frames - bound + 1, frames + 1))
        assert sink.snapshot_counters()["spool_dropped"] == frames - bound
        assert len([r for r in caplog.records if "spool full" in r.getMessage()]) == 1
    finally:
        sink.close()


def test_seq_continues_after_restart(tmp_path):
    first = offline_sink(tmp_path)
    for index in range(3):
        first.write(frame(index), dets_of([0]))
    assert first.wait_spooled(SPOOL_WAIT_S)
    first.close()
    second = offline_sink(tmp_path)
    try:
        second.write(frame(0), dets_of([0]))
        assert spooled_seqs(second) == [1, 2, 3, 4]
    finally:
        second.close()


# --- payloads -----------------------------------------------------------------------------------


def test_detections_payload_matches_schema_and_normalises_boxes(schema):
    dets = Detections(np.array([[16, 12, 48, 36], [0, 0, 64, 48]], np.float32), np.array([0.9, 0.4], np.float32),
                      np.array([2, 0]))
    payload = json.loads(detections_payload(seq=7, device="dev", model="m", frame_index=3, capture_time=1.23456,
                                            wh=(64, 48), dets=dets, names=NAMES))
    jsonschema.validate(payload, schema)
    assert [d["label"] for d in payload["detections"]] == ["car", "person"]
    assert payload["detections"][0]["box_norm"] == [0.25, 0.25, 0.75, 0.75]
    assert payload["detections"][1]["box_norm"] == [0.0, 0.0, 1.0, 1.0]
    assert (payload["seq"], payload["frame"], payload["time"]) == (7, 3, 1.235)


def test_empty_frame_payload_matches_schema(schema):
    payload = json.loads(detections_payload(seq=1, device="dev", model="m", frame_index=0, capture_time=0.0,
                                            wh=(64, 48), dets=Detections.empty(), names=NAMES))
    jsonschema.validate(payload, schema)
    assert payload["detections"] == []


def test_stats_payload_matches_schema_with_numpy_values(schema):
    pipeline = {"fps_in": np.float32(29.5), "latency_ms": {"invoke": np.float64(11.2)}, "dropped": np.int64(3)}
    mqtt = {"connected": True, "spool_depth": 0, "spool_dropped": 0, "queue_dropped": 0, "reconnects": 1, "acked": 9}
    payload = json.loads(stats_payload(device="dev", pipeline=pipeline, mqtt=mqtt))
    jsonschema.validate(payload, schema)
    assert payload["pipeline"] == {"fps_in": 29.5, "latency_ms": {"invoke": 11.2}, "dropped": 3}


def test_schema_rejects_a_payload_missing_seq(schema):
    payload = json.loads(detections_payload(seq=1, device="dev", model="m", frame_index=0, capture_time=0.0,
                                            wh=(64, 48), dets=dets_of([0]), names=NAMES))
    del payload["seq"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)


@pytest.mark.parametrize("text, expected", [("48312\n", 48.3), ("garbage", None)])
def test_cpu_temperature(tmp_path, text, expected):
    path = tmp_path / "temp"
    path.write_text(text)
    assert cpu_temperature_c(path) == expected
    assert cpu_temperature_c(tmp_path / "absent") is None


def test_label_counts():
    assert label_counts(dets_of([2, 0, 2])) == ((0, 1), (2, 2))
    assert label_counts(Detections.empty()) == ()


# --- spool --------------------------------------------------------------------------------------


def test_spool_keeps_order_and_survives_reopen(tmp_path):
    spool = Spool(tmp_path, max_messages=10)
    spool.append([("t", b"1"), ("t", b"2"), ("t", b"3")], "dev", 3)
    first = spool.after(0, 2)
    assert [m.payload for m in first] == [b"1", b"2"]
    spool.remove([first[0].id])
    spool.close()
    reopened = Spool(tmp_path, max_messages=10)
    try:
        assert [m.payload for m in reopened.after(0, 10)] == [b"2", b"3"]
        assert reopened.depth == 2
        assert reopened.last_seq("dev") == 3
        assert reopened.last_seq("other") == 0
        reopened.append([("t", b"4")])
        assert reopened.after(0, 10)[-1].id > first[-1].id + 1  # ids never reused
    finally:
        reopened.close()


def test_spool_in_use_by_another_process_is_refused(tmp_path):
    spool = Spool(tmp_path, max_messages=10)
    try:
        with pytest.raises(EdgeError, match="in use by another process; give each instance its own --state-dir"):
            Spool(tmp_path, max_messages=10)
    finally:
        spool.close()


def test_corrupt_spool_is_moved_aside(tmp_path, caplog):
    (tmp_path / SPOOL_FILE).write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp_path, max_messages=10)
    try:
        assert spool.depth == 0
        assert list(tmp_path.glob(f"{SPOOL_FILE}.corrupt-*"))
        assert "unreadable" in caplog.text
    finally:
        spool.close()


def test_unwritable_state_dir_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EdgeError, match=f"cannot use --state-dir {blocker / 'sub'}"):
        Spool(blocker / "sub", max_messages=10)


def test_missing_tls_file_names_the_field(tmp_path):
    missing = tmp_path / "ca.crt"
    with pytest.raises(InvalidSetting, match=f"tls_ca: file not found: {missing}"):
        MqttSettings(url="mqtts://127.0.0.1", tls_ca=str(missing), state_dir=str(tmp_path))


def test_unusable_tls_file_is_one_line(tmp_path):
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(EdgeError, match=f"cannot load the TLS files \\(--mqtt-ca {garbage}") as error:
        MqttSink(MqttSettings(url="mqtts://127.0.0.1", tls_ca=str(garbage), state_dir=str(tmp_path)), NAMES)
    assert "\n" not in str(error.value)
    Spool(tmp_path, max_messages=1).close()  # the failed sink let go of its spool
