"""`edge-convert explain`: the tensors of an int8 model that lose the most against its fp32 twin."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convert.calibration import find_images, letterboxed_images, select_evenly
from convert.errors import ConvertError
from convert.explain import explain, format_report, open_pair
from convert.paths import default_pool_dir

NAME = "explain"
HELP = ("per-tensor int8 error against the fp32 model on real images: SQNR, clipping, outlier-stretched "
        "ranges and Concatenation-forced scales, worst first")
DEFAULT_COUNT = 16
DEFAULT_TOP = 15


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--int8", type=Path, required=True, help="the full-integer *_int8.tflite")
    p.add_argument("--fp32", type=Path, required=True, help="the *_fp32.tflite of the same export")
    p.add_argument("--images", type=Path, nargs="+", default=None,
                   help="folder(s) of photos like the camera's (default: the shared data/pool)")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help="how many images, spread evenly over the folders")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help="how many of the worst tensors to print")
    p.add_argument("--json", action="store_true", help="print every tensor as one JSON object instead of the table")


def report_for(int8: Path, fp32: Path, folders: list[Path], count: int):
    """The report on `count` letterboxed images of the folders (also used by `export --explain`)."""
    if count < 1:
        raise ConvertError(f"--count must be at least 1, received {count}")
    quant, _ = open_pair(int8, fp32)  # refuse a wrong pair before reading any image
    paths = find_images(folders)
    if not paths:
        raise ConvertError(f"no images found in {', '.join(map(str, folders))}: pass --images with a folder of photos")
    images, _ = letterboxed_images(select_evenly(paths, count), quant.input_shape[1:3], "explain images")
    del quant
    return explain(int8, fp32, images)


def run(args) -> int:
    report = report_for(args.int8, args.fp32, args.images or [default_pool_dir()], args.count)
    if args.json:
        print(json.dumps(report.as_dict()), file=sys.stdout)
    else:
        print(format_report(report, args.top), file=sys.stdout)
    return 0
