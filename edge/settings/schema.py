"""Which sections make up each command's settings, in the order they are documented."""

from __future__ import annotations

from edge.detect.detector import DetectSettings
from edge.model.settings import ModelSettings
from edge.service.metrics import MetricsSettings
from edge.service.settings import RunSettings
from edge.sinks.mqtt.discovery import HomeAssistantSettings
from edge.sinks.mqtt.settings import MqttSettings
from edge.sinks.settings import OutputSettings
from edge.sources.settings import SourceSettings
from edge.track.settings import EventSettings, TrackSettings

# edge-detect: what to run, on what, how fast, and where the results go
DETECT_SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "detect": DetectSettings,
    "source": SourceSettings,
    "run": RunSettings,
    "output": OutputSettings,
    "mqtt": MqttSettings,
    "track": TrackSettings,
    "events": EventSettings,
    "homeassistant": HomeAssistantSettings,
    "metrics": MetricsSettings,
}
