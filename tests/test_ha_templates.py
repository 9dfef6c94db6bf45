"""The templates in the Home Assistant discovery payloads, rendered with Jinja2 as Home Assistant does.

Workstation only (Jinja2 is a test tool here, not a device dependency): the device suite checks the
payloads' keys, this checks what Home Assistant will make of the values.
"""

from __future__ import annotations

import json

import jinja2
import pytest

from edge.sinks.mqtt import MqttSettings
from edge.sinks.mqtt.discovery import Entities, HomeAssistantSettings, discovery_messages
from edge.sinks.mqtt.payloads import stats_payload
from edge.sinks.mqtt.session import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED

ENV = jinja2.Environment()


def render(template: str, payload: bytes) -> str:
    text = payload.decode()
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    return ENV.from_string(template).render(value=text, value_json=value_json)


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    mqtt = MqttSettings(device_id="porch")
    found = discovery_messages(mqtt, HomeAssistantSettings(), Entities(("door/person", "door/all"), ("door",)))
    return {json.loads(p)["name"]: json.loads(p) for _, p in found}


@pytest.mark.parametrize("status, available", [(STATUS_ONLINE, "online"), (STATUS_OFFLINE, "offline"),
                                               (STATUS_STOPPED, "offline")])
def test_availability_follows_the_status_topic(configs, status, available):
    for config in configs.values():
        availability = config["availability"][0]
        assert render(availability["value_template"], status.encode()) == available
        assert availability.get("payload_available", "online") == "online"
        assert availability.get("payload_not_available", "offline") == "offline"


@pytest.mark.parametrize("count, state", [(b"0", "OFF"), (b"1", "ON"), (b"3", "ON")])
def test_occupancy_is_on_while_the_zone_counts_anything(configs, count, state):
    occupancy = configs["door occupancy"]
    assert render(occupancy["value_template"], count) == state
    assert state == occupancy.get("payload_on", "ON") or state == occupancy.get("payload_off", "OFF")


def test_diagnostics_read_the_stats_payload(configs):
    payload = stats_payload(device="porch", pipeline={"fps_in": 9.5, "fps_out": 9.25}, mqtt={"spool_depth": 4})
    assert render(configs["fps"]["value_template"], payload) == "9.25"
    assert render(configs["unsent messages"]["value_template"], payload) == "4"
    temperature = json.loads(payload)["cpu_temp_c"]
    assert render(configs["CPU temperature"]["value_template"], payload) == str(temperature)
