"""``edge-detect``: run a converted model on images or a video, or benchmark it.

Argument parsing only; the work lives in sources, detector, sinks and bench. Every EdgeError
becomes one ``edge-detect: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from edge.errors import EdgeError

PROG = "edge-detect"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DEFAULT_BENCH_FRAMES = 100

log = logging.getLogger(PROG)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a .tflite exported by edge-convert (metadata embedded or as sidecar .json)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, edgetpu, edgetpu:usb, edgetpu:pci:0 (default: cpu)")
    parser.add_argument("--conf", type=float, default=0.25, help="minimum score obj×cls (default: 0.25)")
    parser.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default: 0.45)")
    parser.add_argument("--classes", nargs="+", default=None, help="keep only these class ids or names, e.g. --classes person 2")
    parser.add_argument("--max-det", type=int, default=300, help="most detections per frame (default: 300)")


def detect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Detect objects with an edge-yolo TFLite model; one JSON object per frame on stdout. "
        f"`{PROG} bench --help` for the benchmark.",
    )
    _add_model_args(parser)
    parser.add_argument("--source", required=True, help="an image, a folder of images or a video file")
    parser.add_argument("--save", default=None, metavar="DIR", help="also write annotated frames to DIR")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    return parser


def bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} bench", description="Per-stage latency, FPS and peak memory on real images.")
    _add_model_args(parser)
    parser.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="PX",
                        help="expected model input size (H [W]); fail if the model's differs")
    parser.add_argument("--frames", type=int, default=DEFAULT_BENCH_FRAMES, help=f"timed frames (default: {DEFAULT_BENCH_FRAMES})")
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="folder of images (default: photos and coco-train130 from $EDGE_YOLO_DATA or ../shared)")
    return parser


def _build_detector(args: argparse.Namespace):
    from edge.detector import DetectSettings, Detector
    from edge.metadata import class_ids_from

    settings = DetectSettings(conf=args.conf, iou=args.iou, max_det=args.max_det)
    detector = Detector(args.model, settings, threads=args.threads, device=args.device)
    if args.classes:
        detector.settings = dataclasses.replace(settings, classes=class_ids_from(args.classes, detector.names))
    return detector


def run_detect(args: argparse.Namespace) -> int:
    from edge.sinks import AnnotatedImageSink, JsonLinesSink
    from edge.sources import iter_frames

    if args.max_frames is not None and args.max_frames < 1:
        raise EdgeError(f"--max-frames must be at least 1, received {args.max_frames}")
    detector = _build_detector(args)
    sinks = [JsonLinesSink(sys.stdout, detector.names)]
    if args.save:
        sinks.append(AnnotatedImageSink(args.save, detector.names))
    frames = 0
    for frame in iter_frames(args.source, max_frames=args.max_frames):
        dets, _ = detector.detect(frame.image)
        for sink in sinks:
            sink.write(frame, dets)
        frames += 1
    for sink in sinks:
        sink.close()
    log.info("%d frames", frames)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from edge.bench import default_bench_images, run_bench as bench
    from edge.sources import image_paths

    detector = _build_detector(args)
    if args.imgsz:
        wanted_hw = tuple(args.imgsz * 2 if len(args.imgsz) == 1 else args.imgsz)
        if wanted_hw != detector.meta.imgsz_hw:
            raise EdgeError(f"--imgsz {' '.join(map(str, args.imgsz))} does not match the model input "
                            f"{detector.meta.imgsz_hw[0]}x{detector.meta.imgsz_hw[1]} (HxW); export a model at that size")
    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise EdgeError(f"--images {folder} is not a folder")
        paths = image_paths(folder)
        if not paths:
            raise EdgeError(f"no images in {folder}")
    else:
        paths = default_bench_images()
    result = bench(detector, paths, args.frames)
    print(f"model {args.model} ({detector.meta.precision}, {detector.meta.imgsz_hw[0]}x{detector.meta.imgsz_hw[1]}), "
          f"device {args.device}, threads {args.threads or os.cpu_count()}, {len(paths)} images")
    print(result.report())
    return 0


COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "detect": (detect_parser, run_detect),
    "bench": (bench_parser, run_bench),
}


class _LowercaseLevelFormatter(logging.Formatter):
    """``edge-detect: warning: ...``, matching argparse's ``edge-detect: error: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowercaseLevelFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "detect"
    make_parser, run = COMMANDS[command]
    args = make_parser().parse_args(argv)
    _configure_logging()
    try:
        return run(args)
    except EdgeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: stop quietly, and keep Python's final flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
