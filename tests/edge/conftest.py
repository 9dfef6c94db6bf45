"""Fixtures shared by the edge/ tests: the converted test models and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODELS_ENV = "EDGE_YOLO_TEST_MODELS"
DATA_ENV = "EDGE_YOLO_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_MODEL_NAMES = {p: f"yolov5n_320_{p}.tflite" for p in ("int8", "fp32", "fp16")}


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """Folder holding yolov5n_320_{int8,fp32,fp16}.tflite; the real-model tests fail without it."""
    value = os.environ.get(MODELS_ENV)
    if not value:
        pytest.fail(
            f"{MODELS_ENV} is not set: point it at the folder holding {', '.join(TEST_MODEL_NAMES.values())} "
            f"(made by `edge-convert export`)",
            pytrace=False,
        )
    folder = Path(value)
    missing = [name for name in TEST_MODEL_NAMES.values() if not (folder / name).is_file()]
    if missing:
        pytest.fail(f"{MODELS_ENV}={folder} lacks {', '.join(missing)}", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder: $EDGE_YOLO_DATA, else ``../shared`` beside the repository."""
    folder = Path(os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared")
    if not (folder / "data" / "photos" / "bus.jpg").is_file():
        pytest.fail(f"shared data not found at {folder}: set {DATA_ENV} to the folder holding data/photos", pytrace=False)
    return folder



VIDEO_CONF = 0.1  # the tracker's default low_score: its second association wants the unsure detections too


@pytest.fixture(scope="session")
def video_detections(model_dir, data_dir):
    """``detections(name, frames)``: the int8 model's detections on the first ``frames`` of a video in
    data/video, one Detections per frame, computed once per session (tests that track, count and
    publish them share the inference)."""
    from edge.detect.detector import DetectSettings, Detector
    from edge.sources import iter_frames

    cache: dict = {}
    detector = Detector(model_dir / TEST_MODEL_NAMES["int8"], DetectSettings(conf=VIDEO_CONF))

    def detections(name: str, frames: int | None = None) -> list:
        if (name, frames) not in cache:
            cache[name, frames] = [detector.detect(f.image)[0] for f in iter_frames(data_dir / "data" / "video" / name, frames)]
        return cache[name, frames]

    return detections


@pytest.fixture(scope="session")
def replay(video_detections, data_dir):
    """``replay(name, frames)``: (frame, detections) pairs of a video, the frames decoded again (cheap)
    rather than held in memory, the detections from ``video_detections``."""
    from edge.sources import iter_frames

    def pairs(name: str, frames: int | None = None):
        dets = video_detections(name, frames)
        return zip(iter_frames(data_dir / "data" / "video" / name, len(dets)), dets)

    return pairs


@pytest.fixture(scope="session")
def names(model_dir) -> tuple[str, ...]:
    """The int8 test model's class names."""
    from edge.model.interpreter import Model

    return Model(model_dir / TEST_MODEL_NAMES["int8"]).meta.names


@pytest.fixture
def broker(tmp_path):
    """A private Mosquitto on a free loopback port, for the test's length."""
    from tests.edge.mosquitto import Mosquitto

    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()
