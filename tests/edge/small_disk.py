"""A real small filesystem for tests: a tmpfs mounted in the test's folder, and a way to fill it.

Mounting needs root; elsewhere the test is skipped with that reason (the behaviour under test
needs a disk that really fills up, which no mock reproduces: sqlite, FFmpeg and the kernel each
see ENOSPC in their own way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

FILL_CHUNK = 64 * 1024


@contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for the test needs root")
    if shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem for the test needs mount(8)")
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


def fill(disk: Path, leave_bytes: int = 0, name: str = "filler") -> Path:
    """Fill ``disk`` until at most ``leave_bytes`` are free; returns the file (delete it to free the space)."""
    filler = disk / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while (room := free_bytes(disk) - leave_bytes) > 0:
            try:
                os.write(fd, bytes(min(room, FILL_CHUNK)))
            except OSError:
                break
    finally:
        os.close(fd)
    return filler
