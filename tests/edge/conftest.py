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

