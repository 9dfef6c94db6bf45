"""The JSON lines file on a real small disk: whole lines only, a torn tail repaired, private modes."""

from __future__ import annotations

import json
import logging
import os
import stat
import time

import numpy as np
import pytest

from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.sinks.jsonlines import RotatingJsonFile
from edge.sources import Frame
from tests.edge.small_disk import fill, mounted_tmpfs

NAMES = ("person", "bus")
MAX_BYTES = 10 * 1024 * 1024


def frame(index: int) -> Frame:
    return Frame(index, "cam", time.time(), np.zeros((4, 6, 3), np.uint8))


def dets(count: int) -> Detections:
    return Detections(np.tile(np.array([[1, 2, 3, 4]], np.float32), (count, 1)), np.full(count, 0.5, np.float32),
                      np.zeros(count, np.int64))


def lines_of(path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the file ends in a torn record"
    return [json.loads(line) for line in text.splitlines()]


def test_a_torn_last_line_is_removed_when_the_file_is_opened(tmp_path, caplog):
    path = tmp_path / "detections.jsonl"
    sink = RotatingJsonFile(path, NAMES, MAX_BYTES, 1)
    for index in range(3):
        sink.write(frame(index), dets(1))
    sink.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"frame": 3, "source": "cam", "ti')  # a crash in the middle of a record
    with caplog.at_level(logging.WARNING):
        again = RotatingJsonFile(path, NAMES, MAX_BYTES, 1)
    again.write(frame(10), dets(2))
    again.close()
    assert [r["frame"] for r in lines_of(path)] == [0, 1, 2, 10]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} ended in an incomplete record (33 bytes, from a crash or a full disk); removed it"]


def test_on_a_full_disk_every_line_is_whole_and_writing_resumes(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        path = disk / "history" / "detections.jsonl"
        sink = RotatingJsonFile(path, NAMES, MAX_BYTES, 1)
        filler = fill(disk, leave_bytes=20_000)
        written, refused = [], []
        for index in range(400):  # about 200 bytes each with 20 boxes: the disk fills up on the way
            try:
                sink.write(frame(index), dets(20))
                written.append(index)
            except EdgeError as exc:
                refused.append(str(exc))
        assert written and refused
        assert refused[0].startswith(f"cannot write --json-out {path}: No space left on device (")
        assert f"kB free in {path.parent})" in refused[0] and "\n" not in refused[0]
        assert [r["frame"] for r in lines_of(path)] == written  # nothing torn, nothing glued
        filler.unlink()
        sink.write(frame(1000), dets(1))
        sink.close()
        assert [r["frame"] for r in lines_of(path)] == written + [1000]


def test_the_history_is_private_outside_systemd(tmp_path):
    old_umask = os.umask(0o022)
    try:
        RotatingJsonFile(tmp_path / "new" / "detections.jsonl", NAMES, MAX_BYTES, 1).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "detections.jsonl").stat().st_mode) == 0o600


def test_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EdgeError, match=f"cannot write --json-out {blocker / 'x.jsonl'}: File exists"):
        RotatingJsonFile(blocker / "x.jsonl", NAMES, MAX_BYTES, 1)
