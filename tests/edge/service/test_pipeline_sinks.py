"""Sinks that fail never stop detection: edge-detect end to end with its outputs on a full disk, and a
video that is finished when the run is stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2

from edge.service.stats import parse_stats_line
from tests.edge.edge_testing import frame_budget, time_limit
from tests.edge.small_disk import fill, mounted_tmpfs

CAR_VIDEO = Path("data") / "video" / "car-detection.mp4"
PEOPLE_VIDEO = Path("data") / "video" / "one-by-one-person-detection.mp4"
FRAMES = frame_budget(40, 12)


def final_stats(stderr: str) -> dict[str, str]:
    lines = [line for line in stderr.splitlines() if "final stats:" in line]
    assert len(lines) == 1, stderr
    return parse_stats_line(lines[0])


def test_outputs_on_a_full_disk_are_said_once_each_and_detection_goes_on(tmp_path, model_dir, data_dir):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        json_out, saved = disk / "history" / "detections.jsonl", disk / "saved"
        saved.mkdir()
        fill(disk)
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
             "--source", str(data_dir / CAR_VIDEO), "--max-frames", str(FRAMES), "--json-out", str(json_out),
             "--save", str(saved)], capture_output=True, text=True, timeout=time_limit(300))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if ": error:" in line]
        assert len(errors) == 2, result.stderr  # once per sink, not once per frame
        assert errors[0].startswith(f"edge-detect: error: cannot write --json-out {json_out}: "
                                    "No space left on device (0 kB free in")
        assert errors[1].startswith(f"edge-detect: error: --save {saved}: cannot write {saved}/car-detection_000000.jpg: "
                                    "No space left on device (0 kB free in")
        stats = final_stats(result.stderr)
        assert int(stats["processed"]) == FRAMES and int(stats["sink_failures"]) == 2 * FRAMES
        assert json_out.read_text() == "" and list(saved.iterdir()) == []


def test_a_video_being_saved_is_finished_when_the_run_is_stopped(tmp_path, model_dir, data_dir):
    target = tmp_path / "annotated.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
         "--source", str(data_dir / PEOPLE_VIDEO), "--save", str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(FRAMES):
            json.loads(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=time_limit(30))
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    processed = int(final_stats(stderr)["processed"])
    capture = cv2.VideoCapture(str(target))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert decoded == processed >= FRAMES


class FlakySink:
    """Refuses its first ``failures`` writes (a disk that fills, then frees up), then takes every frame."""

    label = "flaky"

    def __init__(self, failures: int):
        self.failures = failures
        self.attempts = 0
        self.written: list[int] = []

    def write(self, frame, dets) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(28, "No space left on device")
        self.written.append(frame.index)

    def stats(self, snapshot) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_failing_sink_is_retried_later_and_the_others_get_every_frame(model_dir, data_dir, monkeypatch, caplog):
    import logging

    import edge.service.pipeline as pipeline_module
    from edge.detect.detector import Detector
    from edge.service.capture import Capture, CaptureSettings, Mailbox
    from edge.service.pipeline import Pipeline, PipelineSettings
    from edge.service.stats import PipelineStats
    from edge.sources.opencv import VideoFileSource

    monkeypatch.setattr(pipeline_module, "SINK_RETRY_S", 0.0)  # every frame is a retry
    stats = PipelineStats()
    capture = Capture(VideoFileSource(data_dir / CAR_VIDEO), Mailbox(stats.counters), stats.counters,
                      CaptureSettings(max_frames=FRAMES))
    capture.open()
    flaky, steady = FlakySink(failures=3), FlakySink(failures=0)
    pipeline = Pipeline(Detector(model_dir / "yolov5n_320_int8.tflite", threads=1), capture, [flaky, steady], stats,
                        PipelineSettings(max_frames=FRAMES, stats_interval_s=0))
    with caplog.at_level(logging.INFO, logger="edge.service.pipeline"):
        final = pipeline.run()
    assert steady.written == list(range(FRAMES)) and flaky.written == list(range(3, FRAMES))
    assert final["sink_failures"] == 3 and final["processed"] == FRAMES
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "tried again" in m] == [
        "flaky: [Errno 28] No space left on device; its frames are counted as sink_failures, it is tried again every "
        "0 s, detection goes on"]
    assert [m for m in messages if "works again" in m] == ["flaky works again after 3 frames it could not take"]
