"""`edge-convert report`: accuracy, size and speed of a converted model folder in one table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.errors import ConvertError
from convert.paths import data_root
from convert.report import DEFAULT_DATA, DataSpec, build_report, parse_data_spec, write_report

NAME = "report"
HELP = ("one table for a converted folder: PyTorch fp32 and TFLite fp32/fp16/int8 mAP, file size and median "
        "invoke time; written as report.md/report.json and into each model's metadata")


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--dir", type=Path, required=True, help="folder written by `edge-convert export --out`")
    p.add_argument("--weights", type=Path, default=None,
                   help="the checkpoint the models came from, for the PyTorch fp32 row (omitted: no PyTorch row)")
    p.add_argument("--data", type=parse_data_spec, action="append", default=None, metavar="DIR[:CLASSES]",
                   help="YOLO data set to evaluate on, optionally with the class ids to keep (DIR:0); repeatable "
                        "(default: the shared coco-train130, and coco-val-person700 for class 0)")
    p.add_argument("--imgsz", default=None, help="which conversion, when the folder holds several sizes")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each data set")
    p.add_argument("--threads", type=int, default=2, help="inference threads for every model")


def run(args) -> int:
    data = args.data or _default_data()
    rows = build_report(args.dir, data, args.weights, args.imgsz, args.threads, args.limit)
    print(write_report(args.dir, rows, data, args.threads), file=sys.stdout, end="")
    return 0


def _default_data() -> list[DataSpec]:
    root = data_root()
    specs = [DataSpec(root / rel, classes) for rel, classes in DEFAULT_DATA if root and (root / rel).is_dir()]
    if not specs:
        raise ConvertError("no evaluation data: pass --data DIR (images/ and labels/), "
                           "or set EDGE_YOLO_DATA to the folder holding data/coco-train130")
    return specs
