"""`edge-convert`: the workstation tool. Each subcommand lives in its own module under commands/."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from convert.errors import ConvertError
from convert.weights import resolve_weight_args

# Each module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
COMMANDS = [
    "convert.commands.export",
    "convert.commands.prune",
    "convert.commands.distill",
    "convert.commands.compare_speed",
    "convert.commands.slim",
    "convert.commands.eval",
    "convert.commands.report",
    "convert.commands.explain",
]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="edge-convert", description=(
        "Turn a YOLOv5 checkpoint into lighter, full-integer TFLite models for the edge, and measure them."))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        handlers[module.NAME] = module.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # torch's OpenMP threads spin after each op by default; beside a TFLite interpreter in the same
    # process (eval, report, compare-speed) the spinning steals the cores whose time is measured.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        resolve_weight_args(args)  # --weights/--teacher: a path, or a registry name fetched into the cache
        return handlers[args.command](args) or 0
    except ConvertError as exc:
        print(f"edge-convert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-convert: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
