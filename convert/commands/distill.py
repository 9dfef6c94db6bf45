"""`edge-convert distill`: fine-tune a pruned model toward the original on unlabelled photos."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.distill import DEFAULT_LR, DistillConfig, distill
from convert.export import parse_imgsz
from convert.paths import default_pool_dir

NAME = "distill"
HELP = "label-free distillation: the original model's outputs train its pruned copy (no labels needed)"


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--teacher", type=Path, required=True,
                   help="the unpruned checkpoint, or an official name such as yolov5s")
    p.add_argument("--student", type=Path, help="pruned checkpoint from `edge-convert prune` (not needed with --resume)")
    p.add_argument("--images", type=Path, default=None,
                   help="folder of photos like the camera's, no labels needed (default: the shared pool); "
                        "every 8th file is held out for scoring and not trained on")
    p.add_argument("--imgsz", default="320", help="training size: 320 or HEIGHT,WIDTH (use the export size)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak AdamW learning rate")
    p.add_argument("--workers", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="fixes data order, flips and initial state")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    p.add_argument("--live-teacher", action="store_true",
                   help="run the teacher every step and also match its block outputs (slower); by default its "
                        "head outputs are computed once per image and mirror image and cached beside --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run stored in --out")
    p.add_argument("--out", type=Path, required=True, help="distilled checkpoint (also holds the state for --resume)")


def run(args) -> int:
    config = DistillConfig(imgsz=parse_imgsz(args.imgsz), epochs=args.epochs, batch=args.batch, lr=args.lr,
                           seed=args.seed, flip=not args.no_flip, live_teacher=args.live_teacher)
    out = distill(args.teacher, args.student, args.images or default_pool_dir(), args.out, config, resume=args.resume,
                  threads=args.workers)
    print(out, file=sys.stdout)
    return 0
