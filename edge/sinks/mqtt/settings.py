"""What the MQTT publisher is told: broker, topics, publish mode, credentials and where it keeps state.

Checked on construction, every error naming the option that set it. The password never comes from
the command line: see ``MqttSettings.resolve_password``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence
from urllib.parse import urlsplit

from edge.errors import EdgeError, InvalidSetting
from edge.fields import check_fields, setting
from edge.model.metadata import class_ids_from
from edge.redact import redact_url

DEFAULT_URL = "mqtt://localhost:1883"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
DEFAULT_PREFIX = "edge-yolo"
DEFAULT_QOS = 1
QOS_LEVELS = (0, 1, 2)
DEFAULT_SPOOL_MAX = 100_000  # ~1 KB each: ~100 MB on disk, hours of outage at camera rates
DEFAULT_QUEUE_MAX = 10_000  # frames waiting in memory for the publisher thread
DEFAULT_SPOOL_MEMORY_MAX = 10_000  # ~1 KB each: ~10 MB of RAM while the disk cannot take them
DEFAULT_KEEPALIVE_S = 60
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 60.0  # a broker back after a long outage is found within a minute
SNAPSHOT_MIN_INTERVAL_S = 1.0  # JPEGs are big: at most one per second
PASSWORD_ENV = "EDGE_YOLO_MQTT_PASSWORD"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # systemd LoadCredential=
CREDENTIAL_NAME = "mqtt-password"
STATE_ENV = "STATE_DIRECTORY"  # systemd StateDirectory=
DEFAULT_STATE_DIR = Path("~/.local/state/edge-yolo")
PUBLISH_EVERY, PUBLISH_CHANGE, PUBLISH_INTERVAL = "every", "change", "interval"
PUBLISH_EVENTS = "events"  # tracked objects' new / update / end events instead of frames (edge.track)
PUBLISH_FORMS = "every, change, events or interval:SECONDS (e.g. interval:5)"
TOPIC_WILDCARDS = ("+", "#")
PASSWORD_SOURCES = (f"[mqtt] password in the --config file, --mqtt-password-file, ${PASSWORD_ENV} "
                    f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")

MAX_SPOOL = 10_000_000
PASSWORD_SOURCES_AFTER_FILE = f"[mqtt] password in the --config file, ${PASSWORD_ENV} or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}"


def publish_mode_text(text: str) -> str:
    """``text`` if it is a publish mode; ValueError naming the forms otherwise."""
    PublishMode.parse(text)
    return text


@dataclass(frozen=True)
class PublishMode:
    """When a frame's detections are published: every frame, on a change of label counts, per interval,
    or never, with tracked objects' events instead (``events``)."""

    kind: str
    interval_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> PublishMode:
        kind, _, rest = str(text).strip().partition(":")
        if kind in (PUBLISH_EVERY, PUBLISH_CHANGE, PUBLISH_EVENTS) and not rest:
            return cls(kind)
        if kind == PUBLISH_INTERVAL and rest:
            try:
                seconds = float(rest)
            except ValueError:
                seconds = -1.0
            if seconds > 0:
                return cls(kind, seconds)
        raise ValueError(f"{text!r} is not a publish mode; use {PUBLISH_FORMS}")


@dataclass(frozen=True)
class MqttSettings:
    """Everything the publisher needs; checked on construction (InvalidSetting naming the field).

    The password never comes from the command line: ``password`` (a config file), else
    ``password_file``, else ``$EDGE_YOLO_MQTT_PASSWORD``, else ``$CREDENTIALS_DIRECTORY/mqtt-password``.
    """

    TABLE: ClassVar[str | None] = "mqtt"
    FLAG_PREFIX: ClassVar[str] = "mqtt-"
    TITLE: ClassVar[str] = "MQTT publishing (needs paho-mqtt)"
    ENABLED_BY: ClassVar[str] = "url"  # without a broker URL nothing is published, and no other MQTT key may be set

    url: str = setting(DEFAULT_URL, flag="mqtt", metavar="URL", default_text="unset: nothing is published",
                       help=f"publish detections to this broker: mqtt://HOST[:{DEFAULT_PORTS['mqtt']}] "
                            f"or mqtts://HOST[:{DEFAULT_PORTS['mqtts']}]", example="mqtt://broker.local:1883")
    prefix: str = setting(DEFAULT_PREFIX, help="topic prefix", metavar="PREFIX")
    device_id: str = setting(default_factory=socket.gethostname, flag="device-id", metavar="ID",
                             help="this device's topic level", default_text="the host name", example="camera1")
    publish: str = setting(PUBLISH_EVERY, flag="publish", metavar="MODE", parse=publish_mode_text,
                           help=f"when to publish detections: {PUBLISH_FORMS}; 'change' when the count per label changes; "
                                f"'{PUBLISH_EVENTS}': tracked objects' events instead of frames")
    snapshot: tuple[str | int, ...] = setting((), flag="snapshot", metavar="CLASS", example=("person",),
                                              help=f"publish an annotated JPEG (at most one per {SNAPSHOT_MIN_INTERVAL_S:g} s) "
                                                   "when one of these class ids or names is seen")
    username: str | None = setting(None, help="broker user name", metavar="USER", example="edge-detect")
    password: str | None = setting(None, help="the broker password", secret=True, cli=False, example="...",
                                   note="Better in /etc/edge-detect/mqtt-password (root only, chmod 600), which the "
                                        "service reads as a systemd credential: this file is readable by every local user.")
    password_file: str | None = setting(None, metavar="PATH", example="/etc/edge-detect/mqtt-password",
                                        help=f"file holding the broker password (else {PASSWORD_SOURCES_AFTER_FILE})")
    tls_ca: str | None = setting(None, key="ca", metavar="PATH", example="/etc/edge-detect/ca.pem",
                                 help="CA certificate to verify an mqtts:// broker (default: the system's)")
    tls_cert: str | None = setting(None, key="cert", metavar="PATH", example="/etc/edge-detect/client.pem",
                                   help="client certificate for mqtts://, with --mqtt-key")
    tls_key: str | None = setting(None, key="key", metavar="PATH", example="/etc/edge-detect/client.key",
                                  help="client certificate key for mqtts://")
    state_dir: str | None = setting(None, flag="state-dir", metavar="DIR", example="/var/lib/edge-detect",
                                    help="where unsent messages and the sequence number are kept",
                                    default_text=f"${STATE_ENV}, else {DEFAULT_STATE_DIR}")
    spool_max: int = setting(DEFAULT_SPOOL_MAX, flag="spool-max", metavar="N", low=1, high=MAX_SPOOL,
                             help="most unsent messages kept on disk; beyond it the oldest are dropped and counted")
    spool_memory_max: int = setting(DEFAULT_SPOOL_MEMORY_MAX, flag="spool-memory-max", metavar="N", low=1, high=MAX_SPOOL,
                                    help="most unsent messages held in memory while the state disk cannot take them "
                                         "(full, failing, unusable); beyond it the oldest are dropped and counted")
    client_id: str | None = None  # default: edge-yolo-<device>-<random>, unique per run
    qos: int = DEFAULT_QOS
    keepalive: int = DEFAULT_KEEPALIVE_S
    model: str = ""
    reconnect_min_s: float = RECONNECT_MIN_S
    reconnect_max_s: float = RECONNECT_MAX_S
    queue_max: int = DEFAULT_QUEUE_MAX
    snapshot_interval_s: float = SNAPSHOT_MIN_INTERVAL_S

    def __post_init__(self) -> None:
        check_fields(self)
        _ = self.endpoint  # parsed now, so a bad URL fails at construction
        try:
            PublishMode.parse(self.publish)
        except ValueError as exc:
            raise InvalidSetting("publish", str(exc)) from None
        _check_topic_level("device_id", self.device_id, allow_slash=False)
        _check_topic_level("prefix", self.prefix, allow_slash=True)
        if self.qos not in QOS_LEVELS:
            raise InvalidSetting("qos", f"must be one of {QOS_LEVELS}, received {self.qos}")
        for name in ("queue_max", "keepalive"):
            if getattr(self, name) < 1:
                raise InvalidSetting(name, f"must be at least 1, received {getattr(self, name)}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise InvalidSetting("reconnect_min_s", "reconnect delays must satisfy 0 < min <= max, "
                                 f"received {self.reconnect_min_s}, {self.reconnect_max_s}")
        tls_given = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(self, name)]
        if tls_given and not self.endpoint[2]:
            raise InvalidSetting(tls_given[0], f"needs an mqtts:// URL, received {redact_url(self.url)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidSetting("tls_cert" if self.tls_cert else "tls_key",
                                 "--mqtt-cert and --mqtt-key go together: give both (client certificate and its key) or neither")
        for name in tls_given:
            if not Path(getattr(self, name)).is_file():
                raise InvalidSetting(name, f"file not found: {getattr(self, name)}")
        if (self.password is not None or self.password_file) and not self.username:
            raise InvalidSetting("password" if self.password is not None else "password_file",
                                 "a broker password needs a user name: add --mqtt-username")

    @property
    def endpoint(self) -> tuple[str, int, bool]:
        """(host, port, tls) from the URL."""
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if "@" in self.url.partition("://")[2].partition("/")[0]:
            raise InvalidSetting("url", "must not hold credentials: use --mqtt-username and "
                                 f"--mqtt-password-file, ${PASSWORD_ENV} or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")
        if parts is None or parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
            raise InvalidSetting("url", f"{redact_url(self.url)!r} is not a broker URL; use mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        return parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts"

    @property
    def publish_mode(self) -> PublishMode:
        return PublishMode.parse(self.publish)

    def snapshot_classes(self, names: Sequence[str]) -> frozenset[int]:
        """The class ids of ``snapshot`` for a model with these class names."""
        try:
            return frozenset(class_ids_from(self.snapshot, names))
        except EdgeError as exc:
            raise InvalidSetting("snapshot", str(exc)) from None

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
    bad = [c for c in TOPIC_WILDCARDS + (() if allow_slash else ("/",)) if c in value]
    if not value or bad or value.startswith("/") or value.endswith("/") or "\0" in value:
        allowed = "letters, digits, - and _" + (" (levels separated by /)" if allow_slash else "")
        raise InvalidSetting(name, f"{value!r} cannot be used in an MQTT topic; use {allowed}")


def _read_secret(path: Path, option: str) -> str:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EdgeError(f"{option} {path}: file not found") from None
    except OSError as exc:
        raise EdgeError(f"{option} {path}: cannot read it: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text
