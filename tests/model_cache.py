"""Converted test models, made once and cached outside the checkout, keyed by what they depend on.

A conversion takes minutes; the test suites (on x86 and under aarch64 emulation) only need its
result. The key hashes the checkpoint, the export settings and every source file that shapes the
converted bytes, so a change to the converter re-converts and nothing else does.

    python -m tests.model_cache --imgsz 320      # prints the folder holding the models
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "EDGE_YOLO_CACHE"
DEFAULT_CACHE = Path("/var/cache/edge-yolo")
# Everything that decides the bytes of a converted model.
KEY_SOURCES = [
    "convert/yolo_model.py", "convert/checkpoint.py", "convert/unpickle.py", "convert/fit_tensors.py",
    "convert/activations.py", "convert/layers/conv.py", "convert/layers/csp.py", "convert/layers/pooling.py",
    "convert/layers/detect.py", "convert/layers/reshape.py", "convert/layers/ghost.py",
    "convert/layers/transformer.py", "convert/onnx_export.py", "convert/tflite_export.py",
    "convert/int8/__init__.py", "convert/int8/graph.py", "convert/int8/quantize.py", "convert/int8/ranges.py",
    "convert/export.py", "convert/calibration.py", "edge/detect/letterbox.py", "edge/model/metadata.py", "pyproject.toml",
]
KEY_VERSION = "1"


def shared_root() -> Path:
    return Path(os.environ.get("EDGE_YOLO_DATA") or REPO.parent / "shared")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def cache_key(weights: Path, imgsz: int, calib_images: int) -> str:
    digest = hashlib.sha256(KEY_VERSION.encode())
    digest.update(f"{imgsz}|{calib_images}".encode())
    digest.update(hashlib.sha256(weights.read_bytes()).digest())
    for rel in KEY_SOURCES:
        digest.update(rel.encode())
        digest.update((REPO / rel).read_bytes())
    return digest.hexdigest()[:16]


def ensure_models(imgsz: int = 320, weights: Path | None = None, calib_images: int = 200) -> Path:
    """The folder with `<stem>_<imgsz>_{fp32,fp16,int8}.tflite`, the ONNX file and onnx2tf's SavedModel."""
    weights = weights or shared_root() / "models" / "yolov5n.pt"
    folder = cache_root() / "models" / f"{weights.stem}_{imgsz}_{cache_key(weights, imgsz, calib_images)}"
    if (folder / "COMPLETE").is_file():
        return folder
    from convert.export import export_all
    from convert.paths import default_calib_dirs

    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    export_all(weights, staging, imgsz, default_calib_dirs(), calib_images, keep_work=True)
    # onnx2tf's SavedModel stays for the int8 quantizer's tests; the rest of the work folder goes
    for work in staging.glob(".export-*"):
        (work / "saved_model").rename(staging / "saved_model")
        shutil.rmtree(work)
    (staging / "COMPLETE").write_text(f"{weights}\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    print(ensure_models(args.imgsz, args.weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
