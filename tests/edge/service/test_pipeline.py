"""The camera loop end to end, on the real model and real video: accounting, recovery, shutdown, sinks.

Runs under aarch64 emulation too, where a frame costs about a second: videos are bounded with
--max-frames (fewer there, see `frame_budget`), and time limits are generous wherever the behaviour
allows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge.service.capture import Capture, CaptureSettings, Mailbox
from edge.detect.detector import DetectSettings, Detector
from edge.service.pipeline import Pipeline, PipelineSettings
from edge.sources.opencv import VideoFileSource
from edge.service.stats import PipelineStats, parse_stats_line
from tests.edge.edge_testing import frame_budget, time_limit
from tests.edge.mjpeg_server import MjpegServer, jpeg_frames
from tests.edge.notify_socket import notify_socket  # noqa: F401  (fixture)

CAR_VIDEO = "car-detection.mp4"
PEOPLE_VIDEO = "one-by-one-person-detection.mp4"
E2E_FRAMES = frame_budget(150, 70)  # emulated: still past frame 63, where the first cars are
CAR_CONF = 0.1  # yolov5n at 320 scores the parking lot's cars 0.1-0.6; at 0.25 it finds few
PEOPLE_FROM_FRAME = 60  # people walk in from about here
STREAM_FIRST_FRAME = 300  # stream frames where people are in view
STREAM_FRAMES = 100
STREAM_FPS = 25
OUTAGE_S = 4.0
STALL_TIMEOUT_S = 3
WATCHDOG_USEC = 200_000  # pings every 0.1 s while frames are processed
SAVED_FRAMES = 8
EVENT_TIMEOUT_S = 90  # waits for a log line or records: slack for emulation, not a performance bound


@pytest.fixture
def int8_model(model_dir) -> Path:
    return model_dir / "yolov5n_320_int8.tflite"


@pytest.fixture
def videos(data_dir) -> Path:
    return data_dir / "data" / "video"


def run_cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def final_stats(stderr: str) -> dict[str, int]:
    lines = [line for line in stderr.splitlines() if "final stats:" in line]
    assert len(lines) == 1, stderr
    fields = parse_stats_line(lines[0])
    return {key: int(fields[key]) for key in ("read", "processed", "dropped", "corrupt", "reconnects")}


def frames_with(records: list[dict], label: str) -> list[int]:
    return [r["frame"] for r in records if any(d["label"] == label for d in r["detections"])]


@pytest.mark.parametrize("video, conf, label, min_frames", [
    (CAR_VIDEO, CAR_CONF, "car", frame_budget(3, 2)),  # frames 61-63 and 98-100 show cars at 0.1
    (PEOPLE_VIDEO, 0.25, "person", (E2E_FRAMES - PEOPLE_FROM_FRAME) // 2),
])
def test_every_frame_of_a_video_is_accounted_for(int8_model, videos, video, conf, label, min_frames):
    result = run_cli("--model", int8_model, "--source", videos / video, "--conf", conf, "--max-frames", E2E_FRAMES)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(E2E_FRAMES))
    assert all(r["source"] == str(videos / video) for r in records)
    stats = final_stats(result.stderr)
    assert stats["read"] == stats["processed"] + stats["dropped"] == E2E_FRAMES
    assert stats["dropped"] == 0 and stats["corrupt"] == 0  # a file is paced by inference: nothing dropped
    seen = frames_with(records, label)
    assert len(seen) >= min_frames, f"{label} on frames {seen}"
    if label == "person":
        assert min(seen) >= PEOPLE_FROM_FRAME - 20  # nobody before they walk in


class LineReader:
    """Collects a process's output lines in a thread, so the test can wait for one without blocking."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = EVENT_TIMEOUT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.lines), timeout)

    def join(self) -> None:
        self._thread.join(EVENT_TIMEOUT_S)


def count_containing(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


def test_a_stream_that_goes_away_is_reconnected_and_detection_goes_on(int8_model, data_dir, videos, notify_socket):  # noqa: F811
    server = MjpegServer(jpeg_frames(videos / PEOPLE_VIDEO, STREAM_FRAMES, start=STREAM_FIRST_FRAME), fps=STREAM_FPS)
    server.start()
    env = {**os.environ, **notify_socket.env, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--model", str(int8_model), "--source", server.url, "--classes", "person",
         "--stall-timeout", str(STALL_TIMEOUT_S), "--stats-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = LineReader(process.stdout), LineReader(process.stderr)
        assert notify_socket.wait_for("READY=1", timeout=EVENT_TIMEOUT_S)
        assert out.wait_for(lambda lines: len(lines) >= 10), err.lines
        notify_socket.wait_for("WATCHDOG=1")  # pinged while frames flow

        server.stop()
        assert err.wait_for(lambda lines: count_containing(lines, " down: ")), err.lines
        notify_socket.collect(time_limit(0.5))  # pings for the frames in flight when the stream went
        waiting = notify_socket.collect(time_limit(1.5))
        assert [m for m in waiting if "WATCHDOG" in m], "the watchdog is fed while the stream is reconnected"
        records_before = len(out.lines)
        time.sleep(max(0.0, OUTAGE_S - 2.0))

        server.start()  # same port
        assert err.wait_for(lambda lines: count_containing(lines, "up again")), err.lines
        assert out.wait_for(lambda lines: len(lines) >= records_before + 10), "detection goes on after the reconnect"
        notify_socket.wait_for("WATCHDOG=1")
        process.terminate()
        process.wait(EVENT_TIMEOUT_S)
        out.join()
        err.join()
    finally:
        process.kill()
        server.stop()
    assert process.returncode == 0, err.lines
    stderr = "\n".join(err.lines)
    assert count_containing(err.lines, " down: ") == 1, stderr
    assert count_containing(err.lines, "up again") == 1, stderr
    assert count_containing(err.lines, "reconnecting") == 1, stderr
    records = [json.loads(line) for line in out.lines]
    after = records[records_before:]
    assert sum(bool(r["detections"]) for r in after) >= len(after) // 2, "people are in view in every streamed frame"
    stats = final_stats(stderr)
    assert stats["reconnects"] == 1
    assert stats["read"] == stats["processed"] + stats["dropped"] and stats["processed"] == len(records)
    assert any(m.fields.get("STOPPING") == "1" for m in notify_socket.messages + notify_socket.drain())


class SlowSink:
    """A sink stuck on slow storage or a slow network: every write takes ``delay_s``."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.written = 0
        self.snapshots: list[dict] = []
        self.closed = False

    def write(self, frame, dets) -> None:
        time.sleep(self.delay_s)
        self.written += 1

    def stats(self, snapshot) -> None:
        self.snapshots.append(snapshot)

    def close(self) -> None:
        self.closed = True


def test_a_slow_sink_does_not_slow_capture(int8_model, videos):
    """Real-time video stands in for a camera: the sink holds inference back, capture keeps its pace."""
    run_s, sink_delay_s = time_limit(4.0), 0.5  # emulated inference under load can take seconds a frame
    detector = Detector(int8_model, DetectSettings(), threads=1)
    stats = PipelineStats()
    source = VideoFileSource(videos / PEOPLE_VIDEO)
    capture = Capture(source, Mailbox(stats.counters), stats.counters, CaptureSettings(realtime=True))
    capture.open()
    sink = SlowSink(sink_delay_s)
    pipeline = Pipeline(detector, capture, [sink], stats, PipelineSettings(stats_interval_s=1.0))
    timer = threading.Timer(run_s, pipeline.request_stop)
    started = time.monotonic()
    timer.start()
    final = pipeline.run()
    elapsed = time.monotonic() - started
    counters = stats.counters
    assert sink.closed and sink.written == counters.processed == final["processed"]
    assert counters.processed <= elapsed / sink_delay_s + 1
    assert counters.read >= 2 * counters.processed, "capture kept reading while the sink slept"
    assert counters.dropped == counters.read - counters.processed > 0
    assert counters.read >= 0.3 * elapsed * source.fps  # generous: the video's own rate, even emulated
    assert sink.snapshots[-1]["final"] and any(not s["final"] for s in sink.snapshots)


def test_json_out_is_rotated_by_size(int8_model, videos, tmp_path):
    target = tmp_path / "logs" / "detections.jsonl"
    max_mb, backups, frames = 0.01, 2, 48  # 48 frames at conf 0.01 make about 34 kB: more than the 3 files hold
    result = run_cli("--model", int8_model, "--source", videos / PEOPLE_VIDEO, "--conf", "0.01", "--max-frames", frames,
                     "--json-out", target, "--json-max-mb", max_mb, "--json-backups", backups)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    files = sorted(target.parent.iterdir())
    assert [f.name for f in files] == ["detections.jsonl", "detections.jsonl.1", "detections.jsonl.2"]
    kept = []
    for path in (target.with_name("detections.jsonl.2"), target.with_name("detections.jsonl.1"), target):
        assert path.stat().st_size <= max_mb * 1024 * 1024
        kept += [json.loads(line)["frame"] for line in path.read_text().splitlines()]
    assert kept == list(range(frames - len(kept), frames))  # the newest, in order, none split


def test_save_to_a_video_file(int8_model, videos, tmp_path):
    target = tmp_path / "annotated.mp4"
    result = run_cli("--model", int8_model, "--source", videos / CAR_VIDEO, "--max-frames", SAVED_FRAMES, "--save", target)
    assert result.returncode == 0, result.stderr
    written = cv2.VideoCapture(str(target))
    try:
        assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == SAVED_FRAMES
        assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (768, 432)
    finally:
        written.release()
