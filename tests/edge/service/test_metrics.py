"""The Prometheus endpoint: text exposition of the live counters and the latest snapshot, loopback by default."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from edge.errors import EdgeError
from edge.fields import InvalidSetting
from edge.service.metrics import CONTENT_TYPE, MetricsExporter, MetricsSettings, render
from edge.service.stats import Counters
from tests.edge.mosquitto import free_port

SAMPLE = re.compile(r"^(edge_yolo_[a-z_]+)(\{[a-z]+=\"[a-z_]+\"\})? (-?[0-9.e+]+)$")


class Objects:
    active, created = 2, 7


def parse(text: str) -> dict[str, float]:
    """name{labels} -> value; every line a HELP, a TYPE or a well-formed sample."""
    samples = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_the_exposition_holds_the_loops_figures():
    counters = Counters(read=120, processed=100, dropped=20, corrupt=1, reconnects=2, sink_failures=4, source_up=True)
    snapshot = {"fps_in": 12.5, "fps_out": 10.0, "uptime_s": 60.0,
                "latency_ms": {"preprocess_ms": 0.9, "invoke_ms": 11.2, "postprocess_ms": 0.3, "track_ms": 0.6}}
    mqtt = {"connected": True, "spool_depth": 3, "acked": 90, "spool_dropped": 0, "queue_dropped": 0, "reconnects": 1,
            "events": 12, "spool": "memory"}
    text = render(counters, snapshot, Objects(), mqtt)
    samples = parse(text)
    assert samples["edge_yolo_frames_read_total"] == 120 and samples["edge_yolo_frames_dropped_total"] == 20
    assert samples["edge_yolo_source_up"] == 1 and samples["edge_yolo_source_reconnects_total"] == 2
    assert samples['edge_yolo_fps{direction="in"}'] == 12.5 and samples['edge_yolo_fps{direction="out"}'] == 10.0
    assert samples['edge_yolo_stage_latency_ms{stage="invoke"}'] == 11.2
    assert samples['edge_yolo_stage_latency_ms{stage="track"}'] == 0.6
    assert samples["edge_yolo_tracks_active"] == 2 and samples["edge_yolo_tracks_total"] == 7
    assert samples["edge_yolo_mqtt_spool_depth"] == 3 and samples["edge_yolo_mqtt_events_total"] == 12
    assert samples["edge_yolo_sink_failures_total"] == 4 and samples["edge_yolo_mqtt_spool_on_disk"] == 0
    assert "# TYPE edge_yolo_frames_read_total counter" in text and "# TYPE edge_yolo_fps gauge" in text


def test_before_the_first_snapshot_only_the_counters_show():
    samples = parse(render(Counters(read=3), None))
    assert samples["edge_yolo_frames_read_total"] == 3
    assert not [name for name in samples if "fps" in name or "latency" in name or "tracks" in name or "mqtt" in name]


def test_the_endpoint_serves_live_figures_on_loopback():
    counters = Counters(read=5, processed=5)
    exporter = MetricsExporter(MetricsSettings(listen=str(free_port())), counters, Objects(), lambda: {"spool_depth": 0})
    try:
        host, port = exporter.address
        assert host == "127.0.0.1"
        exporter.stats({"fps_in": 4.0, "fps_out": 4.0, "latency_ms": {"invoke_ms": 10.0}})
        counters.processed = 9  # read at scrape time, not at the last snapshot
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"] == CONTENT_TYPE
            samples = parse(response.read().decode())
        assert samples["edge_yolo_frames_processed_total"] == 9 and samples['edge_yolo_fps{direction="out"}'] == 4.0
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://{host}:{port}/", timeout=5)
        assert error.value.code == 404
    finally:
        exporter.close()


def test_a_port_in_use_is_one_line_naming_the_option():
    port = free_port()
    first = MetricsExporter(MetricsSettings(listen=str(port)), Counters())
    try:
        with pytest.raises(EdgeError, match=f"--metrics {port}: cannot listen on 127.0.0.1:{port}"):
            MetricsExporter(MetricsSettings(listen=str(port)), Counters())
    finally:
        first.close()


@pytest.mark.parametrize("listen, address", [
    ("9108", ("127.0.0.1", 9108)),  # loopback unless a host is given
    ("0.0.0.0:9200", ("0.0.0.0", 9200)),
    ("[::1]:9108", ("::1", 9108)),
])
def test_metrics_address(listen, address):
    assert MetricsSettings(listen=listen).address == address


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "localhost", ":9108", "9108:"])
def test_bad_addresses_name_the_key(listen):
    with pytest.raises(InvalidSetting) as error:
        MetricsSettings(listen=listen)
    assert error.value.field == "listen" and "[HOST:]PORT" in error.value.message
