"""Side-by-side TFLite latency: invokes of the models interleaved, so both see the same machine.

Timing one model and then the other on a shared or thermally throttled machine compares two
different moments, not two models. Alternating single invokes (and alternating which goes first)
exposes both to the same load, and the median ignores the odd stall. On a machine shared with
other work even that is noisy: at one thread the invoke runs on the calling thread, so its CPU
time (`cpu_ms`) is also recorded, which counts the work done and not the time spent waiting.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import ConvertError

WARMUP_INVOKES = 5  # the first invokes pay for allocation and XNNPACK weight packing


@dataclass(frozen=True)
class Timing:
    path: Path
    median_ms: float
    p90_ms: float
    cpu_ms: float  # median CPU time of the calling thread per invoke: the whole invoke at one thread


def _ready(path: Path, threads: int):
    from edge.errors import EdgeError
    from edge.model.interpreter import load_interpreter

    try:
        interpreter = load_interpreter(path, threads=threads)
    except EdgeError as exc:
        raise ConvertError(str(exc)) from None
    rng = np.random.default_rng(0)
    for det in interpreter.get_input_details():
        info = np.iinfo(det["dtype"]) if np.issubdtype(det["dtype"], np.integer) else None
        value = rng.integers(info.min, info.max, det["shape"], endpoint=True) if info else rng.random(det["shape"])
        interpreter.set_tensor(det["index"], value.astype(det["dtype"]))
    return interpreter


def compare_speed(paths: list[Path], runs: int = 50, threads: int = 2) -> list[Timing]:
    """Median and p90 invoke time of each model, measured in alternating rounds."""
    if runs < 1:
        raise ConvertError(f"--runs {runs} must be at least 1")
    interpreters = [_ready(Path(p), threads) for p in paths]
    for interpreter in interpreters:
        for _ in range(WARMUP_INVOKES):
            interpreter.invoke()
    times: list[list[float]] = [[] for _ in paths]
    cpu: list[list[float]] = [[] for _ in paths]
    for round_index in range(runs):
        order = range(len(paths)) if round_index % 2 == 0 else reversed(range(len(paths)))
        for i in order:
            start, start_cpu = time.perf_counter(), time.thread_time()
            interpreters[i].invoke()
            times[i].append((time.perf_counter() - start) * 1000.0)
            cpu[i].append((time.thread_time() - start_cpu) * 1000.0)
    return [Timing(Path(p), statistics.median(t), float(np.percentile(t, 90)), statistics.median(c))
            for p, t, c in zip(paths, times, cpu)]
