"""Pipeline counters and the periodic stats snapshot (stderr line, sinks' ``stats()``, systemd STATUS)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.detect.detector import STAGES

LATENCY_WINDOW = 4096  # stage timings kept for the medians: bounded whatever the interval
FPS_DECIMALS = 2
MS_DECIMALS = 2


@dataclass
class Counters:
    """Frame accounting. ``processed + dropped == read`` once the pipeline has stopped.

    ``read``, ``corrupt`` and ``reconnects`` are written by the capture thread, ``processed`` and
    ``sink_failures`` by the inference loop, ``dropped`` under the mailbox's lock: every field has
    one writer at a time.
    """

    read: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    sink_failures: int = 0  # frames a sink could not take (failed, or skipped while it was failing)
    source_up: bool = False


@dataclass
class PipelineStats:
    """Counters, recent stage latencies and the rates between two snapshots."""

    counters: Counters = field(default_factory=Counters)
    started: float = field(default_factory=time.monotonic)
    _latency: dict[str, deque] = field(default_factory=lambda: {s: deque(maxlen=LATENCY_WINDOW) for s in STAGES})
    _last_t: float = field(default_factory=time.monotonic)
    _last_read: int = 0
    _last_processed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record_latency(self, stage_ms: dict[str, float]) -> None:
        """The detector's stages always; any other (the tracker's) from the first time it is timed."""
        with self._lock:
            for stage in STAGES:
                self._latency[stage].append(stage_ms[stage])
            for stage in stage_ms.keys() - self._latency.keys():
                self._latency[stage] = deque(maxlen=LATENCY_WINDOW)
            for stage, ms in stage_ms.items():
                if stage not in STAGES:
                    self._latency[stage].append(ms)

    def snapshot(self, final: bool = False) -> dict[str, Any]:
        """The figures since the previous snapshot (rates, latencies) and since start (counts)."""
        now = time.monotonic()
        c = self.counters
        with self._lock:
            interval = max(now - self._last_t, 1e-9)
            fps_in = (c.read - self._last_read) / interval
            fps_out = (c.processed - self._last_processed) / interval
            latency = {f"{stage}_ms": round(float(np.median(values)), MS_DECIMALS) if values else None
                       for stage, values in self._latency.items()}
            for values in self._latency.values():
                values.clear()
            self._last_t, self._last_read, self._last_processed = now, c.read, c.processed
        return {
            "uptime_s": round(now - self.started, 1),
            "interval_s": round(interval, 1),
            "fps_in": round(fps_in, FPS_DECIMALS),
            "fps_out": round(fps_out, FPS_DECIMALS),
            "read": c.read,
            "processed": c.processed,
            "dropped": c.dropped,
            "corrupt": c.corrupt,
            "reconnects": c.reconnects,
            "sink_failures": c.sink_failures,
            "source_up": c.source_up,
            "latency_ms": latency,
            "final": final,
        }


def format_snapshot(snapshot: dict[str, Any]) -> str:
    """One logfmt line: readable in the journal, parseable by ``key=value`` splitting."""
    latency = snapshot["latency_ms"]
    parts = [f"{key}={snapshot[key]}" for key in ("fps_in", "fps_out", "read", "processed", "dropped", "corrupt", "reconnects",
                                                     "sink_failures")]
    parts += [f"{stage}={'-' if value is None else value}" for stage, value in latency.items()]
    parts.append(f"source={'up' if snapshot['source_up'] else 'down'}")
    return ("final stats: " if snapshot["final"] else "stats: ") + " ".join(parts)


def parse_stats_line(line: str) -> dict[str, str]:
    """The ``key=value`` pairs of a stats line (for readers of the log)."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)
