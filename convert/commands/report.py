"""`edge-convert report`: accuracy, size and speed of a converted model folder in one table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.errors import ConvertError
from convert.paths import data_root, default_pool_dir
from convert.report import DEFAULT_DATA, DataSpec, build_report, parse_data_spec, write_report

NAME = "report"
HELP = ("one table for a converted folder: PyTorch fp32 and TFLite fp32/fp16/int8 mAP, file size and median "
        "invoke time; written as report.md/report.json and into each model's metadata. With --variants: "
        "several int8 models on one accuracy-vs-measured-latency table and chart")


def add_arguments(p: argparse.ArgumentParser):
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dir", type=Path, help="folder written by `edge-convert export --out`")
    which.add_argument("--variants", type=Path, nargs="+",
                       help="export folders to compare (the first: the original at full size; those converted "
                            "from the same checkpoint form the curve), written to --out as curve.md/.json/.png")
    p.add_argument("--out", type=Path, default=None, help="with --variants: where the table and chart go")
    p.add_argument("--images", type=Path, default=None,
                   help="with --variants and --weights: photos whose held-out part scores agreement with the original")
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
    if args.variants:
        return _run_variants(args, data)
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


def _run_variants(args, data: list[DataSpec]) -> int:
    from convert.curve import verdict, write_curve
    from convert.variants import PSEUDO_KEY, score_labelled, score_pseudo, time_variants, variants_from_folders

    if args.out is None:
        raise ConvertError("--variants needs --out FOLDER for the table and chart")
    variants = variants_from_folders(args.variants)
    reference = variants[0]
    time_variants(variants, args.threads)
    keys = []
    if args.weights is not None:
        score_pseudo(variants, args.weights, args.images or default_pool_dir(), reference.imgsz, args.threads)
        keys.append(PSEUDO_KEY)
    score_labelled(variants, data, args.threads)
    keys += [spec.label for spec in data]
    text = write_curve(variants, keys, reference, args.out, f"int8 variants, invoke measured interleaved "
                                                             f"({args.threads} threads and 1)")
    print(text, file=sys.stdout, end="")
    originals = [v for v in variants if v.original]
    for v in (v for v in variants if not v.original):
        print(f"{v.label}: " + "; ".join(f"{k}: {verdict(v, originals, k)}" for k in keys), file=sys.stdout)
    return 0
