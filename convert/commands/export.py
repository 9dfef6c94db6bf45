"""`edge-convert export`: checkpoint → ONNX → TFLite fp32, fp16 and full-integer int8."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.calibration import DEFAULT_CALIB_IMAGES
from convert.commands.explain import DEFAULT_COUNT, report_for
from convert.explain import format_report
from convert.export import export_all
from convert.paths import default_calib_dirs
from convert.int8 import RANGE_METHODS
from convert.tflite_export import QuantSettings

NAME = "export"
HELP = "export a YOLOv5 checkpoint to TFLite fp32, fp16 and full-integer int8 with metadata"


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=Path, required=True,
                   help="YOLOv5 .pt (ultralytics or edge-yolo), or an official name: yolov5s, yolov5s@v7.0 "
                        "(downloaded once into the cache and checked against models/registry.tsv)")
    p.add_argument("--imgsz", default="320", help="input size: 320 or HEIGHT,WIDTH (rounded up to a multiple of the largest stride)")
    p.add_argument("--calib", type=Path, nargs="+", default=None,
                   help="folder(s) of real images for int8 calibration (default: the shared COCO images)")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES,
                   help="how many calibration images to use, spread evenly over the folders")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    p.add_argument("--ranges", choices=RANGE_METHODS, default="error",
                   help="int8 activation ranges: 'error' picks each range by the error after its consumer "
                        "(default), 'minmax' keeps the calibration's extremes")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--keep-work", action="store_true", help="keep onnx2tf's intermediate files")
    p.add_argument("--explain", action="store_true",
                   help=f"then print `edge-convert explain` of the int8 model on {DEFAULT_COUNT} of the calibration images")


def run(args) -> int:
    calib = args.calib or default_calib_dirs()
    result = export_all(args.weights, args.out, args.imgsz, calib, args.calib_images,
                        QuantSettings(per_channel=not args.per_tensor, ranges=args.ranges), keep_work=args.keep_work)
    for precision, path in result.models.items():
        print(f"{precision:5s} {path}  {path.stat().st_size / 1e6:.2f} MB", file=sys.stdout)
    print(f"onnx  {result.onnx}", file=sys.stdout)
    if args.explain:
        report = report_for(result.models["int8"], result.models["fp32"], calib, DEFAULT_COUNT)
        print(f"\n{format_report(report)}", file=sys.stdout)
    return 0
