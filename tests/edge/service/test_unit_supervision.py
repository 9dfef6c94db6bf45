"""edge-detect under the unit's own supervision rules: a camera missing at boot or gone for minutes
is waited for, and the unit never ends up failed because of it.

The supervisor (tests/edge/unit_supervisor.py) applies Restart=, RestartSec=, WatchdogSec=,
TimeoutStartSec= and StartLimitIntervalSec=/StartLimitBurst= as read from
deploy/edge-detect.service; the camera is an MJPEG stream over loopback made of real video frames
where people are in view, stopped and started as a camera that loses power would be.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.edge.edge_testing import EMULATED, EMULATION_SLOWDOWN, REPO_ROOT, time_limit
from tests.edge.mjpeg_server import MjpegServer, jpeg_frames
from tests.edge.unit_supervisor import UnitSupervisor

UNIT = REPO_ROOT / "deploy" / "edge-detect.service"
PEOPLE_VIDEO = "one-by-one-person-detection.mp4"
STREAM_FIRST_FRAME = 300  # people in view from here
STREAM_FRAMES = 60
STREAM_FPS = 10
BOOT_WAIT_S = 8.0  # the camera comes up this long after the service
UP_S, DOWN_S = 20.0, 150.0  # the outage that used to end with the unit failed
RECONNECT_MAX_S = 30.0  # capture's backoff cap: a returning camera is found within this
POLL_S = 0.5


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def with_people(path: Path) -> int:
    return sum(any(d["label"] == "person" for d in r["detections"]) for r in records(path))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(POLL_S)


@pytest.fixture
def stream(data_dir):
    server = MjpegServer(jpeg_frames(data_dir / "data" / "video" / PEOPLE_VIDEO, STREAM_FRAMES, start=STREAM_FIRST_FRAME),
                         fps=STREAM_FPS)
    yield server
    server.stop()


@pytest.fixture
def service(tmp_path, model_dir, stream):
    """edge-detect as the unit runs it, on the stream, JSON lines to a file; stopped at the end."""
    json_out = tmp_path / "detections.jsonl"
    log = open(tmp_path / "stderr.log", "w")
    command = [sys.executable, "-m", "edge.cli", "--model", str(model_dir / "yolov5n_320_int8.tflite"),
               "--source", stream.url, "--classes", "person", "--json-out", str(json_out)]
    supervisor = UnitSupervisor(UNIT, command, start_timeout_scale=EMULATION_SLOWDOWN if EMULATED else 1.0,
                                stderr=log)
    supervisor.json_out = json_out
    supervisor.log_path = tmp_path / "stderr.log"
    yield supervisor
    supervisor.stop()
    log.close()


def ready_message(supervisor: UnitSupervisor):
    wait_until(lambda: any(m.fields.get("READY") == "1" for m in supervisor.socket.messages),
               supervisor.start_timeout_s, f"READY=1 ({supervisor.log_path.read_text()[-2000:]})")
    return next(m for m in supervisor.socket.messages if m.fields.get("READY") == "1")


def assert_never_restarted(supervisor: UnitSupervisor) -> None:
    log = supervisor.log_path.read_text()[-3000:]
    assert supervisor.exits == [], f"exits: {supervisor.exits}; log: {log}"
    assert len(supervisor.starts) == 1 and supervisor.state == "active", log


def assert_watchdog_fed(supervisor: UnitSupervisor, since: float) -> None:
    """From the last ping before ``since`` (or READY=1, which arms the watchdog) until now, no gap
    between pings as long as WatchdogSec; at least one ping in that time."""
    ready_at = next(m.received_at for m in supervisor.socket.messages if m.fields.get("READY") == "1")
    pings = [t for t in supervisor.pings() if t >= ready_at]
    window = ([ready_at] + [t for t in pings if t < since])[-1:] + [t for t in pings if t >= since] + [time.monotonic()]
    assert pings, "no watchdog ping at all"
    longest = max(b - a for a, b in zip(window, window[1:]))
    assert longest < supervisor.times.watchdog_s, f"longest gap between pings {longest:.1f} s"


def test_the_unit_file_gives_the_supervisor_its_rules():
    service = UnitSupervisor(UNIT, ["true"])
    times = service.times
    service.socket.close()
    assert (times.restart, times.watchdog_s, times.restart_s) == ("on-failure", 30.0, 5.0)
    assert (times.start_limit_interval_s, times.start_limit_burst, times.start_timeout_s) == (300.0, 10, 120.0)


def test_a_camera_that_is_not_ready_at_boot_is_waited_for(service, stream):
    service.start()
    ready = ready_message(service)
    assert ready["STATUS"].startswith(f"waiting for {stream.url}"), ready.raw
    booted = time.monotonic()
    time.sleep(BOOT_WAIT_S)
    assert_never_restarted(service)
    assert_watchdog_fed(service, booted)

    stream.start()
    wait_until(lambda: with_people(service.json_out) >= 10, time_limit(RECONNECT_MAX_S) + 30, "detections")
    wait_until(lambda: any(m.fields.get("STATUS", "").endswith(f"running on {stream.url}") for m in service.socket.messages),
               time_limit(10), "STATUS= saying it runs")
    assert_never_restarted(service)
    assert service.stop() == 0


@pytest.mark.slow
def test_a_camera_gone_for_two_and_a_half_minutes_comes_back_without_the_operator(service, stream):
    stream.start()
    service.start()
    ready_message(service)
    wait_until(lambda: records(service.json_out), time_limit(60), "the first detections")
    time.sleep(UP_S)
    before = len(records(service.json_out))
    assert with_people(service.json_out) >= before // 2

    stream.stop()
    outage_start = time.monotonic()
    while time.monotonic() - outage_start < DOWN_S:
        assert service.state == "active" and not service.exits, service.log_path.read_text()[-3000:]
        time.sleep(POLL_S * 4)
    assert_never_restarted(service)
    assert_watchdog_fed(service, outage_start)
    during = len(records(service.json_out))
    assert during - before < STREAM_FPS * 3  # nothing but the frames in flight when the camera went

    stream.start()
    wait_until(lambda: len(records(service.json_out)) >= during + 10, time_limit(RECONNECT_MAX_S) + 30,
               "detections after the camera came back")
    after = records(service.json_out)[during:]
    assert sum(any(d["label"] == "person" for d in r["detections"]) for r in after) >= len(after) // 2
    assert_never_restarted(service)
    log = service.log_path.read_text()
    assert log.count(" down: ") == 1 and log.count("up again") == 1, log[-3000:]
    assert service.stop() == 0
