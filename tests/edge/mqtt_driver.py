"""A process running an MqttSink, for tests that kill it or restart it.

    python -m tests.edge.mqtt_driver --url URL --state-dir DIR --device ID --frames N [--keepalive S]

Feeds N synthetic frames, waits until they are committed to the spool, prints ``spooled <N>``, then
prints ``delivered`` once the broker has acknowledged everything (if it ever does) and idles until
SIGTERM, which closes the sink cleanly (``stopped`` on the status topic) and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

import numpy as np

from edge.detect.detections import Detections
from edge.sinks.mqtt import MqttSettings, MqttSink
from edge.sources import Frame

NAMES = ("person", "bicycle", "car")
FRAME_HW = (48, 64)
SPOOL_TIMEOUT_S = 30.0
DELIVER_POLL_S = 0.1
RECONNECT_MAX_S = 1.0  # tests restart brokers: find them again fast


def synthetic_detections(index: int) -> Detections:
    """One or two boxes that move with the frame index, so consecutive payloads differ."""
    count = 1 + index % 2
    offset = float(index % 10)
    xyxy = np.array([[offset, offset, offset + 20, offset + 30]] * count, np.float32)
    return Detections(xyxy, np.full(count, 0.8, np.float32), np.arange(count) % len(NAMES))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--keepalive", type=int, default=60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = MqttSettings(url=args.url, device_id=args.device, state_dir=args.state_dir, keepalive=args.keepalive,
                            model="driver", reconnect_max_s=RECONNECT_MAX_S)
    sink = MqttSink(settings, NAMES)
    image = np.zeros(FRAME_HW + (3,), np.uint8)
    for index in range(args.frames):
        sink.write(Frame(index, "driver", time.time(), image), synthetic_detections(index))
    if not sink.wait_spooled(SPOOL_TIMEOUT_S):
        print("not spooled", flush=True)
        return 1
    print(f"spooled {args.frames}", flush=True)
    announced = False
    while not stop.wait(DELIVER_POLL_S):
        if not announced and sink.connected and sink.wait_delivered(0):
            announced = True
            print("delivered", flush=True)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
