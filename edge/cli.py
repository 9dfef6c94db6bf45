"""``edge-detect``: run a converted model on a camera, a stream, images or a video, or benchmark it.

Wiring only: the settings (``edge.settings``) are built once from defaults, ``--config`` and the
command line; each stage gets its own section of them. Every EdgeError becomes one
``edge-detect: error: ...`` line and exit code 2; SIGINT/SIGTERM end a run with 0.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edge.errors import EdgeError, InvalidSetting

PROG = "edge-detect"
EXIT_FAILURE = 1  # the run could not go on (under systemd: restarted)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
OPENCV_LOG_ENV = "OPENCV_LOG_LEVEL"
OPENCV_LOG_LEVEL = "ERROR"  # OpenCV's own warnings (e.g. a missing /dev/video) would repeat our error lines
# FFmpeg logs every failed connection attempt itself; edge-detect logs each outage once.
FFMPEG_LOG_ENV = "OPENCV_FFMPEG_LOGLEVEL"
FFMPEG_LOG_QUIET = "-8"  # AV_LOG_QUIET; set the variable to 16 (AV_LOG_ERROR) to see FFmpeg's messages
DETECT_HELP = (f"Detect objects with an edge-yolo TFLite model; one JSON object per frame on stdout, logs on stderr. "
               f"`{PROG} bench --help` for the benchmark.")
BENCH_HELP = "Per-stage latency, FPS and peak memory on real images."

log = logging.getLogger(PROG)


@dataclass
class Plan:
    """What a run needs beyond the settings, found without opening anything: ``--check-config`` stops here."""

    source: Any  # a FrameSource, not yet opened
    names: tuple[str, ...]
    mqtt: Any  # MqttSettings ready for the sink, or None
    tracker: Any = None  # an ObjectTracker when objects are tracked (--track, zones, lines, --publish events)


def build_detect_settings(argv: Sequence[str]):
    from edge.settings import DETECT_SECTIONS, build_settings

    return build_settings(DETECT_SECTIONS, argv, prog=PROG, description=DETECT_HELP, checks=(_home_assistant_needs_mqtt,))


def _home_assistant_needs_mqtt(settings) -> None:
    ha = settings.homeassistant
    for field in ("discovery", "remove"):
        if getattr(ha, field) and settings.mqtt is None:
            raise InvalidSetting(f"homeassistant.{field}", "needs --mqtt URL: Home Assistant hears of the device through "
                                                           "the broker")


def plan_run(settings) -> Plan:
    """Every check a run makes before it starts, each failure one line naming its key or flag."""
    from edge.model.integrity import check_integrity
    from edge.model.interpreter import read_model_file
    from edge.model.metadata import class_ids_from, read_metadata
    from edge.sources import open_source

    chosen = "camera" if settings.source.camera is not None else "source"
    try:
        source = open_source(camera=settings.source.camera, source=settings.source.source,
                             stall_timeout_s=settings.source.stall_timeout, max_image_pixels=settings.source.max_image_pixels)
    except EdgeError as exc:
        raise settings.blame("source", chosen, str(exc)) from None
    for switch in ("loop", "realtime"):
        if source.live and getattr(settings.run, switch):
            raise settings.blame("run", switch, f"--{switch} applies to files; {source.name} is live already")
    check_integrity(read_model_file(Path(settings.model.model)), settings.model.model)
    names = read_metadata(settings.model.model).names
    if settings.detect.classes is not None:
        try:
            class_ids_from(settings.detect.classes, names)
        except EdgeError as exc:
            raise settings.blame("detect", "classes", str(exc)) from None
    for field in ("save", "json_out"):
        _check_writable(settings, "output", field, getattr(settings.output, field))
    mqtt = settings.mqtt
    if mqtt is not None:
        mqtt = dataclasses.replace(mqtt, model=Path(settings.model.model).name)
        try:
            mqtt.snapshot_classes(names)
        except InvalidSetting as exc:
            raise settings.blame("mqtt", "snapshot", exc.message) from None
        mqtt.resolve_password()
        _check_writable(settings, "mqtt", "state_dir", str(mqtt.resolve_state_dir()) + "/")
    return Plan(source, names, mqtt, _tracker(settings, names))


def _tracker(settings, names):
    """The ObjectTracker of the run, or None; its labels checked against the model's."""
    from edge.sinks.mqtt.settings import PUBLISH_EVENTS, PublishMode
    from edge.track import ObjectTracker

    events = settings.mqtt is not None and PublishMode.parse(settings.mqtt.publish).kind == PUBLISH_EVENTS
    if not (settings.track.active or events):
        return None
    try:
        return ObjectTracker(settings.track, names, settings.events)
    except InvalidSetting as exc:
        raise settings.blame("track", exc.field, exc.message) from None


def _check_writable(settings, section: str, field: str, target: str | None) -> None:
    """A file or folder the run will write: its nearest existing folder must be writable."""
    from edge.sinks.settings import STDOUT

    if target is None or target == STDOUT:
        return
    path = Path(target).expanduser()
    folder = path if target.endswith("/") or path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise settings.blame(section, field, f"cannot write under {folder}: permission denied")


def run_detect(settings) -> int:
    from edge.service import Capture, Mailbox, Notifier, Pipeline, PipelineStats, WatchdogPacer, stop_on_signals
    from edge.settings import format_settings
    from edge.sources.opencv import VideoFileSource

    plan = plan_run(settings)
    if settings.check_only:
        print(format_settings(settings, PROG))
        return 0
    if settings.homeassistant.remove:
        return _remove_discovery(settings, plan)
    detector = _build_detector(settings)
    source = plan.source
    if hasattr(source, "set_lores_edge"):
        source.set_lores_edge(max(detector.meta.imgsz_hw))
    stats = PipelineStats()
    capture = Capture(source, Mailbox(stats.counters), stats.counters, settings.run.capture(settings.source, source.live))
    sinks = [_json_sink(settings.output, detector.names)]
    try:
        capture.open()
        if settings.output.save:
            sinks.append(_save_sink(settings.output, detector.names, source.fps))
        mqtt = None
        if plan.mqtt is not None:
            from edge.sinks.mqtt import MqttSink

            mqtt = MqttSink(plan.mqtt, detector.names, _discovery(settings, plan))
            sinks.append(mqtt)
        if settings.metrics is not None:
            from edge.service.metrics import MetricsExporter

            sinks.append(MetricsExporter(settings.metrics, stats.counters, plan.tracker,
                                         mqtt.snapshot_counters if mqtt is not None else None))
    except BaseException:
        source.close()
        for sink in sinks:
            sink.close()
        raise
    notifier = Notifier()
    pipeline = Pipeline(detector, capture, sinks, stats, settings.run.pipeline(),
                        notifier=notifier, watchdog=WatchdogPacer(notifier), tracker=plan.tracker)
    with stop_on_signals(pipeline.request_stop):
        final = pipeline.run()
    notifier.close()
    if final["read"] == 0 and isinstance(source, VideoFileSource):
        raise EdgeError(f"{source.path} has no decodable video frames")
    max_frames = settings.run.max_frames
    if source.live and not pipeline.stop_requested and not (max_frames and final["processed"] >= max_frames):
        log.error("capture of %s ended although a live source never ends; exiting %d", source.name, EXIT_FAILURE)
        return EXIT_FAILURE
    if pipeline.close_failures:
        return EXIT_FAILURE  # an output could not be finished (said above): not a success
    return 0


def _discovery(settings, plan: Plan) -> list:
    """Home Assistant's config messages for this run (none without --ha-discovery)."""
    from edge.sinks.mqtt.discovery import discovery_messages, entities_for

    if not settings.homeassistant.discovery:
        return []
    entities = entities_for(plan.mqtt, plan.tracker, settings.events.snapshot)
    return discovery_messages(plan.mqtt, settings.homeassistant, entities)


def _remove_discovery(settings, plan: Plan) -> int:
    from edge.sinks.mqtt.discovery import entities_for, remove_discovery

    plan.source.close()
    removed = remove_discovery(plan.mqtt, settings.homeassistant, entities_for(plan.mqtt, plan.tracker, settings.events.snapshot))
    log.info("Home Assistant discovery: %d entities of %s removed", removed, plan.mqtt.device_id)
    return 0


def _build_detector(settings):
    from edge.detect import Detector

    model = settings.model
    return Detector(model.model, settings.detect, threads=model.threads, device=model.device)


def _json_sink(output, names):
    from edge.sinks import JsonLinesSink, RotatingJsonFile
    from edge.sinks.jsonlines import BYTES_PER_MB
    from edge.sinks.settings import STDOUT

    if output.json_out == STDOUT:
        return JsonLinesSink(sys.stdout, names)
    return RotatingJsonFile(output.json_out, names, int(output.json_max_mb * BYTES_PER_MB), output.json_backups)


def _save_sink(output, names, fps: float | None):
    from edge.sinks import AnnotatedImageSink, AnnotatedVideoSink, is_video_path

    if is_video_path(output.save):
        return AnnotatedVideoSink(output.save, names, fps)
    return AnnotatedImageSink(output.save, names, output.save_max_files, output.save_max_mb)


def build_bench_settings(argv: Sequence[str]):
    from edge.bench import BenchSettings
    from edge.detect.detector import DetectSettings
    from edge.model.settings import ModelSettings
    from edge.settings import build_settings

    sections = {"model": ModelSettings, "detect": DetectSettings, "bench": BenchSettings}
    return build_settings(sections, argv, prog=f"{PROG} bench", description=BENCH_HELP, with_config=False)


def run_bench(settings) -> int:
    from edge.bench import run_bench as bench

    detector = _build_detector(settings)
    wanted = settings.bench.imgsz
    if wanted:
        wanted_hw = tuple(wanted * 2 if len(wanted) == 1 else wanted)
        if wanted_hw != detector.meta.imgsz_hw:
            raise EdgeError(f"--imgsz {' '.join(map(str, wanted))} does not match the model input "
                            f"{detector.meta.imgsz_hw[0]}x{detector.meta.imgsz_hw[1]} (HxW); export a model at that size")
    paths = settings.bench.images_to_time()
    result = bench(detector, paths, settings.bench.frames)
    model = settings.model
    print(f"model {model.model} ({detector.meta.precision}, {detector.meta.imgsz_hw[0]}x{detector.meta.imgsz_hw[1]}), "
          f"device {model.device}, threads {model.threads or os.cpu_count()}, {len(paths)} images")
    print(result.report())
    from edge.bench import track_costs, track_report

    print(track_report(track_costs(detector.names, frames=settings.bench.frames)))
    return 0


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], Any], Callable[[Any], int]]] = {
    "detect": (build_detect_settings, run_detect),
    "bench": (build_bench_settings, run_bench),
}


class _LowercaseLevelFormatter(logging.Formatter):
    """``edge-detect: warning: ...``, matching ``edge-detect: error: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        from edge.redact import redact_text  # a last guard: a URL in any log line loses its credentials

        return f"{PROG}: {record.levelname.lower()}: {redact_text(record.getMessage())}"


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
    build, run = COMMANDS[command]
    os.environ.setdefault(OPENCV_LOG_ENV, OPENCV_LOG_LEVEL)
    os.environ.setdefault(FFMPEG_LOG_ENV, FFMPEG_LOG_QUIET)
    _configure_logging()
    try:
        return run(build(argv))
    except EdgeError as exc:
        from edge.redact import redact_text

        print(f"{PROG}: error: {redact_text(str(exc))}", file=sys.stderr)
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
