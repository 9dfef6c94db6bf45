"""A process running an MqttSink, for tests that kill it or restart it.

    python -m tests.edge.mqtt_driver --url URL --state-dir DIR --device ID --frames N [--keepalive S] [--ha]
                                     [--publish events]

Feeds N synthetic frames, waits until they are committed to the spool, prints ``spooled <N>`` (with
``--publish events``: the frames go through the tracker, and N is the number of events), then
prints ``delivered`` once the broker has acknowledged everything (if it ever does) and idles until
SIGTERM, which closes the sink cleanly (``stopped`` on the status topic) and exits 0. ``--ha`` also
announces the device to Home Assistant (discovery configs).
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
from edge.sinks.mqtt.discovery import Entities, HomeAssistantSettings, discovery_messages
from edge.sources import Frame
from edge.track import EventSettings, ObjectTracker, TrackSettings

NAMES = ("person", "bicycle", "car")
FRAME_HW = (48, 64)
SPOOL_TIMEOUT_S = 30.0
DELIVER_POLL_S = 0.1
RECONNECT_MAX_S = 1.0  # tests restart brokers: find them again fast
FRAME_MS = 100.0
APPEAR_EVERY, APPEAR_FOR = 40, 10  # frames


def synthetic_detections(index: int) -> Detections:
    """One or two boxes that move with the frame index, so consecutive payloads differ."""
    count = 1 + index % 2
    offset = float(index % 10)
    xyxy = np.array([[offset, offset, offset + 20, offset + 30]] * count, np.float32)
    return Detections(xyxy, np.full(count, 0.8, np.float32), np.arange(count) % len(NAMES))


def feed_frames(sink: MqttSink, frames: int) -> int:
    image = np.zeros(FRAME_HW + (3,), np.uint8)
    for index in range(frames):
        sink.write(Frame(index, "driver", time.time(), image), synthetic_detections(index))
    return frames


def feed_events(sink: MqttSink, frames: int) -> int:
    """A person in view for 1 s of every 4 (10 fps on the frames' own clock): a new and an end event each time."""
    tracker = ObjectTracker(TrackSettings(min_hits=1), NAMES, EventSettings(snapshot=False))
    image = np.zeros(FRAME_HW + (3,), np.uint8)
    events = 0
    for index in range(frames):
        frame = Frame(index, "driver", time.time(), image, position_ms=index * FRAME_MS)
        present = int(index % APPEAR_EVERY < APPEAR_FOR)
        dets = Detections(np.array([[10, 10, 30, 40]] * present, np.float32).reshape(-1, 4),
                          np.full(present, 0.9, np.float32), np.zeros(present, np.int64))
        update = tracker.update(frame, dets)
        sink.write_objects(frame, dets, update)
        events += len(update.events)
    final = tracker.finish()
    sink.write_objects(None, Detections.empty(), final)
    return events + len(final.events)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--frames", type=int, default=0)
    parser.add_argument("--keepalive", type=int, default=60)
    parser.add_argument("--ha", action="store_true")
    parser.add_argument("--publish", default="every")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = MqttSettings(url=args.url, device_id=args.device, state_dir=args.state_dir, keepalive=args.keepalive,
                            model="driver", reconnect_max_s=RECONNECT_MAX_S, publish=args.publish)
    discovery = discovery_messages(settings, HomeAssistantSettings(discovery=True), Entities(("all/person",))) if args.ha else ()
    sink = MqttSink(settings, NAMES, discovery)
    written = feed_events(sink, args.frames) if args.publish == "events" else feed_frames(sink, args.frames)
    if not sink.wait_spooled(SPOOL_TIMEOUT_S):
        print("not spooled", flush=True)
        return 1
    print(f"spooled {written}", flush=True)
    announced = False
    while not stop.wait(DELIVER_POLL_S):
        if not announced and sink.connected and sink.wait_delivered(0):
            announced = True
            print("delivered", flush=True)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
