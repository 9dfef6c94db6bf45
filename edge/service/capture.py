"""The capture thread: reads a source into a one-frame mailbox, and brings a lost source back.

Live sources (cameras, streams) run on their own clock: each new frame replaces one the inference
loop has not taken yet, which is then counted as dropped, so inference never sees a stale frame
and nothing queues behind a slow consumer. File sources are paced by the consumer instead (the
reader waits until the mailbox is empty), so every frame of a video is processed unless
real-time reading is asked for. Either way ``processed + dropped == read`` when the run ends.

A live source that is not there at start-up (a camera still booting, a stream refused) is waited
for exactly like one lost later: the thread starts reconnecting at once, and the run goes on.
``responsive()`` tells the watchdog whether the thread is making progress (reading, or waiting
between reconnect attempts) rather than stuck inside a driver call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edge.errors import EdgeError
from edge.sources.base import CorruptFrame, Frame, FrameSource, Grab, SourceLost, SourceUnavailable
from edge.sources.settings import DEFAULT_STALL_TIMEOUT_S
from edge.service.stats import Counters

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0  # a camera back after a long outage is picked up within this
BACKOFF_FACTOR = 2.0
MS_PER_S = 1000.0
JOIN_TIMEOUT_S = 1.0  # shutdown must finish within 2 s even if a read hangs in a driver
# A read or open that has not returned this long after the stall timeout is stuck in a driver:
# the thread stops counting as responsive, the watchdog pings stop and systemd restarts the process.
HANG_MARGIN_S = 20.0


class Mailbox:
    """Holds at most one frame. Counts what it accepts (read) and what it overwrites (dropped)."""

    def __init__(self, counters: Counters):
        self.counters = counters
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def put_latest(self, frame: Frame) -> None:
        """Replace any waiting frame (it becomes dropped): the live-source policy."""
        with self._cond:
            if self._closed:
                return
            if self._frame is not None:
                self.counters.dropped += 1
            self._frame = frame
            self.counters.read += 1
            self._cond.notify_all()

    def put_when_empty(self, frame: Frame) -> bool:
        """Wait until the consumer took the previous frame, then put: the file policy. False once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is None or self._closed)
            if self._closed:
                return False
            self._frame = frame
            self.counters.read += 1
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Frame | None:
        """The waiting frame, or None after ``timeout`` seconds or once the mailbox is closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> int:
        """Drop a frame left behind at shutdown (counted); returns how many (0 or 1)."""
        with self._cond:
            if self._frame is None:
                return 0
            self._frame = None
            self.counters.dropped += 1
            return 1

    @property
    def finished(self) -> bool:
        """Closed and empty: no frame will ever come."""
        with self._cond:
            return self._closed and self._frame is None


@dataclass(frozen=True)
class CaptureSettings:
    loop: bool = False  # replay a file source from the start when it ends
    realtime: bool = False  # read a file at its own frame rate and drop like a live source
    max_frames: int | None = None  # stop reading after this many frames (file sources)
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    reconnect_min_s: float = RECONNECT_MIN_S
    reconnect_max_s: float = RECONNECT_MAX_S


class Capture:
    """Runs ``source`` in a thread into ``mailbox``; open() first (in the caller) so start-up errors surface."""

    def __init__(self, source: FrameSource, mailbox: Mailbox, counters: Counters, settings: CaptureSettings = CaptureSettings()):
        self.source = source
        self.mailbox = mailbox
        self.counters = counters
        self.settings = settings
        self.paced = not source.live and not settings.realtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._up = False
        self._down_since = 0.0
        self._ever_up = False
        self.down_reason: str | None = None  # why a live source is not delivering, for STATUS=
        self._busy_since: float | None = None  # monotonic time the current read()/open() began
        self._corrupt_logged = False
        self._index = 0
        self._clock_base: tuple[float, float] | None = None  # (monotonic, position_ms) for real-time files

    def open(self) -> None:
        """Open the source once, in the caller's thread; EdgeError for a source that cannot work at all.

        A live source that is only unavailable (SourceUnavailable) is left to the thread, which
        waits for it with backoff.
        """
        try:
            self.source.open()
        except SourceUnavailable as exc:
            if not self.source.live:
                raise
            self._down_since = time.monotonic()
            self.down_reason = str(exc)
            log.warning("source %s is not available (%s); waiting for it, retrying with backoff up to %g s",
                        self.source.name, exc, self.settings.reconnect_max_s)
            return
        self._up = self._ever_up = True
        self.counters.source_up = True

    @property
    def up(self) -> bool:
        return self._up

    def responsive(self, now: float | None = None) -> bool:
        """The thread is alive and not stuck in a read or open (waiting between reconnects counts as alive)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        busy_since = self._busy_since
        limit = self.settings.stall_timeout_s + HANG_MARGIN_S
        return busy_since is None or (time.monotonic() if now is None else now) - busy_since < limit

    @property
    def down_for_s(self) -> float:
        return 0.0 if self._up else time.monotonic() - self._down_since

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop reading and release the source; False if the thread is stuck in a read (it is a daemon)."""
        self._stop.set()
        self.mailbox.close()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("capture thread still blocked in a read of %s; leaving it behind", self.source.name)
                return False
        return True

    def _run(self) -> None:
        try:
            self._read_loop()
        except Exception:  # a bug, not a camera problem: say so loudly, end the run cleanly
            log.exception("capture of %s failed", self.source.name)
        finally:
            self.counters.source_up = False
            self.source.close()
            self.mailbox.close()

    def _read_loop(self) -> None:
        last_good = time.monotonic()
        while not self._stop.is_set():
            if not self._up:
                if not self._reconnect():
                    return
                last_good = time.monotonic()
            try:
                self._busy_since = time.monotonic()
                grab = self.source.read()
            except CorruptFrame as exc:
                self._corrupt(exc)
                if self.source.live and time.monotonic() - last_good > self.settings.stall_timeout_s:
                    self._lost(f"no valid frame for {self.settings.stall_timeout_s:g} s")
                continue
            except SourceLost as exc:
                if not self.source.live:
                    log.warning("%s: %s; stopping", self.source.name, exc)
                    return
                self._lost(str(exc))
                continue
            except Exception as exc:  # a driver or library surprise: for a camera, as good as a lost source
                if not self.source.live:
                    raise
                self._lost(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                self._busy_since = None
            if grab is None:
                if self.settings.loop and self._restart_file():
                    continue
                return
            last_good = time.monotonic()
            if not self._deliver(grab):
                return

    def _deliver(self, grab: Grab) -> bool:
        """Hand one frame to the mailbox; False when reading should end."""
        if self.settings.realtime and grab.position_ms is not None and not self._wait_for_position(grab.position_ms):
            return False
        frame = Frame(self._index, self.source.name, grab.time, grab.image, grab.position_ms)
        self._index += 1
        if self.paced:
            if not self.mailbox.put_when_empty(frame):
                return False
        else:
            self.mailbox.put_latest(frame)
        max_frames = self.settings.max_frames
        return not (self.paced and max_frames is not None and self._index >= max_frames)

    def _wait_for_position(self, position_ms: float) -> bool:
        """Sleep until the file position's moment on the wall clock; False if stopped meanwhile."""
        now = time.monotonic()
        if self._clock_base is None:
            self._clock_base = (now, position_ms)
        base_t, base_ms = self._clock_base
        delay = base_t + (position_ms - base_ms) / MS_PER_S - now
        return not (delay > 0 and self._stop.wait(delay))

    def _restart_file(self) -> bool:
        self.source.close()
        self._clock_base = None
        try:
            self.source.open()
        except EdgeError as exc:
            log.error("cannot replay %s: %s", self.source.name, exc)
            return False
        return True

    def _corrupt(self, exc: CorruptFrame) -> None:
        self.counters.corrupt += exc.frames
        if not self._corrupt_logged and not getattr(self.source, "logs_corrupt", False):
            self._corrupt_logged = True
            log.warning("%s: skipping corrupt frame (%s); further ones are only counted", self.source.name, exc)

    def _lost(self, reason: str) -> None:
        self._up = False
        self.counters.source_up = False
        self._down_since = time.monotonic()
        self.down_reason = reason
        log.warning("source %s down: %s", self.source.name, reason)
        self.source.close()

    def _reconnect(self) -> bool:
        """Reopen with capped exponential backoff until it works (True) or the run stops (False).

        Every EdgeError counts as "not yet": a source that worked once, or a live one waited for
        since start-up, is retried whatever it says.
        """
        delay = self.settings.reconnect_min_s
        announced = not self._ever_up  # the start-up wait has been announced by open()
        while not self._stop.wait(delay):
            try:
                self._busy_since = time.monotonic()
                self.source.open()
            except EdgeError as exc:
                self.down_reason = str(exc)
                if not announced:
                    announced = True
                    log.info("source %s reconnecting (%s); retrying with backoff up to %g s",
                             self.source.name, exc, self.settings.reconnect_max_s)
                delay = min(delay * BACKOFF_FACTOR, self.settings.reconnect_max_s)
                continue
            finally:
                self._busy_since = None
            self._up = True
            self.down_reason = None
            self._corrupt_logged = False
            self.counters.source_up = True
            waited_s = time.monotonic() - self._down_since
            if self._ever_up:
                self.counters.reconnects += 1
                log.info("source %s up again after %.1f s (reconnect %d)", self.source.name, waited_s, self.counters.reconnects)
            else:
                self._ever_up = True
                log.info("source %s up after waiting %.1f s for it", self.source.name, waited_s)
            return True
        return False
