"""A private Mosquitto broker for tests: its own config, port and persistence in a temporary folder.

It can be stopped and started again on the same port (an outage the client must survive), require a
password (``mosquitto_passwd``) and serve TLS with a CA and server certificate made here by ``openssl``.
Persistence is on, so retained messages and a subscriber's persistent session survive a restart.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
CERT_DAYS = 2
RSA_BITS = 2048
RETAINED_WAIT_S = 0.5  # after SUBACK, how long a retained message may take to arrive


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: install it (apt-get install mosquitto openssl)")
    return path


class Mosquitto:
    """One broker process at a time on a fixed loopback port; ``stop()`` then ``start()`` reuses the port."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users
        self.tls = tls
        self.ca_file: Path | None = None
        self.log_file = self.folder / "mosquitto.log"
        self.process: subprocess.Popen | None = None
        self.config_file = self._write_config()

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{LOOPBACK}:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {LOOPBACK}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            "max_queued_messages 0",  # unlimited: a persistent subscriber must not lose what queued during a restart
            f"persistence_location {self.folder}/",
            f"log_dest file {self.log_file}",
            "log_type all",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to a user that cannot write here
        ]
        if self.users:
            lines.append(f"password_file {self._password_file()}")
        if self.tls:
            self.ca_file, cert, key = make_tls_files(self.folder / "tls")
            lines += [f"cafile {self.ca_file}", f"certfile {cert}", f"keyfile {key}"]
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _password_file(self) -> Path:
        path = self.folder / "passwords"
        path.write_text("")
        for user, password in self.users.items():
            subprocess.run([require_tool("mosquitto_passwd"), "-b", str(path), user, password],
                           check=True, capture_output=True)
        path.chmod(0o600)
        return path

    def start(self) -> Mosquitto:
        if self.process is not None:
            raise RuntimeError("broker already running")
        self.process = subprocess.Popen([require_tool("mosquitto"), "-c", str(self.config_file)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace").strip()
                self.process = None
                raise RuntimeError(f"mosquitto exited at start: {error or self.log_tail()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=POLL_S):
                    return self
            except OSError:
                time.sleep(POLL_S)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGTERM (persistence is written), then wait; the port is free again afterwards."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it: (ca, cert, key)."""
    openssl = require_tool("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    steps = [
        [openssl, "req", "-x509", "-newkey", f"rsa:{RSA_BITS}", "-nodes", "-keyout", ca_key, "-out", ca_crt,
         "-days", str(CERT_DAYS), "-subj", "/CN=edge-yolo test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", "-newkey", f"rsa:{RSA_BITS}", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", str(CERT_DAYS), "-extfile", ext],
    ]
    for step in steps:
        subprocess.run([str(part) for part in step], check=True, capture_output=True)
    return ca_crt, crt, key


class Subscriber:
    """A paho subscriber with a persistent session: messages published while it reconnects after a
    broker restart are queued for it by the broker, so a gap it sees is a gap in what was published."""

    RECONNECT_MIN_S = 0.1
    RECONNECT_MAX_S = 0.5
    KEEPALIVE_S = 10

    def __init__(self, broker: Mosquitto, topic: str, username: str | None = None, password: str | None = None):
        import threading

        import paho.mqtt.client as mqtt

        self.topic = topic
        self.messages: list = []  # paho MQTTMessage, in arrival order
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{free_port()}",
                                  clean_session=False)
        if username:
            self.client.username_pw_set(username, password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.reconnect_delay_set(self.RECONNECT_MIN_S, self.RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(LOOPBACK, broker.port, self.KEEPALIVE_S)
        self.client.loop_start()
        if not self.subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"test subscriber could not subscribe to {topic} on port {broker.port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append(message)

    def on(self, topic: str) -> list:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(POLL_S)
        return condition()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def read_retained(broker: Mosquitto, topic: str, timeout: float = START_TIMEOUT_S) -> bytes | None:
    """The retained payload of ``topic`` as a new subscriber sees it, or None when none is retained."""
    import threading

    import paho.mqtt.client as mqtt

    got: list[bytes] = []
    done = threading.Event()

    def on_message(client, userdata, message):
        if message.retain:
            got.append(message.payload)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-retained-{free_port()}")
    if broker.tls:
        client.tls_set(ca_certs=str(broker.ca_file))
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *args: threading.Timer(RETAINED_WAIT_S, done.set).start()
    client.on_message = on_message
    client.connect(LOOPBACK, broker.port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None
