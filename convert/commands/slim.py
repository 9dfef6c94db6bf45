"""`edge-convert slim`: prune → distill → export → measure, ending with original vs slim side by side.

Every figure in the final table is measured in this run on this machine: costs by counting the
network, sizes from the files, invoke times interleaved (`convert.speed`), mAP by `edge-convert eval`.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from convert.calibration import DEFAULT_CALIB_IMAGES
from convert.checkpoint import load_checkpoint, save_checkpoint
from convert.distill import DEFAULT_LR, STATE_KEY, DistillConfig, distill
from convert.export import export_all, parse_imgsz
from convert.paths import default_calib_dirs
from convert.prune import (DEFAULT_METHOD, DEFAULT_ROUND_TO, METHODS, check_ratio, input_stats, measure,
                           prune_to_cost, stats_images)
from convert.speed import compare_speed

log = logging.getLogger(__name__)

NAME = "slim"
HELP = "prune, distill and export a YOLOv5 checkpoint, then compare it with the original (cost, size, mAP, speed)"
SPEED_RUNS = 50


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--weights", type=Path, required=True, help="the unpruned YOLOv5 .pt")
    p.add_argument("--ratio", type=float, default=0.3, help="fraction of the MACs to remove, in (0, 1)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD, help="channel importance")
    p.add_argument("--round-to", type=int, default=DEFAULT_ROUND_TO)
    p.add_argument("--images", type=Path, required=True,
                   help="unlabelled photos for distillation (and the activation statistics of pruning)")
    p.add_argument("--epochs", type=int, required=True, help="distillation epochs (0: prune only)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak AdamW learning rate")
    p.add_argument("--workers", type=int, default=None, help="CPU threads for distillation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted distillation in --out")
    p.add_argument("--imgsz", default="320")
    p.add_argument("--calib", type=Path, nargs="+", default=None, help="int8 calibration image folders")
    p.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES)
    p.add_argument("--eval-data", type=Path, default=None, help="labelled YOLO data set for mAP (skipped without)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads for the speed comparison")
    p.add_argument("--out", type=Path, required=True, help="output folder")


def run(args) -> int:
    check_ratio(args.ratio)
    imgsz_hw = parse_imgsz(args.imgsz)
    calib = args.calib or default_calib_dirs()
    args.out.mkdir(parents=True, exist_ok=True)
    source = load_checkpoint(args.weights)
    pruned_pt, slim_pt = args.out / "pruned.pt", args.out / "slim.pt"
    if not (args.resume and pruned_pt.is_file()):
        stats = input_stats(source.model, stats_images([args.images], imgsz_hw))
        pruned = prune_to_cost(source.model, args.ratio, args.method, args.round_to, imgsz_hw, stats)
        save_checkpoint(pruned, pruned_pt, pruned_from=source.path.name, pruned_from_sha256=source.sha256,
                        prune={"ratio": args.ratio, "method": args.method, "round_to": args.round_to},
                        kept_channels=pruned.kept_channels)
    if args.epochs > 0:
        earlier = load_checkpoint(slim_pt).extra if args.resume and slim_pt.is_file() else {}
        if "distilled" in earlier:
            log.info("%s is already distilled: going on to export", slim_pt)
        else:
            config = DistillConfig(imgsz=imgsz_hw, epochs=args.epochs, batch=args.batch, lr=args.lr,
                                   seed=args.seed)
            distill(args.weights, pruned_pt, args.images, slim_pt, config, resume=STATE_KEY in earlier,
                    threads=args.workers)
    else:
        shutil.copyfile(pruned_pt, slim_pt)

    exports = {}
    for label, weights in (("original", args.weights), ("slim", slim_pt)):
        log.info("exporting %s", label)
        exports[label] = export_all(weights, args.out / label, imgsz_hw, calib, args.calib_images).models
    costs = {"original": measure(source.model, imgsz_hw), "slim": measure(load_checkpoint(slim_pt).model, imgsz_hw)}
    speeds = {}
    for precision in ("fp32", "int8"):
        pair = [exports["original"][precision], exports["slim"][precision]]
        for label, timing in zip(("original", "slim"), compare_speed(pair, SPEED_RUNS, args.threads)):
            speeds[(label, precision)] = timing.median_ms
    rows = []
    for label in ("original", "slim"):
        for precision in ("fp32", "int8"):
            path = exports[label][precision]
            rows.append({"model": label, "precision": precision, "file": str(path),
                         "params": costs[label].params, "macs": costs[label].macs,
                         "size_mb": round(path.stat().st_size / 1e6, 3),
                         "map50_95": evaluate_map(path, args.eval_data, args.threads) if args.eval_data else None,
                         "invoke_ms": round(speeds[(label, precision)], 2)})
    # The pruned model before distillation, so the recovery is visible.
    before = evaluate_map(pruned_pt, args.eval_data, args.threads, imgsz_hw) if args.eval_data else None
    (args.out / "slim_report.json").write_text(json.dumps(
        {"ratio": args.ratio, "method": args.method, "epochs": args.epochs, "imgsz": list(imgsz_hw),
         "threads": args.threads, "rows": rows, "pruned_map50_95_before_distill": before}, indent=2))
    print_table(rows)
    if before is not None:
        print(f"pruned, before distillation (PyTorch fp32): mAP50-95 {before:.1f}", file=sys.stdout)
    return 0


def evaluate_map(model: Path, data: Path, threads: int, imgsz=None) -> float:
    """mAP50-95 (percent) of a model file, scored as `edge-convert eval` scores it."""
    from convert.dataset import read_dataset
    from convert.evaluate import evaluate, open_backend

    backend = open_backend(model, imgsz, threads=threads)
    return evaluate(backend, read_dataset(data, backend.meta.nc), str(data)).map50_95


def print_table(rows: list[dict]):
    out = sys.stdout
    print(f"{'model':9s} {'prec':5s} {'params':>9s} {'MACs':>9s} {'MB':>6s} {'mAP50-95':>9s} {'invoke ms':>10s}", file=out)
    for r in rows:
        m = "-" if r["map50_95"] is None else f"{r['map50_95']:.1f}"
        print(f"{r['model']:9s} {r['precision']:5s} {r['params'] / 1e6:8.3f}M {r['macs'] / 1e6:8.1f}M "
              f"{r['size_mb']:6.2f} {m:>9s} {r['invoke_ms']:10.2f}", file=out)
    base = {r["precision"]: r for r in rows if r["model"] == "original"}
    for r in rows:
        if r["model"] != "original":
            b = base[r["precision"]]
            print(f"{r['precision']}: {b['invoke_ms'] / r['invoke_ms']:.2f}x faster, "
                  f"{100 * (1 - r['macs'] / b['macs']):.0f}% fewer MACs, "
                  f"{100 * (1 - r['params'] / b['params']):.0f}% fewer parameters", file=out)
