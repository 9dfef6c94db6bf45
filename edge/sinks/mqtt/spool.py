"""A bounded on-disk queue of MQTT messages: written before publishing, deleted after the broker's ack.

sqlite in WAL mode with ``synchronous=NORMAL``: a committed batch survives the process being killed
(SIGKILL, OOM killer); the last batches before a power cut may be lost, the file stays consistent.
Message ids are given here, in arrival order, and never repeat (the next one continues from the
highest the file has seen), so they order the messages across restarts. The per-device sequence
number lives in the same file and is committed with the messages it numbers.

The disk may fill up, or fail. A message then waits in memory (at most ``memory_max``), is still
published from there, and goes to disk as soon as a write works again; disk full is told apart
from corruption, logged once with the path and the free space, and never moves a valid file
aside. The WAL is kept small (``wal_autocheckpoint``, ``journal_size_limit``, a checkpoint once
the queue drains), so it cannot fill a small disk by itself. ``MemorySpool`` (``memory_spool``) is
the same queue with no file at all, for a state folder that cannot be used: MQTT goes on without
persistence.

Not thread-safe: one thread uses a Spool at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from itertools import islice
from pathlib import Path
from typing import Iterable

from edge.errors import EdgeError
from edge.sinks.files import STATE_DIR_MODE, STATE_FILE_MODE, free_kb
from edge.sinks.mqtt.memory_spool import MemorySpool, Spooled
from edge.sinks.mqtt.settings import DEFAULT_SPOOL_MEMORY_MAX

log = logging.getLogger(__name__)

SPOOL_FILE = "mqtt-spool.sqlite3"
LOCK_FILE = "mqtt-spool.lock"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
WAL_CHECKPOINT_PAGES = 256  # checkpoint every 1 MB of WAL instead of sqlite's 4 MB
JOURNAL_SIZE_LIMIT_BYTES = 1024 * 1024  # what a checkpointed WAL is cut back to (kept: it is reused when the disk is full)
CHECKPOINT_EVERY_REMOVED = 5000  # an explicit checkpoint after this many deletes...
CHECKPOINT_DRAINED_REMOVED = 1000  # ...or after this many once the queue is empty (after an outage, say)
WRITE_BATCH = 500  # messages per transaction when catching up from memory: small enough for a nearly full disk
DISK_RETRY_S = 5.0  # after a failed write, how long before the disk is tried again
_SEQ_KEY = "seq:"  # + device id
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_FULL = sqlite3.SQLITE_FULL
_IOERR = sqlite3.SQLITE_IOERR
PRIMARY_CODE_MASK = 0xFF  # extended result codes carry the primary one in their low byte
LOW_SPACE_KB = 64  # an I/O error with less free space than this is the disk being full

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


class SpoolUnavailable(EdgeError):
    """The spool file cannot be opened now (disk full, I/O error, read-only): left as it is, never moved aside."""


def describe(exc: sqlite3.Error, folder: Path) -> tuple[str, bool]:
    """(what went wrong, in words for the log; whether it is the disk being full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & PRIMARY_CODE_MASK
    free = free_kb(folder)
    full = primary == _FULL or (primary == _IOERR and free is not None and free < LOW_SPACE_KB)
    if full:
        return f"disk full ({'?' if free is None else free} kB free in {folder})", True
    if primary in _CORRUPT:
        return f"the file is damaged ({exc})", False
    return str(exc), False


class Spool(MemorySpool):
    """Messages in arrival order on disk, at most ``max_messages``; the oldest are dropped (and counted) beyond that."""

    persistent = True

    def __init__(self, state_dir: str | Path, max_messages: int, memory_max: int = DEFAULT_SPOOL_MEMORY_MAX):
        if max_messages < 1:
            raise EdgeError(f"--spool-max must be at least 1, received {max_messages}")
        self.folder = Path(state_dir)
        super().__init__(self.folder / SPOOL_FILE, min(memory_max, max_messages))
        self.max_messages = max_messages
        self._unremoved: set[int] = set()  # acknowledged, but deleting them from disk failed
        self._on_disk = 0
        self._retry_at = 0.0
        self._removed_since_checkpoint = 0
        self._lock = _lock_folder(self.folder)
        try:
            self._db = self._open_or_set_aside()
            self._on_disk = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            self._next_id = self._highest_id() + 1
        except sqlite3.Error as exc:
            self._lock.close()
            raise SpoolUnavailable(f"cannot open the MQTT spool {self.path}: {describe(exc, self.folder)[0]}") from None
        except OSError as exc:
            self._lock.close()
            raise SpoolUnavailable(f"cannot open the MQTT spool {self.path}: {exc.strerror}") from None
        except BaseException:
            self._lock.close()
            raise

    def _open_or_set_aside(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & PRIMARY_CODE_MASK not in _CORRUPT:
                raise  # disk full, I/O, permissions: the file may be perfectly good
            aside = self.path.with_name(f"{SPOOL_FILE}.corrupt-{int(time.time())}")
            log.warning("MQTT spool %s is unreadable (%s); moved it to %s and started an empty one", self.path, exc, aside)
            self._move_aside(aside)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, STATE_FILE_MODE))  # before sqlite creates it 0644
        try:
            os.chmod(self.path, STATE_FILE_MODE)  # a file from an older edge-yolo too: it is ours alone
        except OSError:
            pass  # someone else's file that we may still write: not ours to change
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise EdgeError(f"cannot open the MQTT spool {self.path}: {exc}; check --state-dir") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
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

    def _highest_id(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM (SELECT seq FROM sqlite_sequence WHERE name = 'messages' "
                               "UNION ALL SELECT MAX(id) FROM messages)").fetchone()
        return row[0] or 0

    @property
    def depth(self) -> int:
        return self._on_disk - len(self._unremoved) + len(self._held)

    def last_seq(self, device: str) -> int:
        """The last sequence number committed for ``device`` (0 for a new device or spool)."""
        if device in self._held_seqs:
            return self._held_seqs[device]
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (_SEQ_KEY + device,)).fetchone()
        return row[0] if row else 0

    def after(self, last_id: int, limit: int) -> list[Spooled]:
        """Up to ``limit`` messages with ids above ``last_id``, oldest first: those on disk, then those held."""
        found: list[Spooled] = []
        try:
            rows = self._db.execute("SELECT id, topic, payload FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                                    (last_id, limit + len(self._unremoved))).fetchall()
            found = [Spooled(row[0], row[1], bytes(row[2])) for row in rows if row[0] not in self._unremoved][:limit]
        except sqlite3.Error as exc:
            self._failed(exc, "read")
        return found + super().after(max([last_id] + [m.id for m in found]), limit - len(found))

    def remove(self, ids: Iterable[int]) -> int:
        """Delete acknowledged messages (from memory, or from disk as soon as it takes a write);
        ids already dropped at the bound are ignored."""
        ids = list(ids)
        first_held = self._first_held_id()
        removed = super().remove(ids)
        on_disk = [i for i in ids if i < first_held]
        if on_disk:
            on_disk_before = self._on_disk
            self._unremoved.update(on_disk)
            self._write()
            removed += on_disk_before - self._on_disk if not self._unremoved else len(on_disk)
        return removed

    def close(self) -> None:
        try:
            self._write(force=True)
            super().close()
            self._db.close()
        finally:
            self._lock.close()  # releases the flock

    # --- writing ------------------------------------------------------------------------------------

    def _first_held_id(self) -> int:
        return self._held[0].id if self._held else self._next_id

    def _write(self, force: bool = False) -> int:
        """Put held messages on disk and delete acknowledged ones, in small transactions; the oldest
        dropped beyond ``max_messages``. Stops at the first refusal and retries after DISK_RETRY_S."""
        if not force and time.monotonic() < self._retry_at:
            return 0
        dropped = 0
        try:
            self._commit_removals()
            while self._held or self._held_seqs:
                batch = list(islice(self._held, WRITE_BATCH))
                last = len(batch) == len(self._held)  # the sequence numbers go with the newest messages
                dropped += self._commit_batch(batch, self._held_seqs if last else {})
                for _ in batch:
                    self._held.popleft()
                if last:
                    self._held_seqs = {}
        except sqlite3.Error as exc:
            self._failed(exc, "write")
            return dropped
        if self.problem is not None:
            log.info("MQTT spool %s writable again; the messages held in memory are on disk", self.path)
            self.problem = None
        return dropped

    def _commit_batch(self, batch: list[Spooled], seqs: dict[str, int]) -> int:
        db = self._db
        excess = max(self._on_disk - len(self._unremoved) + len(batch) - self.max_messages, 0)
        with _transaction(db):
            db.executemany("INSERT INTO messages (id, topic, payload) VALUES (?, ?, ?)",
                           ((m.id, m.topic, m.payload) for m in batch))
            for device, seq in seqs.items():
                db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (_SEQ_KEY + device, seq))
            dropped = db.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                                 (excess,)).rowcount if excess else 0
        self._on_disk += len(batch) - dropped
        self.dropped += dropped
        return dropped

    def _commit_removals(self) -> None:
        if not self._unremoved:
            return
        ids = sorted(self._unremoved)
        with _transaction(self._db):
            removed = self._db.executemany("DELETE FROM messages WHERE id = ?", ((i,) for i in ids)).rowcount
        self._on_disk -= removed
        self._unremoved.clear()
        self._removed_since_checkpoint += len(ids)
        if self._removed_since_checkpoint >= (CHECKPOINT_DRAINED_REMOVED if self._on_disk == 0 else CHECKPOINT_EVERY_REMOVED):
            self._removed_since_checkpoint = 0
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the freed pages reused, the WAL cut back

    def _failed(self, exc: sqlite3.Error, doing: str) -> None:
        self.write_errors += doing == "write"
        self._retry_at = time.monotonic() + DISK_RETRY_S
        problem, _full = describe(exc, self.folder)
        if self.problem is None:
            log.error("MQTT spool %s: cannot %s it: %s; messages wait in memory (at most %d) and are still "
                      "published, retrying the disk every %g s", self.path, doing, problem, self.memory_max, DISK_RETRY_S)
        self.problem = problem


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT; on an error, ROLLBACK only if sqlite has not already rolled back
    (after SQLITE_FULL it has, and a second ROLLBACK would hide the real error)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the error being raised says more


def _lock_folder(folder: Path):
    """Create the state folder (0700) and hold its lock file; EdgeError when unusable or already held."""
    try:
        folder.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        lock = os.fdopen(os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, STATE_FILE_MODE), "a+")
    except OSError as exc:
        raise EdgeError(f"cannot use --state-dir {folder}: {exc.strerror}; point it at a writable folder") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise EdgeError(f"the MQTT spool in {folder} is in use by another process; "
                        f"give each instance its own --state-dir") from None
    return lock


def open_spool(state_dir: str | Path, max_messages: int, memory_max: int = DEFAULT_SPOOL_MEMORY_MAX) -> MemorySpool:
    """The disk spool in ``state_dir``, or a MemorySpool (logged once) when the folder or file cannot be used."""
    try:
        return Spool(state_dir, max_messages, memory_max)
    except EdgeError as exc:
        if str(exc).startswith("--spool-max"):
            raise
        log.error("%s; MQTT goes on without a disk spool: unsent messages wait in memory (at most %d) and are lost "
                  "if the process stops", exc, min(memory_max, max_messages))
        return MemorySpool(Path(state_dir) / SPOOL_FILE, min(memory_max, max_messages), problem=str(exc))
