"""The bytes of object events (``--publish events``): versioned JSON on ``events``, a JPEG per snapshot.

Kept apart from the transport, like ``payloads``, so they can be checked against the schema
without a broker.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import cv2
import numpy as np

from edge.detect.annotate import draw_detections
from edge.detect.detections import BOX_DECIMALS, SCORE_DECIMALS, Detections
from edge.sinks.mqtt.payloads import JPEG_QUALITY, NORM_DECIMALS, PAYLOAD_VERSION, TIME_DECIMALS
from edge.sinks.mqtt.settings import MqttSettings
from edge.track.events import ObjectEvent, ObjectState, Snapshot

EVENTS_LEAF = "events"
SNAPSHOT_LEAF = "events/snapshot"  # retained: the latest object snapshot, for a Home Assistant image entity
_COMPACT = (",", ":")


def object_json(state: ObjectState) -> dict:
    """One object as JSON: box in pixels and normalised, zones it is in and has been in, times in Unix seconds."""
    width, height = state.frame_wh
    box = np.asarray(state.box, np.float64)
    norm = np.clip(box / np.array([width, height, width, height], np.float64), 0.0, 1.0)
    return {
        "id": state.id,
        "label": state.label,
        "score": round(state.score, SCORE_DECIMALS),
        "top_score": round(state.top_score, SCORE_DECIMALS),
        "box": np.round(box, BOX_DECIMALS).tolist(),
        "box_norm": np.round(norm, NORM_DECIMALS).tolist(),
        "zones": list(state.zones),
        "entered_zones": list(state.entered_zones),
        "lines": dict(state.lines),
        "stationary": state.stationary,
        "hits": state.hits,
        "start_time": round(state.start_time, TIME_DECIMALS),
        "last_seen": round(state.last_seen, TIME_DECIMALS),
        "end_time": None if state.end_time is None else round(state.end_time, TIME_DECIMALS),
    }


def event_payload(*, seq: int, device: str, model: str, event: ObjectEvent) -> bytes:
    """One event: what changed, and the object before (as last told; null for ``new``) and after."""
    record = {
        "version": PAYLOAD_VERSION,
        "seq": seq,
        "device": device,
        "model": model,
        "type": event.kind,
        "time": round(event.time, TIME_DECIMALS),
        "id": event.after.id,
        "label": event.after.label,
        "changes": event.changes,
        "before": None if event.before is None else object_json(event.before),
        "after": object_json(event.after),
    }
    return json.dumps(record, separators=_COMPACT).encode()


def snapshot_jpeg(snapshot: Snapshot) -> bytes | None:
    """The object's crop with its box and "label score" drawn, as JPEG; None when OpenCV cannot encode it."""
    box = Detections(np.array([snapshot.box], np.float32), np.array([snapshot.score], np.float32), np.zeros(1, np.int64))
    canvas = draw_detections(snapshot.image, box, (snapshot.label,))
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return encoded.tobytes() if ok else None


def event_rows(topic: str, settings: MqttSettings, first_seq: int, events: Sequence[ObjectEvent],
               publish_snapshot: Callable[[bytes], None]) -> list[tuple[str, bytes]]:
    """The spool rows of ``events`` numbered from ``first_seq``; each event's snapshot goes to
    ``publish_snapshot`` first (straight, not spooled: big, and only the latest matters)."""
    rows = []
    for seq, event in enumerate(events, start=first_seq):
        if event.snapshot is not None:
            jpeg = snapshot_jpeg(event.snapshot)
            if jpeg is not None:
                publish_snapshot(jpeg)
        rows.append((topic, event_payload(seq=seq, device=settings.device_id, model=settings.model, event=event)))
    return rows
