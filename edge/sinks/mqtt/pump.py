"""Spool to broker: spooled messages are published in order and leave the spool only on their ack.

At most ``INFLIGHT_WINDOW`` messages are unacknowledged at once, which keeps order and paho's memory
bounded. A broker that stays connected but acknowledges nothing for ``ACK_TIMEOUT_S`` gets the
whole spool again from the oldest message (QoS 1 allows the duplicates; ``seq`` tells them apart).
Runs on the publisher thread only.
"""

from __future__ import annotations

import logging
import time

from edge.sinks.mqtt.session import INFLIGHT_WINDOW, Session
from edge.sinks.mqtt.spool import Spool

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 30.0


class SpoolPump:
    def __init__(self, spool: Spool, session: Session):
        self.spool = spool
        self.session = session
        self.acked = 0
        self._inflight: dict[int, int] = {}  # paho mid -> spool row id
        self._cursor = 0  # highest spool id handed to paho
        self._last_progress = time.monotonic()

    def settle_acks(self) -> None:
        """Delete the acknowledged rows from the spool."""
        done = []
        acks = self.session.acks
        while acks:
            row_id = self._inflight.pop(acks.popleft(), None)
            if row_id is not None:  # None: status, stats and snapshot messages are not spooled
                done.append(row_id)
        if done:
            self.spool.remove(done)
            self.acked += len(done)
            self._last_progress = time.monotonic()

    def send(self) -> None:
        """Hand paho the next spooled rows, as many as the in-flight window has room for."""
        room = INFLIGHT_WINDOW - len(self._inflight)
        if not self.session.connected or room <= 0:
            return
        if not self._inflight:
            self._last_progress = time.monotonic()
        mqtt = self.session.mqtt
        for row in self.spool.after(self._cursor, room):
            info = self.session.publish(row.topic, row.payload)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break  # paho refused it for now; retried from the same row on the next pass
            # NO_CONN: paho keeps a QoS>0 message and sends it after the reconnect
            self._inflight[info.mid] = row.id
            self._cursor = row.id

    def check_ack_timeout(self) -> bool:
        """True when the broker went silent and the spool is to be sent again from the oldest row."""
        session = self.session
        since = max(self._last_progress, session.connected_at)
        if not (session.connected and self._inflight and time.monotonic() - since > ACK_TIMEOUT_S):
            return False
        log.warning("MQTT broker %s acknowledged nothing for %g s; sending the %d spooled messages again",
                    session.where, ACK_TIMEOUT_S, self.spool.depth)
        self._inflight.clear()
        self._cursor = 0
        self._last_progress = time.monotonic()
        return True
