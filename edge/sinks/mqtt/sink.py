"""Detections to an MQTT broker, headless and unattended: nothing is lost when the broker or network goes.

Topics under ``<prefix>/<device>/``:

* ``detections`` — versioned JSON per frame (or per change, or per interval), with a per-device ``seq``
  that survives restarts, so a subscriber can see a gap;
* ``status`` — retained ``online`` on every connect, ``offline`` as the last will, ``stopped`` on close;
* ``stats`` — the camera loop's periodic snapshot plus the publisher's own counters;
* ``snapshot`` — optional retained JPEG of the annotated frame when a chosen class is seen;
* with tracking (``write_objects``): ``events`` (``--publish events``, spooled like detections, numbered
  by the same ``seq``), ``events/snapshot`` and the retained counts (``state_topics``), and Home
  Assistant's discovery configs (``discovery``).

Path of a detection: ``write()`` (camera thread) only appends to a bounded in-memory deque; the
publisher thread builds the payload, commits it to the on-disk spool (``spool``) and the pump
(``pump``) publishes from the spool through the session (``session``); a message leaves the spool
only when the broker acknowledges it. Messages produced while disconnected, or in flight at a
crash, go out after the reconnect or restart, in order. QoS 1 means duplicates are possible;
``seq`` lets a subscriber drop them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from edge.detect.detections import Detections
from edge.sinks.mqtt import events as event_payloads
from edge.sinks.mqtt.payloads import detections_payload, snapshot_jpeg, stats_payload
from edge.sinks.mqtt.policy import FramePolicy
from edge.sinks.mqtt.pump import SpoolPump
from edge.sinks.mqtt.session import Session, import_paho
from edge.sinks.mqtt.settings import PUBLISH_EVENTS, MqttSettings
from edge.sinks.mqtt.spool import open_spool
from edge.sinks.mqtt.state_topics import StateTopics
from edge.sources.base import Frame
from edge.track.objects import ObjectsUpdate

log = logging.getLogger(__name__)

BATCH_MAX = 500  # messages committed to the spool per transaction
IDLE_WAIT_S = 0.5
# On close, how long the broker gets to acknowledge what is spooled; the rest stays on disk for the
# next run. Short, so a SIGTERM still ends the process within 2 s.
CLOSE_DRAIN_S = 1.0
ERROR_PAUSE_S = 1.0


@dataclass(frozen=True)
class _Item:
    """A frame accepted by write(): what the publisher thread needs to build its messages."""

    seq: int | None  # None: snapshot only (the publish mode skipped the detections)
    frame_index: int
    capture_time: float
    wh: tuple[int, int]
    dets: Detections
    snapshot_image: Any  # np.ndarray or None
    events: tuple = ()  # ObjectEvent, numbered from seq (events mode)


class MqttSink:
    """The MQTT sink: ``write()``, ``stats()`` and ``close()`` never wait on the network.

    The frame's image is kept by reference until its snapshot is encoded: sources hand out a new
    array per frame, which must not be modified after write().
    """

    def __init__(self, settings: MqttSettings, names: Sequence[str], discovery: Sequence[tuple[str, bytes]] = ()):
        """``discovery``: Home Assistant config messages, published retained on every connect (``discovery``)."""
        import_paho()  # before anything touches the disk: a missing package is the first thing to say
        self.settings = settings
        self.names = tuple(names)
        self._mode = settings.publish_mode
        self._policy = FramePolicy(self._mode, settings.snapshot_classes(self.names), settings.snapshot_interval_s)
        password = settings.resolve_password()
        self.state_dir = settings.resolve_state_dir()
        self._spool = open_spool(self.state_dir, settings.spool_max, settings.spool_memory_max)  # memory if the disk is unusable
        # camera thread -> publisher thread
        self._pending: deque[_Item] = deque()
        self._stats_pending: dict | None = None
        self._wake = threading.Event()
        try:
            where = self._spool.path if self._spool.persistent else "memory (no disk spool)"
            self._session = Session(settings, password, where, lambda: self._spool.depth, self._wake.set)
        except BaseException:
            self._spool.close()
            raise
        self._pump = SpoolPump(self._spool, self._session)
        self._states = StateTopics(settings, self._session, list(discovery), event_payloads.SNAPSHOT_LEAF)
        self._topic_events = settings.topic(event_payloads.EVENTS_LEAF)
        self._topic_detections = settings.topic("detections")
        self._topic_stats = settings.topic("stats")
        self._topic_snapshot = settings.topic("snapshot")
        self._seq = self._spool.last_seq(settings.device_id)
        self._accepted = 0
        self._persisted = 0
        # publisher thread only
        self._dropping_spool = False
        self._dropping_queue = False
        self._spool_bug_logged = False
        self.counters = {"queue_dropped": 0, "spool_errors": 0, "snapshots": 0, "snapshots_skipped": 0, "events": 0}
        self._closing = False
        self._closed = False
        self._close_deadline = 0.0
        if self._spool.depth:
            log.info("MQTT spool %s holds %d messages from an earlier run; they go out first", self._spool.path, self._spool.depth)
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()
        self._session.start()

    # --- the sink interface (camera thread) --------------------------------------------------------

    def write(self, frame: Frame, dets: Detections) -> None:
        """Hand the frame's detections to the publisher thread: a deque append and a thread wake-up, no I/O."""
        if self._closed:
            raise RuntimeError("MqttSink.write() after close()")
        if self._mode.kind == PUBLISH_EVENTS:
            return  # objects' events replace frames: see write_objects
        publish, snap = self._policy.decide(dets, time.monotonic())
        snapshot = frame.image if snap else None
        if not publish and snapshot is None:
            return
        seq = None
        if publish:
            self._seq += 1  # taken even if the frame is dropped below: the gap shows the loss downstream
            seq = self._seq
        self._enqueue(_Item(seq, frame.index, frame.time, frame.wh, dets, snapshot))

    def write_objects(self, frame: Frame | None, dets: Detections, update: ObjectsUpdate) -> None:
        """With tracking on: counts become retained topics; in events mode the events replace the frames."""
        if update.counts_changed:
            self._states.set_counts(update.counts)
            self._wake.set()
        if self._mode.kind != PUBLISH_EVENTS:
            if frame is not None:
                self.write(frame, dets)
            return
        if self._closed:
            raise RuntimeError("MqttSink.write_objects() after close()")
        if not update.events:
            return
        first = self._seq + 1
        self._seq += len(update.events)  # taken even if dropped below: the gap shows the loss downstream
        self._enqueue(_Item(first, -1, 0.0, (0, 0), dets, None, tuple(update.events)))

    def _enqueue(self, item: _Item) -> None:
        if len(self._pending) >= self.settings.queue_max:
            self.counters["queue_dropped"] += 1
            if not self._dropping_queue:
                self._dropping_queue = True
                log.warning("MQTT publisher is %d frames behind; dropping new frames until it catches up "
                            "(the state dir's disk may be too slow)", self.settings.queue_max)
            return
        self._dropping_queue = False
        self._pending.append(item)
        self._accepted += 1
        self._wake.set()

    def stats(self, snapshot: Mapping[str, Any]) -> None:
        """Publish the pipeline's stats with ours; while disconnected only the newest is kept."""
        self._stats_pending = dict(snapshot)
        self._wake.set()

    def close(self) -> None:
        """Commit what is queued, give the broker up to CLOSE_DRAIN_S to ack the spool, say ``stopped``."""
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + CLOSE_DRAIN_S
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._session.stop()
        left = self._spool.depth
        self._spool.close()
        if left and self._spool.persistent and self._spool.problem is None:
            log.info("MQTT: %d messages stay spooled in %s for the next run", left, self._spool.path)

    def __enter__(self) -> MqttSink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- introspection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._session.connected

    @property
    def backlog(self) -> int:
        """Frames accepted by write() and not yet committed to the spool."""
        return len(self._pending)

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def snapshot_counters(self) -> dict[str, Any]:
        """The publisher's counters, as published under ``mqtt`` on the stats topic."""
        return {
            "connected": self._session.connected,
            "spool_depth": self._spool.depth,
            "spool_dropped": self._spool.dropped,
            "acked": self._pump.acked,
            **self._spool.counters(),
            **self.counters,
            **self._states.counters,
            **self._session.counters,
        }

    def wait_spooled(self, timeout: float) -> bool:
        """Wait until every frame accepted by write() is committed to disk (or lost to a disk error)."""
        return _wait_until(lambda: self._persisted >= self._accepted, timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything accepted so far."""
        return _wait_until(lambda: self._persisted >= self._accepted and self._spool.depth == 0, timeout)

    # --- publisher thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_WAIT_S)
            self._wake.clear()
            try:
                self._persist_pending()
                self._pump.settle_acks()
                self._states.send()
                self._send_stats()
                self._pump.send()
                if self._pump.check_ack_timeout():
                    self._wake.set()
            except Exception as exc:  # a bug or a dead disk must not stop the publisher for good
                log.error("MQTT publisher: %s: %s", type(exc).__name__, exc)
                time.sleep(ERROR_PAUSE_S)
            if self._closing and not self._pending and (
                not self._session.connected or self._spool.depth == 0 or time.monotonic() > self._close_deadline
            ):
                self._pump.settle_acks()
                return

    def _persist_pending(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(BATCH_MAX, len(self._pending)))]
            rows = []
            last_seq = None
            for item in batch:
                if item.snapshot_image is not None:
                    self._send_snapshot(item)
                if item.events:
                    last_seq = item.seq + len(item.events) - 1
                    rows += event_payloads.event_rows(self._topic_events, self.settings, item.seq, item.events,
                                                      self._states.snapshot)
                    self.counters["events"] += len(item.events)
                elif item.seq is not None:
                    last_seq = item.seq
                    rows.append((self._topic_detections, detections_payload(
                        seq=item.seq, device=self.settings.device_id, model=self.settings.model,
                        frame_index=item.frame_index, capture_time=item.capture_time, wh=item.wh,
                        dets=item.dets, names=self.names)))
            try:  # a full or failing disk is the spool's to handle (the messages wait in memory)
                dropped = self._spool.append(rows, self.settings.device_id, last_seq) if rows else 0
            except sqlite3.Error as exc:  # anything else from sqlite is a bug: counted, said once
                self.counters["spool_errors"] += len(rows)
                if not self._spool_bug_logged:
                    self._spool_bug_logged = True
                    log.error("cannot write the MQTT spool %s (%s); these messages are lost", self._spool.path, exc)
            else:
                if dropped and not self._dropping_spool:
                    self._dropping_spool = True
                    log.warning("MQTT spool full (--spool-max %d, or %d in memory while the disk cannot take them): "
                                "dropping the oldest messages, counted as spool_dropped in stats",
                                self.settings.spool_max, self._spool.memory_max)
                elif not dropped and self._dropping_spool:
                    self._dropping_spool = False
                    log.info("MQTT spool below its bound again after dropping %d messages", self._spool.dropped)
            self._persisted += len(batch)

    def _send_snapshot(self, item: _Item) -> None:
        if not self._session.connected:
            self.counters["snapshots_skipped"] += 1
            return
        jpeg = snapshot_jpeg(item.snapshot_image, item.dets, self.names)
        if jpeg is None:
            self.counters["snapshots_skipped"] += 1
            return
        self._session.publish(self._topic_snapshot, jpeg, retain=True)
        self.counters["snapshots"] += 1

    def _send_stats(self) -> None:
        pending = self._stats_pending
        if pending is None or not self._session.connected:
            return
        self._stats_pending = None
        payload = stats_payload(device=self.settings.device_id, pipeline=pending, mqtt=self.snapshot_counters())
        self._session.publish(self._topic_stats, payload)


def _wait_until(condition, timeout: float, poll_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
