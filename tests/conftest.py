"""Test-wide set-up: on a workstation, convert (or reuse from the cache) the real test models."""
from __future__ import annotations

import importlib.util
import os

MODELS_ENV = "EDGE_YOLO_TEST_MODELS"


def pytest_configure(config):
    # On the device side (aarch64 run) there is no torch: the models come converted from the host.
    if os.environ.get(MODELS_ENV) or importlib.util.find_spec("torch") is None:
        return
    from tests.model_cache import ensure_models

    os.environ[MODELS_ENV] = str(ensure_models(320))
