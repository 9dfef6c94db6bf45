"""What the MQTT publisher is told: broker, topics, publish mode, credentials and where it keeps state.

Checked on construction, every error naming the option that set it. The password never comes from
the command line: see ``MqttSettings.resolve_password``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edge.errors import EdgeError

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
PASSWORD_ENV = "EDGE_YOLO_MQTT_PASSWORD"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # systemd LoadCredential=
CREDENTIAL_NAME = "mqtt-password"
STATE_ENV = "STATE_DIRECTORY"  # systemd StateDirectory=
DEFAULT_STATE_DIR = Path("~/.local/state/edge-yolo")
PUBLISH_EVERY, PUBLISH_CHANGE, PUBLISH_INTERVAL = "every", "change", "interval"
PUBLISH_FORMS = "every, change or interval:SECONDS (e.g. interval:5)"
TOPIC_WILDCARDS = ("+", "#")
PASSWORD_SOURCES = (f"[mqtt] password in the --config file, --mqtt-password-file, ${PASSWORD_ENV} "
                    f"or $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")

# Settings field -> the command-line option that sets it, so errors name what the user typed.
OPTION_OF = {
    "url": "--mqtt", "prefix": "--mqtt-prefix", "device_id": "--device-id", "publish": "--publish",
    "snapshot_classes": "--snapshot", "username": "--mqtt-username", "password_file": "--mqtt-password-file",
    "tls_ca": "--mqtt-ca", "tls_cert": "--mqtt-cert", "tls_key": "--mqtt-key", "state_dir": "--state-dir",
    "spool_max": "--spool-max",
}


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
