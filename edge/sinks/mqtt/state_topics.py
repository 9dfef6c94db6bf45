"""Retained state topics: zone, frame and line counts, the latest object snapshot, Home Assistant configs.

They are published straight through the session, not spooled: only the latest value of a state
matters, and every one of them is published again on each connect, so an outage leaves nothing
stale behind. (Events, which are history, go through the spool.) Runs on the publisher thread,
except ``set_counts``, which the camera thread calls with a new dict each time.
"""

from __future__ import annotations

import logging

from edge.sinks.mqtt.session import Session
from edge.sinks.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)


class StateTopics:
    def __init__(self, settings: MqttSettings, session: Session, discovery: list[tuple[str, bytes]], snapshot_leaf: str):
        self.settings = settings
        self.session = session
        self.discovery = discovery
        self.snapshot_topic = settings.topic(snapshot_leaf)
        self.counters = {"count_updates": 0, "event_snapshots": 0, "event_snapshots_replaced": 0}
        self._counts: dict[str, int] = {}  # replaced whole by the camera thread, never mutated
        self._sent: dict[str, int] = {}
        self._snapshot: bytes | None = None
        self._announced_at: float | None = None

    def set_counts(self, counts: dict[str, int]) -> None:
        """Camera thread: the newest counts (a dict it will not touch again)."""
        self._counts = counts

    def snapshot(self, jpeg: bytes) -> None:
        """Publish an event's snapshot now if connected; else keep it, the newest replacing older ones."""
        if self._snapshot is not None:
            self.counters["event_snapshots_replaced"] += 1
        self._snapshot = jpeg
        self.send()

    def send(self) -> None:
        session = self.session
        if not session.connected:
            return
        if self._announced_at != session.connected_at:  # a new connection: everything again
            self._announced_at = session.connected_at
            self._sent = {}
            for topic, payload in self.discovery:
                session.publish(topic, payload, retain=True)
            if self.discovery:
                log.info("Home Assistant discovery: %d entities announced", len(self.discovery))
        counts = self._counts
        for key, value in counts.items():
            if self._sent.get(key) != value:
                session.publish(self.settings.topic(key), str(value), retain=True)
                self._sent[key] = value
                self.counters["count_updates"] += 1
        if self._snapshot is not None:
            session.publish(self.snapshot_topic, self._snapshot, retain=True)
            self._snapshot = None
            self.counters["event_snapshots"] += 1
