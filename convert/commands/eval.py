"""`edge-convert eval`: mAP50-95 and mAP50 of a .pt, .onnx or .tflite model on a YOLO-format data set."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convert.dataset import read_dataset
from convert.evaluate import EVAL_CONF, EVAL_IOU, evaluate, open_backend

NAME = "eval"
HELP = (f"mAP50-95 / mAP50 (pycocotools) of a .pt, .onnx or .tflite model on a YOLO data set, through the "
        f"device's letterbox, decode and NMS (conf {EVAL_CONF}, IoU {EVAL_IOU})")


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", type=Path, required=True, help=".pt checkpoint, .onnx, or .tflite with edge-yolo metadata")
    p.add_argument("--data", type=Path, required=True, help="folder with images/*.jpg and labels/*.txt (YOLO format)")
    p.add_argument("--imgsz", default=None,
                   help="input size for a .pt (default 320); converted models have a fixed size and must match it")
    p.add_argument("--classes", type=int, nargs="+", default=None,
                   help="evaluate only these class ids (labels and detections of other classes are dropped)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (by name)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args) -> int:
    backend = open_backend(args.model, args.imgsz, args.classes, args.threads)
    samples = read_dataset(args.data, backend.meta.nc, args.limit)
    result = evaluate(backend, samples, str(args.data))
    if args.json:
        print(json.dumps(result.as_dict()), file=sys.stdout)
        return 0
    size = "x".join(map(str, result.imgsz))
    which = "all classes" if result.classes is None else "classes " + ",".join(map(str, result.classes))
    print(f"{result.model} ({result.backend} {result.precision}, {size}) on {result.images} images of "
          f"{args.data} ({which}): mAP50-95 {result.map50_95:.2f}  mAP50 {result.map50:.2f}  "
          f"[{result.seconds:.0f} s]", file=sys.stdout)
    return 0
