"""systemd service notifications (sd_notify) and watchdog pacing, without libsystemd.

The protocol: one datagram of newline-separated ``NAME=value`` fields to the AF_UNIX socket named
by ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace). Outside systemd the
variable is unset and every call does nothing. A failed send is logged once and never raised: a
detector must not stop because its supervisor cannot be told something.

In edge-detect (``Type=notify``, ``WatchdogSec=`` in deploy/edge-detect.service):

* ``READY=1`` once the model is loaded and the capture is running (its source open, or a live one
  being waited for): systemd counts the start as done and arms the watchdog from then on;
* ``WATCHDOG=1`` through :class:`WatchdogPacer` from each turn of the inference loop while the
  capture thread is responsive, so a hung interpreter, loop or camera driver stops the pings and
  systemd restarts the service, while a camera that is only missing is waited for;
* ``STATUS=`` a short line (fps, frames, the source or what it waits for) every few seconds, shown
  by ``systemctl status``;
* ``STOPPING=1`` when shutting down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0  # a stuck supervisor socket may delay a frame by this much, never block the loop
US_PER_S = 1_000_000


def _address(value: str) -> str:
    # "@name" is the abstract socket "\0name"; anything else is a path
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; does nothing when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        socket_name = env.get("NOTIFY_SOCKET", "")
        self._address = _address(socket_name) if socket_name else None
        self._socket_name = socket_name
        self._sock: socket.socket | None = None
        self._failed = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``NAME=value`` fields in one datagram; True if it was handed to the socket."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(message, self._address)
            return True
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd through NOTIFY_SOCKET=%s: %s (further failures not logged)",
                            self._socket_name, exc.strerror or exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        """Start-up finished: the model is loaded and the source is open."""
        return self.send("READY=1", *([_status_field(status)] if status else []))

    def watchdog(self) -> bool:
        """Keep-alive ping; prefer WatchdogPacer, which sends it only as often as needed."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """One line for ``systemctl status``, e.g. ``"12.4 fps, 10234 frames"``."""
        return self.send(_status_field(text))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.send("STOPPING=1", *([_status_field(status)] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status_field(text: str) -> str:
    # a newline would start a new field
    return "STATUS=" + " ".join(str(text).split("\n"))


class WatchdogPacer:
    """Turns "the service is alive" beats into ``WATCHDOG=1`` at most every half watchdog interval.

    Reads ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``: when set, it must be this process) as
    sd_watchdog_enabled(3) does; without them it never pings.
    """

    def __init__(self, notifier: Notifier, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        env = os.environ if environ is None else environ
        self._notifier = notifier
        self._clock = clock
        self._last: float | None = None
        self.period_s = _ping_period_s(env)

    @property
    def enabled(self) -> bool:
        return self.period_s is not None and self._notifier.enabled

    def beat(self) -> bool:
        """Call whenever the service shows it is alive (a frame processed, a turn of the loop); True when a ping was sent."""
        if self.period_s is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self.period_s:
            return False
        self._last = now
        return self._notifier.watchdog()


def _ping_period_s(env: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, or None when the watchdog is off or meant for another process."""
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    try:
        usec = int(usec_text)
        pid = int(pid_text) if pid_text else None
    except ValueError:
        log.warning("ignoring the systemd watchdog: WATCHDOG_USEC=%r WATCHDOG_PID=%r are not integers", usec_text, pid_text)
        return None
    if usec <= 0 or (pid is not None and pid != os.getpid()):
        return None
    return usec / US_PER_S / 2
