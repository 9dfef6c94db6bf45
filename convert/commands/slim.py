"""`edge-convert slim`: lighter variants of a model, measured against the original at smaller inputs.

Every figure in the final table is measured in this run on this machine: MACs by counting the
network, int8 invoke times interleaved over all the models (`convert.speed`), agreement scores on the
held-out part of `--images`, and mAP on labelled data only when `--eval-data` is given.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from convert.calibration import DEFAULT_CALIB_IMAGES
from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.commands.prune import add_prune_arguments, spec_from
from convert.curve import Variant, verdict, write_curve
from convert.distill import DEFAULT_LR, DEPTH_KEY, KEPT_KEY, STATE_KEY, DistillConfig, distill
from convert.errors import ConvertError
from convert.export import export_all, parse_imgsz
from convert.paths import default_pool_dir
from convert.prune import measure
from convert.prune.pipeline import PruneSpec, prune
from convert.report import parse_data_spec
from convert.slim import DEFAULT_SIZES, VariantSpec, choose, explain, parse_variant
from convert.variants import PSEUDO_KEY, SPEED_RUNS, score_labelled, score_pseudo, time_variants

log = logging.getLogger(__name__)

NAME = "slim"
HELP = ("prune, refit, distill and export lighter variants; measure them beside the original at smaller "
        "inputs (accuracy vs measured int8 latency) and, with --max-drop, choose the fastest within budget")


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=Path, required=True, help="the unpruned YOLOv5 .pt, or an official name such as yolov5s")
    p.add_argument("--images", type=Path, default=None,
                   help="unlabelled photos like the camera's (default: the shared pool); every 8th is held out "
                        "for scoring, the rest train, refit and calibrate")
    p.add_argument("--variant", action="append", default=None, metavar="KEY=VALUE[,...]",
                   help="a pruning recipe, repeatable: ratio=0.3, depth=4, depth=4,ratio=0.3, drop=4.1+6.2 "
                        "(default: one variant from --ratio/--depth/--drop)")
    add_prune_arguments(p)
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="smaller inputs the original is also measured at (the curve to beat)")
    p.add_argument("--epochs", type=int, default=0, help="distillation epochs per variant (0: refit only)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak AdamW learning rate")
    p.add_argument("--workers", type=int, default=None, help="CPU threads for distillation")
    p.add_argument("--max-drop", type=float, default=None,
                   help="choose the fastest variant whose score is at most this many points below the original's")
    p.add_argument("--imgsz", default="320")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES)
    p.add_argument("--eval-data", type=parse_data_spec, action="append", default=None, metavar="DIR[:CLASSES]",
                   help="labelled YOLO data set to report mAP on (never used to choose); repeatable")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads for timing")
    p.add_argument("--runs", type=int, default=SPEED_RUNS, help="interleaved invokes per model")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def run(args) -> int:
    if args.max_drop is not None and args.max_drop < 0:
        raise ConvertError(f"--max-drop {args.max_drop} is negative: give the points of score you accept to lose, e.g. 5")
    imgsz_hw = parse_imgsz(args.imgsz)
    sizes = _sizes(args.sizes, imgsz_hw[0])
    photos = args.images or default_pool_dir()
    base = spec_from(args)
    specs = [parse_variant(t, PruneSpec(method=args.method, round_to=args.round_to, reconstruct=args.reconstruct,
                                        reconstruct_images=args.reconstruct_images)) for t in args.variant] \
        if args.variant else [VariantSpec("pruned", base)]
    source = load_checkpoint(args.weights)
    for spec in specs:
        spec.prune.check(source.model)
    args.out.mkdir(parents=True, exist_ok=True)

    variants = []
    for size in [imgsz_hw[0]] + sizes:
        folder = args.out / f"original_{size}"
        variants.append(Variant(f"original {size}", _exported(args.weights, folder, size, photos, args), True, size,
                                macs=measure(source.model, (size, size)).macs))
    for spec in specs:
        weights = _make(spec, source, photos, imgsz_hw, args)
        variants.append(Variant(spec.name, _exported(weights, args.out / spec.name, imgsz_hw[0], photos, args), False,
                                imgsz_hw[0], macs=measure(load_checkpoint(weights).model, imgsz_hw).macs))
    reference = variants[0]
    time_variants(variants, args.threads, args.runs)
    labels = score_pseudo(variants, args.weights, photos, imgsz_hw[0], args.threads)
    if args.eval_data:
        score_labelled(variants, args.eval_data, args.threads)
    keys = [PSEUDO_KEY] + [s.label for s in args.eval_data or []]
    title = (f"{args.weights.name}: int8 variants, invoke measured interleaved ({args.threads} threads and 1), "
             f"scores on {photos}")
    text = write_curve(variants, keys, reference, args.out, title)
    print(text, file=sys.stdout)
    originals = [v for v in variants if v.original]
    for v in variants:
        if not v.original:
            words = "; ".join(f"{k}: {verdict(v, originals, k)}" for k in keys)
            print(f"{v.label}: {words}", file=sys.stdout)
    if args.max_drop is not None:
        chosen = choose(variants, reference, args.max_drop)
        print(explain(chosen, reference, args.max_drop, len(labels.frames), labels.boxes), file=sys.stdout)
    print(f"table, chart and figures: {args.out / 'curve.md'}, {args.out / 'curve.png'}, {args.out / 'curve.json'}",
          file=sys.stdout)
    return 0


def _sizes(text: str, full: int) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()}, reverse=True)
    except ValueError:
        raise ConvertError(f"--sizes {text!r}: give input sizes like 288,256,224") from None
    bad = [s for s in sizes if s <= 0 or s % 32 or s >= full]
    if bad:
        raise ConvertError(f"--sizes {bad[0]}: each must be a multiple of 32 below --imgsz {full}")
    return sizes


def _make(spec: VariantSpec, source, photos: Path, imgsz_hw, args) -> Path:
    """Prune + refit (and distill) one variant; each product is reused when it is already there."""
    folder = args.out / spec.name
    pruned_pt, slim_pt = folder / "pruned.pt", folder / "slim.pt"
    if not (args.resume and pruned_pt.is_file()):
        result = prune(source.model, spec.prune, [photos], imgsz_hw)
        save_checkpoint(result.model, pruned_pt, pruned_from=source.path.name, pruned_from_sha256=source.sha256,
                        prune={**asdict(spec.prune), "dropped": result.dropped},
                        **{KEPT_KEY: result.kept_channels, DEPTH_KEY: result.depth})
    if args.epochs <= 0:
        return pruned_pt
    earlier = load_checkpoint(slim_pt).extra if args.resume and slim_pt.is_file() else {}
    if "distilled" not in earlier:
        config = DistillConfig(imgsz=imgsz_hw, epochs=args.epochs, batch=args.batch, lr=args.lr)
        distill(args.weights, pruned_pt, photos, slim_pt, config, resume=STATE_KEY in earlier, threads=args.workers)
    return slim_pt


def _exported(weights: Path, folder: Path, size: int, photos: Path, args) -> Path:
    found = sorted(folder.glob(f"*_{size}_int8.tflite"))
    if args.resume and found:
        return found[0]
    log.info("exporting %s at %d", weights.name, size)
    return export_all(weights, folder, size, [photos], args.calib_images).models["int8"]
