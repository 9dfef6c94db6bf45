"""Detections to an MQTT broker, headless and unattended: nothing is lost when the broker or network goes.

Topics under ``<prefix>/<device>/``:

* ``detections`` — versioned JSON per frame (or per change, or per interval), with a per-device ``seq``
  that survives restarts, so a subscriber can see a gap;
* ``status`` — retained ``online`` on every connect, ``offline`` as the last will, ``stopped`` on close;
* ``stats`` — the camera loop's periodic snapshot plus the publisher's own counters;
* ``snapshot`` — optional retained JPEG of the annotated frame when a chosen class is seen.

Path of a detection: ``write()`` (camera thread) only appends to a bounded in-memory deque; the
publisher thread builds the payload, commits it to the on-disk spool (``edge.mqtt_spool``) and
publishes from the spool; a message leaves the spool only when the broker acknowledges it
(``on_publish``). Messages produced while disconnected, or in flight at a crash, go out after the
reconnect or restart, in order. QoS 1 means duplicates are possible; ``seq`` lets a subscriber drop them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from edge.detections import Detections
from edge.errors import EdgeError
from edge.mqtt_payloads import detections_payload, label_counts, snapshot_jpeg, stats_payload
from edge.mqtt_spool import Spool
from edge.sources import Frame

log = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://localhost:1883"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_PREFIX = "edge-yolo"
DEFAULT_QOS = 1
QOS_LEVELS = (0, 1, 2)
DEFAULT_SPOOL_MAX = 100_000  # ~1 KB each: ~100 MB on disk, hours of outage at camera rates
DEFAULT_QUEUE_MAX = 10_000  # frames waiting in memory for the publisher thread
DEFAULT_KEEPALIVE_S = 60
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 60.0  # a broker back after a long outage is found within a minute
SNAPSHOT_MIN_INTERVAL_S = 1.0  # JPEGs are big: at most one per second
INFLIGHT_WINDOW = 100  # unacknowledged messages handed to paho at once; keeps order and memory bounded
BATCH_MAX = 500  # messages committed to the spool per transaction
IDLE_WAIT_S = 0.5
ACK_TIMEOUT_S = 30.0  # connected but no ack for this long: hand the spool to paho again from the oldest
# On close, how long the broker gets to acknowledge what is spooled; the rest stays on disk for the
# next run. Short, so a SIGTERM still ends the process within 2 s.
CLOSE_DRAIN_S = 1.0
CLOSE_STATUS_WAIT_S = 0.5
ERROR_PAUSE_S = 1.0
PASSWORD_ENV = "EDGE_YOLO_MQTT_PASSWORD"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # systemd LoadCredential=
CREDENTIAL_NAME = "mqtt-password"
STATE_ENV = "STATE_DIRECTORY"  # systemd StateDirectory=
DEFAULT_STATE_DIR = Path("~/.local/state/edge-yolo")
PUBLISH_EVERY, PUBLISH_CHANGE, PUBLISH_INTERVAL = "every", "change", "interval"
PUBLISH_FORMS = "every, change or interval:SECONDS (e.g. interval:5)"
STATUS_ONLINE, STATUS_OFFLINE, STATUS_STOPPED = "online", "offline", "stopped"
TOPIC_WILDCARDS = ("+", "#")
_AUTH_REFUSALS = ("bad user name or password", "not authorized")
_PIP_HINT = "pip install 'edge-yolo[mqtt]' (or pip install paho-mqtt)"

# Settings field -> the command-line option that sets it, so errors name what the user typed.
OPTION_OF = {
    "url": "--mqtt", "prefix": "--mqtt-prefix", "device_id": "--device-id", "publish": "--publish",
    "snapshot_classes": "--snapshot", "username": "--mqtt-username", "password_file": "--mqtt-password-file",
    "tls_ca": "--mqtt-ca", "tls_cert": "--mqtt-cert", "tls_key": "--mqtt-key", "state_dir": "--state-dir",
    "spool_max": "--spool-max",
}


def _import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgeError(f"--mqtt needs the paho-mqtt package: {_PIP_HINT}") from None
    return mqtt


@dataclass(frozen=True)
class PublishMode:
    """When a frame's detections are published: every frame, on a change of label counts, or per interval."""

    kind: str
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> PublishMode:
        kind, _, rest = str(text).strip().partition(":")
        if kind in (PUBLISH_EVERY, PUBLISH_CHANGE) and not rest:
            return cls(kind)
        if kind == PUBLISH_INTERVAL and rest:
            try:
                seconds = float(rest)
            except ValueError:
                seconds = -1.0
            if seconds > 0:
                return cls(kind, seconds)
        raise EdgeError(f"--publish {text!r} is not a publish mode; use {PUBLISH_FORMS}")


@dataclass(frozen=True)
class MqttSettings:
    """Everything the publisher needs; checked on construction, every error names its option.

    The password never comes from the command line: ``password`` (a config file), else
    ``password_file``, else ``$EDGE_YOLO_MQTT_PASSWORD``, else ``$CREDENTIALS_DIRECTORY/mqtt-password``.
    """

    url: str = DEFAULT_URL
    prefix: str = DEFAULT_PREFIX
    device_id: str = field(default_factory=socket.gethostname)
    client_id: str | None = None  # default: edge-yolo-<device>-<random>, unique per run
    qos: int = DEFAULT_QOS
    publish: str = PUBLISH_EVERY
    snapshot_classes: frozenset[int] = frozenset()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    state_dir: str | None = None  # default: $STATE_DIRECTORY, else ~/.local/state/edge-yolo
    spool_max: int = DEFAULT_SPOOL_MAX
    keepalive: int = DEFAULT_KEEPALIVE_S
    model: str = ""
    reconnect_min_s: float = RECONNECT_MIN_S
    reconnect_max_s: float = RECONNECT_MAX_S
    queue_max: int = DEFAULT_QUEUE_MAX
    snapshot_interval_s: float = SNAPSHOT_MIN_INTERVAL_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshot_classes", frozenset(int(c) for c in self.snapshot_classes))
        _ = self.endpoint, self.publish_mode  # parsed now, so a bad value fails at construction
        _check_topic_level("device_id", self.device_id, allow_slash=False)
        _check_topic_level("prefix", self.prefix, allow_slash=True)
        if self.qos not in QOS_LEVELS:
            raise EdgeError(f"MQTT qos must be one of {QOS_LEVELS}, received {self.qos}")
        for name, low in (("spool_max", 1), ("queue_max", 1), ("keepalive", 1)):
            if getattr(self, name) < low:
                raise EdgeError(f"{OPTION_OF.get(name, name)} must be at least {low}, received {getattr(self, name)}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise EdgeError(f"reconnect delays must satisfy 0 < min <= max, received {self.reconnect_min_s}, {self.reconnect_max_s}")
        tls_given = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(self, name)]
        if tls_given and not self.endpoint[2]:
            raise EdgeError(f"{OPTION_OF[tls_given[0]]} needs an mqtts:// URL, received --mqtt {self.url}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise EdgeError("--mqtt-cert and --mqtt-key go together: give both (client certificate and its key) or neither")
        if (self.password is not None or self.password_file) and not self.username:
            raise EdgeError("a broker password needs a user name: add --mqtt-username")

    @property
    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) from the URL."""
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
            raise EdgeError(f"--mqtt {self.url!r} is not a broker URL; use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        if parts.username or parts.password:
            raise EdgeError("--mqtt URL must not hold credentials: use --mqtt-username and "
                            f"--mqtt-password-file, ${PASSWORD_ENV} or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")
        return parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"

    @property
    def publish_mode(self) -> PublishMode:
        return PublishMode.parse(self.publish)

    def topic(self, leaf: str) -> str:
        return f"{self.prefix}/{self.device_id}/{leaf}"

    def resolve_password(self) -> str | None:
        """The password from the first source that has one; files lose one trailing newline."""
        if not self.username:
            return None
        if self.password is not None:
            return self.password
        if self.password_file:
            secret = _read_secret(Path(self.password_file), "--mqtt-password-file")
            if not secret:
                raise EdgeError(f"--mqtt-password-file {self.password_file} is empty; put the password in it, alone on one line")
            return secret
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        credentials = os.environ.get(CREDENTIALS_ENV)
        if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
            # empty means none: the service unit sets a lone newline when no password file exists
            return _read_secret(Path(credentials) / CREDENTIAL_NAME, f"${CREDENTIALS_ENV}/{CREDENTIAL_NAME}") or None
        return None

    def resolve_state_dir(self) -> Path:
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        systemd = os.environ.get(STATE_ENV)
        if systemd:
            return Path(systemd.split(":")[0])  # several StateDirectory= entries come colon-separated
        return DEFAULT_STATE_DIR.expanduser()


def _check_topic_level(name: str, value: str, allow_slash: bool) -> None:
    option = OPTION_OF[name]
    bad = [c for c in TOPIC_WILDCARDS + (() if allow_slash else ("/",)) if c in value]
    if not value or bad or value.startswith("/") or value.endswith("/") or "\0" in value:
        allowed = "letters, digits, - and _" + (" (levels separated by /)" if allow_slash else "")
        raise EdgeError(f"{option} {value!r} cannot be used in an MQTT topic; use {allowed}")


def _read_secret(path: Path, option: str) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EdgeError(f"{option} {path}: file not found") from None
    except OSError as exc:
        raise EdgeError(f"{option} {path}: cannot read it: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text


@dataclass(frozen=True)
class _Item:
    """A frame accepted by write(): what the publisher thread needs to build its messages."""

    seq: int | None  # None: snapshot only (the publish mode skipped the detections)
    frame_index: int
    capture_time: float
    wh: tuple[int, int]
    dets: Detections
    snapshot_image: Any  # np.ndarray or None


class MqttSink:
    """The MQTT sink: ``write()``, ``stats()`` and ``close()`` never wait on the network.

    The frame's image is kept by reference until its snapshot is encoded: sources hand out a new
    array per frame, which must not be modified after write().
    """

    def __init__(self, settings: MqttSettings, names: Sequence[str]):
        mqtt = _import_paho()
        self.settings = settings
        self.names = tuple(names)
        self._mode = settings.publish_mode
        self._host, self._port, self._tls = settings.endpoint
        self._where = f"{'mqtts' if self._tls else 'mqtt'}://{self._host}:{self._port}"
        password = settings.resolve_password()
        self.state_dir = settings.resolve_state_dir()
        self._spool = Spool(self.state_dir, settings.spool_max)
        try:
            self._client = self._make_client(mqtt, password)
        except BaseException:
            self._spool.close()
            raise
        self._mqtt = mqtt
        self._topic_detections = settings.topic("detections")
        self._topic_status = settings.topic("status")
        self._topic_stats = settings.topic("stats")
        self._topic_snapshot = settings.topic("snapshot")
        self._seq = self._spool.last_seq(settings.device_id)
        # camera thread -> publisher thread
        self._pending: deque[_Item] = deque()
        self._stats_pending: dict | None = None
        self._wake = threading.Event()
        self._accepted = 0
        self._persisted = 0
        self._last_counts: tuple | None = None
        self._last_publish_t = float("-inf")
        self._last_snapshot_t = float("-inf")
        # network thread -> publisher thread
        self._acks: deque[int] = deque()
        self._connected = False
        self._ever_connected = False
        self._refusal_logged: str | None = None
        self._unreachable_logged = False
        # publisher thread only
        self._inflight: dict[int, int] = {}  # paho mid -> spool row id
        self._cursor = 0  # highest spool id handed to paho
        self._last_progress = time.monotonic()
        self._dropping_spool = False
        self._dropping_queue = False
        self._failing_disk = False
        self.counters = {"acked": 0, "queue_dropped": 0, "spool_errors": 0, "reconnects": 0, "refused": 0,
                         "snapshots": 0, "snapshots_skipped": 0}
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
        if self._spool.depth:
            log.info("MQTT spool %s holds %d messages from an earlier run; they go out first", self._spool.path, self._spool.depth)
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        self._client.connect_async(self._host, self._port, settings.keepalive)
        self._client.loop_start()

    def _make_client(self, mqtt, password: str | None):
        settings = self.settings
        client_id = settings.client_id or f"edge-yolo-{settings.device_id}-{secrets.token_hex(3)}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        if settings.username:
            client.username_pw_set(settings.username, password)
        if self._tls:
            for name in ("tls_ca", "tls_cert", "tls_key"):
                value = getattr(settings, name)
                if value and not Path(value).is_file():
                    raise EdgeError(f"{OPTION_OF[name]} {value}: file not found")
            try:
                client.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise EdgeError(f"cannot load the TLS files (--mqtt-ca {settings.tls_ca}, --mqtt-cert {settings.tls_cert}, "
                                f"--mqtt-key {settings.tls_key}): {exc}") from None
        client.will_set(settings.topic("status"), STATUS_OFFLINE, qos=settings.qos, retain=True)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        client.max_inflight_messages_set(INFLIGHT_WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # --- the sink interface (camera thread) --------------------------------------------------------

    def write(self, frame: Frame, dets: Detections) -> None:
        """Hand the frame's detections to the publisher thread: a deque append and a thread wake-up, no I/O."""
        if self._closed:
            raise RuntimeError("MqttSink.write() after close()")
        now = time.monotonic()
        publish = True
        if self._mode.kind == PUBLISH_CHANGE:
            counts = label_counts(dets)
            publish = counts != self._last_counts
            if publish:
                self._last_counts = counts
        elif self._mode.kind == PUBLISH_INTERVAL:
            publish = now - self._last_publish_t >= self._mode.interval_s
            if publish:
                self._last_publish_t = now
        snapshot = None
        wanted = self.settings.snapshot_classes
        if wanted and now - self._last_snapshot_t >= self.settings.snapshot_interval_s and len(dets):
            if not wanted.isdisjoint(dets.class_id.tolist()):
                snapshot = frame.image
                self._last_snapshot_t = now
        if not publish and snapshot is None:
            return
        seq = None
        if publish:
            self._seq += 1  # taken even if the frame is dropped below: the gap shows the loss downstream
            seq = self._seq
        if len(self._pending) >= self.settings.queue_max:
            self.counters["queue_dropped"] += 1
            if not self._dropping_queue:
                self._dropping_queue = True
                log.warning("MQTT publisher is %d frames behind; dropping new frames until it catches up "
                            "(the state dir's disk may be too slow)", self.settings.queue_max)
            return
        self._dropping_queue = False
        self._pending.append(_Item(seq, frame.index, frame.time, frame.wh, dets, snapshot))
        self._accepted += 1
        self._wake.set()

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        """Publish the pipeline's stats with ours; while disconnected only the newest is kept."""
        self._stats_pending = dict(snapshot)
        self._wake.set()

    def close(self) -> None:
        """Commit what is queued, give the broker up to CLOSE_DRAIN_S to ack the spool, say ``stopped``."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + CLOSE_DRAIN_S
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self._connected:
            info = self._client.publish(self._topic_status, STATUS_STOPPED, qos=self.settings.qos, retain=True)
            try:
                info.wait_for_publish(CLOSE_STATUS_WAIT_S)
            except (RuntimeError, ValueError):
                pass  # disconnected meanwhile: the retained status stays as the broker last had it
        self._client.disconnect()
        self._client.loop_stop()
        left = self._spool.depth
        self._spool.close()
        if left:
            log.info("MQTT: %d messages stay spooled in %s for the next run", left, self._spool.path)

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- introspection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def backlog(self) -> int:
        """Frames accepted by write() and not yet committed to the spool."""
        return len(self._pending)

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def snapshot_counters(self) -> dict[str, Any]:
        """The publisher's counters, as published under ``mqtt`` on the stats topic."""
        return {
            "connected": self._connected,
            "spool_depth": self._spool.depth,
            "spool_dropped": self._spool.dropped,
            **self.counters,
        }

    def wait_spooled(self, timeout: float) -> bool:
        """Wait until every frame accepted by write() is committed to disk (or lost to a disk error)."""
        return _wait_until(lambda: self._persisted >= self._accepted, timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything accepted so far."""
        return _wait_until(lambda: self._persisted >= self._accepted and self._spool.depth == 0, timeout)

    # --- paho callbacks (network thread) ------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters["refused"] += 1
            reason = str(reason_code)
            if reason != self._refusal_logged:
                self._refusal_logged = reason
                if reason.lower() in _AUTH_REFUSALS:
                    fix = (f"check --mqtt-username and the password ([mqtt] password, --mqtt-password-file, ${PASSWORD_ENV} "
                           f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME})")
                else:
                    fix = "check the broker's log and settings"
                log.error("MQTT broker %s refused the connection: %s; %s; retrying with backoff up to %g s",
                          self._where, reason, fix, self.settings.reconnect_max_s)
            return
        self._refusal_logged = None
        self._unreachable_logged = False
        client.publish(self._topic_status, STATUS_ONLINE, qos=self.settings.qos, retain=True)
        if self._ever_connected:
            self.counters["reconnects"] += 1
            log.info("MQTT reconnected to %s; %d messages spooled", self._where, self._spool.depth)
        else:
            log.info("MQTT connected to %s, publishing under %s/%s", self._where, self.settings.prefix, self.settings.device_id)
        self._ever_connected = True
        self._last_progress = time.monotonic()
        self._connected = True
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._unreachable_logged:
            self._unreachable_logged = True
            error = sys.exc_info()[1]  # paho calls this inside its `except OSError`
            log.warning("cannot reach MQTT broker %s (%s)%s; retrying with backoff up to %g s, messages are spooled in %s",
                        self._where, error or "connection failed",
                        "; check --mqtt-ca and the broker's certificate" if self._tls else "",
                        self.settings.reconnect_max_s, self._spool.path)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected and not self._closing:
            log.warning("MQTT connection to %s lost (%s); spooling and reconnecting", self._where, reason_code)
            self._unreachable_logged = True  # one line per outage, not two
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append(mid)
        self._wake.set()

    # --- publisher thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._persist_pending()
                self._settle_acks()
                self._send_stats()
                self._send_spooled()
                self._check_ack_timeout()
            except Exception as exc:  # a bug or a dead disk must not stop the publisher for good
                log.error("MQTT publisher: %s: %s", type(exc).__name__, exc)
                time.sleep(ERROR_PAUSE_S)
            if self._closing and not self._pending and (
                not self._connected or self._spool.depth == 0 or time.monotonic() > self._close_deadline
            ):
                self._settle_acks()
                return

    def _persist_pending(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(BATCH_MAX, len(self._pending)))]
            rows = []
            last_seq = None
            for item in batch:
                if item.snapshot_image is not None:
                    self._send_snapshot(item)
                if item.seq is not None:
                    last_seq = item.seq
                    rows.append((self._topic_detections, detections_payload(
                        seq=item.seq, device=self.settings.device_id, model=self.settings.model,
                        frame_index=item.frame_index, capture_time=item.capture_time, wh=item.wh,
                        dets=item.dets, names=self.names)))
            try:
                dropped = self._spool.append(rows, self.settings.device_id, last_seq) if rows else 0
            except sqlite3.Error as exc:
                self.counters["spool_errors"] += len(rows)
                if not self._failing_disk:
                    self._failing_disk = True
                    log.error("cannot write the MQTT spool %s (%s); messages are being lost until it works again",
                              self._spool.path, exc)
            else:
                if self._failing_disk:
                    self._failing_disk = False
                    log.info("MQTT spool %s writable again", self._spool.path)
                if dropped and not self._dropping_spool:
                    self._dropping_spool = True
                    log.warning("MQTT spool full (--spool-max %d): dropping the oldest messages, counted as "
                                "spool_dropped in stats", self.settings.spool_max)
                elif not dropped and self._dropping_spool:
                    self._dropping_spool = False
                    log.info("MQTT spool below its bound again after dropping %d messages", self._spool.dropped)
            self._persisted += len(batch)

    def _send_snapshot(self, item: _Item) -> None:
        if not self._connected:
            self.counters["snapshots_skipped"] += 1
            return
        jpeg = snapshot_jpeg(item.snapshot_image, item.dets, self.names)
        if jpeg is None:
            self.counters["snapshots_skipped"] += 1
            return
        self._client.publish(self._topic_snapshot, jpeg, qos=self.settings.qos, retain=True)
        self.counters["snapshots"] += 1

    def _settle_acks(self) -> None:
        done = []
        while self._acks:
            row_id = self._inflight.pop(self._acks.popleft(), None)
            if row_id is not None:  # None: status, stats and snapshot messages are not spooled
                done.append(row_id)
        if done:
            self._spool.remove(done)
            self.counters["acked"] += len(done)
            self._last_progress = time.monotonic()

    def _send_stats(self) -> None:
        pending = self._stats_pending
        if pending is None or not self._connected:
            return
        self._stats_pending = None
        payload = stats_payload(device=self.settings.device_id, pipeline=pending, mqtt=self.snapshot_counters())
        self._client.publish(self._topic_stats, payload, qos=self.settings.qos)

    def _send_spooled(self) -> None:
        room = INFLIGHT_WINDOW - len(self._inflight)
        if not self._connected or room <= 0:
            return
        if not self._inflight:
            self._last_progress = time.monotonic()
        for row in self._spool.after(self._cursor, room):
            info = self._client.publish(row.topic, row.payload, qos=self.settings.qos)
            if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                break  # paho refused it for now; retried from the same row on the next pass
            # NO_CONN: paho keeps a QoS>0 message and sends it after the reconnect
            self._inflight[info.mid] = row.id
            self._cursor = row.id

    def _check_ack_timeout(self) -> None:
        if self._connected and self._inflight and time.monotonic() - self._last_progress > ACK_TIMEOUT_S:
            log.warning("MQTT broker %s acknowledged nothing for %g s; sending the %d spooled messages again",
                        self._where, ACK_TIMEOUT_S, self._spool.depth)
            self._inflight.clear()
            self._cursor = 0
            self._last_progress = time.monotonic()
            self._wake.set()


def _wait_until(condition, timeout: float, poll_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


# --- command-line integration -------------------------------------------------------------------------

_NEEDS_URL = [("device_id", "--device-id"), ("mqtt_prefix", "--mqtt-prefix"), ("publish", "--publish"),
              ("snapshot", "--snapshot"), ("mqtt_username", "--mqtt-username"),
              ("mqtt_password_file", "--mqtt-password-file"), ("mqtt_password", "[mqtt] password"), ("mqtt_ca", "--mqtt-ca"), ("mqtt_cert", "--mqtt-cert"),
              ("mqtt_key", "--mqtt-key"), ("state_dir", "--state-dir"), ("spool_max", "--spool-max")]


class _RefusedOnCommandLine(argparse.Action):
    """``--mqtt-password``: settable from a config file (``[mqtt] password``), refused on the command line.

    A password in argv shows in ``ps`` and shell history. Declaring the option also stops argparse from
    taking ``--mqtt-password SECRET`` as an abbreviation of ``--mqtt-password-file`` (and echoing SECRET
    in a file-not-found error).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted on the command line (it would show in ps and shell history); "
                     f"use [mqtt] password in the --config file, --mqtt-password-file, ${PASSWORD_ENV} "
                     f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")


def add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    """The MQTT options of edge-detect. The password never comes from the command line (see MqttSettings)."""
    group = parser.add_argument_group("MQTT publishing (needs paho-mqtt)")
    group.add_argument("--mqtt", metavar="URL", default=None,
                       help=f"publish detections to this broker: mqtt://HOST[:{DEFAULT_PORTS['mqtt']}] or mqtts://HOST[:{DEFAULT_PORTS['mqtts']}]")
    group.add_argument("--device-id", metavar="ID", default=None, help="this device's topic level (default: the host name)")
    group.add_argument("--mqtt-prefix", metavar="PREFIX", default=None, help=f"topic prefix (default: {DEFAULT_PREFIX})")
    group.add_argument("--publish", metavar="MODE", default=None,
                       help=f"when to publish detections: {PUBLISH_FORMS}; 'change' when the count per label changes (default: every)")
    group.add_argument("--snapshot", metavar="CLASSES", nargs="+", default=None,
                       help=f"publish an annotated JPEG (at most one per {SNAPSHOT_MIN_INTERVAL_S:g} s) when one of these class ids or names is seen")
    group.add_argument("--mqtt-username", metavar="USER", default=None, help="broker user name")
    group.add_argument("--mqtt-password-file", metavar="PATH", default=None,
                       help=f"file holding the broker password (else [mqtt] password in the --config file, ${PASSWORD_ENV} "
                            f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME})")
    group.add_argument("--mqtt-password", action=_RefusedOnCommandLine, default=None, help=argparse.SUPPRESS)
    group.add_argument("--mqtt-ca", metavar="PATH", default=None, help="CA certificate to verify an mqtts:// broker (default: the system's)")
    group.add_argument("--mqtt-cert", metavar="PATH", default=None, help="client certificate for mqtts://, with --mqtt-key")
    group.add_argument("--mqtt-key", metavar="PATH", default=None, help="client certificate key for mqtts://")
    group.add_argument("--state-dir", metavar="DIR", default=None,
                       help=f"where unsent messages and the sequence number are kept (default: ${STATE_ENV}, else {DEFAULT_STATE_DIR})")
    group.add_argument("--spool-max", metavar="N", type=int, default=None,
                       help=f"most unsent messages kept on disk; beyond it the oldest are dropped and counted (default: {DEFAULT_SPOOL_MAX})")


def mqtt_sink_from_args(args: argparse.Namespace, names: Sequence[str], model_name: str) -> MqttSink | None:
    """An MqttSink for the parsed options, or None without --mqtt; EdgeError naming the option on a bad value."""
    url = getattr(args, "mqtt", None)
    if not url:
        given = [option for dest, option in _NEEDS_URL if getattr(args, dest, None) is not None]
        if given:
            raise EdgeError(f"{given[0]} needs --mqtt URL: add --mqtt mqtt://HOST or drop {given[0]}")
        return None
    snapshot_classes: frozenset[int] = frozenset()
    if args.snapshot:
        from edge.metadata import class_ids_from

        try:
            snapshot_classes = frozenset(class_ids_from(args.snapshot, names))
        except EdgeError as exc:
            raise EdgeError(f"--snapshot: {exc}") from None
    settings = MqttSettings(
        url=url,
        prefix=args.mqtt_prefix if args.mqtt_prefix is not None else DEFAULT_PREFIX,
        device_id=args.device_id if args.device_id is not None else socket.gethostname(),
        publish=args.publish if args.publish is not None else PUBLISH_EVERY,
        snapshot_classes=snapshot_classes,
        username=args.mqtt_username,
        password=getattr(args, "mqtt_password", None),
        password_file=args.mqtt_password_file,
        tls_ca=args.mqtt_ca,
        tls_cert=args.mqtt_cert,
        tls_key=args.mqtt_key,
        state_dir=args.state_dir,
        spool_max=args.spool_max if args.spool_max is not None else DEFAULT_SPOOL_MAX,
        model=model_name,
    )
    return MqttSink(settings, names)
