"""`edge-convert prune`: remove bottlenecks and channels to a MACs budget, refit what is left, and save it."""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.distill import DEPTH_KEY, KEPT_KEY
from convert.errors import ConvertError
from convert.export import parse_imgsz
from convert.paths import default_pool_dir
from convert.prune import DEFAULT_METHOD, DEFAULT_ROUND_TO, METHODS, check_ratio, measure
from convert.prune.pipeline import DEFAULT_RECONSTRUCT, RECONSTRUCT_IMAGES, PruneSpec, prune

NAME = "prune"
HELP = ("structured pruning: remove C3 bottlenecks (--depth/--drop) and channels (--ratio, torch-pruning DepGraph), "
        "then refit each layer to the original's outputs on real photos")


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=Path, required=True, help="YOLOv5 .pt (ultralytics or edge-yolo), unfused, or an official name such as yolov5s")
    add_prune_arguments(p)
    p.add_argument("--images", type=Path, nargs="+", default=None,
                   help="unlabelled photos like the camera's, for statistics and reconstruction (default: the "
                        "shared pool); every 8th file is held out for scoring and not used")
    p.add_argument("--imgsz", default="320", help="export size the MACs are counted at")
    p.add_argument("--out", type=Path, required=True, help="pruned checkpoint to write (edge-yolo format)")


def add_prune_arguments(p: argparse.ArgumentParser):
    """The options that say what to remove and how to refit (shared with `slim`)."""
    p.add_argument("--ratio", type=float, default=None,
                   help="fraction of the MACs to remove in total, in (0, 1): 0.3 = at least 30%% cheaper "
                        "(removed bottlenecks count toward it; the rest by thinning channels)")
    p.add_argument("--depth", type=int, default=0,
                   help="remove this many C3 bottlenecks, those whose removal changes the outputs least")
    p.add_argument("--drop", default="",
                   help="remove these bottlenecks instead, e.g. model.4.m.1,model.6.m.2 (or 4.1,6.2)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="channel importance: act = variance a channel adds to its consumers on --images "
                        "(default), l1 / l2 filter norm, bn = batch-norm scale (network slimming)")
    p.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, help="keep channel counts multiples of this")
    p.add_argument("--reconstruct", choices=("ls", "bn", "none"), default=DEFAULT_RECONSTRUCT,
                   help="refit every layer to the original's outputs: ls = ridge least squares (default), "
                        "bn = per-channel mean and variance only, none")
    p.add_argument("--reconstruct-images", type=int, default=RECONSTRUCT_IMAGES,
                   help="photos the reconstruction is fitted on")


def spec_from(args) -> PruneSpec:
    if args.ratio is not None:
        check_ratio(args.ratio)
    return PruneSpec(ratio=args.ratio or 0.0, method=args.method, round_to=args.round_to, drop=args.drop,
                     depth=args.depth, reconstruct=args.reconstruct, reconstruct_images=args.reconstruct_images)


def run(args) -> int:
    spec = spec_from(args)
    imgsz_hw = parse_imgsz(args.imgsz)
    source = load_checkpoint(args.weights)
    before = measure(source.model, imgsz_hw)
    result = prune(source.model, spec, args.images or [default_pool_dir()], imgsz_hw)
    pruned = result.model
    after = measure(pruned, imgsz_hw)
    save_checkpoint(pruned, args.out, pruned_from=source.path.name, pruned_from_sha256=source.sha256,
                    prune={**asdict(spec), "dropped": result.dropped},
                    **{KEPT_KEY: result.kept_channels, DEPTH_KEY: result.depth})
    reloaded = load_checkpoint(args.out).model
    if reloaded.channel_shapes() != pruned.channel_shapes():
        raise ConvertError(f"{args.out} does not load back with the pruned shapes: the file is unusable")
    what = ", ".join(filter(None, [f"{args.method} to ratio {spec.ratio}" if spec.ratio else "",
                                   f"{len(result.dropped)} bottlenecks removed" if result.dropped else ""]))
    print_costs(f"{args.weights.name} → {args.out.name} ({what}, at {imgsz_hw[0]}x{imgsz_hw[1]})",
                [("original", before, args.weights.stat().st_size), ("pruned", after, args.out.stat().st_size)])
    if result.dropped:
        print(f"removed bottlenecks: {', '.join(result.dropped)}", file=sys.stdout)
    if result.fits:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        print(f"reconstruction ({spec.reconstruct}, {spec.reconstruct_images} photos): mean layer output error "
              f"{mean([f.before for f in result.fits]):.3f} → {mean([f.after for f in result.fits]):.3f} "
              "(MSE / variance of the original's output)", file=sys.stdout)
    return 0


def print_costs(title: str, rows):
    out = sys.stdout
    print(title, file=out)
    # File sizes reflect the stored precision (ultralytics checkpoints hold fp16, edge-yolo's fp32 for
    # fine-tuning), so the fp32 weight size is printed beside them as the like-for-like figure.
    print(f"{'':10s} {'params':>10s} {'MACs':>10s} {'GFLOPs':>7s} {'fp32 MB':>8s} {'file MB':>8s}", file=out)
    base = rows[0][1]
    for label, cost, size in rows:
        print(f"{label:10s} {cost.params / 1e6:9.3f}M {cost.macs / 1e6:9.1f}M {cost.gflops:7.3f} "
              f"{cost.params * 4 / 1e6:8.2f} {size / 1e6:8.2f}", file=out)
    for label, cost, _ in rows[1:]:
        print(f"{label}: {100 * (1 - cost.params / base.params):.1f}% fewer parameters, "
              f"{100 * (1 - cost.macs / base.macs):.1f}% fewer MACs", file=out)
