"""The bytes published over MQTT: versioned JSON for detections and stats, JPEG for snapshots.

Kept apart from the transport so the payloads can be checked against
``edge/sinks/mqtt/schemas/mqtt.schema.json`` without a broker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from edge.detect.annotate import draw_detections
from edge.detect.detections import Detections

PAYLOAD_VERSION = 1  # bump on any change a subscriber could trip over; the schema follows
TIME_DECIMALS = 3  # capture time in Unix seconds; milliseconds are plenty
NORM_DECIMALS = 4  # 1/10000 of the frame is below a pixel for any camera we target
TEMP_DECIMALS = 1
JPEG_QUALITY = 80  # a snapshot is for a human glance, not for re-detection
CPU_TEMP_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
MILLIDEGREES_PER_DEGREE = 1000.0
_COMPACT = (",", ":")


def detections_payload(
    *,
    seq: int,
    device: str,
    model: str,
    frame_index: int,
    capture_time: float,
    wh: tuple[int, int],
    dets: Detections,
    names: Sequence[str],
) -> bytes:
    """One frame's detections, boxes in pixels and normalised to the frame (``box_norm``)."""
    width, height = wh
    items = dets.to_json(names)
    if items:
        scale = np.array([width, height, width, height], np.float64)
        norms = np.round(dets.xyxy.astype(np.float64) / scale, NORM_DECIMALS).tolist()
        for item, norm in zip(items, norms):
            item["box_norm"] = norm
    record = {
        "version": PAYLOAD_VERSION,
        "seq": seq,
        "device": device,
        "model": model,
        "time": round(capture_time, TIME_DECIMALS),
        "frame": frame_index,
        "width": width,
        "height": height,
        "detections": items,
    }
    return json.dumps(record, separators=_COMPACT).encode()


def stats_payload(*, device: str, pipeline: Mapping[str, Any], mqtt: Mapping[str, Any]) -> bytes:
    """The camera loop's snapshot under ``pipeline``, the publisher's own counters under ``mqtt``."""
    record = {
        "version": PAYLOAD_VERSION,
        "device": device,
        "time": round(time.time(), TIME_DECIMALS),
        "pipeline": dict(pipeline),
        "mqtt": dict(mqtt),
        "cpu_temp_c": cpu_temperature_c(),
    }
    return json.dumps(record, separators=_COMPACT, default=_jsonable).encode()


def snapshot_jpeg(image_bgr: np.ndarray, dets: Detections, names: Sequence[str]) -> bytes | None:
    """The annotated frame as JPEG, or None when OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(".jpg", draw_detections(image_bgr, dets, names), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return encoded.tobytes() if ok else None


def label_counts(dets: Detections) -> tuple[tuple[int, int], ...]:
    """(class id, count) pairs in class order: what ``--publish change`` compares between frames."""
    if not len(dets):
        return ()
    ids, counts = np.unique(dets.class_id, return_counts=True)
    return tuple(zip(ids.tolist(), counts.tolist()))


def cpu_temperature_c(path: Path = CPU_TEMP_PATH) -> float | None:
    """SoC temperature from the kernel's thermal zone; None where there is none (VMs, containers)."""
    try:
        return round(int(path.read_text().strip()) / MILLIDEGREES_PER_DEGREE, TEMP_DECIMALS)
    except (OSError, ValueError):
        return None


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays as their Python values; anything else by its text, never an exception."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
