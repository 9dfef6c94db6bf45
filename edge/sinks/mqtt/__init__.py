"""The headless MQTT publisher: settings, the broker session, the on-disk spool, the pump between
them, payloads, and the sink the pipeline writes to. See ``sink`` for the path of a message."""

from edge.sinks.mqtt.settings import (CREDENTIAL_NAME, DEFAULT_QUEUE_MAX, DEFAULT_SPOOL_MAX, PASSWORD_ENV, MqttSettings,
                                      PublishMode)
from edge.sinks.mqtt.session import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED
from edge.sinks.mqtt.sink import MqttSink

__all__ = ["CREDENTIAL_NAME", "DEFAULT_QUEUE_MAX", "DEFAULT_SPOOL_MAX", "PASSWORD_ENV", "MqttSettings", "PublishMode",
           "STATUS_OFFLINE", "STATUS_ONLINE", "STATUS_STOPPED", "MqttSink"]
