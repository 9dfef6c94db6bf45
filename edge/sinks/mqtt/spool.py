"""A bounded on-disk queue of MQTT messages: written before publishing, deleted after the broker's ack.

sqlite in WAL mode with ``synchronous=NORMAL``: a committed batch survives the process being killed
(SIGKILL, OOM killer); the last batches before a power cut may be lost, the file stays consistent.
Row ids come from AUTOINCREMENT, so they never repeat and order the messages across restarts.
The per-device sequence number lives in the same file and is committed with the messages it numbers.

Not thread-safe: one thread uses a Spool at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from edge.errors import EdgeError

log = logging.getLogger(__name__)

SPOOL_FILE = "mqtt-spool.sqlite3"
LOCK_FILE = "mqtt-spool.lock"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
_SEQ_KEY = "seq:"  # + device id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Spooled:
    """One message waiting for its ack."""

    id: int
    topic: str
    payload: bytes


class Spool:
    """Messages in arrival order, at most ``max_messages``; the oldest are dropped (and counted) beyond that."""

    def __init__(self, state_dir: str | Path, max_messages: int):
        if max_messages < 1:
            raise EdgeError(f"--spool-max must be at least 1, received {max_messages}")
        self.folder = Path(state_dir)
        self.path = self.folder / SPOOL_FILE
        self.max_messages = max_messages
        self.dropped = 0  # oldest messages dropped at the bound since this Spool was opened
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.folder / LOCK_FILE, "a+")
        except OSError as exc:
            raise EdgeError(f"cannot use --state-dir {self.folder}: {exc.strerror}; point it at a writable folder") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise EdgeError(f"the MQTT spool in {self.folder} is in use by another process; "
                            f"give each instance its own --state-dir") from None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{SPOOL_FILE}.corrupt-{int(time.time())}")
            log.warning("MQTT spool %s is unreadable (%s); moved it to %s and started an empty one", self.path, exc, aside)
            self._move_aside(aside)
            self._db = self._open()
        self.depth = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise EdgeError(f"cannot open the MQTT spool {self.path}: {exc}; check --state-dir") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _move_aside(self, aside: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                os.replace(part, aside.with_name(aside.name + suffix))

    def last_seq(self, device: str) -> int:
        """The last sequence number committed for ``device`` (0 for a new device or spool)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (_SEQ_KEY + device,)).fetchone()
        return row[0] if row else 0

    def append(self, messages: Sequence[tuple[str, bytes]], device: str | None = None, seq: int | None = None) -> int:
        """Add ``(topic, payload)`` messages in one transaction, with ``device``'s last ``seq``.

        Returns how many of the oldest messages were dropped to stay within the bound.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO messages (topic, payload) VALUES (?, ?)", messages)
            if device is not None and seq is not None:
                db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (_SEQ_KEY + device, seq))
            excess = self.depth + len(messages) - self.max_messages
            dropped = 0
            if excess > 0:
                dropped = db.execute("DELETE FROM messages WHERE id IN "
                                     "(SELECT id FROM messages ORDER BY id LIMIT ?)", (excess,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.depth += len(messages) - dropped
        self.dropped += dropped
        return dropped

    def after(self, last_id: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` messages with ids above ``last_id``, oldest first."""
        rows = self._db.execute("SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))
        return [Spooled(row[0], row[1], bytes(row[2])) for row in rows]

    def remove(self, ids: Iterable[int]) -> int:
        """Delete acknowledged messages; ids already dropped at the bound are ignored."""
        ids = list(ids)
        if not ids:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed = db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.depth -= removed
        return removed

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self._lock.close()  # releases the flock
