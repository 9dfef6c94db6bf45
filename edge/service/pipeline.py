"""The inference loop: newest frame from the capture mailbox → detector → sinks, until stopped.

It owns the run's lifecycle: READY to systemd once running (STATUS= says when it is still waiting
for its camera), the watchdog, periodic stats to the log and the sinks, and a clean stop on
SIGINT/SIGTERM: the frame in flight is finished, sinks are flushed, and the process exits 0 well
within systemd's stop timeout.

A sink that fails (a full disk, a folder gone) is said once, its frames are counted as
sink_failures, it is tried again every SINK_RETRY_S, and detection goes on for the other sinks.

The watchdog is fed while the loop turns and the capture thread is responsive (delivering frames,
or waiting between attempts to reopen a lost camera): a missing camera is waited for, a loop
stuck in the interpreter or a capture stuck in a driver stops the pings and gets the process
restarted.

With an ``ObjectTracker`` (``edge.track``) the detections then become objects: its update goes to
every sink that has ``write_objects`` (the others get ``write`` as before), its cost is the ``track``
stage of the stats, and at shutdown the objects still in view end.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from edge.detect.detections import Detections
from edge.detect.detector import MS_PER_S, Detector
from edge.service.capture import Capture
from edge.service.stats import PipelineStats, format_snapshot
from edge.sinks.base import Sink
from edge.sources.base import Frame
from edge.track.objects import ObjectTracker

log = logging.getLogger(__name__)

DEFAULT_STATS_INTERVAL_S = 60.0
STATUS_INTERVAL_S = 5.0  # systemctl status refresh; cheap, one datagram
TAKE_TIMEOUT_S = 0.1  # how often the loop looks up from an empty mailbox (stop requests, stats)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SINK_RETRY_S = 10.0  # a failing sink is skipped this long before it is tried again
TRACK_STAGE = "track"  # the tracker's latency in the stats, beside the detector's stages


class _Silent:
    """Stands in for the systemd notifier and watchdog pacer when none is given."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: False


@dataclass(frozen=True)
class PipelineSettings:
    max_frames: int | None = None  # stop after this many processed frames
    max_fps: float | None = None  # at most this many inferences per second
    stats_interval_s: float = DEFAULT_STATS_INTERVAL_S  # 0: no periodic stats (the final line is always logged)


class Pipeline:
    """One detector, one capture, any sinks. ``run()`` returns the final stats snapshot."""

    def __init__(self, detector: Detector, capture: Capture, sinks: Sequence[Sink], stats: PipelineStats,
                 settings: PipelineSettings = PipelineSettings(), notifier=None, watchdog=None,
                 tracker: ObjectTracker | None = None):
        self.detector = detector
        self.tracker = tracker
        self.capture = capture
        self.sinks = list(sinks)
        self.stats = stats
        self.settings = settings
        self.notifier = notifier or _Silent()
        self.watchdog = watchdog or _Silent()
        self._stop = threading.Event()
        self._status_t = time.monotonic()
        self._status_processed = 0
        self._next_stats: float | None = None
        self._sink_retry_at: dict[int, float] = {}  # index of a failing sink -> when to try it again
        self._sink_failed_frames: dict[int, int] = {}
        self.close_failures = 0  # sinks that could not finish their output at shutdown

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the loop checks between frames."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        self.capture.start()
        self.notifier.ready(self._source_status())
        try:
            self._loop()
        finally:
            self.notifier.stopping()
            final = self._shut_down()
        return final

    def _loop(self) -> None:
        settings = self.settings
        counters = self.stats.counters
        period_s = 1.0 / settings.max_fps if settings.max_fps else 0.0
        next_slot = 0.0
        self._next_stats = time.monotonic() + settings.stats_interval_s if settings.stats_interval_s > 0 else None
        while not self._stop.is_set():
            wait = next_slot - time.monotonic()
            if wait > 0:  # --max-fps: between slots the loop still turns, for the watchdog and stats
                if self._stop.wait(min(wait, TAKE_TIMEOUT_S)):
                    break
                self._tick(time.monotonic())
                continue
            frame = self.capture.mailbox.take(TAKE_TIMEOUT_S)
            now = time.monotonic()
            self._tick(now)
            if frame is None:
                if self.capture.mailbox.finished:
                    break
                continue
            next_slot = now + period_s
            self._process(frame)
            if settings.max_frames is not None and counters.processed >= settings.max_frames:
                break

    def _tick(self, now: float) -> None:
        """Once per turn of the loop: the watchdog, periodic stats and STATUS=."""
        if self.capture.responsive(now):
            self.watchdog.beat()
        if self._next_stats is not None and now >= self._next_stats:
            self._emit_stats()
            self._next_stats = now + self.settings.stats_interval_s
        if now - self._status_t >= STATUS_INTERVAL_S:
            self._send_status(now)

    def _process(self, frame: Frame) -> None:
        dets, stage_ms = self.detector.detect(frame.image)
        update = None
        if self.tracker is not None:
            started = time.perf_counter()
            update = self.tracker.update(frame, dets)
            stage_ms = {**stage_ms, TRACK_STAGE: (time.perf_counter() - started) * MS_PER_S}
        for index, sink in enumerate(self.sinks):
            self._write(index, sink, frame, dets, update)
        self.stats.counters.processed += 1
        self.stats.record_latency(stage_ms)
        self.watchdog.beat()

    def _write(self, index: int, sink: Sink, frame: Frame, dets, update=None) -> None:
        """One sink's write (``write_objects`` with the tracker's ``update`` where the sink has it), kept
        from ending the run: failures said once, counted, retried later."""
        retry_at = self._sink_retry_at.get(index)
        now = time.monotonic()
        if retry_at is not None and now < retry_at:
            self._sink_failure(index)
            return
        try:
            if update is not None and hasattr(sink, "write_objects"):
                sink.write_objects(frame, dets, update)
            else:
                sink.write(frame, dets)
        except BrokenPipeError:
            raise  # stdout's reader went away (`| head`): the run ends quietly
        except Exception as exc:  # noqa: BLE001  (a sink must not end detection, whatever it raises)
            if retry_at is None:
                log.error("%s; its frames are counted as sink_failures, it is tried again every %g s, "
                          "detection goes on", _naming(sink, exc), SINK_RETRY_S)
            self._sink_retry_at[index] = now + SINK_RETRY_S
            self._sink_failure(index)
            return
        if retry_at is not None:
            del self._sink_retry_at[index]
            log.info("%s works again after %d frames it could not take", _label(sink), self._sink_failed_frames.pop(index, 0))

    def _sink_failure(self, index: int) -> None:
        self.stats.counters.sink_failures += 1
        self._sink_failed_frames[index] = self._sink_failed_frames.get(index, 0) + 1

    def _snapshot(self, final: bool = False) -> dict[str, Any]:
        snapshot = self.stats.snapshot(final=final)
        if self.tracker is not None:
            snapshot["tracks"] = {"active": self.tracker.active, "total": self.tracker.created}
        return snapshot

    def _end_objects(self) -> None:
        """The objects still in view end with the run: their end events and zero counts to the sinks."""
        update = self.tracker.finish()
        for sink in self.sinks:
            if hasattr(sink, "write_objects"):
                try:
                    sink.write_objects(None, Detections.empty(), update)
                except Exception as exc:  # noqa: BLE001  (the sinks must still be flushed)
                    log.warning("%s", _naming(sink, exc))

    def _emit_stats(self, final: bool = False) -> dict[str, Any]:
        snapshot = self._snapshot(final=final)
        log.info("%s", format_snapshot(snapshot))
        for sink in self.sinks:
            sink.stats(snapshot)
        return snapshot

    def _send_status(self, now: float) -> None:
        counters = self.stats.counters
        fps = (counters.processed - self._status_processed) / max(now - self._status_t, 1e-9)
        self.notifier.status(f"{fps:.1f} fps, {counters.processed} frames, {counters.dropped} dropped, "
                             f"{counters.reconnects} reconnects; {self._source_status()}")
        self._status_t, self._status_processed = now, counters.processed

    def _source_status(self) -> str:
        capture = self.capture
        name = capture.source.name
        if capture.up or not capture.source.live:
            return f"running on {name}"
        return f"waiting for {name} for {capture.down_for_s:.0f} s: {capture.down_reason or 'reconnecting'}"

    def _shut_down(self) -> dict[str, Any]:
        """Stop capture, count a frame left in the mailbox as dropped, report, flush every sink."""
        self.capture.stop()
        self.capture.mailbox.discard()
        if self.tracker is not None:
            self._end_objects()
        final = self._snapshot(final=True)
        log.info("%s", format_snapshot(final))
        for sink in self.sinks:
            try:
                sink.stats(final)
            except Exception as exc:  # one sink failing must not keep the others from flushing
                log.warning("%s.stats() failed at shutdown: %s", type(sink).__name__, exc)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001  (every sink gets its close)
                self.close_failures += 1
                log.error("%s", _naming(sink, exc))
        return final


def _label(sink: Sink) -> str:
    return getattr(sink, "label", type(sink).__name__)


def _naming(sink: Sink, exc: Exception) -> str:
    """The error's text, led by the sink's name unless it names the sink already."""
    text = str(exc) or type(exc).__name__
    return text if _label(sink) in text else f"{_label(sink)}: {text}"


@contextlib.contextmanager
def stop_on_signals(stop) -> Iterator[None]:
    """SIGINT/SIGTERM call ``stop()``; a second one interrupts for real (KeyboardInterrupt), for a stuck run."""
    previous = {}
    received = []

    def handle(signum, _frame) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop()

    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
