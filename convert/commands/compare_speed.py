"""`edge-convert compare-speed`: invoke time of TFLite models measured side by side."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.speed import compare_speed

NAME = "compare-speed"
HELP = "median invoke time of TFLite models, interleaved in one run, and the speed-up over the first"


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--models", type=Path, nargs="+", required=True, help="TFLite files; the first is the reference")
    p.add_argument("--runs", type=int, default=50, help="invokes per model")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads")


def run(args) -> int:
    timings = compare_speed(args.models, args.runs, args.threads)
    base, base_cpu = timings[0].median_ms, timings[0].cpu_ms
    cpu_head = f" {'CPU ms':>8s} {'CPU speed-up':>12s}" if args.threads == 1 else ""
    print(f"{'model':40s} {'median ms':>10s} {'p90 ms':>8s} {'speed-up':>9s}{cpu_head}", file=sys.stdout)
    for t in timings:
        cpu = f" {t.cpu_ms:8.2f} {base_cpu / t.cpu_ms:11.2f}x" if args.threads == 1 else ""
        print(f"{t.path.name:40s} {t.median_ms:10.2f} {t.p90_ms:8.2f} {base / t.median_ms:8.2f}x{cpu}", file=sys.stdout)
    if args.threads == 1:
        print("CPU ms: CPU time of the invoking thread (the whole invoke at one thread): the work done, "
              "without the waiting a busy machine adds", file=sys.stdout)
    return 0
