"""The spool's queue in memory: messages waiting for the disk, or for good when there is no disk to use."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from edge.sinks.mqtt.settings import DEFAULT_SPOOL_MEMORY_MAX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spooled:
    """One message waiting for its ack."""

    id: int
    topic: str
    payload: bytes


class MemorySpool:
    """Messages in arrival order, held in memory only, at most ``memory_max``; the oldest are dropped beyond it.

    The base of ``Spool``; on its own it stands in for a spool whose folder or file cannot be used.
    """

    persistent = False

    def __init__(self, path: Path, memory_max: int = DEFAULT_SPOOL_MEMORY_MAX, problem: str | None = None):
        self.path = Path(path)
        self.memory_max = memory_max
        self.problem = problem  # why the messages are not on disk, while that lasts
        self.dropped = 0  # oldest messages dropped at a bound since this spool was opened
        self.write_errors = 0  # transactions the disk refused
        self._held: deque[Spooled] = deque()  # accepted, not on disk (yet)
        self._held_seqs: dict[str, int] = {}
        self._next_id = 1

    @property
    def depth(self) -> int:
        return len(self._held)

    @property
    def held(self) -> int:
        """Messages waiting in memory rather than on disk."""
        return len(self._held)

    def counters(self) -> dict[str, object]:
        return {"spool": "disk" if self.persistent else "memory", "spool_held": self.held,
                "spool_write_errors": self.write_errors, "spool_problem": self.problem}

    def last_seq(self, device: str) -> int:
        return self._held_seqs.get(device, 0)

    def append(self, messages: Sequence[tuple[str, bytes]], device: str | None = None, seq: int | None = None) -> int:
        """Add ``(topic, payload)`` messages with ``device``'s last ``seq``; how many of the oldest were dropped."""
        for topic, payload in messages:
            self._held.append(Spooled(self._next_id, topic, payload))
            self._next_id += 1
        if device is not None and seq is not None:
            self._held_seqs[device] = seq
        return self._write() + self._bound_memory()

    def after(self, last_id: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` messages with ids above ``last_id``, oldest first."""
        return [m for m in self._held if m.id > last_id][:limit]

    def remove(self, ids: Iterable[int]) -> int:
        """Forget acknowledged messages; ids already dropped at the bound are ignored."""
        if not self._held:
            return 0
        gone = set(ids)
        before = len(self._held)
        self._held = deque(m for m in self._held if m.id not in gone)
        return before - len(self._held)

    def close(self) -> None:
        if self._held:
            log.warning("MQTT: %d unsent messages held in memory are lost (%s)", len(self._held), self.problem or "no spool")

    def _write(self) -> int:
        return 0  # nowhere to write

    def _bound_memory(self) -> int:
        excess = len(self._held) - self.memory_max
        for _ in range(max(excess, 0)):
            self._held.popleft()
        self.dropped += max(excess, 0)
        return max(excess, 0)
