"""Per-stage latency of a Detector on real images: where the time goes besides invoke(); and the cost
per frame of the object tracker (``edge.track``) with 0, 10 and 100 objects in view."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from edge.detect.detections import Detections
from edge.detect.detector import STAGES, Detector
from edge.errors import EdgeError, InvalidSetting
from edge.fields import check_fields, setting
from edge.sources.base import Frame
from edge.sources.images import image_paths, read_image
from edge.track import ObjectTracker, TrackSettings

DATA_ENV = "EDGE_YOLO_DATA"
DEFAULT_IMAGE_DIRS = ("data/photos", "data/coco-train130/images")
WARMUP_FRAMES = 5  # first invokes pay for allocation and XNNPACK packing
PERCENTILE_P90 = 90
KIB = 1024
MS_PER_S = 1000.0
DEFAULT_BENCH_FRAMES = 100
MAX_BENCH_FRAMES = 1_000_000
MAX_IMGSZ = 8192


@dataclass(frozen=True)
class BenchSettings:
    TITLE: ClassVar[str] = "benchmark"

    imgsz: tuple[int, ...] | None = setting(None, help="expected model input size (H [W]); fail if the model's differs",
                                            metavar="PX", low=1, high=MAX_IMGSZ)
    frames: int = setting(DEFAULT_BENCH_FRAMES, help="timed frames", low=1, high=MAX_BENCH_FRAMES)
    images: Path | None = setting(None, help="folder of images", metavar="DIR",
                                  default_text="photos and coco-train130 from $EDGE_YOLO_DATA or ../shared")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.imgsz is not None and len(self.imgsz) > 2:
            raise InvalidSetting("imgsz", f"takes H or H W, received {len(self.imgsz)} values")

    def images_to_time(self) -> list[Path]:
        if self.images is None:
            return default_bench_images()
        if not self.images.is_dir():
            raise EdgeError(f"--images {self.images} is not a folder")
        paths = image_paths(self.images)
        if not paths:
            raise EdgeError(f"no images in {self.images}")
        return paths
TRACK_OBJECTS = (0, 10, 100)
TRACK_FRAMES = 300
TRACK_WH = (640, 480)
TRACK_FPS = 10.0
TRACK_NOISE_PX = 1.5  # detector jitter
TRACK_MISS = 0.1  # share of objects the detector misses in a frame


def default_data_dir() -> Path | None:
    """$EDGE_YOLO_DATA, else ``shared/`` beside the repository, else ``../shared`` from the CWD."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    for candidate in (Path(__file__).resolve().parents[2] / "shared", Path.cwd().parent / "shared"):
        if candidate.is_dir():
            return candidate
    return None


def default_bench_images(data_dir: Path | None = None) -> list[Path]:
    data_dir = data_dir or default_data_dir()
    if data_dir is None:
        raise EdgeError(f"no benchmark images: pass --images DIR or set {DATA_ENV} to the shared data folder")
    folders = [data_dir / sub for sub in DEFAULT_IMAGE_DIRS if (data_dir / sub).is_dir()]
    if not folders:
        raise EdgeError(f"no benchmark images under {data_dir} ({', '.join(DEFAULT_IMAGE_DIRS)}); pass --images DIR")
    return [path for folder in folders for path in image_paths(folder)]


@dataclass(frozen=True)
class BenchResult:
    frames: int
    median_ms: dict[str, float]
    p90_ms: dict[str, float]
    total_median_ms: float
    peak_rss_mb: float

    @property
    def fps(self) -> float:
        return MS_PER_S / self.total_median_ms if self.total_median_ms else float("inf")

    @property
    def overhead_ratio(self) -> float:
        """(preprocess + postprocess) / invoke, from the medians: the share the runtime adds."""
        invoke = self.median_ms["invoke"]
        return (self.median_ms["preprocess"] + self.median_ms["postprocess"]) / invoke if invoke else float("inf")

    def report(self) -> str:
        lines = [f"{'stage':<12} {'median ms':>10} {'p90 ms':>10}"]
        lines += [f"{stage:<12} {self.median_ms[stage]:>10.2f} {self.p90_ms[stage]:>10.2f}" for stage in STAGES]
        lines += [
            f"{'total':<12} {self.total_median_ms:>10.2f}",
            f"frames {self.frames}, FPS {self.fps:.1f}, peak RSS {self.peak_rss_mb:.0f} MB, "
            f"(pre+post)/invoke {self.overhead_ratio:.2f}",
        ]
        return "\n".join(lines)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (0 where the platform has no getrusage)."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (KIB * KIB if sys.platform == "darwin" else KIB)


def _cycle_images(paths: Sequence[Path]):
    """Decoded images round and round ``paths``; stops if a whole pass reads nothing."""
    while True:
        read_any = False
        for path in paths:
            image = read_image(path)
            if image is not None:
                read_any = True
                yield image
        if not read_any:
            return


def run_bench(detector: Detector, paths: Sequence[Path], frames: int, warmup: int = WARMUP_FRAMES) -> BenchResult:
    """Time ``frames`` detections cycling over ``paths`` (decoding is not timed, nor kept)."""
    if frames < 1:
        raise EdgeError(f"--frames must be at least 1, received {frames}")
    readable = _cycle_images(paths)
    timings = np.empty((frames, len(STAGES)), np.float64)
    for i in range(-warmup, frames):
        image = next(readable, None)
        if image is None:
            raise EdgeError("none of the benchmark images could be read")
        _, stage_ms = detector.detect(image)
        if i >= 0:
            timings[i] = [stage_ms[stage] for stage in STAGES]
    median = np.median(timings, axis=0)
    p90 = np.percentile(timings, PERCENTILE_P90, axis=0)
    return BenchResult(
        frames=frames,
        median_ms=dict(zip(STAGES, median.tolist())),
        p90_ms=dict(zip(STAGES, p90.tolist())),
        total_median_ms=float(np.median(timings.sum(axis=1))),
        peak_rss_mb=peak_rss_mb(),
    )


@dataclass(frozen=True)
class TrackCost:
    objects: int
    median_ms: float
    p90_ms: float


def track_costs(names: Sequence[str], objects: Sequence[int] = TRACK_OBJECTS, frames: int = TRACK_FRAMES,
                warmup: int = WARMUP_FRAMES, seed: int = 0) -> list[TrackCost]:
    """``ObjectTracker.update`` (tracks, a zone, a line, events) per frame, on made-up scenes of ``n``
    objects moving at constant speeds with detector jitter and misses: the pipeline's ``track`` stage."""
    rng = np.random.default_rng(seed)
    width, height = TRACK_WH
    settings = TrackSettings(labels=(names[0],), zones=[{"name": "zone", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}],
                             lines=[{"name": "line", "points": [[0.5, 0], [0.5, 1]]}])
    image = np.zeros((height, width, 3), np.uint8)
    costs = []
    for n in objects:
        tracker = ObjectTracker(settings, names)
        start = rng.uniform([0, 0], [width - 60, height - 120], (n, 2))
        size = rng.uniform([20, 40], [60, 120], (n, 2))
        velocity = rng.uniform(-40, 40, (n, 2))  # px/s
        score = rng.uniform(0.3, 0.95, n).astype(np.float32)
        timings = np.empty(frames)
        for i in range(-warmup, frames):
            t = (i + warmup) / TRACK_FPS
            xy = np.mod(start + velocity * t, [width - 60, height - 120]) + rng.normal(0, TRACK_NOISE_PX, (n, 2))
            seen = rng.random(n) >= TRACK_MISS
            boxes = np.concatenate([xy, xy + size], axis=1)[seen].astype(np.float32)
            dets = Detections(boxes, score[seen], np.zeros(int(seen.sum()), np.int64))
            frame = Frame(i, "bench", t, image, position_ms=t * MS_PER_S)
            started = time.perf_counter()
            tracker.update(frame, dets)
            if i >= 0:
                timings[i] = (time.perf_counter() - started) * MS_PER_S
        costs.append(TrackCost(n, float(np.median(timings)), float(np.percentile(timings, PERCENTILE_P90))))
    return costs


def track_report(costs: Sequence[TrackCost]) -> str:
    lines = [f"{'track':<12} {'median ms':>10} {'p90 ms':>10}"]
    lines += [f"{f'{c.objects} objects':<12} {c.median_ms:>10.3f} {c.p90_ms:>10.3f}" for c in costs]
    return "\n".join(lines)
