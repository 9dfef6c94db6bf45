"""`edge-convert prune`: remove channels until the model costs `--ratio` fewer MACs, and save it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.errors import ConvertError
from convert.export import parse_imgsz
from convert.paths import default_calib_dirs
from convert.prune import (DEFAULT_METHOD, DEFAULT_ROUND_TO, METHODS, check_ratio, input_stats, measure,
                           prune_to_cost, stats_images)

NAME = "prune"
HELP = "structured pruning: remove whole channels (torch-pruning DepGraph), keep batch norms for fine-tuning"


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=Path, required=True, help="YOLOv5 .pt (ultralytics or edge-yolo), unfused")
    p.add_argument("--ratio", type=float, required=True,
                   help="fraction of the MACs to remove, in (0, 1): 0.3 = at least 30%% cheaper")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="channel importance: act = variance a channel adds to its consumers on --images "
                        "(default), l1 / l2 filter norm, bn = batch-norm scale (network slimming)")
    p.add_argument("--images", type=Path, nargs="+", default=None,
                   help="photos like the camera's, for activation statistics (default: the shared "
                        "calibration folders)")
    p.add_argument("--imgsz", default="320", help="export size the MACs are counted at")
    p.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO, help="keep channel counts multiples of this")
    p.add_argument("--out", type=Path, required=True, help="pruned checkpoint to write (edge-yolo format)")


def run(args) -> int:
    check_ratio(args.ratio)
    imgsz_hw = parse_imgsz(args.imgsz)
    source = load_checkpoint(args.weights)
    before = measure(source.model, imgsz_hw)
    images = stats_images(args.images or default_calib_dirs(), imgsz_hw)
    stats = input_stats(source.model, images)
    pruned = prune_to_cost(source.model, args.ratio, args.method, args.round_to, imgsz_hw, stats)
    after = measure(pruned, imgsz_hw)
    save_checkpoint(pruned, args.out, pruned_from=source.path.name, pruned_from_sha256=source.sha256,
                    prune={"ratio": args.ratio, "method": args.method, "round_to": args.round_to,
                           "stats_images": len(images)},
                    kept_channels=pruned.kept_channels)
    reloaded = load_checkpoint(args.out).model
    if reloaded.channel_shapes() != pruned.channel_shapes():
        raise ConvertError(f"{args.out} does not load back with the pruned shapes: the file is unusable")
    print_costs(f"{args.weights.name} → {args.out.name} ({args.method}, ratio {args.ratio}, "
                f"at {imgsz_hw[0]}x{imgsz_hw[1]})",
                [("original", before, args.weights.stat().st_size), ("pruned", after, args.out.stat().st_size)])
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
