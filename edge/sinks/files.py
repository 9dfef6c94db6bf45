"""What the file sinks share: private folders and files, whole writes, and errors that say the disk is full."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# State (the MQTT spool, the detection history) is private outside systemd too (UMask=0077 there);
# sqlite gives a database's -wal and -shm files the database's own mode.
STATE_DIR_MODE = 0o700
STATE_FILE_MODE = 0o600
BYTES_PER_KB = 1024


def free_kb(folder: Path) -> int | None:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize // BYTES_PER_KB


def free_bytes(folder: Path) -> int:
    kb = free_kb(folder)
    return 0 if kb is None else kb * BYTES_PER_KB


def os_problem(exc: OSError, folder: Path) -> str:
    """``No space left on device (0 kB free in /var/lib/x)`` or the error's own words."""
    text = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        kb = free_kb(folder)
        return f"{text} ({'?' if kb is None else kb} kB free in {folder})"
    return text


def make_private_folder(folder: Path) -> None:
    """``folder`` and missing parents, those created here 0700; an existing folder is left as it is."""
    folder.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)


def write_whole(fd: int, data: bytes) -> None:
    """Append ``data`` to ``fd`` completely or not at all: a short write (disk full) is cut back off."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError:
        os.ftruncate(fd, start)
        raise
