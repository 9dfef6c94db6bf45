"""Soak run of the camera loop: ≥10,000 frames of a looped video through `edge-detect`, memory watched.

A leak of a few KB per frame is invisible in a test and fatal after months; this run makes it
visible. The detector runs as deployed (a subprocess of the real CLI, JSON lines discarded); its
resident memory is read from /proc every few seconds. "start" is the first sample after the first
stats line (model loaded, buffers allocated, first frames done), "end" the last sample before exit;
the slope is a least-squares fit over all samples.

With --mqtt every frame is also published, through the on-disk spool, to a private Mosquitto
started here, and a subscriber counts what arrives: every sequence number must be there.

    python tests/bench_soak.py --model M.tflite [--frames 10000] [--video V] [--max-growth-mb 10] [--mqtt]

Exit status 1 when RSS grew by more than --max-growth-mb, frames were unaccounted for, or (with
--mqtt) a message was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.service.stats import parse_stats_line  # noqa: E402

DEFAULT_FRAMES = 10_000
DEFAULT_VIDEO = "data/video/car-detection.mp4"
SAMPLE_INTERVAL_S = 2.0
STATS_INTERVAL_S = 10
DEFAULT_MAX_GROWTH_MB = 10.0
KIB_PER_MB = 1024
MQTT_DEVICE = "soak"
DELIVERY_WAIT_S = 60.0
FRAMES_PER_SLOPE = 10_000


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB, None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB_PER_MB
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def main() -> int:
    data = Path(os.environ.get("EDGE_YOLO_DATA") or REPO.parent / "shared")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--video", default=str(data / DEFAULT_VIDEO))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-growth-mb", type=float, default=DEFAULT_MAX_GROWTH_MB)
    parser.add_argument("--mqtt", action="store_true", help="publish every frame to a private Mosquitto and count them")
    args = parser.parse_args()
    with ExitStack() as stack:
        return soak(args, stack)


def soak(args: argparse.Namespace, stack: ExitStack) -> int:
    command = [sys.executable, "-m", "edge.cli", "--model", args.model, "--source", args.video, "--loop",
               "--max-frames", str(args.frames), "--stats-interval", str(STATS_INTERVAL_S)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    subscriber = None
    if args.mqtt:
        from tests.edge.mosquitto import Mosquitto, Subscriber

        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-mqtt-")))
        broker = stack.enter_context(Mosquitto(folder / "broker"))
        subscriber = Subscriber(broker, f"edge-yolo/{MQTT_DEVICE}/detections")
        stack.callback(subscriber.close)
        command += ["--mqtt", broker.url, "--device-id", MQTT_DEVICE, "--state-dir", str(folder / "state")]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    stats_lines: list[str] = []
    warm = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            if "stats:" in line:
                stats_lines.append(line.strip())
                warm.set()
            elif line.strip():
                print(line.rstrip(), file=sys.stderr)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    samples: list[tuple[float, float]] = []
    while process.poll() is None:
        value = rss_mb(process.pid)
        if value is not None and warm.is_set():
            samples.append((time.monotonic() - started, value))
        time.sleep(SAMPLE_INTERVAL_S)
    reader.join()
    elapsed = time.monotonic() - started
    if process.returncode != 0 or not stats_lines:
        print(f"edge-detect exited with {process.returncode}", file=sys.stderr)
        return 1
    final = parse_stats_line(stats_lines[-1])
    read, processed, dropped = (int(final[key]) for key in ("read", "processed", "dropped"))
    if not samples:
        print("the run ended before the first memory sample; use more --frames", file=sys.stderr)
        return 1
    start_mb, end_mb, peak_mb = samples[0][1], samples[-1][1], max(v for _, v in samples)
    times, values = np.array([t for t, _ in samples]), np.array([v for _, v in samples])
    fps = processed / elapsed
    slope = float(np.polyfit(times, values, 1)[0]) * FRAMES_PER_SLOPE / fps if len(samples) > 1 else 0.0
    print(f"frames read {read}, processed {processed}, dropped {dropped}, corrupt {final['corrupt']}")
    print(f"wall {elapsed:.1f} s, {fps:.1f} fps overall (incl. start-up); "
          f"median latency ms: pre {final['preprocess_ms']} invoke {final['invoke_ms']} post {final['postprocess_ms']}")
    print(f"RSS start {start_mb:.1f} MB (t={samples[0][0]:.0f} s), end {end_mb:.1f} MB (t={samples[-1][0]:.0f} s), "
          f"peak {peak_mb:.1f} MB, growth {end_mb - start_mb:+.1f} MB over {len(samples)} samples, "
          f"slope {slope:+.2f} MB per {FRAMES_PER_SLOPE:,} frames")
    quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in range(5)]
    print("RSS by quarter of the run: " + ", ".join(f"{v:.1f} MB (t={t:.0f} s)" for t, v in quarters))
    ok = processed + dropped == read and processed >= args.frames and end_mb - start_mb <= args.max_growth_mb
    if subscriber is not None:
        expected = set(range(1, processed + 1))
        deadline = time.monotonic() + DELIVERY_WAIT_S
        while time.monotonic() < deadline and not expected <= received_seqs(subscriber):
            time.sleep(0.5)
        got = received_seqs(subscriber)
        messages = len(subscriber.on(f"edge-yolo/{MQTT_DEVICE}/detections"))
        print(f"MQTT: {len(got & expected)} of {processed} detection messages received ({messages - len(got)} duplicates), "
              f"{len(expected - got)} missing")
        ok = ok and expected <= got
    return 0 if ok else 1


def received_seqs(subscriber) -> set[int]:
    return {json.loads(m.payload)["seq"] for m in subscriber.on(f"edge-yolo/{MQTT_DEVICE}/detections")}


if __name__ == "__main__":
    sys.exit(main())
