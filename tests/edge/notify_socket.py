"""A stand-in for systemd's notification socket: receives what a process sends to $NOTIFY_SOCKET.

Use the ``notify_socket`` fixture (import it into a test module), hand ``notify_socket.env`` to the
process under test (``monkeypatch.setenv`` or a subprocess ``env=``), then read the datagrams:

    def test_ready(notify_socket, monkeypatch):
        monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.address)
        ...
        assert notify_socket.wait_for("READY=1")["READY"] == "1"

Each message is a dict of its ``NAME=value`` fields, in arrival order, with the sender's pid when
the kernel reports it (systemd's NotifyAccess=main accepts only the main process).

A thread reads the socket all the time, as systemd does: the kernel queues only a few datagrams
(net.unix.max_dgram_qlen, often 10), and a sender facing a full queue would block and give up.
"""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MAX_DATAGRAM = 4096  # larger than any notification edge-detect sends
DEFAULT_TIMEOUT_S = 5.0
READ_POLL_S = 0.05  # how soon the reader thread notices close()


@dataclass
class Message:
    fields: dict[str, str]
    raw: bytes
    pid: int | None = None
    received_at: float = field(default_factory=time.monotonic)

    def __getitem__(self, name: str) -> str:
        return self.fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self.fields


class NotifySocket:
    """An AF_UNIX datagram socket bound at a path, or in the abstract namespace (``@name``)."""

    def __init__(self, abstract: bool = False):
        self._dir: str | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-yolo-notify-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # sun_path holds 108 bytes: a short folder of its own, not pytest's long tmp_path
            self._dir = tempfile.mkdtemp(prefix="notify-")
            self.address = str(Path(self._dir) / "s")
            self.sock.bind(self.address)
        # ask for the sender's credentials, as systemd does
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(READ_POLL_S)
        self.messages: list[Message] = []  # everything received so far
        self._consumed = 0  # how many of them receive() has handed out
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._reader.start()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data, ancdata, _, _ = self.sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(struct.calcsize("3i")))
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return  # closed
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
                    pid = struct.unpack("3i", payload[:12])[0]
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._arrived:
                self.messages.append(Message(fields, data, pid))
                self._arrived.notify_all()

    def receive(self, timeout: float = DEFAULT_TIMEOUT_S) -> Message | None:
        """The next message not yet handed out, or None if none arrives within ``timeout`` seconds."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) > self._consumed, timeout):
                return None
            self._consumed += 1
            return self.messages[self._consumed - 1]

    def wait_for(self, field_text: str, timeout: float = DEFAULT_TIMEOUT_S) -> Message:
        """The first message (already received or new) holding the line ``field_text``, e.g. ``"READY=1"``;
        fails the test if none comes within ``timeout``."""
        for message in self.messages:
            if field_text in message.raw.decode().split("\n"):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and field_text in message.raw.decode().split("\n"):
                return message
        pytest.fail(f"no {field_text} on {self.address} within {timeout} s; received {[m.raw for m in self.messages]}")

    def drain(self, quiet_s: float = 0.2) -> list[Message]:
        """Everything that arrives until the socket is quiet for ``quiet_s`` seconds."""
        new = []
        while (message := self.receive(quiet_s)) is not None:
            new.append(message)
        return new

    def collect(self, seconds: float) -> list[Message]:
        """Everything that arrives within the next ``seconds`` (a fixed window: periodic STATUS
        messages would keep a wait-until-quiet from ever ending)."""
        new = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if (message := self.receive(left)) is not None:
                new.append(message)
        return new

    def close(self) -> None:
        self._closed.set()
        self._reader.join()
        self.sock.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def notify_socket():
    listener = NotifySocket()
    yield listener
    listener.close()


@pytest.fixture
def abstract_notify_socket():
    listener = NotifySocket(abstract=True)
    yield listener
    listener.close()
