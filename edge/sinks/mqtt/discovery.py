"""Home Assistant MQTT discovery: the device, its count and occupancy sensors, the latest snapshot as an
image entity, fps and temperature diagnostics, all unavailable whenever the status topic is not ``online``.

Configs are retained under ``<discovery prefix>/<component>/<node>/<object>/config`` and published
again on every connect; ``removal_messages`` gives the empty retained payloads that delete them.
Only keys Home Assistant's MQTT integration documents are used (the tests check each payload
against a schema of them).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import ClassVar
from importlib import metadata
from pathlib import Path

from edge.errors import EdgeError, InvalidSetting
from edge.fields import check_fields, setting
from edge.sinks.mqtt.events import SNAPSHOT_LEAF
from edge.sinks.mqtt.session import STATUS_ONLINE, Session
from edge.sinks.mqtt.settings import PUBLISH_EVENTS, MqttSettings
from edge.track.objects import ObjectTracker

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
PACKAGE = "edge-yolo"
ALL = "all"
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")
# "stopped" (clean shutdown) is as unavailable as the last will's "offline"
AVAILABILITY_TEMPLATE = f"{{{{ 'online' if value == '{STATUS_ONLINE}' else 'offline' }}}}"
OCCUPIED_TEMPLATE = "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"
_COMPACT = (",", ":")
REMOVE_TIMEOUT_S = 10.0
POLL_S = 0.05


@dataclass(frozen=True)
class HomeAssistantSettings:
    """Whether and where to announce this device to Home Assistant."""

    TABLE: ClassVar[str] = "homeassistant"
    FLAG_PREFIX: ClassVar[str] = "ha-"
    TITLE: ClassVar[str] = "Home Assistant discovery (needs --mqtt)"

    discovery: bool = setting(False, flag="ha-discovery",
                              help="announce this device, its counts, occupancy, snapshot and diagnostics to Home "
                                   "Assistant (MQTT discovery, retained)")
    prefix: str = setting(DEFAULT_DISCOVERY_PREFIX, flag="ha-discovery-prefix",
                          help="Home Assistant's discovery prefix (its MQTT integration's setting)")
    remove: bool = setting(False, flag="ha-discovery-remove",
                           help="remove this device's entities from Home Assistant (empty retained configs) and exit")
    name: str | None = setting(None, help="the device's name in Home Assistant (default: the device id)")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.prefix or any(c in self.prefix for c in "+#\0") or self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise InvalidSetting("prefix", f"{self.prefix!r} cannot be an MQTT topic prefix; use letters, digits, - and _")


@dataclass(frozen=True)
class Entities:
    """What there is to announce: count topics below ``<prefix>/<device>/`` and which topics exist."""

    counts: tuple[str, ...] = ()  # "door/person", "all/car", "gate/person/in", "door/all" (a zone's total)
    zones: tuple[str, ...] = ()
    snapshot_topic: str | None = None  # the leaf of the retained snapshot, if one is published


def software_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def object_id(text: str) -> str:
    return _NOT_ID.sub("_", text).strip("_") or "x"


def discovery_messages(mqtt: MqttSettings, ha: HomeAssistantSettings, entities: Entities) -> list[tuple[str, bytes]]:
    """(config topic, retained JSON payload) for every entity of this device."""
    node = object_id(f"edge_yolo_{mqtt.device_id}")
    version = software_version()
    common = {
        "availability": [{"topic": mqtt.topic("status"), "value_template": AVAILABILITY_TEMPLATE}],
        "device": {"identifiers": [node], "name": ha.name or mqtt.device_id, "manufacturer": PACKAGE,
                   "model": mqtt.model or "YOLOv5 TFLite", "sw_version": version},
        "origin": {"name": PACKAGE, "sw_version": version},
    }
    configs: list[tuple[str, str, dict]] = []
    for key in entities.counts:
        parts = key.split("/")
        config = {"state_topic": mqtt.topic(key), "state_class": "measurement", "icon": "mdi:counter"}
        if len(parts) == 3:  # a line: crossings since start
            config.update(name=f"{parts[0]} {parts[1]} {parts[2]}", state_class="total_increasing")
        elif parts[0] == ALL:
            config.update(name=f"{parts[1]} count")
        elif parts[1] == ALL:  # a zone's total over its labels
            config.update(name=f"{parts[0]} count")
        else:
            config.update(name=f"{parts[0]} {parts[1]} count")
        configs.append(("sensor", object_id(key.replace("/", "_") + "_count"), config))
    for zone in entities.zones:
        configs.append(("binary_sensor", object_id(f"{zone}_occupancy"), {
            "name": f"{zone} occupancy", "state_topic": mqtt.topic(f"{zone}/{ALL}"), "device_class": "occupancy",
            "value_template": OCCUPIED_TEMPLATE}))
    if entities.snapshot_topic:
        configs.append(("image", "snapshot", {"name": "snapshot", "image_topic": mqtt.topic(entities.snapshot_topic),
                                              "content_type": "image/jpeg"}))
    stats = mqtt.topic("stats")
    configs += [
        ("sensor", "fps", {"name": "fps", "state_topic": stats, "value_template": "{{ value_json.pipeline.fps_out }}",
                           "unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic",
                           "icon": "mdi:speedometer"}),
        ("sensor", "cpu_temperature", {"name": "CPU temperature", "state_topic": stats,
                                       "value_template": "{{ value_json.cpu_temp_c }}", "device_class": "temperature",
                                       "unit_of_measurement": "°C", "state_class": "measurement",
                                       "entity_category": "diagnostic"}),
        ("sensor", "spool_depth", {"name": "unsent messages", "state_topic": stats,
                                   "value_template": "{{ value_json.mqtt.spool_depth }}", "state_class": "measurement",
                                   "entity_category": "diagnostic", "icon": "mdi:tray-full"}),
    ]
    messages = []
    for component, oid, config in configs:
        payload = {**config, "unique_id": f"{node}_{oid}", "object_id": f"{node}_{oid}", **common}
        if component != "image":  # the image entity documents no qos
            payload["qos"] = mqtt.qos
        messages.append((f"{ha.prefix}/{component}/{node}/{oid}/config", json.dumps(payload, separators=_COMPACT).encode()))
    return messages


def removal_messages(mqtt: MqttSettings, ha: HomeAssistantSettings, entities: Entities) -> list[tuple[str, bytes]]:
    """The same config topics with empty payloads: Home Assistant deletes each entity and, with the last, the device."""
    return [(topic, b"") for topic, _ in discovery_messages(mqtt, ha, entities)]


def entities_for(mqtt: MqttSettings, tracker: ObjectTracker | None, event_snapshots: bool) -> Entities:
    """The entities a run publishes: its tracker's counts and zones, and the snapshot topic it fills."""
    if mqtt.publish_mode.kind == PUBLISH_EVENTS:
        snapshot = SNAPSHOT_LEAF if event_snapshots else None
    else:
        snapshot = "snapshot" if mqtt.snapshot else None
    if tracker is None:
        return Entities(snapshot_topic=snapshot)
    return Entities(tracker.count_topics, tuple(zone.name for zone in tracker.regions.zones), snapshot)


def remove_discovery(mqtt: MqttSettings, ha: HomeAssistantSettings, entities: Entities,
                     timeout_s: float = REMOVE_TIMEOUT_S) -> int:
    """Publish the empty retained configs and wait for the broker's acks; returns how many. Leaves the
    device's status topic alone (a maintenance client, not the device)."""
    messages = removal_messages(mqtt, ha, entities)
    session = Session(mqtt, mqtt.resolve_password(), Path(os.devnull), lambda: 0, lambda: None, announce=False)
    deadline = time.monotonic() + timeout_s
    session.start()
    try:
        while not session.connected:
            if time.monotonic() > deadline:
                raise EdgeError(f"--ha-discovery-remove: no connection to the MQTT broker {session.where} within "
                                f"{timeout_s:g} s; nothing was removed")
            time.sleep(POLL_S)
        infos = [session.publish(topic, payload, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(max(deadline - time.monotonic(), POLL_S))
        if not all(info.is_published() for info in infos):
            raise EdgeError(f"--ha-discovery-remove: the broker {session.where} did not acknowledge every removal "
                            f"within {timeout_s:g} s; run it again")
    finally:
        session.stop()
    return len(messages)
