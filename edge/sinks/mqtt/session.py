"""The broker connection: a paho client that connects in the background and says what the broker did.

paho's network thread connects, reconnects with capped backoff and delivers acks; this module
only turns its callbacks into state (``connected``, the ``acks`` queue) and log lines, each
refusal or outage logged once, not once per retry. The retained ``status`` topic carries
``online`` on every connect and ``offline`` as the last will, so a subscriber sees a dead device.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

from edge.errors import EdgeError
from edge.sinks.mqtt.settings import PASSWORD_SOURCES, MqttSettings

log = logging.getLogger(__name__)

INFLIGHT_WINDOW = 100  # unacknowledged messages handed to paho at once; keeps order and memory bounded
CLOSE_STATUS_WAIT_S = 0.5
STATUS_ONLINE, STATUS_OFFLINE, STATUS_STOPPED = "online", "offline", "stopped"
_AUTH_REFUSALS = ("bad user name or password", "not authorized")
_PIP_HINT = "pip install 'edge-yolo[mqtt]' (or pip install paho-mqtt)"


def import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgeError(f"--mqtt needs the paho-mqtt package: {_PIP_HINT}") from None
    return mqtt


class Session:
    """One paho client for the run. Callbacks run on paho's network thread; ``wake`` tells the publisher."""

    def __init__(self, settings: MqttSettings, password: str | None, spool_path: Path,
                 backlog: Callable[[], int], wake: Callable[[], None], announce: bool = True):
        """``announce``: keep the status topic (last will, online, stopped); off for a one-off maintenance client."""
        self.mqtt = import_paho()
        self.settings = settings
        self.host, self.port, self.tls = settings.endpoint
        self.where = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
        self.status_topic = settings.topic("status")
        self._spool_path = spool_path
        self._backlog = backlog
        self._wake = wake
        self.acks: deque[int] = deque()  # message ids the broker acknowledged, for the publisher thread
        self.connected = False
        self.connected_at = 0.0  # monotonic time of the latest connect
        self.counters = {"reconnects": 0, "refused": 0}
        self._ever_connected = False
        self._refusal_logged: str | None = None
        self._unreachable_logged = False
        self._closing = False
        self.announce = announce
        self.client = self._make_client(password)

    def _make_client(self, password: str | None):
        mqtt, settings = self.mqtt, self.settings
        client_id = settings.client_id or f"edge-yolo-{settings.device_id}-{secrets.token_hex(3)}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        if settings.username:
            client.username_pw_set(settings.username, password)
        if self.tls:
            try:
                client.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise EdgeError(f"cannot load the TLS files (--mqtt-ca {settings.tls_ca}, --mqtt-cert {settings.tls_cert}, "
                                f"--mqtt-key {settings.tls_key}): {exc}") from None
        if self.announce:
            client.will_set(self.status_topic, STATUS_OFFLINE, qos=settings.qos, retain=True)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background: a broker that is down now is retried, never waited for."""
        self.client.connect_async(self.host, self.port, self.settings.keepalive)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False):
        """Hand one message to paho (queued by it while disconnected, for QoS > 0); its MQTTMessageInfo."""
        return self.client.publish(topic, payload, qos=self.settings.qos, retain=retain)

    def stop(self) -> None:
        """Say ``stopped`` on the status topic if connected, then disconnect and end paho's thread."""
        self._closing = True
        if self.connected and self.announce:
            info = self.publish(self.status_topic, STATUS_STOPPED, retain=True)
            try:
                info.wait_for_publish(CLOSE_STATUS_WAIT_S)
            except (RuntimeError, ValueError):
                pass  # disconnected meanwhile: the retained status stays as the broker last had it
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (network thread) ------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters["refused"] += 1
            reason = str(reason_code)
            if reason != self._refusal_logged:
                self._refusal_logged = reason
                if reason.lower() in _AUTH_REFUSALS:
                    fix = f"check --mqtt-username and the password ({PASSWORD_SOURCES})"
                else:
                    fix = "check the broker's log and settings"
                log.error("MQTT broker %s refused the connection: %s; %s; retrying with backoff up to %g s",
                          self.where, reason, fix, self.settings.reconnect_max_s)
            return
        self._refusal_logged = None
        self._unreachable_logged = False
        if self.announce:
            client.publish(self.status_topic, STATUS_ONLINE, qos=self.settings.qos, retain=True)
        if self._ever_connected:
            self.counters["reconnects"] += 1
            log.info("MQTT reconnected to %s; %d messages spooled", self.where, self._backlog())
        else:
            log.info("MQTT connected to %s, publishing under %s/%s", self.where, self.settings.prefix, self.settings.device_id)
        self._ever_connected = True
        self.connected_at = time.monotonic()
        self.connected = True
        self._wake()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._unreachable_logged:
            self._unreachable_logged = True
            error = sys.exc_info()[1]  # paho calls this inside its `except OSError`
            log.warning("cannot reach MQTT broker %s (%s)%s; retrying with backoff up to %g s, messages are spooled in %s",
                        self.where, error or "connection failed",
                        "; check --mqtt-ca and the broker's certificate" if self.tls else "",
                        self.settings.reconnect_max_s, self._spool_path)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected and not self._closing:
            log.warning("MQTT connection to %s lost (%s); spooling and reconnecting", self.where, reason_code)
            self._unreachable_logged = True  # one line per outage, not two
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acks.append(mid)
        self._wake()
