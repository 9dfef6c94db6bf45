"""Every zoo checkpoint through the whole path: load (or its one-line refusal), int8 export, detections.

    python -m tests.convert.zoo_exports [--imgsz 320] [--out DIR]

For each loadable file: parameters after fusion (built model and what the tensors imply), the fp32
TFLite's max abs difference from PyTorch, and the device Detector's int8 detections on the example
images of its folder, or on bus.jpg for the COCO models (the shared v6.1 yolov5n beside the v6.0 one).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2

from convert.checkpoint import load_checkpoint
from convert.errors import ConvertError
from convert.export import export_all
from edge.detect.detector import Detector
from tests.convert.zoo import implied_fused_parameters, zoo_entries
from tests.model_cache import shared_root


def _describe(dets, names) -> str:
    found = sorted(zip(dets.class_id.tolist(), dets.score.tolist()), key=lambda d: -d[1])
    return ", ".join(f"{names[c]} {s:.2f}" for c, s in found) or "nothing"


def _run(name: str, path: Path, images: list[Path], out: Path, imgsz: int, calib: list[Path]):
    try:
        ckpt = load_checkpoint(path)
    except ConvertError as exc:
        print(f"{name}: REFUSED  {exc}", flush=True)
        return
    fused = sum(p.numel() for p in ckpt.model.fuse().parameters())
    implied = implied_fused_parameters(path) if ckpt.kind == "ultralytics" else fused
    print(f"{name}: loaded  nc={ckpt.model.detect.nc} names={ckpt.model.names[:5]}"
          f"{'...' if len(ckpt.model.names) > 5 else ''} strides={ckpt.model.strides}", flush=True)
    print(f"  params after fusion {fused:,} (tensors imply {implied:,}: "
          f"{'equal' if fused == implied else 'DIFFERENT'})", flush=True)
    started = time.time()
    try:
        result = export_all(path, out / name, imgsz, calib)
    except ConvertError as exc:
        print(f"  export FAILED after {time.time() - started:.0f} s: {exc}", flush=True)
        return
    checks = result.metadata["conversion"]["checks"]
    print(f"  export {time.time() - started:.0f} s; fp32 TFLite vs PyTorch max abs diff "
          f"{checks['fp32']['max_abs_diff_vs_torch']:.2e}, fp16 {checks['fp16']['max_abs_diff_vs_torch']:.2e}, "
          f"int8 mean {checks['int8']['mean_abs_diff_vs_torch']:.4f}", flush=True)
    detector = Detector(result.models["int8"])
    print(f"  int8 metadata names: {list(detector.names)[:5]}", flush=True)
    for image in images:
        dets, _ = detector.detect(cv2.imread(str(image)))
        print(f"  {image.name}: {_describe(dets, detector.names)}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--out", type=Path, default=None, help="keep the exports here (default: a temp dir)")
    parser.add_argument("--only", nargs="+", default=None, help="only these zoo folders (and shared_v6.1_yolov5n)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="  %(levelname)s %(message)s", stream=sys.stdout)
    root = shared_root()
    bus = root / "data" / "photos" / "bus.jpg"
    calib = [root / "data" / "pool"]
    out = args.out or Path(tempfile.mkdtemp(prefix="zoo-exports-"))
    print(f"imgsz {args.imgsz}, calibration {calib[0]}, exports in {out}", flush=True)
    for entry in zoo_entries():
        if args.only and entry.folder not in args.only:
            continue
        images = entry.images or ([bus] if "yolov5n" in entry.folder else [])
        _run(entry.folder, entry.path, images, out, args.imgsz, calib)
    if not args.only or "shared_v6.1_yolov5n" in args.only:
        _run("shared_v6.1_yolov5n", root / "models" / "yolov5n.pt", [bus], out, args.imgsz, calib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
