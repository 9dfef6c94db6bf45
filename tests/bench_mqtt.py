"""MQTT publisher benchmark: sustained messages per second to a broker, and what write() adds per frame.

    python -m tests.bench_mqtt [--url mqtt://HOST:PORT] [--messages N] [--fps F] [--paced-frames N]

Without --url a private Mosquitto is started on a free loopback port. Payloads carry the int8 model's
detections on the car video when $EDGE_YOLO_TEST_MODELS is set, synthetic ones otherwise. Every
message goes through the on-disk spool and is counted only once the broker has acknowledged it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from edge.detect.detections import Detections
from edge.sinks.mqtt import DEFAULT_QUEUE_MAX, DEFAULT_SPOOL_MAX, MqttSettings, MqttSink
from edge.sources import Frame, iter_frames

REPO = Path(__file__).resolve().parent.parent
MODELS_ENV = "EDGE_YOLO_TEST_MODELS"
VIDEO = Path("data") / "video" / "car-detection.mp4"
INT8_MODEL = "yolov5n_320_int8.tflite"
REAL_FRAMES = 60
SYNTHETIC_BOXES = 5
SYNTHETIC_HW = (480, 640)
DEFAULT_MESSAGES = 5000
DEFAULT_FPS = 30.0
DEFAULT_PACED_FRAMES = 300
DELIVERY_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 10.0
BACKPRESSURE_SLEEP_S = 0.001
US_PER_S = 1e6
P99 = 99


def workload() -> tuple[list[tuple[Frame, Detections]], tuple[str, ...], str]:
    """(frame, detections) pairs to cycle through, the class names, and what they are."""
    models = os.environ.get(MODELS_ENV)
    video = Path(os.environ.get("EDGE_YOLO_DATA") or REPO.parent / "shared") / VIDEO
    if models and (Path(models) / INT8_MODEL).is_file() and video.is_file():
        from edge.detect.detector import Detector

        detector = Detector(Path(models) / INT8_MODEL)
        frames = list(iter_frames(video))
        step = max(len(frames) // REAL_FRAMES, 1)
        pairs = [(f, detector.detect(f.image)[0]) for f in frames[::step][:REAL_FRAMES]]
        mean = np.mean([len(d) for _, d in pairs])
        return pairs, detector.names, f"int8 model on {video.name}, {mean:.1f} detections per frame"
    rng = np.random.default_rng(0)
    image = np.zeros(SYNTHETIC_HW + (3,), np.uint8)
    pairs = []
    for index in range(REAL_FRAMES):
        corners = np.sort(rng.uniform(0, SYNTHETIC_HW[1], (SYNTHETIC_BOXES, 2, 2)), axis=1).reshape(-1, 4)
        dets = Detections(corners, rng.uniform(0.25, 1, SYNTHETIC_BOXES), rng.integers(0, 80, SYNTHETIC_BOXES))
        pairs.append((Frame(index, "synthetic", time.time(), image), dets))
    return pairs, tuple(f"class{i}" for i in range(80)), f"synthetic, {SYNTHETIC_BOXES} detections per frame"


def percentiles_us(samples_s: list[float]) -> str:
    values = np.asarray(samples_s) * US_PER_S
    return f"median {np.median(values):.1f} µs, p99 {np.percentile(values, P99):.1f} µs, max {values.max():.0f} µs"


def run(url: str, messages: int, fps: float, paced_frames: int, state_dir: Path) -> None:
    pairs, names, described = workload()
    settings = MqttSettings(url=url, device_id="bench", state_dir=str(state_dir), model="bench",
                            spool_max=max(DEFAULT_SPOOL_MAX, messages + paced_frames))
    sink = MqttSink(settings, names)
    try:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not sink.connected:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: no connection to {url} within {CONNECT_TIMEOUT_S:g} s")
            time.sleep(BACKPRESSURE_SLEEP_S)
        print(f"broker {url}; payloads: {described}")

        # 1. throughput: as fast as the publisher takes them, until the broker has acked them all
        write_s = []
        start = time.perf_counter()
        for index in range(messages):
            while sink.backlog > DEFAULT_QUEUE_MAX // 2:
                time.sleep(BACKPRESSURE_SLEEP_S)
            frame, dets = pairs[index % len(pairs)]
            t0 = time.perf_counter()
            sink.write(frame, dets)
            write_s.append(time.perf_counter() - t0)
        if not sink.wait_delivered(DELIVERY_TIMEOUT_S):
            raise SystemExit(f"bench: broker did not acknowledge {messages} messages within {DELIVERY_TIMEOUT_S:g} s")
        elapsed = time.perf_counter() - start
        counters = sink.snapshot_counters()
        print(f"sustained: {messages} messages acknowledged in {elapsed:.2f} s = {messages / elapsed:.0f} msg/s "
              f"(QoS {settings.qos}, through the sqlite spool; dropped {counters['queue_dropped'] + counters['spool_dropped']})")
        print(f"write() while saturated: {percentiles_us(write_s)}")

        # 2. what write() adds to a camera loop running at a realistic rate
        write_s = []
        period = 1.0 / fps
        next_t = time.perf_counter()
        for index in range(paced_frames):
            frame, dets = pairs[index % len(pairs)]
            t0 = time.perf_counter()
            sink.write(frame, dets)
            write_s.append(time.perf_counter() - t0)
            next_t += period
            time.sleep(max(0.0, next_t - time.perf_counter()))
        sink.wait_delivered(DELIVERY_TIMEOUT_S)
        print(f"write() at {fps:g} fps ({paced_frames} frames): {percentiles_us(write_s)}")
    finally:
        sink.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="broker to use (default: a private mosquitto on a free port)")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS)
    parser.add_argument("--paced-frames", type=int, default=DEFAULT_PACED_FRAMES)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mqtt-")))
        url = args.url
        if url is None:
            from tests.edge.mosquitto import Mosquitto

            url = stack.enter_context(Mosquitto(folder / "broker")).url
        run(url, args.messages, args.fps, args.paced_frames, folder / "state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
