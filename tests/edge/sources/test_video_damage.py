"""Damaged video files, made here from the real car video: a garbled stretch and a truncated copy.

Read through the capture thread as edge-detect reads them, with no model: the frames after a
damaged stretch still arrive (the lost ones counted as corrupt), and a file that stops short of
the frame count its header declares is reported once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge.service.capture import Capture, CaptureSettings, Mailbox
from edge.service.stats import Counters
from edge.sources.opencv import VideoFileSource

VIDEO = Path("data") / "video" / "car-detection.mp4"
DECLARED_FRAMES = 377
GARBLE_AT = 0.32  # of the file's bytes: frame 130 or so, well inside the mdat box (moov is at the start)
GARBLE_BYTES = 20_000
TRUNCATE_AT = 0.45
TAKE_S = 30.0


@pytest.fixture
def video(data_dir) -> bytes:
    return (data_dir / VIDEO).read_bytes()


def read_through(path: Path, **settings) -> tuple[Counters, list[float]]:
    """Every frame's position (ms), as the inference loop would receive them, and the counters."""
    counters = Counters()
    mailbox = Mailbox(counters)
    capture = Capture(VideoFileSource(path), mailbox, counters, CaptureSettings(**settings))
    capture.open()
    capture.start()
    positions = []
    while (frame := mailbox.take(TAKE_S)) is not None:
        positions.append(frame.position_ms)
    capture.stop()
    return counters, positions


def test_frames_after_a_garbled_stretch_are_read_and_the_lost_ones_counted(tmp_path, video, caplog):
    damaged = bytearray(video)
    start = int(len(video) * GARBLE_AT)
    damaged[start:start + GARBLE_BYTES] = np.random.default_rng(0).integers(0, 256, GARBLE_BYTES, np.uint8).tobytes()
    path = tmp_path / "garbled.mp4"
    path.write_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        counters, positions = read_through(path)
    fps = 12.5
    assert 0 < counters.corrupt < 20
    assert counters.read == len(positions)
    assert counters.read + counters.corrupt == DECLARED_FRAMES  # every declared frame read or counted
    assert positions[-1] >= (DECLARED_FRAMES - 2) * 1000 / fps  # to the end, not stopped at the damage
    assert positions == sorted(positions)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "corrupt" in warnings[0] and str(path) in warnings[0], warnings


def test_a_truncated_file_is_reported_once(tmp_path, video, caplog):
    path = tmp_path / "truncated.mp4"
    path.write_bytes(video[: int(len(video) * TRUNCATE_AT)])
    with caplog.at_level(logging.WARNING):
        counters, positions = read_through(path, loop=True, max_frames=2 * DECLARED_FRAMES)
    short = [r.getMessage() for r in caplog.records if "declares" in r.getMessage()]
    per_pass = positions.index(positions[0], 1)  # --loop: where the second pass starts
    assert 100 < per_pass < DECLARED_FRAMES * TRUNCATE_AT + 20
    assert short == [f"{path} ended after {per_pass} of the {DECLARED_FRAMES} frames its header declares: "
                     "the rest is truncated or undecodable"]  # once, though the file was read several times
    assert counters.corrupt == 0  # a missing end is not corrupt frames


def test_an_intact_file_ends_without_a_warning(data_dir, caplog):
    with caplog.at_level(logging.WARNING):
        counters, positions = read_through(data_dir / VIDEO)
    assert len(positions) == DECLARED_FRAMES and counters.corrupt == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
