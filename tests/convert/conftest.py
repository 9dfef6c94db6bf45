"""Fixtures for the workstation tests: the real checkpoint and the shared data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.model_cache import shared_root

if importlib.util.find_spec("torch") is None:  # the device side has no converter to test
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_root()
    if not (root / "models" / "yolov5n.pt").is_file():
        pytest.fail(f"shared data not found at {root}: set EDGE_YOLO_DATA", pytrace=False)
    return root


@pytest.fixture(scope="session")
def yolov5n_pt(shared) -> Path:
    return shared / "models" / "yolov5n.pt"


@pytest.fixture(scope="session")
def yolov5n(yolov5n_pt):
    from convert.checkpoint import load_checkpoint

    return load_checkpoint(yolov5n_pt)
