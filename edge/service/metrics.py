"""Prometheus metrics over HTTP (``--metrics [HOST:]PORT``): the loop's figures in the text exposition format.

A stdlib ``http.server`` on a thread of its own, bound to loopback unless told otherwise; each
scrape renders the live counters (frames read, processed, dropped, corrupt, reconnects), the latest
stats snapshot (fps in and out, per-stage latency medians over the last ``--stats-interval``), the
tracker's objects and the MQTT publisher's counters. It is a sink so the pipeline hands it each
snapshot; ``write`` does nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar, Mapping

from edge.errors import EdgeError, InvalidSetting
from edge.fields import check_fields, setting
from edge.service.stats import Counters

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PREFIX = "edge_yolo_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATH = "/metrics"
MAX_PORT = 65535


@dataclass(frozen=True)
class MetricsSettings:
    TABLE: ClassVar[str] = "metrics"
    FLAG_PREFIX: ClassVar[str] = "metrics-"
    TITLE: ClassVar[str] = "Prometheus metrics"
    ENABLED_BY: ClassVar[str] = "listen"

    listen: str | None = setting(None, flag="metrics", metavar="[HOST:]PORT",
                                 help=f"serve Prometheus metrics on http://HOST:PORT{PATH} (HOST defaults to {LOOPBACK}: "
                                      "only this machine can read them)")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.listen is not None:
            _ = self.address

    @property
    def address(self) -> tuple[str, int]:
        host, sep, port = str(self.listen).rpartition(":")
        host = host.strip("[]") if sep else LOOPBACK
        if not port.isdigit() or not 1 <= int(port) <= MAX_PORT or (sep and not host):
            raise InvalidSetting("listen", f"{self.listen!r} is not [HOST:]PORT; use e.g. 9108 or 127.0.0.1:9108")
        return host, int(port)


# name, type, help; values come from _values()
_METRICS = (
    ("frames_read_total", "counter", "Frames read from the source."),
    ("frames_processed_total", "counter", "Frames run through the detector."),
    ("frames_dropped_total", "counter", "Frames replaced by a newer one before inference took them."),
    ("frames_corrupt_total", "counter", "Frames that could not be decoded."),
    ("source_reconnects_total", "counter", "Times the source was reopened."),
    ("sink_failures_total", "counter", "Frames a sink could not take (a full disk, say)."),
    ("source_up", "gauge", "1 while the source delivers frames."),
    ("fps", "gauge", "Frames per second over the last stats interval, in (read) and out (processed)."),
    ("stage_latency_ms", "gauge", "Median latency of each stage over the last stats interval, in milliseconds."),
    ("uptime_seconds", "gauge", "Seconds since the loop started, at the last stats snapshot."),
    ("tracks_active", "gauge", "Tracked objects in view."),
    ("tracks_total", "counter", "Tracked objects since start."),
    ("mqtt_connected", "gauge", "1 while connected to the broker."),
    ("mqtt_spool_depth", "gauge", "MQTT messages on disk waiting for the broker's acknowledgement."),
    ("mqtt_acked_total", "counter", "Spooled MQTT messages the broker acknowledged."),
    ("mqtt_spool_dropped_total", "counter", "Oldest MQTT messages dropped at the spool's bound."),
    ("mqtt_spool_on_disk", "gauge", "1 while the MQTT spool is on disk, 0 while it holds messages in memory (disk unusable)."),
    ("mqtt_queue_dropped_total", "counter", "Frames dropped because the MQTT publisher fell behind."),
    ("mqtt_reconnects_total", "counter", "Reconnections to the broker."),
    ("mqtt_events_total", "counter", "Object events spooled."),
)
_MQTT_KEYS = {"mqtt_connected": "connected", "mqtt_spool_depth": "spool_depth", "mqtt_acked_total": "acked",
              "mqtt_spool_dropped_total": "spool_dropped", "mqtt_queue_dropped_total": "queue_dropped",
              "mqtt_reconnects_total": "reconnects", "mqtt_events_total": "events"}


def render(counters: Counters, snapshot: Mapping[str, Any] | None, tracker=None,
           mqtt: Mapping[str, Any] | None = None) -> str:
    """The text exposition of the figures at hand; a metric without a value yet is left out."""
    values = _values(counters, snapshot or {}, tracker, mqtt)
    lines = []
    for name, kind, text in _METRICS:
        samples = values.get(name)
        if not samples:
            continue
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"]
        lines += [f"{PREFIX}{name}{labels} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _values(counters: Counters, snapshot: Mapping[str, Any], tracker, mqtt) -> dict[str, list[tuple[str, Any]]]:
    values: dict[str, list[tuple[str, Any]]] = {
        "frames_read_total": [("", counters.read)], "frames_processed_total": [("", counters.processed)],
        "frames_dropped_total": [("", counters.dropped)], "frames_corrupt_total": [("", counters.corrupt)],
        "source_reconnects_total": [("", counters.reconnects)], "source_up": [("", counters.source_up)],
        "sink_failures_total": [("", counters.sink_failures)],
    }
    if "fps_in" in snapshot:
        values["fps"] = [('{direction="in"}', snapshot["fps_in"]), ('{direction="out"}', snapshot["fps_out"])]
        values["uptime_seconds"] = [("", snapshot.get("uptime_s", 0))]
    latency = snapshot.get("latency_ms") or {}
    values["stage_latency_ms"] = [(f'{{stage="{key.removesuffix("_ms")}"}}', ms) for key, ms in latency.items() if ms is not None]
    if tracker is not None:
        values["tracks_active"] = [("", tracker.active)]
        values["tracks_total"] = [("", tracker.created)]
    if mqtt is not None:
        for name, key in _MQTT_KEYS.items():
            if key in mqtt:
                values[name] = [("", mqtt[key])]
        if "spool" in mqtt:
            values["mqtt_spool_on_disk"] = [("", mqtt["spool"] == "disk")]
    return values


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) else str(int(value))


class MetricsExporter:
    """The HTTP endpoint; a sink so the pipeline hands it its stats snapshots."""

    def __init__(self, settings: MetricsSettings, counters: Counters, tracker=None,
                 mqtt: Callable[[], Mapping[str, Any]] | None = None):
        host, port = settings.address
        self._counters, self._tracker, self._mqtt = counters, tracker, mqtt
        self._snapshot: Mapping[str, Any] | None = None
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.split("?")[0] != PATH:
                    self.send_error(404, f"metrics are at {PATH}")
                    return
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # scrapes every 15 s must not fill the journal
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise EdgeError(f"--metrics {settings.listen}: cannot listen on {host}:{port} ({exc.strerror}); "
                            "choose another port or stop what uses it") from None
        self._server.daemon_threads = True
        self.address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("Prometheus metrics on http://%s:%d%s", host, self.address[1], PATH)

    def text(self) -> str:
        return render(self._counters, self._snapshot, self._tracker, self._mqtt() if self._mqtt else None)

    def write(self, frame, dets) -> None:
        pass

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        self._snapshot = dict(snapshot)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
