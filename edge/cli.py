"""``edge-detect``: run a converted model on a camera, a stream, images or a video, or benchmark it.

Argument parsing and wiring only; the work lives in sources, capture, pipeline, detector, sinks
and bench. Every setting is an argparse option with a type (and choices where they are closed),
so a TOML ``--config`` file can set any of them and is checked the same way. Every EdgeError
becomes one ``edge-detect: error: ...`` line and exit code 2; SIGINT/SIGTERM end a run with 0.
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
OPENCV_LOG_ENV = "OPENCV_LOG_LEVEL"
OPENCV_LOG_LEVEL = "ERROR"  # OpenCV's own warnings (e.g. a missing /dev/video) would repeat our error lines
# FFmpeg logs every failed connection attempt itself; edge-detect logs each outage once.
FFMPEG_LOG_ENV = "OPENCV_FFMPEG_LOGLEVEL"
FFMPEG_LOG_QUIET = "-8"  # AV_LOG_QUIET; set the variable to 16 (AV_LOG_ERROR) to see FFmpeg's messages
STDOUT = "-"

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
    from edge.service.capture import DEFAULT_STALL_TIMEOUT_S
    from edge.service.pipeline import DEFAULT_STATS_INTERVAL_S
    from edge.sinks.jsonlines import DEFAULT_JSON_BACKUPS, DEFAULT_JSON_MAX_MB

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Detect objects with an edge-yolo TFLite model; one JSON object per frame on stdout, logs on stderr. "
        f"`{PROG} bench --help` for the benchmark.",
    )
    _add_model_args(parser)
    inputs = parser.add_argument_group("input")
    which = inputs.add_mutually_exclusive_group(required=True)
    which.add_argument("--camera", metavar="CAM", default=None,
                       help="a V4L2 camera (0, /dev/video0) or a Raspberry Pi camera module (picam, picam:1)")
    which.add_argument("--source", metavar="SRC", default=None,
                       help="an image, a folder of images, a glob ('dir/*.jpg'), a video file or a stream URL (rtsp://, http(s)://)")
    inputs.add_argument("--loop", action="store_true", help="replay a video or image source from the start when it ends")
    inputs.add_argument("--realtime", action="store_true",
                        help="read a video at its own frame rate and drop frames inference cannot keep up with, "
                        "as with a camera (default for files: process every frame)")
    inputs.add_argument("--max-fps", type=float, default=None,
                        help="most inferences per second (a video is then read in real time)")
    inputs.add_argument("--max-frames", type=int, default=None, help="stop after this many processed frames")
    inputs.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT_S, metavar="S",
                        help=f"a camera or stream silent this long is reopened (default: {DEFAULT_STALL_TIMEOUT_S:g})")
    outputs = parser.add_argument_group("output")
    outputs.add_argument("--save", default=None, metavar="PATH",
                         help="also write annotated frames: to a folder, or into one video if PATH ends in .mp4 or .avi")
    outputs.add_argument("--json-out", default=STDOUT, metavar="FILE",
                         help="write the JSON lines to FILE, rotated by size, instead of stdout (default: -, stdout)")
    outputs.add_argument("--json-max-mb", type=float, default=DEFAULT_JSON_MAX_MB, metavar="MB",
                         help=f"rotate --json-out at this size (default: {DEFAULT_JSON_MAX_MB:g})")
    outputs.add_argument("--json-backups", type=int, default=DEFAULT_JSON_BACKUPS, metavar="N",
                         help=f"rotated --json-out files kept, FILE.1 the newest (default: {DEFAULT_JSON_BACKUPS})")
    outputs.add_argument("--stats-interval", type=float, default=DEFAULT_STATS_INTERVAL_S, metavar="S",
                         help=f"log fps, latency, dropped frames and reconnects every S seconds; 0 disables (default: {DEFAULT_STATS_INTERVAL_S:g})")
    _add_integrations(parser)
    return parser


def _add_integrations(parser: argparse.ArgumentParser) -> None:
    from edge.config import add_config_arguments
    from edge.cli_mqtt import add_mqtt_arguments

    add_mqtt_arguments(parser)
    add_config_arguments(parser)


def _detect_validators():
    """Checks beyond each option's type, shared by the command line and the config file."""
    from edge.config import EDGE_DETECT_VALIDATORS, at_least, greater_than

    return (*EDGE_DETECT_VALIDATORS, greater_than("stall_timeout", 0), at_least("stats_interval", 0),
            greater_than("json_max_mb", 0), at_least("json_backups", 0))


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
    from edge.detect.detector import DetectSettings, Detector
    from edge.model.metadata import class_ids_from

    settings = DetectSettings(conf=args.conf, iou=args.iou, max_det=args.max_det)
    detector = Detector(args.model, settings, threads=args.threads, device=args.device)
    if args.classes:
        detector.settings = dataclasses.replace(settings, classes=class_ids_from(args.classes, detector.names))
    return detector


def _json_sink(args: argparse.Namespace, names):
    from edge.sinks.jsonlines import BYTES_PER_MB, JsonLinesSink, RotatingJsonFile

    if args.json_out == STDOUT:
        return JsonLinesSink(sys.stdout, names)
    return RotatingJsonFile(args.json_out, names, int(args.json_max_mb * BYTES_PER_MB), args.json_backups)


def _save_sink(args: argparse.Namespace, names, fps: float | None):
    from edge.sinks.saved import AnnotatedImageSink, AnnotatedVideoSink, is_video_path

    if is_video_path(args.save):
        return AnnotatedVideoSink(args.save, names, fps)
    return AnnotatedImageSink(args.save, names)


def run_detect(args: argparse.Namespace) -> int:
    from edge.service.capture import Capture, CaptureSettings, Mailbox
    from edge.cli_mqtt import mqtt_sink_from_args
    from edge.service.pipeline import Pipeline, PipelineSettings, stop_on_signals
    from edge.service.sdnotify import Notifier, WatchdogPacer
    from edge.sources import open_source
    from edge.sources.opencv import VideoFileSource
    from edge.service.stats import PipelineStats

    source = open_source(camera=args.camera, source=args.source, stall_timeout_s=args.stall_timeout)
    if source.live and (args.loop or args.realtime):
        raise EdgeError(f"--{'loop' if args.loop else 'realtime'} applies to files; {source.name} is live already")
    detector = _build_detector(args)
    if hasattr(source, "set_lores_edge"):
        source.set_lores_edge(max(detector.meta.imgsz_hw))
    stats = PipelineStats()
    capture = Capture(source, Mailbox(stats.counters), stats.counters, CaptureSettings(
        loop=args.loop,
        realtime=args.realtime or (args.max_fps is not None and not source.live),
        max_frames=args.max_frames,
        stall_timeout_s=args.stall_timeout,
    ))
    sinks = [_json_sink(args, detector.names)]
    try:
        capture.open()
        if args.save:
            sinks.append(_save_sink(args, detector.names, source.fps))
        mqtt = mqtt_sink_from_args(args, detector.names, Path(args.model).name)
        if mqtt is not None:
            sinks.append(mqtt)
    except BaseException:
        source.close()
        for sink in sinks:
            sink.close()
        raise
    notifier = Notifier()
    pipeline = Pipeline(detector, capture, sinks, stats,
                        PipelineSettings(args.max_frames, args.max_fps, args.stats_interval),
                        notifier=notifier, watchdog=WatchdogPacer(notifier))
    with stop_on_signals(pipeline.request_stop):
        final = pipeline.run()
    notifier.close()
    if final["read"] == 0 and isinstance(source, VideoFileSource):
        raise EdgeError(f"{source.path} has no decodable video frames")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from edge.bench import default_bench_images, run_bench as bench
    from edge.sources.images import image_paths

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


def _parse(command: str, parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    if command != "detect":
        return parser.parse_args(argv)
    from edge.config import apply_config

    return apply_config(parser, argv, _detect_validators())


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
    os.environ.setdefault(OPENCV_LOG_ENV, OPENCV_LOG_LEVEL)
    os.environ.setdefault(FFMPEG_LOG_ENV, FFMPEG_LOG_QUIET)
    _configure_logging()
    try:
        args = _parse(command, make_parser(), argv)
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
