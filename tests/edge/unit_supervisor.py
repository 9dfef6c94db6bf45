"""A small stand-in for systemd running deploy/edge-detect.service: the unit's own restart logic, applied.

It reads Restart=, RestartSec=, WatchdogSec=, TimeoutStartSec=, StartLimitIntervalSec= and
StartLimitBurst= from the unit file and does with them what systemd does with a Type=notify
service (systemd.service(5), systemd.unit(5)):

* the process gets ``$NOTIFY_SOCKET`` (a real datagram socket, tests/edge/notify_socket.py) and
  ``$WATCHDOG_USEC``; no READY=1 within TimeoutStartSec is a failed start;
* after READY=1, no WATCHDOG=1 for WatchdogSec aborts it with SIGABRT (systemd's WatchdogSignal=);
* an exit is restarted after RestartSec when Restart= says so for that exit (``on-failure``: a
  non-zero status, a signal, a watchdog or start timeout; ``always``: any exit), unless the start
  limit is hit: a start beyond StartLimitBurst within StartLimitIntervalSec leaves the unit
  ``failed``, and it stays down whatever happens next.

    supervisor = UnitSupervisor(UNIT, command, env)
    supervisor.start()                        # runs in a thread
    ... supervisor.starts, supervisor.exits, supervisor.state, supervisor.socket.messages ...
    supervisor.stop()                         # SIGTERM, as `systemctl stop`
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tests.edge.notify_socket import NotifySocket

POLL_S = 0.1
STOP_TIMEOUT_S = 20.0
US_PER_S = 1_000_000
RESTART_ON = {
    "no": set(),
    "always": {"success", "exit-code", "signal", "watchdog", "timeout"},
    "on-success": {"success"},
    "on-failure": {"exit-code", "signal", "watchdog", "timeout"},
    "on-abnormal": {"signal", "watchdog", "timeout"},
    "on-watchdog": {"watchdog"},
    "on-abort": {"signal"},
}


def parse_seconds(text: str) -> float:
    """A systemd time span: ``30``, ``30s``, ``5min``, ``1min 30s``, ``infinity`` (as inf)."""
    text = text.strip()
    if text == "infinity":
        return float("inf")
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 1e-3, "us": 1e-6}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(number) * units[unit]
    return total


@dataclass(frozen=True)
class UnitTimes:
    restart: str
    restart_s: float
    watchdog_s: float
    start_timeout_s: float
    start_limit_interval_s: float
    start_limit_burst: int

    @classmethod
    def read(cls, unit: Path) -> UnitTimes:
        values: dict[str, str] = {}
        for line in unit.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith(("#", "[")):
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
        return cls(
            restart=values.get("Restart", "no"),
            restart_s=parse_seconds(values.get("RestartSec", "0.1")),
            watchdog_s=parse_seconds(values.get("WatchdogSec", "0")),
            start_timeout_s=parse_seconds(values.get("TimeoutStartSec", "90")),
            start_limit_interval_s=parse_seconds(values.get("StartLimitIntervalSec", "10")),
            start_limit_burst=int(values.get("StartLimitBurst", "5")),
        )


@dataclass
class Exit:
    pid: int
    reason: str  # success, exit-code, signal, watchdog, timeout
    returncode: int | None
    at: float = field(default_factory=time.monotonic)


class UnitSupervisor:
    def __init__(self, unit: Path, command: Sequence[str], env: dict[str, str] | None = None,
                 start_timeout_scale: float = 1.0, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        self.times = UnitTimes.read(unit)
        self.command = list(command)
        self.env = dict(os.environ if env is None else env)
        # imports are slower under emulation than on a device: only the start timeout is stretched
        self.start_timeout_s = self.times.start_timeout_s * start_timeout_scale
        self.stdout, self.stderr = stdout, stderr
        self.socket = NotifySocket()
        self.starts: list[float] = []
        self.exits: list[Exit] = []
        self.state = "inactive"  # activating, active, failed, inactive
        self.process: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unit-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int | None:
        """``systemctl stop``: SIGTERM, wait, SIGKILL after STOP_TIMEOUT_S; the last exit status."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._thread.join(STOP_TIMEOUT_S)
        self.socket.close()
        return None if process is None else process.returncode

    def pings(self, pid: int | None = None) -> list[float]:
        """Arrival times of WATCHDOG=1 (from ``pid`` when given)."""
        return [m.received_at for m in self.socket.messages if m.fields.get("WATCHDOG") == "1"
                and (pid is None or m.pid in (pid, None))]

    # --- the service manager's loop ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            recent = [t for t in self.starts if now - t < self.times.start_limit_interval_s]
            if len(recent) >= self.times.start_limit_burst:
                self.state = "failed"  # start request repeated too quickly: stays down
                return
            reason, returncode = self._run_once()
            self.exits.append(Exit(self.processes[-1].pid, reason, returncode))
            if self._stopping.is_set():
                self.state = "inactive"
                return
            if reason not in RESTART_ON[self.times.restart]:
                self.state = "failed" if reason != "success" else "inactive"
                return
            self.state = "activating"
            if self._stopping.wait(self.times.restart_s):
                return

    def _run_once(self) -> tuple[str, int | None]:
        env = {**self.env, **self.socket.env}
        if self.times.watchdog_s:
            env["WATCHDOG_USEC"] = str(int(self.times.watchdog_s * US_PER_S))
        self.state = "activating"
        self.starts.append(time.monotonic())
        started_at = len(self.socket.messages)
        process = subprocess.Popen(self.command, env=env, stdout=self.stdout, stderr=self.stderr, text=True)
        self.process = process
        self.processes.append(process)
        deadline = time.monotonic() + self.start_timeout_s
        ready_at: float | None = None
        while process.poll() is None:
            now = time.monotonic()
            new = self.socket.messages[started_at:]
            if ready_at is None and any(m.fields.get("READY") == "1" for m in new):
                ready_at = now
                self.state = "active"
            if ready_at is None and now > deadline:
                process.kill()
                process.wait()
                return "timeout", process.returncode
            if ready_at is not None and self.times.watchdog_s:
                last = max([ready_at] + [m.received_at for m in new if m.fields.get("WATCHDOG") == "1"])
                if now - last > self.times.watchdog_s:
                    process.send_signal(signal.SIGABRT)
                    process.wait()
                    return "watchdog", process.returncode
            time.sleep(POLL_S)
        if process.returncode == 0:
            return "success", 0
        return ("signal" if process.returncode < 0 else "exit-code"), process.returncode
