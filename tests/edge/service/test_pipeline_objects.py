"""The pipeline with a tracker, on the real model: objects to the sinks, the track stage timed, the
objects still in view ended at shutdown, the metrics endpoint reading the same loop. bus.jpg read over
and over stands for a still scene (cheap under emulation); the videos are tracked in tests/edge/track."""

from __future__ import annotations

import json
import urllib.request

import pytest

from edge.detect.detector import DetectSettings, Detector
from edge.service.capture import Capture, CaptureSettings, Mailbox
from edge.service.metrics import MetricsExporter, MetricsSettings
from edge.service.pipeline import Pipeline, PipelineSettings
from edge.service.stats import PipelineStats
from edge.sinks.jsonlines import JsonLinesSink
from edge.sinks.mqtt import MqttSettings, MqttSink
from edge.sources import open_source
from edge.track import EVENT_END, EVENT_NEW, ObjectTracker, TrackSettings
from tests.edge.conftest import VIDEO_CONF
from tests.edge.mosquitto import Mosquitto, Subscriber, free_port

FRAMES = 8
PEOPLE = 2  # bus.jpg: the two people scored above --track-new-score
DELIVERY_TIMEOUT_S = 30.0


def test_tracked_objects_reach_the_sinks_and_end_at_shutdown(model_dir, data_dir, tmp_path):
    detector = Detector(model_dir / "yolov5n_320_int8.tflite", DetectSettings(conf=VIDEO_CONF))
    tracker = ObjectTracker(TrackSettings(), detector.names)
    broker = Mosquitto(tmp_path / "broker").start()
    subscriber = Subscriber(broker, "edge-yolo/cam1/#")
    lines = tmp_path / "frames.jsonl"
    try:
        mqtt = MqttSink(MqttSettings(url=broker.url, device_id="cam1", publish="events", state_dir=str(tmp_path / "s"),
                                     reconnect_min_s=0.2, reconnect_max_s=1.0), detector.names)
        stats = PipelineStats()
        metrics = MetricsExporter(MetricsSettings(listen=str(free_port())), stats.counters, tracker, mqtt.snapshot_counters)
        source = open_source(source=str(data_dir / "data" / "photos" / "bus.jpg"))
        capture = Capture(source, Mailbox(stats.counters), stats.counters, CaptureSettings(loop=True, max_frames=FRAMES))
        capture.open()
        with lines.open("w") as out:
            json_sink = JsonLinesSink(out, detector.names)  # no write_objects: it keeps getting every frame
            pipeline = Pipeline(detector, capture, [json_sink, mqtt, metrics], stats, PipelineSettings(max_frames=FRAMES),
                                tracker=tracker)
            scrape_url = f"http://127.0.0.1:{metrics.address[1]}/metrics"
            final = pipeline.run()
        assert subscriber.wait_for(lambda: any(json.loads(m.payload)["type"] == EVENT_END
                                               for m in subscriber.on("edge-yolo/cam1/events")), DELIVERY_TIMEOUT_S)
    finally:
        subscriber.close()
        broker.stop()
    assert final["processed"] == FRAMES and final["latency_ms"]["track_ms"] is not None
    assert final["tracks"]["total"] == PEOPLE and final["tracks"]["active"] == 0
    kinds = [json.loads(m.payload)["type"] for m in subscriber.on("edge-yolo/cam1/events")]
    assert kinds.count(EVENT_NEW) == kinds.count(EVENT_END) == final["tracks"]["total"]
    assert len(lines.read_text().splitlines()) == FRAMES
    with pytest.raises(OSError):  # the pipeline closed the endpoint with the other sinks
        urllib.request.urlopen(scrape_url, timeout=2)
