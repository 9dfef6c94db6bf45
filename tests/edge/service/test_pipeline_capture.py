"""The capture side without a model: the mailbox's policies, corrupt frames, a lost source coming back."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from edge.service.capture import Capture, CaptureSettings, Mailbox
from edge.errors import EdgeError
from edge.sources import CorruptFrame, Frame, Grab, SourceLost, SourceUnavailable
from edge.service.stats import Counters, PipelineStats, format_snapshot, parse_stats_line

FAST_RECONNECT = dict(reconnect_min_s=0.01, reconnect_max_s=0.04)
TAKE_S = 5.0  # generous: only reached if something is broken


def frame(index: int) -> Frame:
    return Frame(index, "test", time.time(), np.zeros((2, 2, 3), np.uint8))


def test_a_live_frame_replaces_the_waiting_one_and_is_counted_as_dropped():
    counters = Counters()
    mailbox = Mailbox(counters)
    for i in range(3):
        mailbox.put_latest(frame(i))
    assert mailbox.take(TAKE_S).index == 2  # never a stale frame
    assert (counters.read, counters.dropped) == (3, 2)
    assert mailbox.take(0.01) is None


def test_a_file_frame_waits_for_the_consumer():
    counters = Counters()
    mailbox = Mailbox(counters)
    mailbox.put_when_empty(frame(0))
    second_put = threading.Thread(target=mailbox.put_when_empty, args=(frame(1),))
    second_put.start()
    second_put.join(0.2)
    assert second_put.is_alive() and counters.read == 1  # blocked, not queued
    assert mailbox.take(TAKE_S).index == 0
    second_put.join(TAKE_S)
    assert mailbox.take(TAKE_S).index == 1
    assert (counters.read, counters.dropped) == (2, 0)


def test_closing_releases_a_waiting_put_and_a_leftover_frame_is_dropped():
    counters = Counters()
    mailbox = Mailbox(counters)
    mailbox.put_when_empty(frame(0))
    waiting = threading.Thread(target=mailbox.put_when_empty, args=(frame(1),))
    waiting.start()
    mailbox.close()
    waiting.join(TAKE_S)
    assert not waiting.is_alive()
    assert mailbox.discard() == 1 and mailbox.finished
    assert (counters.read, counters.dropped) == (1, 1)


class ScriptedSource:
    """A live source that plays a script: 'f' a frame, 'c' a corrupt frame, 'x' lost; then it waits.

    ``refuse_opens`` reopen attempts fail after a loss, as a camera that takes a while to come back.
    """

    live = True
    fps = None
    name = "scripted"

    def __init__(self, script: str, refuse_opens: int = 0):
        self.script = list(script)
        self.refuse_opens = refuse_opens
        self.opens = 0
        self.closes = 0
        self.done = threading.Event()

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and self.refuse_opens:
            self.refuse_opens -= 1
            raise EdgeError("camera not there yet")

    def read(self) -> Grab:
        if not self.script:
            self.done.set()
            time.sleep(0.01)
            raise CorruptFrame("idle")  # keeps the thread busy without frames, like a dark camera
        step = self.script.pop(0)
        if step == "c":
            raise CorruptFrame("bad JPEG")
        if step == "x":
            raise SourceLost("cable pulled")
        return Grab(np.zeros((2, 2, 3), np.uint8), time.time())

    def close(self) -> None:
        self.closes += 1


def run_script(source: ScriptedSource, **settings) -> tuple[Counters, list[Frame]]:
    counters = Counters()
    mailbox = Mailbox(counters)
    capture = Capture(source, mailbox, counters, CaptureSettings(**FAST_RECONNECT, **settings))
    capture.open()
    taken: list[Frame] = []
    consumer_stop = threading.Event()

    def consume():
        while not consumer_stop.is_set():
            got = mailbox.take(0.01)
            if got is not None:
                taken.append(got)
                counters.processed += 1

    consumer = threading.Thread(target=consume)
    consumer.start()
    capture.start()
    assert source.done.wait(TAKE_S)
    capture.stop()
    consumer_stop.set()
    consumer.join(TAKE_S)
    mailbox.discard()
    return counters, taken


def test_corrupt_frames_are_skipped_counted_and_logged_once(caplog):
    with caplog.at_level(logging.INFO, logger="edge.service.capture"):
        counters, taken = run_script(ScriptedSource("fcfccf"), stall_timeout_s=60)
    assert counters.corrupt >= 3  # plus the idle ones at the end
    assert counters.read == 3 == counters.processed + counters.dropped
    indices = [f.index for f in taken]
    assert indices == sorted(set(indices)) and indices[-1] == 2  # corrupt frames take no index; newest last
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1


def test_a_lost_source_is_reopened_with_one_log_line_per_state_change(caplog):
    source = ScriptedSource("ffxff", refuse_opens=3)
    with caplog.at_level(logging.INFO, logger="edge.service.capture"):
        counters, taken = run_script(source, stall_timeout_s=60)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if " down: " in m] == ["source scripted down: cable pulled"]
    assert len([m for m in messages if "reconnecting" in m]) == 1  # not one per refused attempt
    assert len([m for m in messages if "up again" in m]) == 1
    assert source.opens == 1 + 3 + 1 and counters.reconnects == 1
    assert counters.read == 4 == counters.processed + counters.dropped


def test_a_camera_that_sends_only_corrupt_frames_is_treated_as_stalled(caplog):
    source = ScriptedSource("f" + "c" * 30)
    with caplog.at_level(logging.INFO, logger="edge.service.capture"):
        counters, _ = run_script(source, stall_timeout_s=0.0)
    assert any("down: no valid frame" in r.getMessage() for r in caplog.records)
    assert counters.reconnects >= 1


def test_stats_snapshot_and_its_log_line_agree():
    stats = PipelineStats()
    stats.counters.read, stats.counters.processed, stats.counters.dropped = 10, 7, 3
    stats.record_latency({"preprocess": 1.0, "invoke": 10.0, "postprocess": 0.5})
    stats.record_latency({"preprocess": 3.0, "invoke": 12.0, "postprocess": 0.5})
    snapshot = stats.snapshot(final=True)
    assert snapshot["latency_ms"] == {"preprocess_ms": 2.0, "invoke_ms": 11.0, "postprocess_ms": 0.5}
    line = format_snapshot(snapshot)
    assert line.startswith("final stats: ")
    fields = parse_stats_line(line)
    assert (fields["read"], fields["processed"], fields["dropped"], fields["invoke_ms"]) == ("10", "7", "3", "11.0")
    assert stats.snapshot()["latency_ms"]["invoke_ms"] is None  # each snapshot covers its own interval


@pytest.mark.parametrize("loop", [False, True])
def test_a_file_is_read_completely_and_replayed_with_loop(data_dir, loop):
    from edge.sources.opencv import VideoFileSource

    counters = Counters()
    mailbox = Mailbox(counters)
    source = VideoFileSource(data_dir / "data" / "video" / "car-detection.mp4")
    capture = Capture(source, mailbox, counters, CaptureSettings(loop=loop, max_frames=400 if loop else None))
    capture.open()
    capture.start()
    positions = []
    while (got := mailbox.take(TAKE_S)) is not None:
        positions.append(got.position_ms)
        time.sleep(0.001 if len(positions) % 50 else 0.05)  # a consumer of uneven speed: no frame is lost
    capture.stop()
    assert counters.dropped == 0
    assert len(positions) == (400 if loop else 377) == counters.read
    if loop:
        assert positions[377] < positions[376]  # back to the start


class LateCamera(ScriptedSource):
    """A camera that is not there for its first ``missing_opens`` opens, start-up included."""

    def __init__(self, script: str, missing_opens: int):
        super().__init__(script)
        self.missing_opens = missing_opens

    def open(self) -> None:
        self.opens += 1
        if self.opens <= self.missing_opens:
            raise SourceUnavailable("/dev/video0 does not exist")


def test_a_live_source_missing_at_start_up_is_waited_for_like_a_lost_one(caplog):
    source = LateCamera("fff", missing_opens=3)
    with caplog.at_level(logging.INFO, logger="edge.service.capture"):
        counters, taken = run_script(source, stall_timeout_s=60)  # open() must not raise
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "not available" in m] == [
        "source scripted is not available (/dev/video0 does not exist); waiting for it, retrying with backoff up to 0.04 s"]
    assert not [m for m in messages if "reconnecting" in m or " down: " in m]  # announced once, as waiting
    assert len([m for m in messages if "up after waiting" in m]) == 1
    assert source.opens == 4 and counters.reconnects == 0  # nothing was lost: it arrived late
    assert counters.read == 3 == counters.processed + counters.dropped


def test_a_live_source_that_needs_the_user_still_ends_the_run_at_once():
    class NoLibrary(ScriptedSource):
        def open(self) -> None:
            raise EdgeError("picamera2 is not installed")

    counters = Counters()
    capture = Capture(NoLibrary(""), Mailbox(counters), counters, CaptureSettings(**FAST_RECONNECT))
    with pytest.raises(EdgeError, match="picamera2 is not installed"):
        capture.open()


def test_a_video_that_cannot_be_opened_fails_at_once(tmp_path):
    from edge.sources.opencv import VideoFileSource

    (tmp_path / "x.mp4").write_text("not a video")
    counters = Counters()
    capture = Capture(VideoFileSource(tmp_path / "x.mp4"), Mailbox(counters), counters, CaptureSettings())
    with pytest.raises(EdgeError, match="as a video"):
        capture.open()


class HangingCamera(ScriptedSource):
    """Delivers a frame, then hangs inside read() until released, as a wedged driver does."""

    def __init__(self):
        super().__init__("f")
        self.release = threading.Event()
        self.hanging = threading.Event()

    def read(self) -> Grab:
        if self.script:
            return super().read()
        self.hanging.set()
        self.release.wait(TAKE_S)
        raise SourceLost("released")


def test_responsive_while_waiting_for_a_camera_not_while_stuck_in_a_driver(monkeypatch):
    import edge.service.capture as capture_module

    monkeypatch.setattr(capture_module, "HANG_MARGIN_S", 0.3)
    counters = Counters()
    waiting = Capture(LateCamera("", missing_opens=10**6), Mailbox(counters), counters,
                      CaptureSettings(stall_timeout_s=0.0, reconnect_min_s=0.05, reconnect_max_s=0.05))
    waiting.open()
    assert not waiting.responsive()  # not started
    waiting.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # reconnecting for a second: responsive all along
        assert waiting.responsive() and not waiting.up
        time.sleep(0.02)
    assert waiting.down_reason == "/dev/video0 does not exist"
    waiting.stop()
    assert not waiting.responsive()  # the thread has ended

    hanging_source = HangingCamera()
    counters = Counters()
    hanging = Capture(hanging_source, Mailbox(counters), counters, CaptureSettings(stall_timeout_s=0.0))
    hanging.open()
    hanging.start()
    assert hanging_source.hanging.wait(TAKE_S)
    assert hanging.responsive()  # a read may take a while
    time.sleep(0.5)
    assert not hanging.responsive()  # past the stall timeout plus the margin: stuck
    hanging_source.release.set()
    hanging.stop()
