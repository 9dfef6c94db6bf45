"""Home Assistant discovery: payloads against the documented keys, retained on a real broker, removed on request."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edge.fields import InvalidSetting
from edge.sinks.mqtt import MqttSettings, MqttSink
from edge.sinks.mqtt.discovery import (HomeAssistantSettings, discovery_messages, entities_for,
                                       remove_discovery, removal_messages)
from edge.track import ObjectTracker, TrackSettings
from tests.edge.mosquitto import Mosquitto, Subscriber, read_retained

SCHEMA = json.loads((Path(__file__).parent / "ha_discovery.schema.json").read_text())
NAMES = ("person", "bicycle", "car")
DEVICE = "porch"
TRACKING = TrackSettings(labels=("person", "car"), zones=[{"name": "drive", "points": [[0, 0.5], [1, 0.5], [1, 1]]}],
                         lines=[{"name": "gate", "points": [[0.5, 0], [0.5, 1]], "labels": ["person"]}])
WAIT_S = 10.0


def messages(publish: str = "events", **ha) -> list[tuple[str, dict]]:
    mqtt = MqttSettings(device_id=DEVICE, publish=publish, model="yolov5n_320_int8.tflite")
    entities = entities_for(mqtt, ObjectTracker(TRACKING, NAMES), event_snapshots=True)
    return [(topic, json.loads(payload)) for topic, payload in discovery_messages(mqtt, HomeAssistantSettings(**ha), entities)]


def test_every_payload_has_only_documented_keys():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    found = messages()
    for topic, payload in found:
        component = topic.split("/")[1]
        jsonschema.validate(payload, {**SCHEMA, "$ref": f"#/$defs/{component}"})
    components = sorted({topic.split("/")[1] for topic, _ in found})
    assert components == ["binary_sensor", "image", "sensor"]


def test_the_schema_catches_what_home_assistant_would_silently_drop():
    topic, payload = next((t, p) for t, p in messages() if t.split("/")[1] == "image")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**payload, "qos": 1}, {**SCHEMA, "$ref": "#/$defs/image"})  # not an image key
    sensor = next(p for t, p in messages() if t.split("/")[1] == "sensor")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**sensor, "state_topik": "x"}, {**SCHEMA, "$ref": "#/$defs/sensor"})


def test_the_entities_of_a_device():
    found = messages()
    topics = [t for t, _ in found]
    assert len(set(topics)) == len(topics) and len({p["unique_id"] for _, p in found}) == len(found)
    assert all(t.startswith("homeassistant/") and t.endswith("/config") and t.split("/")[2] == "edge_yolo_porch" for t in topics)
    states = {p["name"]: p.get("state_topic") or p.get("image_topic") for _, p in found}
    assert states["drive person count"] == "edge-yolo/porch/drive/person"
    assert states["drive count"] == "edge-yolo/porch/drive/all"
    assert states["car count"] == "edge-yolo/porch/all/car"
    assert states["gate person in"] == "edge-yolo/porch/gate/person/in"
    assert states["drive occupancy"] == "edge-yolo/porch/drive/all"
    assert states["snapshot"] == "edge-yolo/porch/events/snapshot"
    assert states["fps"] == states["CPU temperature"] == "edge-yolo/porch/stats"
    assert {p["availability"][0]["topic"] for _, p in found} == {"edge-yolo/porch/status"}
    assert {json.dumps(p["device"], sort_keys=True) for _, p in found} == {json.dumps(found[0][1]["device"], sort_keys=True)}
    assert found[0][1]["device"]["name"] == DEVICE
    assert messages(name="Front porch")[0][1]["device"]["name"] == "Front porch"
    assert messages(prefix="ha")[0][0].startswith("ha/")


def test_the_snapshot_entity_follows_the_publish_mode():
    assert "edge-yolo/porch/events/snapshot" in [p.get("image_topic") for _, p in messages("events")]
    assert not [p for _, p in messages("every") if "image_topic" in p]  # no --snapshot classes: no snapshot topic


def test_removal_empties_each_config():
    mqtt = MqttSettings(device_id=DEVICE, publish="events")
    entities = entities_for(mqtt, ObjectTracker(TRACKING, NAMES), event_snapshots=True)
    ha = HomeAssistantSettings()
    assert removal_messages(mqtt, ha, entities) == [(t, b"") for t, _ in discovery_messages(mqtt, ha, entities)]


@pytest.mark.parametrize("settings, field", [({"prefix": "home/#"}, "prefix"), ({"prefix": ""}, "prefix"),
                                             ({"prefix": "/ha"}, "prefix")])
def test_bad_settings_name_the_key(settings, field):
    with pytest.raises(InvalidSetting) as error:
        HomeAssistantSettings(**settings)
    assert error.value.field == field


def test_configs_are_retained_on_the_broker_and_removed_on_request(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        mqtt = MqttSettings(url=broker.url, device_id=DEVICE, publish="events", state_dir=str(tmp_path / "state"),
                            reconnect_min_s=0.2, reconnect_max_s=1.0)
        entities = entities_for(mqtt, ObjectTracker(TRACKING, NAMES), event_snapshots=True)
        found = discovery_messages(mqtt, HomeAssistantSettings(discovery=True), entities)
        subscriber = Subscriber(broker, "homeassistant/#")
        sink = MqttSink(mqtt, NAMES, found)
        try:
            assert subscriber.wait_for(lambda: len(subscriber.messages) >= len(found), WAIT_S)
        finally:
            sink.close()
            subscriber.close()
        for topic, payload in found:
            assert read_retained(broker, topic) == payload  # a Home Assistant started later still finds them
        assert read_retained(broker, mqtt.topic("status")) == b"stopped"
        assert remove_discovery(mqtt, HomeAssistantSettings(), entities) == len(found)
        assert all(read_retained(broker, topic) is None for topic, _ in found)
        assert read_retained(broker, mqtt.topic("status")) == b"stopped"  # the removal client left the status alone
    finally:
        broker.stop()

